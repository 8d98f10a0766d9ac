"""Hierarchical sparse voxel grids built from point clouds.

A :class:`SparseGrid` holds ``depth`` voxelisations of one cloud. Depth ``t`` uses cubic cells
of edge ``cell_size * 2**t`` anchored at the cloud's minimum corner, so every cell at depth
``t`` lies inside exactly one cell at depth ``t + 1`` (its parent). Only occupied ("active")
cells are stored, one row per cell, ordered by their linear key.

Integer cell coordinates at depth ``t`` are the depth-0 coordinates shifted right by ``t``
bits, which makes the parent relation exact (no floating-point rounding between depths).
The linear key of a cell is ``(i * dims[1] + j) * dims[2] + k`` with ``dims`` the number of
cells per axis at that depth.

`build_field_grids` voxelises many fields at once (one ``np.unique`` per depth over every
field's keys); `build_sparse_grid` is its one-cloud case.
"""

from __future__ import annotations

from dataclasses import dataclass
from numbers import Integral

import numpy as np

from pointseq.arguments import require_int, require_positive

__all__ = ["SparseGrid", "build_sparse_grid", "build_field_grids"]

# Linear keys stay below this bound so that int64 arithmetic never overflows.
_MAX_KEY = 2**62


@dataclass(frozen=True, eq=False)
class SparseGrid:
    """A hierarchy of sparse voxel grids over one point cloud.

    Per-depth fields are tuples indexed by depth ``t`` (``0 <= t < depth``); every array is
    read-only. Rows of all per-depth arrays at depth ``t`` follow ``keys[t]`` (ascending).

    Attributes:
        cell_size: edge of a depth-0 cell; depth ``t`` cells have edge ``cell_size * 2**t``.
        depth: number of depths.
        origin: ``(3,)`` float64, the cloud's minimum corner (cells are anchored here).
        keys: int64 ``(n_t,)`` sorted linear keys of the active cells.
        dims: int64 ``(3,)`` cells per axis at each depth (defines the keys).
        cell_coords: int64 ``(n_t, 3)`` integer cell coordinates relative to ``origin``.
        centres: float32 ``(n_t, 3)`` cell centres in the input coordinate frame.
        counts: int64 ``(n_t,)`` number of input points in each cell.
        parent: for ``t < depth - 1``, int64 ``(n_t,)``: row of each cell's parent at ``t + 1``.
        children: for ``t < depth - 1``, int64 ``(n_t,)``: the rows at depth ``t`` grouped by
            parent; the children of parent row ``p`` are
            ``children[t][children_ptr[t][p]:children_ptr[t][p + 1]]``.
        children_ptr: for ``t < depth - 1``, int64 ``(n_{t+1} + 1,)`` CSR offsets into
            ``children[t]``.
        point_to_cell: int64 ``(N,)`` depth-0 row of each input point.
        features: float32 ``(n_0, F)`` mean feature of the points in each depth-0 cell, or
            None when the grid was built without features.
        labels: int64 ``(n_0,)`` majority label of each depth-0 cell (ties go to the smallest
            label), or None when built without labels.
    """

    cell_size: float
    depth: int
    origin: np.ndarray
    keys: tuple[np.ndarray, ...]
    dims: tuple[np.ndarray, ...]
    cell_coords: tuple[np.ndarray, ...]
    centres: tuple[np.ndarray, ...]
    counts: tuple[np.ndarray, ...]
    parent: tuple[np.ndarray, ...]
    children: tuple[np.ndarray, ...]
    children_ptr: tuple[np.ndarray, ...]
    point_to_cell: np.ndarray
    features: np.ndarray | None
    labels: np.ndarray | None

    @property
    def num_points(self) -> int:
        """Number of input points the grid was built from."""
        return int(self.point_to_cell.shape[0])

    @property
    def num_features(self) -> int:
        """Width of the depth-0 feature rows (0 when built without features)."""
        return 0 if self.features is None else int(self.features.shape[1])

    def num_cells(self, t: int) -> int:
        """Number of active cells at depth ``t``."""
        if not isinstance(t, Integral) or not 0 <= t < self.depth:
            raise IndexError(f"depth index t must be an int in [0, {self.depth}), got {t!r}")
        return int(self.keys[t].shape[0])

    def cell_sizes(self) -> tuple[float, ...]:
        """Cell edge length at every depth."""
        return tuple(self.cell_size * 2.0**t for t in range(self.depth))


def _readonly(a: np.ndarray) -> np.ndarray:
    a = np.ascontiguousarray(a)
    a.setflags(write=False)
    return a


def _validate_points(points) -> np.ndarray:
    arr = np.asarray(points)
    if arr.ndim != 2 or arr.shape[1] != 3:
        raise ValueError(f"points must have shape (N, 3), got shape {arr.shape}")
    if arr.shape[0] == 0:
        raise ValueError("points must contain at least one point, got an empty cloud (0, 3)")
    if not (np.issubdtype(arr.dtype, np.floating) or np.issubdtype(arr.dtype, np.integer)):
        raise TypeError(f"points must be numeric, got dtype {arr.dtype}")
    arr = arr.astype(np.float64, copy=False)
    if not np.isfinite(arr).all():
        bad = int(np.count_nonzero(~np.isfinite(arr).all(axis=1)))
        raise ValueError(f"points must be finite, got {bad} point(s) with NaN or inf coordinates")
    return arr


def _validate_features(features, n: int) -> np.ndarray | None:
    if features is None:
        return None
    feats = np.asarray(features)
    if feats.ndim == 1:
        feats = feats[:, None]
    if feats.ndim != 2 or feats.shape[0] != n:
        raise ValueError(
            f"features must have shape ({n},) or ({n}, F) to match {n} points, "
            f"got shape {np.shape(features)}"
        )
    if not (np.issubdtype(feats.dtype, np.number) or feats.dtype == bool):
        raise TypeError(f"features must be numeric, got dtype {feats.dtype}")
    return feats


def _validate_labels(labels, n: int) -> np.ndarray | None:
    if labels is None:
        return None
    labs = np.asarray(labels)
    if labs.shape != (n,):
        raise ValueError(f"labels must have shape ({n},) to match {n} points, got shape {labs.shape}")
    if not (np.issubdtype(labs.dtype, np.integer) or labs.dtype == bool):
        raise TypeError(f"labels must be integers, got dtype {labs.dtype}")
    return labs.astype(np.int64, copy=False)


def _linear_keys(coords: np.ndarray, dims: np.ndarray) -> np.ndarray:
    return (coords[:, 0] * dims[1] + coords[:, 1]) * dims[2] + coords[:, 2]


def _majority(rows: np.ndarray, labels: np.ndarray, num_rows: int) -> np.ndarray:
    """Most frequent label per row (ties -> smallest label), without a per-row loop."""
    values, label_idx = np.unique(labels, return_inverse=True)
    pair = rows * len(values) + label_idx
    pair_ids, pair_counts = np.unique(pair, return_counts=True)
    pair_rows, pair_labels = np.divmod(pair_ids, len(values))
    # Within each row: highest count first, then smallest label.
    order = np.lexsort((pair_labels, -pair_counts, pair_rows))
    first = np.ones(len(order), dtype=bool)
    first[1:] = pair_rows[order][1:] != pair_rows[order][:-1]
    winners = order[first]
    out = np.empty(num_rows, dtype=np.int64)
    out[pair_rows[winners]] = values[pair_labels[winners]]
    return out


def _check_key_range(extent: np.ndarray, cell_size: float) -> None:
    cells_per_axis = np.floor(extent / cell_size) + 1
    if float(np.prod(cells_per_axis)) >= _MAX_KEY:
        raise ValueError(
            f"cell_size={cell_size} is too small for the cloud's extent {extent.tolist()}: "
            f"{cells_per_axis.tolist()} cells per axis overflow int64 keys"
        )


def _cell_means(feats: np.ndarray, point_to_cell: np.ndarray, counts: np.ndarray) -> np.ndarray:
    order = np.argsort(point_to_cell, kind="stable")
    starts = np.zeros(len(counts), dtype=np.int64)
    np.cumsum(counts[:-1], out=starts[1:])
    sums = np.add.reduceat(feats[order].astype(np.float64, copy=False), starts, axis=0)
    return (sums / counts[:, None]).astype(np.float32)


def build_sparse_grid(
    points,
    features=None,
    labels=None,
    *,
    cell_size: float,
    depth: int,
) -> SparseGrid:
    """Voxelise a point cloud into ``depth`` sparse grids whose cell size doubles per depth.

    Args:
        points: ``(N, 3)`` finite coordinates.
        features: optional ``(N,)`` or ``(N, F)`` per-point features, averaged per depth-0 cell.
        labels: optional ``(N,)`` integer labels, reduced to the majority per depth-0 cell.
        cell_size: edge of a depth-0 cell, > 0.
        depth: number of depths, >= 1.

    Returns:
        A :class:`SparseGrid`; all work is vectorised numpy (no per-point Python loop).
    """
    cell_size = require_positive("cell_size", cell_size)
    depth = require_int("depth", depth, 1)
    pts = _validate_points(points)
    feats = _validate_features(features, pts.shape[0])
    labs = _validate_labels(labels, pts.shape[0])

    _check_key_range(pts.max(axis=0) - pts.min(axis=0), cell_size)
    return build_field_grids(pts[None], None if feats is None else feats[None], None if labs is None else labs[None],
                             cell_size=cell_size, depth=depth)[0]


def _level(field: np.ndarray, coords: np.ndarray, dims: np.ndarray) -> dict:
    """Distinct (field, cell) pairs sorted by field then linear key; ``dims`` per field (M, 3)."""
    keys = _linear_keys(coords, dims[field].T)
    stride = int(keys.max()) + 1
    if stride * (int(field.max()) + 1) >= _MAX_KEY:
        raise ValueError(f"too many cells per field ({stride}) for int64 keys: use a larger cell_size")
    combined, inverse = np.unique(field * stride + keys, return_inverse=True)
    inverse = inverse.reshape(-1)
    cell_coords = np.empty((len(combined), 3), dtype=np.int64)
    cell_coords[inverse] = coords
    cell_field = combined // stride
    starts = np.searchsorted(cell_field, np.arange(dims.shape[0] + 1))
    return {"keys": combined % stride, "coords": cell_coords, "field": cell_field, "inverse": inverse,
            "starts": starts, "dims": dims}


def _coarser(child: dict) -> dict:
    level = _level(child["field"], child["coords"] >> 1, (child["dims"] + 1) >> 1)
    num_cells = len(level["keys"])
    level["counts"] = np.bincount(level["inverse"], weights=child["counts"], minlength=num_cells).astype(np.int64)
    level["children"] = np.argsort(level["inverse"], kind="stable")
    level["children_ptr"] = np.concatenate([[0], np.cumsum(np.bincount(level["inverse"], minlength=num_cells))])
    return level


def build_field_grids(relative: np.ndarray, features: np.ndarray | None, labels: np.ndarray | None, *,
                      cell_size: float, depth: int) -> list[SparseGrid]:
    """One `SparseGrid` per field from ``relative`` (M, P, 3) float64 coordinates, ``features``
    (M, P, F) and ``labels`` (M, P) (either may be None); equal to `build_sparse_grid` per field."""
    cell_size = require_positive("cell_size", cell_size)
    depth = require_int("depth", depth, 1)
    count, num_points = relative.shape[:2]
    if not np.all(np.isfinite(relative)):
        raise ValueError("field coordinates must be finite (no NaN or inf)")
    origins = relative.min(axis=1)  # (M, 3)
    point_coords = np.floor((relative - origins[:, None, :]) / cell_size).astype(np.int64)
    point_field = np.repeat(np.arange(count), num_points)
    flat_coords = point_coords.reshape(-1, 3)
    levels = [_level(point_field, flat_coords, point_coords.max(axis=1) + 1)]
    levels[0]["counts"] = np.bincount(levels[0]["inverse"], minlength=len(levels[0]["keys"])).astype(np.int64)
    for _ in range(1, depth):
        levels.append(_coarser(levels[-1]))
    point_to_cell = levels[0]["inverse"]
    cell_features = cell_labels = None
    if features is not None:
        cell_features = _cell_means(features.reshape(count * num_points, -1), point_to_cell, levels[0]["counts"])
    if labels is not None:
        cell_labels = _majority(point_to_cell, np.asarray(labels, dtype=np.int64).reshape(-1), len(levels[0]["keys"]))
    for t, level in enumerate(levels):
        size = cell_size * 2.0**t
        level["centres"] = (origins[level["field"]] + (level["coords"] + 0.5) * size).astype(np.float32)
    return [_one_grid(levels, f, origins[f], point_to_cell, num_points, cell_features, cell_labels, cell_size)
            for f in range(count)]


def _one_grid(levels: list[dict], f: int, origin: np.ndarray, point_to_cell: np.ndarray, num_points: int,
              features: np.ndarray | None, labels: np.ndarray | None, cell_size: float) -> SparseGrid:
    """Field ``f``'s slice of the joint levels, with its row numbers made local."""
    rows = [slice(level["starts"][f], level["starts"][f + 1]) for level in levels]

    def local(t: int, key: str) -> np.ndarray:
        return _readonly(levels[t][key][rows[t]])

    parent, children, children_ptr = [], [], []
    for t in range(1, len(levels)):
        parent.append(_readonly(levels[t]["inverse"][rows[t - 1]] - rows[t].start))
        ptr = levels[t]["children_ptr"][rows[t].start:rows[t].stop + 1]
        children.append(_readonly(levels[t]["children"][ptr[0]:ptr[-1]] - rows[t - 1].start))
        children_ptr.append(_readonly(ptr - ptr[0]))
    depth = len(levels)
    return SparseGrid(
        cell_size=cell_size, depth=depth, origin=_readonly(origin),
        keys=tuple(local(t, "keys") for t in range(depth)),
        dims=tuple(_readonly(levels[t]["dims"][f]) for t in range(depth)),
        cell_coords=tuple(local(t, "coords") for t in range(depth)),
        centres=tuple(local(t, "centres") for t in range(depth)),
        counts=tuple(local(t, "counts") for t in range(depth)),
        parent=tuple(parent), children=tuple(children), children_ptr=tuple(children_ptr),
        point_to_cell=_readonly(point_to_cell[f * num_points:(f + 1) * num_points] - rows[0].start),
        features=None if features is None else _readonly(features[rows[0]]),
        labels=None if labels is None else _readonly(labels[rows[0]]),
    )
