"""Write batches into a cache file chunk by chunk, resumably, renaming it into place at the end."""

from __future__ import annotations

import json
import os
from typing import Any

import h5py
import numpy as np

from pointseq.offline import format as fmt
from pointseq.offline.disk_space import check_space_for
from pointseq.offline.errors import storage_error
from pointseq.offline.structure import BatchStructure, flatten_batch
from pointseq.offline.superblock import clear_write_flag

_H5_CHUNK_BYTES = 1 << 20  # HDF5 storage chunk: bounds HDF5's per-read filter buffers


def storage_chunks(shape: tuple, itemsize: int) -> tuple:
    """HDF5 storage chunk shape of a cache dataset: whole rows, at most about 1 MiB, split evenly."""
    rows = max(int(shape[0]), 1)
    row_bytes = max(1, int(np.prod(shape[1:], dtype=np.int64)) * itemsize)
    per_chunk = max(1, min(rows, _H5_CHUNK_BYTES // row_bytes))
    count = -(-rows // per_chunk)
    return (-(-rows // count),) + tuple(shape[1:])  # even split: no padded rows on disk


def _offsets(row_counts: list[list[int]]) -> np.ndarray:
    """Row offsets (n+1,) when every element of a batch has the same rows, else (n+1, K)."""
    counts = np.asarray(row_counts, dtype=np.int64).reshape(len(row_counts), -1)
    if counts.shape[1] == 0:
        return np.zeros(len(row_counts) + 1, dtype=np.int64)
    if np.all(counts == counts[:, :1]):
        counts = counts[:, 0]
    zero = np.zeros((1,) + counts.shape[1:], dtype=np.int64)
    return np.concatenate([zero, np.cumsum(counts, axis=0)], axis=0)


def _valid_complete_chunks(f: h5py.File) -> int:
    """Number of leading chunks in a temp file that are complete and pass their checksums."""
    count = 0
    data = f.get(fmt.DATA_GROUP)
    refs = f.get(fmt.REFERENCES_GROUP)
    while data is not None and fmt.chunk_name(count) in data:
        groups = [data[fmt.chunk_name(count)]]
        if refs is None or fmt.chunk_name(count) not in refs:
            break
        groups.append(refs[fmt.chunk_name(count)])
        if not all(g.attrs.get("complete", False) for g in groups):
            break
        try:
            for g in groups:
                for ds in g.values():
                    ds[()]  # reading checks fletcher32
        except OSError:
            break
        count += 1
    return count


class CacheWriter:
    """Appends batches to ``<path>.tmp`` and renames it to ``path`` on :meth:`finalize`.

    With ``resume=True`` an existing temp file with the same fingerprint and chunk size is
    kept up to its last complete, checksum-valid chunk; :attr:`batches_done` says how many
    batches the caller may skip. Any other temp file is discarded. ``fingerprint=None``
    starts a new file whose fingerprint :meth:`set_fingerprint` gives later (before
    :meth:`finalize`); until then the temp file cannot be resumed.
    """

    def __init__(
        self,
        path: str,
        *,
        batch_size: int,
        chunk_size: int,
        fingerprint: str | None,
        config: dict | None = None,
        compression: str | None = None,
        resume: bool = True,
    ) -> None:
        self.path = os.fspath(path)
        self.temp_path = fmt.temp_path(self.path)
        self.chunk_size = fmt.check_chunk_size(chunk_size)
        self.compression = fmt.normalize_compression(compression)
        self.fingerprint = fingerprint
        self.structure: BatchStructure | None = None
        self.num_samples = 0
        self.batches_done = 0
        self._chunks_done = 0
        self._pending: list = []  # flat batches of the chunk being filled
        self._shapes: tuple | None = None  # (dtype, trailing shape) per leaf, fixed by batch 0
        parent = os.path.dirname(os.path.abspath(self.path))
        os.makedirs(parent, exist_ok=True)
        self._file = self._open(resume)
        if self._file is None:
            self._file = h5py.File(self.temp_path, "w", libver=fmt.LIBVER)
            attrs = self._file.attrs
            attrs["format"] = fmt.text_attribute(fmt.FORMAT_NAME)
            attrs["format_version"] = fmt.FORMAT_VERSION
            attrs["batch_size"] = int(batch_size)
            attrs["chunk_size"] = self.chunk_size
            if fingerprint is not None:
                attrs["fingerprint"] = fmt.text_attribute(fingerprint)
            attrs["config"] = fmt.text_attribute(json.dumps(config or {}, sort_keys=True, default=repr))
            attrs["complete"] = False
            self._file.create_group(fmt.DATA_GROUP)
            self._file.create_group(fmt.REFERENCES_GROUP)
            self._file.flush()

    # -- resume --------------------------------------------------------------------------
    def _open(self, resume: bool) -> h5py.File | None:
        if not os.path.exists(self.temp_path):
            return None
        if resume and self.fingerprint is not None:
            f = None
            try:  # a killed build leaves HDF5's "open for writing" mark: stale under the lock
                clear_write_flag(self.temp_path)
                f = h5py.File(self.temp_path, "a")
                if self._same_build(f.attrs):
                    self._resume(f)
                    return f
            except Exception:  # any fault in a leftover temp file: start over
                pass
            if f is not None and f.id.valid:
                f.close()
        os.remove(self.temp_path)
        return None

    def _same_build(self, attrs: h5py.AttributeManager) -> bool:
        return (
            fmt.attribute_text(attrs.get("format", b"")) == fmt.FORMAT_NAME
            and attrs.get("format_version") == fmt.FORMAT_VERSION
            and fmt.attribute_text(attrs.get("fingerprint", b"")) == self.fingerprint
            and attrs.get("chunk_size") == self.chunk_size
            and "structure" in attrs
        )

    def _resume(self, f: h5py.File) -> None:
        keep = _valid_complete_chunks(f)
        for group_name in (fmt.DATA_GROUP, fmt.REFERENCES_GROUP):
            group = f.require_group(group_name)
            for name in list(group.keys()):
                if int(name) >= keep:
                    del group[name]
        self.structure = BatchStructure.from_json(fmt.attribute_text(f.attrs["structure"]))
        self._chunks_done = keep
        self.batches_done = 0
        self.num_samples = 0
        for c in range(keep):
            offsets = f[fmt.DATA_GROUP][fmt.chunk_name(c)][fmt.OFFSETS][()]
            self.batches_done += offsets.shape[0] - 1
            self.num_samples += int(offsets[-1] if offsets.ndim == 1 else offsets[-1, 0])
        if keep:
            first = (f[fmt.DATA_GROUP][fmt.chunk_name(0)], f[fmt.REFERENCES_GROUP][fmt.chunk_name(0)])
            self._shapes = tuple((ds.dtype, ds.shape[1:]) for ds in self._leaf_datasets(*first))

    def _leaf_datasets(self, data: h5py.Group, refs: h5py.Group) -> list:
        assert self.structure is not None
        return [data[f"{fmt.INPUT_PREFIX}{k}"] for k in range(len(self.structure.input_names))] + [
            refs[f"{fmt.REFERENCE_PREFIX}{k}"] for k in range(len(self.structure.reference_names))
        ]

    # -- writing -------------------------------------------------------------------------
    def set_fingerprint(self, fingerprint: str) -> None:
        """Record the fingerprint of a file started without one; from now on it can resume."""
        if self.fingerprint is not None and fingerprint != self.fingerprint:
            raise ValueError(f"fingerprint is already {self.fingerprint!r}, got {fingerprint!r}")
        if self.fingerprint is None:
            self.fingerprint = fingerprint
            self._file.attrs["fingerprint"] = fmt.text_attribute(fingerprint)
            self._file.flush()

    @property
    def batches_appended(self) -> int:
        """Batches in the file so far, the ones waiting for their chunk to fill included."""
        return self.batches_done + len(self._pending)

    def append(self, batch: Any) -> None:
        """Add one batch (``x`` or ``(x[, y[, sample_weight]])``) to the cache."""
        flat = flatten_batch(batch)
        leaves = flat.inputs + flat.references
        if self.structure is None:
            self.structure = flat.structure
            self._file.attrs["structure"] = fmt.text_attribute(flat.structure.to_json())
            names = np.array([n.encode("utf-8") for n in flat.structure.input_names], dtype=np.bytes_)
            self._file.create_dataset(fmt.ORDERED_KEYS, data=names, chunks=True, fletcher32=True)
        elif flat.structure != self.structure:
            raise ValueError(
                f"batch {self.batches_done + len(self._pending)} has the nesting "
                f"{flat.structure.to_json()}, expected {self.structure.to_json()} as in batch 0"
            )
        shapes = tuple((a.dtype, a.shape[1:]) for a in leaves)
        if self._shapes is None:
            self._shapes = shapes
        elif shapes != self._shapes:
            names = flat.structure.input_names + flat.structure.reference_names
            for name, got, want in zip(names, shapes, self._shapes):
                if got != want:
                    raise ValueError(
                        f"batch {self.batches_done + len(self._pending)} element {name!r} has "
                        f"dtype {got[0]} and per-row shape {got[1]}, expected {want[0]} and "
                        f"{want[1]} as in batch 0 (shapes must be stable across batches)"
                    )
        self._pending.append(flat)
        if len(self._pending) == self.chunk_size:
            self._flush_chunk()

    def _write_group(self, group: h5py.Group, prefix: str, leaves_per_batch: list[list[np.ndarray]]) -> None:
        num_leaves = len(leaves_per_batch[0])
        for k in range(num_leaves):
            parts = [leaves[k] for leaves in leaves_per_batch]
            rows = np.concatenate(parts, axis=0) if len(parts) > 1 else np.ascontiguousarray(parts[0])
            group.create_dataset(
                f"{prefix}{k}",
                data=rows,
                chunks=storage_chunks(rows.shape, rows.itemsize) if rows.size else None,
                maxshape=None,
                fletcher32=bool(rows.size),
                compression=self.compression if rows.size else None,
            )
        counts = [[leaf.shape[0] for leaf in leaves] for leaves in leaves_per_batch]
        group.create_dataset(fmt.OFFSETS, data=_offsets(counts), fletcher32=True, chunks=True)

    def _flush_chunk(self) -> None:
        if not self._pending:
            return
        name = fmt.chunk_name(self._chunks_done)
        self._check_space()
        data = self._file[fmt.DATA_GROUP].create_group(name)
        refs = self._file[fmt.REFERENCES_GROUP].create_group(name)
        self._write_group(data, fmt.INPUT_PREFIX, [b.inputs for b in self._pending])
        self._write_group(refs, fmt.REFERENCE_PREFIX, [b.references for b in self._pending])
        self.num_samples += sum(b.inputs[0].shape[0] for b in self._pending)
        refs.attrs["complete"] = True
        data.attrs["complete"] = True
        self._file.flush()
        self._chunks_done += 1
        self.batches_done += len(self._pending)
        self._pending = []

    def _check_space(self) -> None:
        """Refuse a chunk the disk cannot take before HDF5 writes any of it.

        HDF5 cannot recover from a failed write (it crashes when it next flushes), so the
        check comes first: the temp file stays at its last complete chunk, and a rerun
        after freeing space resumes from there.
        """
        nbytes = sum(a.nbytes for b in self._pending for a in b.inputs + b.references)
        problem = check_space_for(self.temp_path, nbytes)
        if problem is not None:
            raise storage_error(self.path, f"{problem}; chunk {self._chunks_done} was not written, free "
                                           "space and rerun: the build resumes from that chunk", rebuild=False)

    def finalize(self, *, num_samples: int | None = None) -> str:
        """Write the last chunk and the root attributes, then rename into place."""
        self._flush_chunk()
        if self.structure is None:
            raise ValueError(f"cannot build offline cache {self.path!r}: no batches were given")
        if self.fingerprint is None:
            raise ValueError(f"cannot finalize offline cache {self.path!r}: its fingerprint was never set")
        attrs = self._file.attrs
        attrs["num_batches"] = self.batches_done
        attrs["num_chunks"] = self._chunks_done
        attrs["num_samples"] = int(self.num_samples if num_samples is None else num_samples)
        attrs["complete"] = True
        self._file.close()
        os.replace(self.temp_path, self.path)
        return self.path

    def close(self) -> None:
        """Close without finalizing: the temp file stays for a later resume."""
        if self._file is not None and self._file.id.valid:
            self._file.close()

    def __enter__(self) -> "CacheWriter":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def write_cache(
    path: str,
    batches,
    *,
    batch_size: int,
    chunk_size: int = 8,
    fingerprint: str = "",
    config: dict | None = None,
    compression: str | None = None,
) -> str:
    """Write an iterable of batches into a new cache file at ``path`` (no resume)."""
    with CacheWriter(
        path,
        batch_size=batch_size,
        chunk_size=chunk_size,
        fingerprint=fingerprint,
        config=config,
        compression=compression,
        resume=False,
    ) as writer:
        for batch in batches:
            writer.append(batch)
        return writer.finalize()
