"""Read and validate cache files: whole chunks per call, one HDF5 handle per process."""

from __future__ import annotations

import json
import os
import threading
from dataclasses import dataclass
from typing import Any, Callable

import h5py
import numpy as np

from pointseq.offline import format as fmt
from pointseq.offline.errors import OfflineStorageError, is_hdf5_file, not_a_cache_error, storage_error
from pointseq.offline.structure import BatchStructure

# h5py serialises every call under one process-wide lock that fork does not reset. All reads
# of this package go through _IO_LOCK, and fork waits for it, so a child never inherits a
# read in progress.
_IO_LOCK = threading.RLock()
_ALIGN = 64  # byte alignment of each array inside a chunk's shared buffer


def _reset_lock_in_child() -> None:
    global _IO_LOCK
    _IO_LOCK = threading.RLock()


def _before_fork() -> None:
    _IO_LOCK.acquire()


def _after_fork_in_parent() -> None:
    _IO_LOCK.release()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(
        before=_before_fork, after_in_parent=_after_fork_in_parent, after_in_child=_reset_lock_in_child
    )


@dataclass
class Chunk:
    """The arrays of one chunk, resident in memory and read-only; batches are views of them."""

    index: int
    inputs: list[np.ndarray]
    references: list[np.ndarray]
    input_offsets: np.ndarray
    reference_offsets: np.ndarray

    @property
    def num_batches(self) -> int:
        return int(self.input_offsets.shape[0] - 1)

    @property
    def nbytes(self) -> int:
        return sum(a.nbytes for a in self.inputs + self.references)

    @staticmethod
    def _slices(arrays: list[np.ndarray], offsets: np.ndarray, j: int) -> list[np.ndarray]:
        out = []
        for k, array in enumerate(arrays):
            start, stop = (offsets[j], offsets[j + 1]) if offsets.ndim == 1 else (offsets[j, k], offsets[j + 1, k])
            out.append(array[start:stop])
        return out

    def rows_are_samples(self) -> bool:
        """Whether every element, input or reference, has one row per sample of each batch."""
        if self.input_offsets.ndim != 1 or self.reference_offsets.ndim != 1:
            return False
        return not self.references or np.array_equal(self.input_offsets, self.reference_offsets)

    def batch(self, j: int, structure: BatchStructure, rows: int | None = None) -> Any:
        """Batch ``j`` of this chunk in its original nesting, as read-only views.

        ``rows`` keeps only the first rows of every element (its first samples); it needs
        :meth:`rows_are_samples`.
        """
        if not 0 <= j < self.num_batches:
            raise IndexError(f"batch {j} out of range for chunk {self.index} of {self.num_batches} batches")
        inputs = self._slices(self.inputs, self.input_offsets, j)
        references = self._slices(self.references, self.reference_offsets, j)
        if rows is not None:
            if not self.rows_are_samples():
                raise ValueError(f"chunk {self.index}: its elements do not share row counts, so a batch "
                                 f"cannot be cut to its first {rows} samples")
            inputs = [a[:rows] for a in inputs]
            references = [a[:rows] for a in references]
        return structure.rebuild(inputs, references)


@dataclass(frozen=True)
class CacheHeader:
    """Root attributes of a cache file."""

    batch_size: int
    chunk_size: int
    num_batches: int
    num_samples: int
    num_chunks: int
    structure: BatchStructure
    config: dict
    fingerprint: str

    def batches_in_chunk(self, chunk: int) -> int:
        return min(self.chunk_size, self.num_batches - chunk * self.chunk_size)


def _plain(value: Any) -> Any:
    """A numpy scalar attribute as its Python value (for messages)."""
    return value.item() if isinstance(value, np.generic) else value


def _read_header(f: h5py.File, path: str, expected_fingerprint: str | None) -> CacheHeader:
    attrs = f.attrs
    if attrs.get("format") != fmt.FORMAT_NAME:
        raise not_a_cache_error(path, f"format attribute {_plain(attrs.get('format'))!r}, "
                                      f"expected {fmt.FORMAT_NAME!r}")
    version = _plain(attrs.get("format_version"))
    if version != fmt.FORMAT_VERSION:
        raise storage_error(path, f"format version {version!r} is not supported, this pointseq reads "
                                  f"format version {fmt.FORMAT_VERSION}")
    if not bool(attrs.get("complete", False)):
        raise storage_error(path, "the file is incomplete (its build did not finish)")
    try:
        header = CacheHeader(
            batch_size=int(attrs["batch_size"]),
            chunk_size=int(attrs["chunk_size"]),
            num_batches=int(attrs["num_batches"]),
            num_samples=int(attrs["num_samples"]),
            num_chunks=int(attrs["num_chunks"]),
            structure=BatchStructure.from_json(attrs["structure"]),
            config=json.loads(attrs["config"]),
            fingerprint=str(attrs["fingerprint"]),
        )
    except (KeyError, ValueError, TypeError) as exc:
        raise storage_error(path, f"root attributes are missing or malformed ({exc!r})") from None
    if header.num_chunks != -(-header.num_batches // header.chunk_size):
        raise storage_error(path, f"num_chunks={header.num_chunks} disagrees with num_batches="
                                  f"{header.num_batches} and chunk_size={header.chunk_size}")
    if expected_fingerprint is not None and header.fingerprint != expected_fingerprint:
        raise storage_error(path, "the cache was built from another config or other data "
                                  f"(fingerprint {header.fingerprint}, expected {expected_fingerprint})")
    for c in range(header.num_chunks):
        for group in (fmt.DATA_GROUP, fmt.REFERENCES_GROUP):
            if fmt.chunk_name(c) not in f.get(group, {}):
                raise storage_error(path, f"group /{group}/{c} is missing", chunk=c)
    return header


class CacheReader:
    """Reads whole chunks of a cache file after checking its header.

    The HDF5 file is opened lazily per process (a forked child reopens it) and pickling
    drops the handle. ``expected_fingerprint`` refuses a cache built from other inputs.
    """

    def __init__(self, path: str, *, expected_fingerprint: str | None = None) -> None:
        self.path = os.fspath(path)
        self.expected_fingerprint = expected_fingerprint
        if not os.path.exists(self.path):
            raise storage_error(self.path, "the file does not exist")
        self._file: h5py.File | None = None
        self._pid: int | None = None
        # chunk -> (input, reference) batch offsets, read and checked on its first read
        self._offsets: dict[int, tuple[np.ndarray, np.ndarray]] = {}
        with _IO_LOCK:
            self.header = _read_header(self._handle(), self.path, expected_fingerprint)

    # -- handle --------------------------------------------------------------------------
    def _handle(self) -> h5py.File:
        if self._file is None or self._pid != os.getpid():
            try:
                self._file = h5py.File(self.path, "r")
            except OSError as exc:
                if not is_hdf5_file(self.path):
                    raise not_a_cache_error(self.path, "not an HDF5 file") from None
                raise storage_error(self.path, f"cannot be opened as HDF5, it is truncated or "
                                               f"corrupt ({exc})") from None
            self._pid = os.getpid()
        return self._file

    def close(self) -> None:
        with _IO_LOCK:
            if self._file is not None and self._pid == os.getpid() and self._file.id.valid:
                self._file.close()
            self._file = None

    def __getstate__(self) -> dict:
        state = self.__dict__.copy()
        state["_file"] = None
        state["_pid"] = None
        state["_offsets"] = {}
        return state

    # -- reading -------------------------------------------------------------------------
    @property
    def structure(self) -> BatchStructure:
        return self.header.structure

    def read_chunk(self, chunk: int, allocate: Callable[[int], np.ndarray] | None = None) -> Chunk:
        """Read chunk ``chunk`` whole (``read_direct`` into preallocated arrays) and check it.

        ``allocate(nbytes)`` may supply one uint8 buffer of at least ``nbytes`` that the
        chunk's arrays are laid out in (a pool reuses them); by default each array is new.
        The arrays, and that buffer, are read-only once read: batches are views of them,
        so nothing downstream can change what a later request for the same batch gets.
        """
        if not 0 <= chunk < self.header.num_chunks:
            raise IndexError(f"chunk must be in [0, {self.header.num_chunks}), got {chunk}")
        name = fmt.chunk_name(chunk)
        structure = self.header.structure
        with _IO_LOCK:
            f = self._handle()
            offsets = self._offsets.get(chunk)
            if offsets is None:
                try:
                    data = f[fmt.DATA_GROUP][name]
                    refs = f[fmt.REFERENCES_GROUP][name]
                except KeyError:
                    raise storage_error(self.path, "the chunk group is missing", chunk=chunk) from None
                if not (data.attrs.get("complete", False) and refs.attrs.get("complete", False)):
                    raise storage_error(self.path, "the chunk is incomplete", chunk=chunk)
                offsets = tuple(self._read_datasets(
                    f, [f"/{fmt.DATA_GROUP}/{name}/{fmt.OFFSETS}", f"/{fmt.REFERENCES_GROUP}/{name}/{fmt.OFFSETS}"],
                    chunk, None))
            paths = [f"/{fmt.DATA_GROUP}/{name}/{fmt.INPUT_PREFIX}{k}" for k in range(len(structure.input_names))]
            paths += [f"/{fmt.REFERENCES_GROUP}/{name}/{fmt.REFERENCE_PREFIX}{k}"
                      for k in range(len(structure.reference_names))]
            arrays = self._read_datasets(f, paths, chunk, allocate)
        input_offsets, reference_offsets = offsets
        inputs, references = arrays[: len(structure.input_names)], arrays[len(structure.input_names):]
        expected = self.header.batches_in_chunk(chunk)
        self._check_offsets(input_offsets, inputs, expected, chunk, "input")
        self._check_offsets(reference_offsets, references, expected, chunk, "reference")
        # Checked once: later reads of the chunk skip these small reads (the file is final).
        self._offsets[chunk] = offsets
        return Chunk(chunk, inputs, references, input_offsets, reference_offsets)

    def _read_datasets(self, f: h5py.File, paths: list[str], chunk: int,
                       allocate: Callable[[int], np.ndarray] | None) -> list[np.ndarray]:
        try:
            datasets = [f[path] for path in paths]
        except KeyError as exc:
            raise storage_error(self.path, f"a dataset is missing ({exc})", chunk=chunk) from None
        specs = [(ds.shape, ds.dtype) for ds in datasets]  # each property is a call into HDF5
        layout, total = [], 0
        for shape, dtype in specs:
            layout.append(total)
            total += -(-int(np.prod(shape, dtype=np.int64)) * dtype.itemsize // _ALIGN) * _ALIGN
        buffer = None if allocate is None else allocate(total)
        out = []
        for ds, path, (shape, dtype), start in zip(datasets, paths, specs, layout):
            if buffer is None:
                array = np.empty(shape, dtype=dtype)
            else:
                nbytes = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
                array = buffer[start:start + nbytes].view(dtype).reshape(shape)
            try:
                if array.size:
                    ds.read_direct(array)
            except OSError as exc:
                raise storage_error(
                    self.path, f"dataset {path} failed its checksum or could not be read ({exc})", chunk=chunk
                ) from None
            array.flags.writeable = False
            out.append(array)
        if buffer is not None:
            buffer.flags.writeable = False
        return out

    def _check_offsets(self, offsets: np.ndarray, arrays: list[np.ndarray], expected: int, chunk: int,
                       what: str) -> None:
        width = None if offsets.ndim == 1 else offsets.shape[1]
        ok = (
            offsets.ndim in (1, 2)
            and offsets.shape[0] == expected + 1
            and (width is None or width == len(arrays))
            and np.all(offsets[0] == 0)
            and np.all(np.diff(offsets, axis=0) >= 0)
        )
        if ok:
            last = offsets[-1] if width is not None else np.full(len(arrays), offsets[-1])
            ok = all(int(last[k]) == a.shape[0] for k, a in enumerate(arrays))
        if not ok:
            raise storage_error(
                self.path, f"{what} batch_offsets {offsets.tolist()} do not describe {expected} batches "
                           f"over rows {[a.shape[0] for a in arrays]}", chunk=chunk)

    def batch_row_starts(self) -> np.ndarray:
        """(num_batches + 1,) int64: the first input row of each batch over the whole file."""
        counts = []
        with _IO_LOCK:
            f = self._handle()
            for c in range(self.header.num_chunks):
                name = f"/{fmt.DATA_GROUP}/{fmt.chunk_name(c)}/{fmt.OFFSETS}"
                try:
                    offsets = f[name][()]
                except (KeyError, OSError) as exc:
                    raise storage_error(self.path, f"cannot read {name} ({exc})", chunk=c) from None
                counts.append(np.diff(offsets if offsets.ndim == 1 else offsets[:, 0]))
        return np.concatenate([np.zeros(1, dtype=np.int64), np.cumsum(np.concatenate(counts))])

    def batch(self, index: int) -> Any:
        """Batch ``index`` (file order) read through its chunk; for tools, not training loops."""
        if not 0 <= index < self.header.num_batches:
            raise IndexError(f"batch index must be in [0, {self.header.num_batches}), got {index}")
        chunk = self.read_chunk(index // self.header.chunk_size)
        return chunk.batch(index % self.header.chunk_size, self.header.structure)

    def verify(self) -> list[str]:
        """Read every chunk; return one message per fault (empty when the file is sound)."""
        self._offsets = {}
        faults = []
        for c in range(self.header.num_chunks):
            try:
                self.read_chunk(c)
            except OfflineStorageError as exc:
                faults.append(str(exc))
        with _IO_LOCK:
            f = self._handle()
            for group in (fmt.DATA_GROUP, fmt.REFERENCES_GROUP):
                extra = sorted(set(f[group].keys()) - {fmt.chunk_name(c) for c in range(self.header.num_chunks)})
                if extra:
                    faults.append(f"offline cache {self.path!r}: unexpected groups /{group}/{extra}")
        return faults
