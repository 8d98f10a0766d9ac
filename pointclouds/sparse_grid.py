"""Hierarchical sparse voxel grids built from point clouds.

A :class:`SparseGrid` holds ``depth`` voxelisations of one cloud. Depth ``t`` uses cubic cells
of edge ``cell_size * 2**t`` anchored at the cloud's minimum corner, so every cell at depth
``t`` lies inside exactly one cell at depth ``t + 1`` (its parent). Only occupied ("active")
cells are stored, one row per cell, ordered by their linear key.

Integer cell coordinates at depth ``t`` are the depth-0 coordinates shifted right by ``t``
bits, which makes the parent relation exact (no floating-point rounding between depths).
The linear key of a cell is ``(i * dims[1] + j) * dims[2] + k`` with ``dims`` the number of
cells per axis at that depth.
"""

from __future__ import annotations

from dataclasses import dataclass
from numbers import Integral, Real

import numpy as np

from pointseq.arguments import require_int, require_positive

__all__ = ["SparseGrid", "build_sparse_grid"]

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


def _unique_cells(coords: np.ndarray, dims: np.ndarray) -> dict:
    """The distinct cells of ``coords`` (rows of integer cell coordinates) on a ``dims`` grid."""
    keys, inverse = np.unique(_linear_keys(coords, dims), return_inverse=True)
    inverse = inverse.reshape(-1).astype(np.int64, copy=False)
    cell_coords = np.empty((len(keys), 3), dtype=np.int64)
    cell_coords[inverse] = coords  # every member of a cell shares its coordinates
    return {"keys": keys, "dims": dims, "coords": cell_coords, "inverse": inverse}


def _finest_level(point_coords: np.ndarray) -> dict:
    """Depth 0: the cells holding points; ``inverse`` maps each point to its cell."""
    level = _unique_cells(point_coords, point_coords.max(axis=0) + 1)
    level["counts"] = np.bincount(level["inverse"], minlength=len(level["keys"])).astype(np.int64)
    return level


def _coarser_level(child: dict) -> dict:
    """The next depth: each parent cell covers 2x2x2 children; ``inverse`` maps child to parent."""
    level = _unique_cells(child["coords"] >> 1, (child["dims"] + 1) >> 1)
    inverse, num_cells = level["inverse"], len(level["keys"])
    level["counts"] = np.bincount(inverse, weights=child["counts"], minlength=num_cells).astype(np.int64)
    level["children"] = np.argsort(inverse, kind="stable").astype(np.int64)
    ptr = np.zeros(num_cells + 1, dtype=np.int64)
    np.cumsum(np.bincount(inverse, minlength=num_cells), out=ptr[1:])
    level["children_ptr"] = ptr
    return level


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

    origin = pts.min(axis=0)
    _check_key_range(pts.max(axis=0) - origin, cell_size)
    levels = [_finest_level(np.floor((pts - origin) / cell_size).astype(np.int64))]
    for _ in range(1, depth):
        levels.append(_coarser_level(levels[-1]))
    point_to_cell = levels[0]["inverse"]
    counts0 = levels[0]["counts"]
    centres = [
        (origin + (level["coords"] + 0.5) * cell_size * 2.0**t).astype(np.float32)
        for t, level in enumerate(levels)
    ]
    cell_features = None if feats is None else _cell_means(feats, point_to_cell, counts0)
    cell_labels = None if labs is None else _majority(point_to_cell, labs, len(counts0))

    def each(key: str, start: int = 0) -> tuple:
        return tuple(_readonly(level[key]) for level in levels[start:])

    return SparseGrid(
        cell_size=cell_size,
        depth=depth,
        origin=_readonly(origin),
        keys=each("keys"),
        dims=each("dims"),
        cell_coords=each("coords"),
        centres=tuple(_readonly(c) for c in centres),
        counts=each("counts"),
        parent=each("inverse", 1),
        children=each("children", 1),
        children_ptr=each("children_ptr", 1),
        point_to_cell=_readonly(point_to_cell),
        features=None if cell_features is None else _readonly(cell_features),
        labels=None if cell_labels is None else _readonly(cell_labels),
    )
