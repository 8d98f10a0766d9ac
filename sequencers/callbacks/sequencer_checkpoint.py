"""SequencerCheckpoint: save and restore a sequencer's state with the model checkpoint."""

from __future__ import annotations

import json
import os
from typing import Any

import keras
from pointseq.pointclouds.writing import write_json_atomic


class SequencerCheckpoint(keras.callbacks.Callback):
    """Keep a sequencer's ``state_dict()`` in a JSON file so a resumed ``fit`` serves the
    same batches as an uninterrupted one.

    - ``on_epoch_end(epoch)``: writes the state, with ``"epoch"`` set to ``epoch + 1`` (the
      next epoch to train), atomically (a temporary file, then ``os.replace``).
    - ``on_train_begin``: restores the file if it exists (``restore_on_train_begin``); this
      brings back the seed, so the resumed sequencer may be built with ``seed=None``.
    - ``on_epoch_begin(epoch)``: ``sequencer.set_epoch(epoch)``, so ``fit(initial_epoch=k)``
      (or `keras.callbacks.BackupAndRestore`) serves epoch k's batches whatever the
      sequencer's own count says. Keras calls it before the epoch's workers start (threads
      or forked processes), so they see the new epoch.

    - ``on_train_begin`` refuses (``RuntimeError``) a ``fit`` that opened a sequencer with
      Keras' own workers (worker processes, or a PyDataset of another kind with
      ``workers > 1``) before training began: on JAX and torch that pass, made to build a
      loaded or unbuilt model, leaves batches of another epoch in Keras' queue. Call
      `prebuild_model` before ``fit``. A pointseq sequencer's worker threads build batches
      ahead keyed by epoch, so they never serve another epoch's and need no refusal.

    Pair it with a model checkpoint written every epoch (``ModelCheckpoint`` without
    ``save_best_only``, or ``BackupAndRestore``); the two files describe the same epoch only
    if both are written at every epoch end.
    """

    def __init__(
        self,
        sequencer: Any,
        filepath: str | os.PathLike,
        *,
        restore_on_train_begin: bool = True,
        set_epoch: bool = True,
    ) -> None:
        super().__init__()
        for method in ("state_dict", "load_state_dict", "set_epoch"):
            if not callable(getattr(sequencer, method, None)):
                raise TypeError(
                    f"sequencer must provide {method}() (an AbstractSequencer), "
                    f"got {type(sequencer).__name__}"
                )
        if not isinstance(filepath, (str, os.PathLike)) or not os.fspath(filepath):
            raise ValueError(f"filepath must be a non-empty path, got {filepath!r}")
        self.sequencer = sequencer
        self.filepath = os.fspath(filepath)
        self.restore_on_train_begin = bool(restore_on_train_begin)
        self.set_epoch = bool(set_epoch)
        self._opened_epochs = getattr(sequencer, "opened_epochs", 0)  # epochs opened before fit

    def on_train_begin(self, logs: dict | None = None) -> None:
        self._refuse_prefetched_build_pass()
        if self.restore_on_train_begin:
            self.restore()

    def on_train_end(self, logs: dict | None = None) -> None:
        self._opened_epochs = getattr(self.sequencer, "opened_epochs", 0)

    def _refuse_prefetched_build_pass(self) -> None:
        """Refuse a fit that opened the sequencer before training began, with prefetching.

        On JAX and torch, ``fit`` of a model that is not fully built (one just restored
        with ``keras.models.load_model`` included) pulls a batch through the sequencer
        first; Keras' enqueuer then serves the batches its workers prefetched in that pass,
        of the wrong epoch, at the start of the resumed one.
        """
        opened = getattr(self.sequencer, "opened_epochs", 0)
        prefetching = getattr(self.sequencer, "workers", 1) > 1 or getattr(
            self.sequencer, "use_multiprocessing", False)
        if opened != self._opened_epochs and prefetching:
            self._opened_epochs = opened
            raise RuntimeError(
                f"{type(self.sequencer).__name__} was opened before training began (the pass "
                "JAX and torch make to build a model that is not built, e.g. one just loaded with "
                "keras.models.load_model); with worker prefetching, the resumed epoch would start "
                "with batches of another epoch. Call pointseq.prebuild_model(model, sequencer) "
                "before fit (or build the SequencerCheckpoint after your own evaluate/predict "
                "pass on this sequencer).")

    def on_epoch_begin(self, epoch: int, logs: dict | None = None) -> None:
        if self.set_epoch:
            self.sequencer.set_epoch(int(epoch))

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        self.save(next_epoch=int(epoch) + 1)

    def save(self, next_epoch: int | None = None) -> None:
        """Write the sequencer's state; ``next_epoch`` overrides its ``"epoch"``."""
        state = dict(self.sequencer.state_dict())
        if next_epoch is not None:
            state["epoch"] = next_epoch
        write_json_atomic(self.filepath, state)

    def restore(self) -> bool:
        """Load the saved state into the sequencer; False when there is no file yet."""
        if not os.path.exists(self.filepath):
            return False
        with open(self.filepath, encoding="utf-8") as f:
            state = json.load(f)
        if not isinstance(state, dict):
            raise ValueError(
                f"sequencer state file {self.filepath} must hold a JSON object, "
                f"got {type(state).__name__}"
            )
        self.sequencer.load_state_dict(state)
        return True
