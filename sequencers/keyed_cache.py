"""KeyedCache: a small thread-safe memo of values that are pure functions of their key."""

from __future__ import annotations

import threading
from collections import OrderedDict
from typing import Any, Callable, Hashable


class KeyedCache:
    """Keeps the ``capacity`` most recently made values (e.g. per-pass sample orders).

    The values are pure functions of the key, so a value made twice by racing threads is
    the same value, and a copy (pickled, forked or a sequencer view) starts empty.
    """

    def __init__(self, capacity: int = 4) -> None:
        self.capacity = capacity
        self._values: OrderedDict[Hashable, Any] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key: Hashable, make: Callable[[], Any]) -> Any:
        with self._lock:
            if key in self._values:
                self._values.move_to_end(key)
                return self._values[key]
        value = make()
        with self._lock:
            self._values[key] = value
            while len(self._values) > self.capacity:
                self._values.popitem(last=False)
        return value

    def __copy__(self) -> "KeyedCache":
        return KeyedCache(self.capacity)

    def __getstate__(self) -> dict:
        return {"capacity": self.capacity}

    def __setstate__(self, state: dict) -> None:
        self.__init__(state["capacity"])
