"""LoadClock: time a sequencer spends building batches in this process."""

from __future__ import annotations

import threading


class LoadClock:
    """Seconds and batches spent in ``__getitem__``, summed over this process's threads.

    Statistics only: nothing a batch holds depends on it. Worker processes keep their own
    clocks, which the main process does not see; a pickled or forked copy starts at zero.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.seconds = 0.0
        self.batches = 0

    def add(self, seconds: float) -> None:
        with self._lock:
            self.seconds += seconds
            self.batches += 1

    def read(self) -> tuple[float, int]:
        with self._lock:
            return self.seconds, self.batches

    def __getstate__(self) -> dict:
        return {}

    def __setstate__(self, state: dict) -> None:
        self.__init__()
