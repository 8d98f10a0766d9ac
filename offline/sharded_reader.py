"""Read a sharded cache as one: global chunk ``c`` is a local chunk of one shard file.

Shard files are opened on the first read of one of their chunks, so a replica that reads
only some chunks (``shard(k, i)``) opens only the files holding them.
"""

from __future__ import annotations

import dataclasses
import os
import threading
from typing import Any, Callable

import numpy as np

from pointseq.offline.errors import (
    REBUILD_HINT, SHARD_REBUILD_HINT, NotACacheError, OfflineStorageError, storage_error)
from pointseq.offline.manifest import Manifest, ShardEntry, manifest_path, read_manifest
from pointseq.offline.reader import CacheHeader, CacheReader, Chunk
from pointseq.offline.structure import BatchStructure


def open_shard(path: str, fingerprint: str) -> CacheReader:
    """The reader of the shard file at ``path``; a fault's advice is to rebuild that shard alone."""
    if not os.path.exists(path):
        raise storage_error(path, f"the shard file named by the manifest is missing; {SHARD_REBUILD_HINT}",
                            rebuild=False)
    try:
        return CacheReader(path, expected_fingerprint=fingerprint)
    except NotACacheError:
        raise
    except OfflineStorageError as exc:
        raise OfflineStorageError(str(exc).replace(REBUILD_HINT, f"delete the shard file and {SHARD_REBUILD_HINT}")) \
            from None


def is_sharded_cache(storage: str | os.PathLike) -> bool:
    """Whether ``storage`` names a sharded cache: a folder, or its ``manifest.json``."""
    return manifest_path(storage) is not None


class ShardedReader:
    """The `CacheReader` interface over the shard files a manifest names.

    ``expected_fingerprint`` refuses a cache built from other inputs (checked against the
    manifest); each shard file is checked against its own fingerprint when opened, so a
    shard left from another build is refused naming that file.
    """

    def __init__(self, storage: str | os.PathLike, *, expected_fingerprint: str | None = None) -> None:
        path = manifest_path(storage)
        if path is None:
            raise storage_error(os.fspath(storage), "not a sharded cache (neither a folder nor its manifest.json)")
        self.path = path
        self.folder = os.path.dirname(os.path.abspath(path))
        self.manifest: Manifest = read_manifest(path)
        m = self.manifest
        if expected_fingerprint is not None and m.fingerprint != expected_fingerprint:
            raise storage_error(path, "the cache was built from another config or other data "
                                      f"(fingerprint {m.fingerprint}, expected {expected_fingerprint})")
        self.expected_fingerprint = expected_fingerprint
        self.header = CacheHeader(batch_size=m.batch_size, chunk_size=m.chunk_size, num_batches=m.num_batches,
                                  num_samples=m.num_samples, num_chunks=m.num_chunks,
                                  structure=BatchStructure.from_json(m.structure), config=m.config,
                                  fingerprint=m.fingerprint)
        self._first_chunks = np.array([s.first_chunk for s in m.shards], dtype=np.int64)
        self._reset()

    def _reset(self) -> None:
        self._readers: dict[int, CacheReader] = {}
        self._lock = threading.Lock()
        self._pid = os.getpid()

    def shard_path(self, shard: ShardEntry) -> str:
        return os.path.join(self.folder, shard.file)

    @property
    def structure(self) -> BatchStructure:
        return self.header.structure

    def opened_shards(self) -> list[int]:
        """Indices of the shard files this process has opened."""
        return sorted(self._readers)

    def shard_reader(self, index: int) -> CacheReader:
        """The reader of shard ``index``, opened (and checked against the manifest) on first use."""
        if self._pid != os.getpid():
            self._reset()  # a forked child opens its own handles
        reader = self._readers.get(index)
        if reader is not None:
            return reader
        with self._lock:
            if index not in self._readers:
                self._readers[index] = self._open_shard(self.manifest.shards[index])
            return self._readers[index]

    def _open_shard(self, shard: ShardEntry) -> CacheReader:
        path = self.shard_path(shard)
        reader = open_shard(path, shard.fingerprint)
        h = reader.header
        if (h.num_batches, h.num_chunks, h.chunk_size) != (shard.num_batches, shard.num_chunks, self.header.chunk_size):
            reader.close()
            raise storage_error(path, f"the shard holds {h.num_batches} batches in {h.num_chunks} chunks of "
                                      f"{h.chunk_size}, the manifest names {shard.num_batches} in "
                                      f"{shard.num_chunks} of {self.header.chunk_size}; delete it and "
                                      f"{SHARD_REBUILD_HINT}",
                                rebuild=False)
        return reader

    def locate(self, chunk: int) -> tuple[int, int]:
        """``(shard index, local chunk)`` of global chunk ``chunk``."""
        shard = int(np.searchsorted(self._first_chunks, chunk, side="right")) - 1
        return shard, chunk - int(self._first_chunks[shard])

    def read_chunk(self, chunk: int, allocate: Callable[[int], np.ndarray] | None = None) -> Chunk:
        """Global chunk ``chunk``, read whole from its shard file (see `CacheReader.read_chunk`)."""
        if not 0 <= chunk < self.header.num_chunks:
            raise IndexError(f"chunk must be in [0, {self.header.num_chunks}), got {chunk}")
        shard, local = self.locate(chunk)
        return dataclasses.replace(self.shard_reader(shard).read_chunk(local, allocate), index=chunk)

    def batch(self, index: int) -> Any:
        """Batch ``index`` (global order); for tools, not training loops."""
        if not 0 <= index < self.header.num_batches:
            raise IndexError(f"batch index must be in [0, {self.header.num_batches}), got {index}")
        chunk = self.read_chunk(index // self.header.chunk_size)
        return chunk.batch(index % self.header.chunk_size, self.header.structure)

    def batch_row_starts(self) -> np.ndarray:
        """(num_batches + 1,) int64: the first input row of each batch over the whole cache."""
        counts = [np.diff(self.shard_reader(i).batch_row_starts()) for i in range(len(self.manifest.shards))]
        return np.concatenate([np.zeros(1, dtype=np.int64), np.cumsum(np.concatenate(counts))])

    def verify_shard(self, index: int) -> list[str]:
        """Faults of shard ``index`` (see `CacheReader.verify`), its header against the manifest included."""
        try:
            reader = self._open_shard(self.manifest.shards[index])
        except OfflineStorageError as exc:
            return [str(exc)]
        try:
            faults = reader.verify()
            if not faults and reader.header.num_samples != self.manifest.shards[index].num_samples:
                faults.append(str(storage_error(reader.path, f"num_samples={reader.header.num_samples}, the "
                                                             f"manifest names {self.manifest.shards[index].num_samples}")))
            return faults
        finally:
            reader.close()

    def verify(self) -> list[str]:
        """Faults of every shard, in shard order (empty when sound)."""
        return [fault for i in range(len(self.manifest.shards)) for fault in self.verify_shard(i)]

    def close(self) -> None:
        for reader in list(self._readers.values()):
            reader.close()

    def __getstate__(self) -> dict:
        state = self.__dict__.copy()
        for key in ("_readers", "_lock", "_pid"):
            state.pop(key)
        return state

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update(state)
        self._reset()
