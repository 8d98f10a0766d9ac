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
from pointseq.offline.errors import (
    NotACacheError, OfflineStorageError, has_damaged_hdf5_signature, is_hdf5_file, storage_error)
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


_CACHE_NAMES = {fmt.DATA_GROUP, fmt.REFERENCES_GROUP, fmt.ORDERED_KEYS}
DAMAGED = "the pointseq cache is damaged"


def _raw_cache_marks(path: str, span: int = 4096) -> bool:
    """Whether the raw bytes show a cache when HDF5 cannot read its root: the root group's header
    (after the superblock) names ``/ordered_keys``, and the root attributes, written last, hold
    the format name near the end of the file."""
    try:
        with open(path, "rb") as f:
            head = f.read(span)
            f.seek(max(0, os.path.getsize(path) - span))
            tail = f.read(span)
    except OSError:
        return False
    return fmt.ORDERED_KEYS.encode() in head or fmt.FORMAT_NAME.encode() in tail


def _root_attribute(f: h5py.File, name: str, path: str) -> Any:
    """Root attribute ``name`` (None when absent); one that cannot be read means damaged metadata.

    ``attrs.get`` would answer None for an attribute whose object header fails its checksum,
    and a damaged cache would pass for someone else's file. Whose file it is then comes from
    its top-level names, when they can still be read.
    """
    try:
        return f.attrs[name] if name in f.attrs else None
    except (KeyError, RuntimeError, OSError) as exc:
        problem = f"{type(exc).__name__}: {exc}"
    try:
        ours = bool(_CACHE_NAMES & set(f.keys()))
    except (KeyError, RuntimeError, OSError):
        ours = _raw_cache_marks(path)
        if not ours:
            raise storage_error(path, f"the file is damaged: its root metadata fails its checksum or cannot be "
                                      f"read ({problem}); if it is a pointseq cache, rebuild it with `pointseq "
                                      "cache build SPEC.json --force`", rebuild=False) from None
    if not ours:
        raise NotACacheError(path, f"an HDF5 file with damaged metadata ({problem}) and none of the "
                                   f"cache's groups {sorted(_CACHE_NAMES)}")
    raise storage_error(path, f"{DAMAGED}: its root metadata fails its checksum or cannot be read "
                              f"({problem})")


def _check_format(f: h5py.File, path: str) -> None:
    # The numbers first: a version 1 file keeps its text in the global heap, never read here.
    version = _plain(_root_attribute(f, "format_version", path))
    if version == 1:
        raise storage_error(path, "format version 1 (written by an older pointseq, without metadata "
                                  f"checksums) is no longer read, this pointseq reads format version "
                                  f"{fmt.FORMAT_VERSION}")
    name = _root_attribute(f, "format", path)
    name = fmt.attribute_text(name) if isinstance(name, (bytes, str)) else name
    if name != fmt.FORMAT_NAME:
        raise NotACacheError(path, f"format attribute {_plain(name)!r}, expected {fmt.FORMAT_NAME!r}")
    if version != fmt.FORMAT_VERSION:
        raise storage_error(path, f"format version {version!r} is not supported, this pointseq reads "
                                  f"format version {fmt.FORMAT_VERSION}")
    if not bool(_root_attribute(f, "complete", path)):
        raise storage_error(path, "the file is incomplete (its build did not finish)")


def _check_counts(header: CacheHeader, path: str) -> None:
    counts = {"batch_size": header.batch_size, "chunk_size": header.chunk_size,
              "num_batches": header.num_batches, "num_samples": header.num_samples}
    bad = {k: v for k, v in counts.items() if v < 1}
    if bad:
        raise storage_error(path, f"root attributes {bad} must be >= 1")
    if header.num_chunks != -(-header.num_batches // header.chunk_size):
        raise storage_error(path, f"num_chunks={header.num_chunks} disagrees with num_batches="
                                  f"{header.num_batches} and chunk_size={header.chunk_size}")


def _read_header(f: h5py.File, path: str, expected_fingerprint: str | None) -> CacheHeader:
    _check_format(f, path)
    attrs = f.attrs
    try:
        header = CacheHeader(
            batch_size=int(attrs["batch_size"]),
            chunk_size=int(attrs["chunk_size"]),
            num_batches=int(attrs["num_batches"]),
            num_samples=int(attrs["num_samples"]),
            num_chunks=int(attrs["num_chunks"]),
            structure=BatchStructure.from_json(fmt.attribute_text(attrs["structure"])),
            config=json.loads(fmt.attribute_text(attrs["config"])),
            fingerprint=fmt.attribute_text(attrs["fingerprint"]),
        )
    except (KeyError, ValueError, TypeError) as exc:
        raise storage_error(path, f"root attributes are missing or malformed ({exc!r})") from None
    _check_counts(header, path)
    if expected_fingerprint is not None and header.fingerprint != expected_fingerprint:
        raise storage_error(path, "the cache was built from another config or other data "
                                  f"(fingerprint {header.fingerprint}, expected {expected_fingerprint})")
    for group in (fmt.DATA_GROUP, fmt.REFERENCES_GROUP):
        if group not in f:
            raise storage_error(path, f"group /{group} is missing")
        try:  # f.get would answer None for a group whose header fails its checksum: "missing"
            names = set(f[group].keys())
        except (KeyError, RuntimeError, OSError) as exc:
            raise storage_error(path, f"{DAMAGED}: group /{group} fails its checksum or cannot be read "
                                      f"({exc})") from None
        for c in range(header.num_chunks):
            if fmt.chunk_name(c) not in names:
                raise storage_error(path, f"group /{group}/{c} is missing", chunk=c)
    return header


def _expected_storage_chunks(ds: h5py.Dataset) -> int:
    """Storage chunks a fully written chunked dataset holds (0 when it is not chunked)."""
    if ds.chunks is None:
        return 0
    return int(np.prod([-(-n // c) for n, c in zip(ds.shape, ds.chunks)], dtype=np.int64))


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
        try:
            with _IO_LOCK:
                self.header = self._guarded(lambda: _read_header(self._handle(), self.path, expected_fingerprint),
                                            None, f"{DAMAGED}: its metadata cannot be read")
        except OfflineStorageError:
            self.close()  # a refused file is not held open (it may be rebuilt or replaced next)
            raise

    def _guarded(self, call: Callable[[], Any], chunk: int | None, what: str) -> Any:
        """``call()``, with any error HDF5 or a damaged file raises as an OfflineStorageError
        (one naming a failed checksum says the cache is damaged)."""
        try:
            return call()
        except (OfflineStorageError, IndexError):
            raise
        except Exception as exc:
            damaged = f"{DAMAGED}: " if "checksum" in str(exc) and not what.startswith(DAMAGED) else ""
            raise storage_error(self.path, f"{damaged}{what} ({type(exc).__name__}: {exc})", chunk=chunk) from None

    def _object(self, f: h5py.File, where: str, chunk: int) -> Any:
        """The group or dataset at ``where``: one that is not linked is missing, one that is
        linked but cannot be opened (its header fails its checksum) is damage."""
        try:
            return f[where]
        except KeyError as exc:
            parent, name = where.rsplit("/", 1)
            try:
                linked = name in f[parent or "/"]
            except (KeyError, RuntimeError, OSError):
                linked = True  # the parent's own header is what fails
            problem = (f"{DAMAGED}: {where} fails its checksum or cannot be read ({exc})" if linked
                       else f"{where} is missing")
            raise storage_error(self.path, problem, chunk=chunk) from None

    # -- handle --------------------------------------------------------------------------
    def _handle(self) -> h5py.File:
        if self._file is None or self._pid != os.getpid():
            try:
                self._file = h5py.File(self.path, "r")
            except Exception as exc:
                if has_damaged_hdf5_signature(self.path):
                    raise storage_error(self.path, "the file is damaged: its first 8 bytes (the HDF5 "
                                                   "signature) are corrupt, the superblock after them is "
                                                   "intact") from None
                if not is_hdf5_file(self.path):
                    raise NotACacheError(self.path, "not an HDF5 file") from None
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
        with _IO_LOCK:
            offsets, arrays = self._guarded(lambda: self._read_chunk_arrays(chunk, allocate), chunk,
                                            "the chunk cannot be read")
        structure = self.header.structure
        input_offsets, reference_offsets = offsets
        inputs, references = arrays[: len(structure.input_names)], arrays[len(structure.input_names):]
        expected = self.header.batches_in_chunk(chunk)
        self._check_offsets(input_offsets, inputs, expected, chunk, "input")
        self._check_offsets(reference_offsets, references, expected, chunk, "reference")
        # Checked once: later reads of the chunk skip these small reads (the file is final).
        self._offsets[chunk] = offsets
        return Chunk(chunk, inputs, references, input_offsets, reference_offsets)

    def _read_chunk_arrays(self, chunk: int, allocate: Callable[[int], np.ndarray] | None) -> tuple:
        name = fmt.chunk_name(chunk)
        structure = self.header.structure
        f = self._handle()
        offsets = self._offsets.get(chunk)
        if offsets is None:
            data = self._object(f, f"/{fmt.DATA_GROUP}/{name}", chunk)
            refs = self._object(f, f"/{fmt.REFERENCES_GROUP}/{name}", chunk)
            if not (data.attrs.get("complete", False) and refs.attrs.get("complete", False)):
                raise storage_error(self.path, "the chunk is incomplete", chunk=chunk)
            offsets = tuple(self._read_datasets(
                f, [f"/{fmt.DATA_GROUP}/{name}/{fmt.OFFSETS}", f"/{fmt.REFERENCES_GROUP}/{name}/{fmt.OFFSETS}"],
                chunk, None))
        paths = [f"/{fmt.DATA_GROUP}/{name}/{fmt.INPUT_PREFIX}{k}" for k in range(len(structure.input_names))]
        paths += [f"/{fmt.REFERENCES_GROUP}/{name}/{fmt.REFERENCE_PREFIX}{k}"
                  for k in range(len(structure.reference_names))]
        arrays = self._read_datasets(f, paths, chunk, allocate)
        return offsets, arrays

    def _read_datasets(self, f: h5py.File, paths: list[str], chunk: int,
                       allocate: Callable[[int], np.ndarray] | None) -> list[np.ndarray]:
        datasets = [self._object(f, path, chunk) for path in paths]
        specs = [(ds.shape, ds.dtype) for ds in datasets]  # each property is a call into HDF5
        for ds, path in zip(datasets, paths):
            self._check_allocated(ds, path, chunk)
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

    def _check_allocated(self, ds: h5py.Dataset, path: str, chunk: int) -> None:
        """Every storage chunk of ``ds`` is on disk: a missing one would read as fill values."""
        expected = _expected_storage_chunks(ds)
        if expected and ds.id.get_num_chunks() != expected:
            raise storage_error(self.path, f"dataset {path} has {ds.id.get_num_chunks()} of its {expected} "
                                           "storage chunks (its chunk index is damaged)", chunk=chunk)

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

    def element_info(self) -> list[dict]:
        """Per input, then reference element: name, dataset, dtype, row shape, rows, bytes, stored
        bytes and compression, summed over the chunks (from dataset metadata, no data read)."""
        with _IO_LOCK:
            return self._guarded(self._element_info, None, f"{DAMAGED}: its dataset metadata cannot be read")

    def _element_info(self) -> list[dict]:
        f, h = self._handle(), self.header
        elements = []
        for group, prefix, names in ((fmt.DATA_GROUP, fmt.INPUT_PREFIX, h.structure.input_names),
                                     (fmt.REFERENCES_GROUP, fmt.REFERENCE_PREFIX, h.structure.reference_names)):
            for k, name in enumerate(names):
                datasets = [f[group][fmt.chunk_name(c)][f"{prefix}{k}"] for c in range(h.num_chunks)]
                rows = sum(ds.shape[0] for ds in datasets)
                dtype, shape = datasets[-1].dtype, datasets[-1].shape[1:]
                elements.append({
                    "name": name, "dataset": f"{prefix}{k}", "dtype": str(dtype), "row_shape": list(shape),
                    "rows": rows, "bytes": int(rows * np.prod(shape, dtype=np.int64) * dtype.itemsize),
                    "stored_bytes": int(sum(ds.id.get_storage_size() for ds in datasets)),
                    "compression": datasets[-1].compression,
                })
        return elements

    def batch_row_starts(self) -> np.ndarray:
        """(num_batches + 1,) int64: the first input row of each batch over the whole file."""
        with _IO_LOCK:
            counts = [self._guarded(lambda: self._batch_rows(c), c, "its batch_offsets cannot be read")
                      for c in range(self.header.num_chunks)]
        starts = np.concatenate([np.zeros(1, dtype=np.int64), np.cumsum(np.concatenate(counts))])
        if len(starts) != self.header.num_batches + 1 or starts[-1] != self.header.num_samples:
            raise storage_error(self.path, f"the batch_offsets describe {len(starts) - 1} batches of "
                                           f"{int(starts[-1])} samples, the header {self.header.num_batches} "
                                           f"batches of {self.header.num_samples}")
        return starts

    def _batch_rows(self, chunk: int) -> np.ndarray:
        offsets = self._handle()[f"/{fmt.DATA_GROUP}/{fmt.chunk_name(chunk)}/{fmt.OFFSETS}"][()]
        return np.diff(offsets if offsets.ndim == 1 else offsets[:, 0]).astype(np.int64)

    def batch(self, index: int) -> Any:
        """Batch ``index`` (file order) read through its chunk; for tools, not training loops."""
        if not 0 <= index < self.header.num_batches:
            raise IndexError(f"batch index must be in [0, {self.header.num_batches}), got {index}")
        chunk = self.read_chunk(index // self.header.chunk_size)
        return chunk.batch(index % self.header.chunk_size, self.header.structure)

    def verify(self) -> list[str]:
        """Read every chunk and check the layout; one message per fault (empty when sound).

        Beyond the checksums of every read: every storage chunk of every dataset is on disk
        and inside the file, each element keeps its dtype and row shape across chunks, the
        offsets add up to ``num_samples``, and the stored names match the structure.
        """
        self._offsets = {}
        faults, samples, specs = [], 0, None
        for c in range(self.header.num_chunks):
            try:
                chunk = self.read_chunk(c)
                with _IO_LOCK:
                    self._guarded(lambda: self._check_storage(c), c, "its storage cannot be checked")
            except OfflineStorageError as exc:
                faults.append(str(exc))
                continue
            first = chunk.input_offsets[-1]
            samples += int(first if chunk.input_offsets.ndim == 1 else first[0])
            leaf_specs = [(a.dtype, a.shape[1:]) for a in chunk.inputs + chunk.references]
            specs = leaf_specs if specs is None else specs
            if leaf_specs != specs:
                faults.append(str(storage_error(self.path, f"element dtypes and row shapes {leaf_specs} differ "
                                                           f"from chunk 0's {specs}", chunk=c)))
        if not faults and samples != self.header.num_samples:
            faults.append(str(storage_error(self.path, f"num_samples={self.header.num_samples}, but the "
                                                       f"batch_offsets hold {samples} samples")))
        try:
            with _IO_LOCK:
                self._guarded(self._check_layout, None, "its layout cannot be checked")
        except OfflineStorageError as exc:
            faults.append(str(exc))
        return faults

    def _check_storage(self, chunk: int) -> None:
        """Each storage chunk of the chunk's datasets is allocated, non-empty and inside the file."""
        f = self._handle()
        size = os.path.getsize(self.path)
        for group_name in (fmt.DATA_GROUP, fmt.REFERENCES_GROUP):
            group = f[group_name][fmt.chunk_name(chunk)]
            for name, ds in group.items():
                path = f"/{group_name}/{fmt.chunk_name(chunk)}/{name}"
                self._check_allocated(ds, path, chunk)
                for k in range(_expected_storage_chunks(ds)):
                    info = ds.id.get_chunk_info(k)
                    if info.size <= 0 or info.byte_offset + info.size > size:
                        raise storage_error(self.path, f"storage chunk {k} of dataset {path} lies outside "
                                                       "the file", chunk=chunk)

    def _check_layout(self) -> None:
        f = self._handle()
        chunks = {fmt.chunk_name(c) for c in range(self.header.num_chunks)}
        for group in (fmt.DATA_GROUP, fmt.REFERENCES_GROUP):
            extra = sorted(set(f[group].keys()) - chunks)
            if extra:
                raise storage_error(self.path, f"unexpected groups /{group}/{extra}")
        names = [fmt.attribute_text(n) for n in f[fmt.ORDERED_KEYS][()]]
        if names != list(self.header.structure.input_names):
            raise storage_error(self.path, f"/{fmt.ORDERED_KEYS} {names} disagrees with the structure's "
                                           f"inputs {list(self.header.structure.input_names)}")
