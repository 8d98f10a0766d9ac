"""EpochSync: tell sequencers the epoch number Keras is training."""

from __future__ import annotations

import keras


class EpochSync(keras.callbacks.Callback):
    """Set each sequencer's epoch from Keras' epoch index at the start of every epoch.

    A sequencer advances its own epoch when Keras closes one, which covers a plain
    ``fit``. This callback makes the number exact where that count cannot be: resuming with
    ``fit(initial_epoch=k)``, and the JAX and torch backends, whose first ``fit`` of an
    unbuilt model opens and closes the dataset once to build it. Keras calls it before the
    epoch's workers start, so forked workers see the new epoch.
    """

    def __init__(self, *sequencers) -> None:
        super().__init__()
        if not sequencers:
            raise ValueError("EpochSync needs at least one sequencer, got none")
        for s in sequencers:
            if not hasattr(s, "set_epoch"):
                raise TypeError(f"EpochSync takes sequencers with set_epoch(), got {type(s).__name__}")
        self.sequencers = sequencers

    def on_epoch_begin(self, epoch: int, logs: dict | None = None) -> None:
        for s in self.sequencers:
            s.set_epoch(epoch)
