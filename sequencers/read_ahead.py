"""Batches computed ahead of the one asked for, in a sequencer's own threads.

Keras walks a PyDataset in index order. With ``workers > 1`` (threads) it runs its own pool,
and on TensorFlow it then turns tf.data's prefetching off, so converting each batch into
tensors no longer overlaps the training step. A sequencer that computes batches ahead itself
lets Keras keep its single-worker path with prefetching on: the heavy numpy work (gathers,
augmentation) releases the GIL and runs beside the conversion.

A batch depends only on its key (epoch, mode, index), so the batches are the same whichever
thread builds them; futures of another epoch or mode are dropped unused.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Hashable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any


class ReadAhead:
    """Hands out item ``index`` and starts building the next ``depth`` items in ``threads`` threads."""

    def __init__(self, threads: int, depth: int) -> None:
        self.threads = threads
        self.depth = depth
        self._reset()

    def _reset(self) -> None:
        self._lock = threading.Lock()
        self._executor: ThreadPoolExecutor | None = None
        self._generation: Hashable = None
        self._futures: dict[int, Future] = {}

    def get(self, generation: Hashable, index: int, count: int, build: Callable[[int], Any]) -> Any:
        """Item ``index`` of ``count`` from ``build``; items ``index+1 .. index+depth`` are started.

        ``generation`` names what the items depend on besides their index (epoch, mode): when
        it changes, the items built for the previous one are dropped.
        """
        with self._lock:
            if generation != self._generation:
                for future in self._futures.values():
                    future.cancel()
                self._futures = {}
                self._generation = generation
            if self._executor is None:
                self._executor = ThreadPoolExecutor(self.threads, thread_name_prefix="pointseq-read-ahead")
            future = self._futures.pop(index, None)
            for ahead in range(index + 1, min(count, index + 1 + self.depth)):
                if ahead not in self._futures:
                    self._futures[ahead] = self._executor.submit(build, ahead)
            behind = [key for key in self._futures if not index < key <= index + self.depth]
            for key in behind:  # asked out of order: what lies outside the window is not needed
                self._futures.pop(key).cancel()
        if future is None:
            return build(index)
        return future.result()

    def close(self) -> None:
        """Drop the pending items and stop the threads (a later `get` starts new ones)."""
        with self._lock:
            for future in self._futures.values():
                future.cancel()
            executor, self._executor = self._executor, None
            self._futures, self._generation = {}, None
        if executor is not None:
            executor.shutdown(wait=False)

    def fresh(self) -> "ReadAhead":
        """An empty read-ahead with the same settings, for a copy of its sequencer."""
        return ReadAhead(self.threads, self.depth)

    def __getstate__(self) -> dict:  # threads and futures never travel (pickles, deep copies)
        return {"threads": self.threads, "depth": self.depth}

    def __setstate__(self, state: dict) -> None:
        self.threads, self.depth = state["threads"], state["depth"]
        self._reset()
