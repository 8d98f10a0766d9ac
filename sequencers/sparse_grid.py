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
        raise ValueError(f"points must be numeric, got dtype {arr.dtype}")
    arr = arr.astype(np.float64, copy=False)
    if not np.isfinite(arr).all():
        bad = int(np.count_nonzero(~np.isfinite(arr).all(axis=1)))
        raise ValueError(f"points must be finite, got {bad} point(s) with NaN or inf coordinates")
    return arr


def _validate_scalars(cell_size, depth) -> tuple[float, int]:
    if (
        isinstance(cell_size, bool)
        or not isinstance(cell_size, Real)
        or not np.isfinite(cell_size)
        or cell_size <= 0
    ):
        raise ValueError(f"cell_size must be a positive finite number, got {cell_size!r}")
    if isinstance(depth, bool) or not isinstance(depth, Integral) or depth < 1:
        raise ValueError(f"depth must be an int >= 1, got {depth!r}")
    return float(cell_size), int(depth)


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
    cell_size, depth = _validate_scalars(cell_size, depth)
    pts = _validate_points(points)
    n = pts.shape[0]

    feats = None
    if features is not None:
        feats = np.asarray(features)
        if feats.ndim == 1:
            feats = feats[:, None]
        if feats.ndim != 2 or feats.shape[0] != n:
            raise ValueError(
                f"features must have shape ({n},) or ({n}, F) to match {n} points, "
                f"got shape {np.shape(features)}"
            )
        if not (np.issubdtype(feats.dtype, np.number) or feats.dtype == bool):
            raise ValueError(f"features must be numeric, got dtype {feats.dtype}")
    labs = None
    if labels is not None:
        labs = np.asarray(labels)
        if labs.shape != (n,):
            raise ValueError(
                f"labels must have shape ({n},) to match {n} points, got shape {labs.shape}"
            )
        if not (np.issubdtype(labs.dtype, np.integer) or labs.dtype == bool):
            raise ValueError(f"labels must be integers, got dtype {labs.dtype}")
        labs = labs.astype(np.int64, copy=False)

    origin = pts.min(axis=0)
    extent = pts.max(axis=0) - origin
    cells_per_axis = np.floor(extent / cell_size) + 1
    if float(np.prod(cells_per_axis)) >= _MAX_KEY:
        raise ValueError(
            f"cell_size={cell_size} is too small for the cloud's extent {extent.tolist()}: "
            f"{cells_per_axis.tolist()} cells per axis overflow int64 keys"
        )
    coords0_pts = np.floor((pts - origin) / cell_size).astype(np.int64)

    keys, dims, cell_coords, centres, counts = [], [], [], [], []
    parent, children, children_ptr = [], [], []

    # Depth 0 from the points.
    dims0 = coords0_pts.max(axis=0) + 1
    point_keys = _linear_keys(coords0_pts, dims0)
    keys0, point_to_cell, counts0 = np.unique(point_keys, return_inverse=True, return_counts=True)
    point_to_cell = point_to_cell.reshape(-1).astype(np.int64, copy=False)
    coords0 = np.empty((len(keys0), 3), dtype=np.int64)
    coords0[point_to_cell] = coords0_pts  # all points of a cell share its coordinates
    keys.append(keys0)
    dims.append(dims0)
    cell_coords.append(coords0)
    counts.append(counts0.astype(np.int64))

    # Deeper levels from the cells of the level below.
    for t in range(1, depth):
        child_coords = cell_coords[t - 1]
        up = child_coords >> 1
        dims_t = (dims[t - 1] + 1) >> 1
        up_keys = _linear_keys(up, dims_t)
        keys_t, inverse = np.unique(up_keys, return_inverse=True)
        inverse = inverse.reshape(-1).astype(np.int64, copy=False)
        coords_t = np.empty((len(keys_t), 3), dtype=np.int64)
        coords_t[inverse] = up
        keys.append(keys_t)
        dims.append(dims_t)
        cell_coords.append(coords_t)
        cell_counts = np.bincount(inverse, weights=counts[t - 1], minlength=len(keys_t))
        counts.append(cell_counts.astype(np.int64))
        parent.append(inverse)
        order = np.argsort(inverse, kind="stable")
        ptr = np.zeros(len(keys_t) + 1, dtype=np.int64)
        np.cumsum(np.bincount(inverse, minlength=len(keys_t)), out=ptr[1:])
        children.append(order.astype(np.int64))
        children_ptr.append(ptr)

    for t in range(depth):
        size = cell_size * 2.0**t
        centres.append((origin + (cell_coords[t] + 0.5) * size).astype(np.float32))

    cell_features = None
    if feats is not None:
        order = np.argsort(point_to_cell, kind="stable")
        starts = np.zeros(len(keys0), dtype=np.int64)
        np.cumsum(counts0[:-1], out=starts[1:])
        sums = np.add.reduceat(feats[order].astype(np.float64, copy=False), starts, axis=0)
        cell_features = (sums / counts0[:, None]).astype(np.float32)
    cell_labels = None
    if labs is not None:
        cell_labels = _majority(point_to_cell, labs, len(keys0))

    ro = _readonly
    return SparseGrid(
        cell_size=cell_size,
        depth=depth,
        origin=ro(origin),
        keys=tuple(ro(a) for a in keys),
        dims=tuple(ro(a) for a in dims),
        cell_coords=tuple(ro(a) for a in cell_coords),
        centres=tuple(ro(a) for a in centres),
        counts=tuple(ro(a) for a in counts),
        parent=tuple(ro(a) for a in parent),
        children=tuple(ro(a) for a in children),
        children_ptr=tuple(ro(a) for a in children_ptr),
        point_to_cell=ro(point_to_cell),
        features=None if cell_features is None else ro(cell_features),
        labels=None if cell_labels is None else ro(cell_labels),
    )
