"""Nested input structures: one array, a tuple/list of arrays, or a dict of arrays.

A sequencer's X may take any of these forms; batches keep the form, except that a list
becomes a tuple (Keras reads a bare list ``[x1, x2]`` as ``(x, y)``).
"""

from __future__ import annotations

from typing import Any, Callable

import numpy as np

Structure = Any  # np.ndarray | tuple[np.ndarray, ...] | dict[str, np.ndarray]


def normalize_structure(data: Structure, name: str) -> Structure:
    """Return ``data`` as an ndarray, a tuple of ndarrays or a dict of ndarrays.

    Arrays are wrapped with ``np.asarray`` (no copy when already an array).
    """
    if isinstance(data, dict):
        if not data:
            raise ValueError(f"{name} must not be an empty dict")
        return {str(k): _as_array(v, f"{name}[{k!r}]") for k, v in data.items()}
    if isinstance(data, (list, tuple)):
        if not data:
            raise ValueError(f"{name} must not be an empty list")
        return tuple(_as_array(v, f"{name}[{i}]") for i, v in enumerate(data))
    return _as_array(data, name)


def _as_array(value: Any, name: str) -> np.ndarray:
    array = np.asarray(value)
    if array.ndim == 0:
        raise ValueError(f"{name} must have a leading sample axis, got a scalar {value!r}")
    if array.dtype == object:
        raise ValueError(
            f"{name} must be a numeric array, got dtype=object "
            "(ragged samples need SparseShadowSequencer or padding)"
        )
    return array


def leaves(data: Structure) -> list[tuple[str, np.ndarray]]:
    """(name, array) pairs in a fixed order: tuple position or dict insertion order."""
    if isinstance(data, dict):
        return list(data.items())
    if isinstance(data, tuple):
        return [(str(i), a) for i, a in enumerate(data)]
    return [("0", data)]


def map_structure(fn: Callable[[np.ndarray], np.ndarray], data: Structure) -> Structure:
    """Apply ``fn`` to every array, keeping the nesting."""
    if isinstance(data, dict):
        return {k: fn(v) for k, v in data.items()}
    if isinstance(data, tuple):
        return tuple(fn(v) for v in data)
    return fn(data)


def num_rows(data: Structure, name: str) -> int:
    """The common leading length of all arrays; a mismatch is an error."""
    lengths = {key: len(a) for key, a in leaves(data)}
    distinct = set(lengths.values())
    if len(distinct) > 1:
        raise ValueError(
            f"all inputs of {name} must have the same number of samples, got lengths {lengths}"
        )
    return distinct.pop()


def take_rows(
    data: Structure, indices: np.ndarray, empty: Callable[..., np.ndarray] | None = None
) -> Structure:
    """Gather rows ``indices`` of every array (a new array, never a view of the caller's).

    ``empty(shape, dtype)``, when given, supplies the arrays to gather into.
    """
    if empty is None:
        return map_structure(lambda a: np.take(a, indices, axis=0), data)

    def gather(array: np.ndarray) -> np.ndarray:
        if len(indices) and not 0 <= indices.min() <= indices.max() < len(array):
            raise IndexError(f"row indices must be in [0, {len(array)}), got {indices!r}")
        out = empty((len(indices),) + array.shape[1:], array.dtype)
        # mode="clip" (the range is checked above): mode="raise" gathers into a temporary.
        return np.take(array, indices, axis=0, out=out, mode="clip")

    return map_structure(gather, data)
