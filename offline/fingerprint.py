"""Fingerprints that tie a cache file to the config and data it was built from."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
from typing import Any, Iterable

import numpy as np

from pointseq.offline.format import FORMAT_VERSION

_BLOCK = 1 << 24  # hash large arrays in 16 MiB slices to bound the temporary copies


def _hash_array(h: "hashlib._Hash", array: np.ndarray) -> None:
    array = np.asarray(array)
    if array.dtype.hasobject:
        raise TypeError(
            f"cannot fingerprint data of type {type(array.flat[0] if array.size else array).__name__}: "
            "a cache hashes arrays, nested lists/tuples/dicts of them and dataclasses of them"
        )
    h.update(f"{array.dtype.str}{array.shape}".encode())
    flat = array.reshape(-1) if array.flags.c_contiguous else None
    if flat is None:
        for row in array:  # non-contiguous: hash row by row in C order
            _hash_array(h, np.ascontiguousarray(row))
        return
    step = max(1, _BLOCK // max(1, array.itemsize))
    for start in range(0, flat.size, step):
        h.update(memoryview(np.ascontiguousarray(flat[start : start + step])).cast("B"))


def _hash_nested(h: "hashlib._Hash", value: Any) -> None:
    if value is None:
        h.update(b"N")
    elif isinstance(value, dict):
        h.update(b"D")
        for key in value:
            h.update(repr(key).encode())
            _hash_nested(h, value[key])
    elif isinstance(value, (tuple, list)):
        h.update(b"T" if isinstance(value, tuple) else b"L")
        for v in value:
            _hash_nested(h, v)
    elif dataclasses.is_dataclass(value) and not isinstance(value, type):
        h.update(f"C{type(value).__qualname__}".encode())  # e.g. a SparseGrid: its fields
        for name, field in _dataclass_fields(value):
            h.update(name.encode())
            _hash_nested(h, field)
    elif isinstance(value, (int, float, str, bool)):
        h.update(f"S{value!r}".encode())
    else:
        h.update(b"A")
        _hash_array(h, value)


def _dataclass_fields(value: Any) -> list[tuple[str, Any]]:
    return [(f.name, getattr(value, f.name)) for f in dataclasses.fields(value)]


def _nested_nbytes(value: Any) -> int:
    if value is None:
        return 0
    if isinstance(value, dict):
        return sum(_nested_nbytes(v) for v in value.values())
    if isinstance(value, (tuple, list)):
        return sum(_nested_nbytes(v) for v in value)
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return sum(_nested_nbytes(field) for _, field in _dataclass_fields(value))
    if isinstance(value, (int, float, str, bool)):
        return 0
    return int(np.asarray(value).nbytes)


def data_nbytes(*data: Any) -> int:
    """Bytes that :func:`data_digest` hashes for ``data`` (to decide whether to hash aside)."""
    return sum(_nested_nbytes(v) for v in data)


def data_digest(*data: Any) -> str:
    """SHA-1 digest of nested arrays (dtype, shape and bytes of each leaf).

    SHA-1 because it is the fastest hashlib digest here (about twice blake2b) and the
    digest identifies data, it does not defend against forgery.
    """
    h = hashlib.sha1()
    for value in data:
        _hash_nested(h, value)
    return h.hexdigest()


def files_digest(paths: Iterable[str]) -> str:
    """SHA-1 digest of the names and bytes of files."""
    h = hashlib.sha1()
    for path in paths:
        h.update(os.path.basename(path).encode())
        with open(path, "rb") as f:
            for block in iter(lambda: f.read(_BLOCK), b""):
                h.update(block)
    return h.hexdigest()


def config_json(config: dict) -> str:
    """Canonical JSON of a config dict (sorted keys; non-JSON values by repr)."""
    return json.dumps(config, sort_keys=True, default=repr)


def cache_fingerprint(config: dict, data: str, chunk_size: int) -> str:
    """Fingerprint of a cache: the backbone config, a data digest, chunk size and format."""
    h = hashlib.blake2b(digest_size=20)
    h.update(f"format_version={FORMAT_VERSION};chunk_size={int(chunk_size)};".encode())
    h.update(config_json(config).encode())
    h.update(data.encode())
    return h.hexdigest()
