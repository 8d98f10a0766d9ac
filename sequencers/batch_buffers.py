"""Reused, 64-byte-aligned memory for batch arrays.

Two costs per batch disappear with it:

* Keras hands a PyDataset to TensorFlow through ``tf.data.Dataset.from_generator``, which
  wraps a NumPy array as a tensor without copying only when its data is 64-byte aligned
  (NumPy's allocator gives 16). An aligned batch skips a full copy per array.
* A fresh multi-megabyte array is a fresh ``mmap``: every page faults in once per batch and
  goes back to the OS when the batch is dropped. Reused memory faults in once.

A buffer is handed out again only when nothing but the pool references it: every array
built on it (a view, a reshape, a TensorFlow tensor wrapping it, a batch waiting in Keras'
queue) holds a reference to its base, so a batch still alive anywhere keeps its memory.
"""

from __future__ import annotations

import os
import sys
import threading
from typing import Any

import numpy as np

ALIGNMENT = 64


def _free_refcount() -> int:
    """References to an unused buffer as ``_take_free`` sees it (list, loop name, argument)."""
    buffers = [np.empty(1, dtype=np.uint8)]
    for raw in buffers:
        return sys.getrefcount(raw)
    raise AssertionError("unreachable")


_FREE_REFCOUNT = _free_refcount()


class BatchBuffers:
    """A pool of aligned byte buffers, keyed by size, at most ``per_size`` of each size.

    Past ``per_size`` buffers in use at once, arrays are allocated (aligned) and not kept.
    """

    def __init__(self, per_size: int = 16) -> None:
        self.per_size = int(per_size)
        self._reset()

    def _reset(self) -> None:
        self._lock = threading.Lock()
        self._buffers: dict[int, list[np.ndarray]] = {}
        self._pid = os.getpid()

    def __getstate__(self) -> dict:
        return {"per_size": self.per_size}  # a copy in another process starts empty

    def __setstate__(self, state: dict) -> None:
        self.per_size = state["per_size"]
        self._reset()

    def empty(self, shape: tuple[int, ...], dtype: Any) -> np.ndarray:
        """An uninitialised C-contiguous, 64-byte-aligned array (memory may be reused)."""
        dtype = np.dtype(dtype)
        nbytes = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
        if os.getpid() != self._pid:  # a forked worker: the parent's buffers are not ours
            self._reset()
        with self._lock:
            raw = self._take_free(nbytes)
        offset = (-raw.ctypes.data) % ALIGNMENT
        return raw[offset : offset + nbytes].view(dtype).reshape(shape)

    def _take_free(self, nbytes: int) -> np.ndarray:
        buffers = self._buffers.setdefault(nbytes, [])
        for raw in buffers:
            if sys.getrefcount(raw) == _FREE_REFCOUNT:
                return raw
        raw = np.empty(nbytes + ALIGNMENT, dtype=np.uint8)
        if len(buffers) < self.per_size:
            buffers.append(raw)
        return raw
