"""A small LRU of resident chunks with background readahead of the next chunk."""

from __future__ import annotations

import os
import sys
import threading
import weakref
from collections import OrderedDict
from concurrent.futures import Future, ThreadPoolExecutor

import numpy as np

from pointseq.arguments import require_int
from pointseq.offline.reader import CacheReader, Chunk


def _refs(pool: list, i: int) -> int:
    return sys.getrefcount(pool[i])


# References to a pooled buffer that nothing else holds, counted the way _idle counts them.
_POOL_ONLY_REFS = _refs([np.empty(1, dtype=np.uint8)], 0)


def _idle(pool: list, i: int) -> bool:
    """Whether ``pool[i]`` is referenced by the pool alone.

    Every array read into a buffer, and every batch sliced from those arrays, is a view
    whose ``base`` is the buffer itself (numpy collapses chains of views to the owner), so
    a batch still alive anywhere keeps its buffer's count above the pool's own.
    """
    return _refs(pool, i) <= _POOL_ONLY_REFS


def _release_to(cache_ref: "weakref.ref[ChunkCache]", buffer: np.ndarray, generation: object) -> None:
    # Through a weak reference: a finalizer holding the cache itself would keep it, its
    # chunks, its file and its read-ahead thread alive for the life of the process.
    cache = cache_ref()
    if cache is not None:
        cache._release(buffer, generation)


class ChunkCache:
    """Holds at most ``max_resident_chunks`` chunks (the readahead one included).

    ``get`` blocks until a chunk is resident; ``prefetch`` starts reading one in a
    background thread. Safe to call from several threads: each chunk is read once however
    many threads ask for it. After a fork the child starts empty (the parent's thread and
    pending reads do not exist there).
    """

    def __init__(self, reader: CacheReader, max_resident_chunks: int = 2) -> None:
        self.reader = reader
        self.max_resident_chunks = require_int("max_resident_chunks", max_resident_chunks, 1)
        self._reset()

    def _reset(self) -> None:
        self._pid = os.getpid()
        # re-entrant: dropping a chunk under the lock runs its finalizer, which takes it
        self._lock = threading.RLock()
        self._entries: OrderedDict[int, Future] = OrderedDict()
        self._executor: ThreadPoolExecutor | None = None
        # Buffers of chunks that this cache no longer holds, reused for the next reads once
        # no batch view of them is alive: fresh large arrays would cost page faults on every
        # chunk, and freed ones would leave the allocator holding memory that makes the
        # resident size drift.
        self._free: list[np.ndarray] = []
        self._generation = object()

    def _acquire(self, nbytes: int) -> np.ndarray:
        with self._lock:
            fits = [i for i in range(len(self._free)) if self._free[i].nbytes >= nbytes and _idle(self._free, i)]
            if fits:
                # by position: list.remove would compare arrays elementwise
                buffer = self._free.pop(min(fits, key=lambda i: self._free[i].nbytes))
                buffer.flags.writeable = True  # the reader left it read-only; no view of it is left
                return buffer
        return np.empty(max(nbytes, 1), dtype=np.uint8)

    def _release(self, buffer: np.ndarray, generation: object) -> None:
        with self._lock:
            if generation is not self._generation:
                return
            self._free.append(buffer)
            if len(self._free) > self.max_resident_chunks:
                self._free.pop(0)  # the oldest; batch views still using it keep it alive

    def _check_process(self) -> None:
        if self._pid != os.getpid():
            self._reset()

    def _evict(self) -> None:
        while len(self._entries) > self.max_resident_chunks:
            self._entries.popitem(last=False)

    def _read(self, chunk: int) -> Chunk:
        buffers: list[np.ndarray] = []

        def allocate(nbytes: int) -> np.ndarray:
            buffers.append(self._acquire(nbytes))
            return buffers[-1]

        result = self.reader.read_chunk(chunk, allocate)
        # Once the chunk object is gone the buffer returns to the pool; _acquire reuses it
        # only when no batch view of it is left.
        weakref.finalize(result, _release_to, weakref.ref(self), buffers[0], self._generation)
        return result

    def _load(self, chunk: int, future: Future) -> None:
        try:
            future.set_result(self._read(chunk))
        except BaseException as exc:  # delivered to whoever asks for the chunk
            future.set_exception(exc)
            with self._lock:
                if self._entries.get(chunk) is future:
                    del self._entries[chunk]

    def get(self, chunk: int) -> Chunk:
        """Chunk ``chunk``, read now unless resident or already being read."""
        self._check_process()
        with self._lock:
            future = self._entries.get(chunk)
            owner = future is None
            if owner:
                future = Future()
                self._entries[chunk] = future
                self._evict()
            else:
                self._entries.move_to_end(chunk)
        if owner:
            self._load(chunk, future)
        return future.result()

    def prefetch(self, chunk: int) -> None:
        """Start reading ``chunk`` in the background unless it is resident or in flight."""
        if self.max_resident_chunks < 2:
            return
        self._check_process()
        with self._lock:
            if chunk in self._entries:
                return
            future: Future = Future()
            self._entries[chunk] = future
            self._evict()
            if self._executor is None:
                self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="pointseq-readahead")
            self._executor.submit(self._load, chunk, future)

    def resident(self) -> list[int]:
        """Chunks held or in flight, least recently used first."""
        with self._lock:
            return list(self._entries)

    def close(self) -> None:
        if self._executor is not None and self._pid == os.getpid():
            self._executor.shutdown(wait=True)
        self._reset()

    def __getstate__(self) -> dict:
        return {"reader": self.reader, "max_resident_chunks": self.max_resident_chunks}

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update(state)
        self._reset()
