"""IntervalEvaluator: evaluate on another dataset every N updates or N samples."""

from __future__ import annotations

from typing import Any

import keras
import numpy as np

from pointseq.arguments import require_int


class IntervalEvaluator(keras.callbacks.Callback):
    """Run ``model.evaluate(sequencer)`` every ``every_n_updates`` train batches or every
    ``every_n_samples`` training samples (Keras' ``validation_freq`` counts only epochs).

    Args:
        sequencer: the evaluation data (a `PyDataset`); never the sequencer being trained,
            whose epoch would be closed by the evaluation.
        every_n_updates: evaluate after updates N, 2N, ... (exactly one of the two).
        every_n_samples: evaluate after the first update at which the number of training
            samples seen reaches N, 2N, ...; samples are counted as ``batch_size`` per
            update (a partial last batch counts as full).
        batch_size: the training batch size; required with ``every_n_samples``.
        prefix: prepended to the metric names (``interval_val_loss``).
        steps: evaluation batches per evaluation (None: the whole sequencer).
        same_batches: evaluate on the same batches every time: the sequencer's epoch is
            held at its value at construction (an `AbstractSequencer` in training mode would
            otherwise advance, reshuffle and re-augment at each evaluation).

    Updates are counted over the whole ``fit``, across epoch boundaries, and carry over to a
    later ``fit`` with the same callback; a fresh callback in ``fit(initial_epoch=k)`` starts
    at ``k * steps_per_epoch``. With ``steps_per_execution=k`` updates are seen k at a
    time and an evaluation fires at the first execution that crosses its threshold.

    The model's training metrics are saved before and restored after each evaluation
    (``evaluate`` resets them), so the epoch's training logs are those of a run without
    this callback. Results go to ``results`` (one dict per evaluation: ``update``,
    ``samples``, ``epoch`` and the prefixed metrics); the last values are added to the
    epoch logs, hence to ``history.history``, from the first epoch with an evaluation on.
    """

    def __init__(
        self,
        sequencer: Any,
        every_n_updates: int | None = None,
        every_n_samples: int | None = None,
        *,
        batch_size: int | None = None,
        prefix: str = "interval_val_",
        steps: int | None = None,
        same_batches: bool = True,
        verbose: int = 0,
    ) -> None:
        super().__init__()
        if (every_n_updates is None) == (every_n_samples is None):
            raise ValueError(
                "give exactly one of every_n_updates and every_n_samples, got "
                f"every_n_updates={every_n_updates!r} and every_n_samples={every_n_samples!r}"
            )
        if every_n_samples is not None:
            every_n_samples = require_int("every_n_samples", every_n_samples, 1)
            if batch_size is None:
                raise ValueError(
                    "every_n_samples needs batch_size (the training batch size) to count "
                    "samples, got batch_size=None"
                )
        else:
            every_n_updates = require_int("every_n_updates", every_n_updates, 1)
        self.sequencer = sequencer
        self.every_n_updates = every_n_updates
        self.every_n_samples = every_n_samples
        self.batch_size = None if batch_size is None else require_int("batch_size", batch_size, 1)
        self.prefix = str(prefix)
        self.steps = None if steps is None else require_int("steps", steps, 1)
        self.same_batches = bool(same_batches)
        self.verbose = verbose
        self._eval_epoch = getattr(sequencer, "epoch", None)
        self.updates = 0
        self.results: list[dict] = []
        self._fired = 0  # evaluations due so far, counted in thresholds
        self._begin_step = 0
        self._epoch = 0

    # ---------------------------------------------------------------- schedule
    @property
    def samples(self) -> int | None:
        """Training samples seen (nominal: ``batch_size`` per update), None without it."""
        return None if self.batch_size is None else self.updates * self.batch_size

    def _due(self) -> int:
        """How many thresholds the current count has reached."""
        if self.every_n_updates is not None:
            return self.updates // self.every_n_updates
        return self.samples // self.every_n_samples

    # ---------------------------------------------------------------- hooks
    def on_epoch_begin(self, epoch: int, logs: dict | None = None) -> None:
        self._epoch = int(epoch)
        if self.updates == 0 and epoch > 0 and self.params and self.params.get("steps"):
            self.updates = int(epoch) * int(self.params["steps"])
            self._fired = self._due()

    def on_train_batch_begin(self, batch: int, logs: dict | None = None) -> None:
        self._begin_step = int(batch)

    def on_train_batch_end(self, batch: int, logs: dict | None = None) -> None:
        self.updates += max(int(batch) - self._begin_step + 1, 1)
        due = self._due()
        if due > self._fired:
            self._fired = due
            self.evaluate_now()

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        if logs is not None and self.results:
            last = self.results[-1]
            logs.update({k: v for k, v in last.items() if k.startswith(self.prefix)})

    # ---------------------------------------------------------------- evaluation
    def evaluate_now(self) -> dict:
        """Evaluate now, record the result and return it."""
        metric_vars = [v for m in self.model.metrics for v in m.variables]
        saved = [keras.ops.convert_to_numpy(v) for v in metric_vars]
        pin = (
            self.same_batches and self._eval_epoch is not None
            and hasattr(self.sequencer, "set_epoch")
        )
        if pin:
            self.sequencer.set_epoch(self._eval_epoch)
        try:
            values = self.model.evaluate(
                self.sequencer, steps=self.steps, verbose=self.verbose, return_dict=True
            )
        finally:
            for variable, value in zip(metric_vars, saved):
                variable.assign(value)
            if pin:  # evaluate closed an epoch of a training-mode sequencer: undo it
                self.sequencer.set_epoch(self._eval_epoch)
        result = {"update": self.updates, "samples": self.samples, "epoch": self._epoch}
        result.update({f"{self.prefix}{k}": _as_float(v) for k, v in values.items()})
        self.results.append(result)
        return result


def _as_float(value: Any) -> Any:
    try:
        return float(np.asarray(value))
    except (TypeError, ValueError):
        return value
