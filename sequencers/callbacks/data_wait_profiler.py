"""DataWaitProfiler: how much of a training step is spent waiting for the batch."""

from __future__ import annotations

import time
from typing import Any, Callable

import keras

from pointseq.arguments import require_int

# Backends whose train function pulls the batch itself, so waiting for it is step time.
IN_STEP_BACKENDS = ("tensorflow", "jax")


class DataWaitProfiler(keras.callbacks.Callback):
    """Split each epoch's wall time into waiting between steps and running steps.

    Keras 3.15 calls, per training step, ``on_train_batch_begin(begin_step)``, runs the train
    function, then ``on_train_batch_end(end_step, logs)`` with the step's losses converted to
    Python numbers (so the step has finished on the device). This callback times:

    - ``data_wait_s``: from the previous ``on_train_batch_end`` (or ``on_epoch_begin`` for
      the first step of an epoch) to ``on_train_batch_begin``;
    - ``step_s``: from ``on_train_batch_begin`` to ``on_train_batch_end``.

    What lands where depends on the backend (Keras 3.15). On torch, the epoch iterator
    pulls the next batch between the two hooks, so ``data_wait_s`` is the time spent waiting
    for data. On TensorFlow (``tf.data`` inside the compiled train function) and on JAX
    (``next(iterator)`` inside the train function), the batch is pulled *within* the step:
    waiting for data is counted in ``step_s``, and ``data_wait_s`` holds only host overhead
    between steps (other callbacks included). There, a ``step_s`` well above the model's
    compute time on ready data is the sign of an input-bound run.

    With ``compile(steps_per_execution=k)`` one begin/end pair covers k batches: records
    count both ``steps`` (pairs) and ``batches``. The first ``warmup_steps`` steps of each
    ``fit`` (on TensorFlow the first one traces and compiles the train function) are left
    out of the sums and reported as ``warmup_s``. Time spent in other callbacks' batch hooks
    (e.g. an `IntervalEvaluator`) falls in whichever interval it interrupts.

    Given the training ``sequencer``, it also reports ``batch_load_s``: the time the
    sequencer spent building the epoch's batches (``__getitem__``), on every backend. With
    ``batch_load_s`` close to ``step_s`` the run is input-bound whatever the hooks say. It
    is measured in this process, so it is only available with ``use_multiprocessing=False``
    (worker threads are counted; with ``workers > 1`` their times add up and overlap).

    Per epoch it appends a full record to ``records`` and, with ``in_logs`` (the default), adds
    ``data_wait_s``, ``step_s``, ``data_wait_fraction`` (of their sum) and, with a sequencer,
    ``batch_load_s`` to the epoch logs, so they appear in ``history.history`` and on Keras'
    epoch lines; ``in_logs=False`` keeps them off the console (the records still hold them). ``summary()`` returns the
    totals, ``report()`` a printable table.
    """

    def __init__(
        self,
        sequencer: Any = None,
        warmup_steps: int = 1,
        clock: Callable[[], float] = time.perf_counter,
        in_logs: bool = True,
    ) -> None:
        super().__init__()
        if sequencer is not None and not hasattr(sequencer, "load_clock"):
            raise TypeError(f"sequencer must be a pointseq sequencer, got {type(sequencer).__name__}")
        if sequencer is not None and sequencer.use_multiprocessing:
            raise ValueError(
                "batch_load_s is measured in this process; a sequencer with "
                "use_multiprocessing=True builds its batches in worker processes. Profile it "
                "without the sequencer argument, or with use_multiprocessing=False"
            )
        self.sequencer = sequencer
        self.warmup_steps = require_int("warmup_steps", warmup_steps, 0)
        self.clock = clock
        self.in_logs = bool(in_logs)
        self.records: list[dict] = []
        self._steps_in_fit = 0
        self._epoch: dict | None = None
        self._last_end: float | None = None
        self._step_begin: float | None = None
        self._begin_step = 0

    def on_train_begin(self, logs: dict | None = None) -> None:
        self._steps_in_fit = 0

    def on_epoch_begin(self, epoch: int, logs: dict | None = None) -> None:
        now = self.clock()
        self._epoch = {
            "epoch": int(epoch), "steps": 0, "batches": 0, "data_wait_s": 0.0, "step_s": 0.0,
            "max_data_wait_s": 0.0, "max_step_s": 0.0, "warmup_steps": 0, "warmup_s": 0.0,
            "_begin": now,
        }
        if self.sequencer is not None:
            self._epoch["_load"] = self.sequencer.load_clock.read()
        self._last_end = now

    def on_train_batch_begin(self, batch: int, logs: dict | None = None) -> None:
        if self._epoch is None:  # driven without on_epoch_begin: start an epoch record
            self.on_epoch_begin(0)
        self._step_begin = self.clock()
        self._begin_step = int(batch)

    def on_train_batch_end(self, batch: int, logs: dict | None = None) -> None:
        if self._step_begin is None or self._epoch is None:
            return
        now = self.clock()
        wait = self._step_begin - self._last_end
        step = now - self._step_begin
        record = self._epoch
        if self._steps_in_fit < self.warmup_steps:
            record["warmup_steps"] += 1
            record["warmup_s"] += wait + step
        else:
            record["steps"] += 1
            record["batches"] += max(int(batch) - self._begin_step + 1, 1)
            record["data_wait_s"] += wait
            record["step_s"] += step
            record["max_data_wait_s"] = max(record["max_data_wait_s"], wait)
            record["max_step_s"] = max(record["max_step_s"], step)
        self._steps_in_fit += 1
        self._last_end = now
        self._step_begin = None

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        if self._epoch is None:
            return
        record = self._epoch
        record["wall_s"] = self.clock() - record.pop("_begin")
        if "_load" in record:
            seconds, batches = self.sequencer.load_clock.read()
            before_s, before_n = record.pop("_load")
            record["batch_load_s"], record["batches_loaded"] = seconds - before_s, batches - before_n
        busy = record["data_wait_s"] + record["step_s"]
        record["data_wait_fraction"] = record["data_wait_s"] / busy if busy > 0 else 0.0
        self.records.append(record)
        self._epoch = None
        if logs is not None and self.in_logs:
            logs["data_wait_s"] = record["data_wait_s"]
            logs["step_s"] = record["step_s"]
            logs["data_wait_fraction"] = record["data_wait_fraction"]
            if "batch_load_s" in record:
                logs["batch_load_s"] = record["batch_load_s"]

    def summary(self) -> dict:
        """Totals over every recorded epoch, with per-step means in milliseconds."""
        keys = ("steps", "batches", "data_wait_s", "step_s", "warmup_steps", "warmup_s", "wall_s")
        total = {k: sum(r[k] for r in self.records) for k in keys}
        busy = total["data_wait_s"] + total["step_s"]
        total["epochs"] = len(self.records)
        total["data_wait_fraction"] = total["data_wait_s"] / busy if busy > 0 else 0.0
        steps = max(total["steps"], 1)
        total["mean_data_wait_ms"] = 1000.0 * total["data_wait_s"] / steps
        total["mean_step_ms"] = 1000.0 * total["step_s"] / steps
        if self.records and all("batch_load_s" in r for r in self.records):
            total["batch_load_s"] = sum(r["batch_load_s"] for r in self.records)
            total["mean_batch_load_ms"] = 1000.0 * total["batch_load_s"] / max(
                sum(r["batches_loaded"] for r in self.records), 1)
        total["backend"] = keras.backend.backend()
        return total

    def report(self) -> str:
        """A table of the per-epoch records and the totals."""
        header = ("epoch", "steps", "wait ms/step", "step ms/step", "wait %")
        lines = ["{:>5} {:>6} {:>13} {:>13} {:>7}".format(*header)]
        for r in self.records:
            n = max(r["steps"], 1)
            lines.append(
                f"{r['epoch']:>5} {r['steps']:>6} {1000 * r['data_wait_s'] / n:>13.2f} "
                f"{1000 * r['step_s'] / n:>13.2f} {100 * r['data_wait_fraction']:>7.1f}"
            )
        s = self.summary()
        lines.append(
            f"{'all':>5} {s['steps']:>6} {s['mean_data_wait_ms']:>13.2f} "
            f"{s['mean_step_ms']:>13.2f} "
            f"{100 * s['data_wait_fraction']:>7.1f}"
        )
        if "mean_batch_load_ms" in s:
            lines.append(f"building a batch took {s['mean_batch_load_ms']:.2f} ms on average")
        if s["backend"] in IN_STEP_BACKENDS:
            lines.append(
                f"{s['backend']}: batches are pulled inside the train step; "
                "waiting counts in step time"
            )
        return "\n".join(lines)

    def __str__(self) -> str:
        return self.report()
