"""Neighbourhood shapes, grid support points and which points lie in which neighbourhood.

Everything here works on float64 coordinates relative to the cloud's bounding-box minimum, so
tiles at offsets of 1e6-1e7 lose no precision. Membership bins the points into grid cells once
and answers all neighbourhoods with array operations, never one neighbourhood at a time.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy.spatial import cKDTree

from pointseq.arguments import check_spec_keys, require_positive
from pointseq.pointclouds import field_kernels
from pointseq.pointclouds.subsampling import farthest_point_rows, strided_rows

NEIGHBORHOOD_TYPES = ("sphere", "cylinder", "rectangular2d", "rectangular3d")
# Largest separation factor whose grid still covers every point (each point lies within half a
# spacing per axis of its nearest node): 2/sqrt(dims) for round shapes, 2 for boxes.
COVERING_SEPARATION = {"sphere": 2 / math.sqrt(3), "cylinder": math.sqrt(2), "rectangular2d": 2.0,
                       "rectangular3d": 2.0}
MEMBERSHIP_CELLS = {2: 3, 3: 1}  # grid cells per radius when binning points for membership, by bounded axes
MAX_MEMBERSHIP_CELLS = 1 << 22  # cells of the membership grid (or 4 per point if more): bounds its memory
PAIR_CHUNK = 1 << 22  # candidate (support, cell) entries handled together: bounds the working memory


@dataclass(frozen=True)
class Neighborhood:
    """A neighbourhood shape around a support point.

    ``sphere``: ball of ``radius``; ``cylinder``: disc of ``radius`` in xy, unbounded in z;
    ``rectangular2d``/``rectangular3d``: axis-aligned box with half sides ``radius`` (a scalar
    or one value per axis), unbounded in z for 2d. Support points sit on a grid of spacing
    ``radius * separation_factor`` per axis (xy only for the 2d shapes). ``radius: 0`` means one
    neighbourhood holding the whole cloud (`whole_cloud`).
    """

    type: str
    radius: tuple[float, ...]
    separation_factor: float

    @classmethod
    def from_spec(cls, spec: Mapping[str, Any]) -> "Neighborhood":
        """Parse ``{"type", "radius", "separation_factor"}`` (type case-insensitive)."""
        check_spec_keys(spec, "neighborhood", ("type", "radius", "separation_factor"), ("type", "radius"))
        kind = spec["type"]
        if not isinstance(kind, str) or kind.lower() not in NEIGHBORHOOD_TYPES:
            raise ValueError(f"neighborhood type must be one of {list(NEIGHBORHOOD_TYPES)}, got {kind!r}")
        kind = kind.lower()
        dims = 2 if kind in ("cylinder", "rectangular2d") else 3
        separation = require_positive("neighborhood separation_factor", spec.get("separation_factor", 0.8))
        radius = spec["radius"]
        if _is_zero(radius):  # the original's "radius 0": one neighbourhood holding the whole cloud
            return cls(kind, (0.0,) * dims, separation)
        if isinstance(radius, (list, tuple, np.ndarray)):
            if not kind.startswith("rectangular") or len(radius) != dims:
                raise ValueError(f"neighborhood radius {list(radius)!r} for {kind!r}: a per-axis radius needs a "
                                 f"rectangular type and {dims} values")
            radii = tuple(require_positive("neighborhood radius", r) for r in radius)
        else:
            radii = (_positive_radius(radius),) * dims
        if kind in ("sphere", "cylinder"):
            radii = radii[:1] * dims
        return cls(kind, radii, separation)

    def get_config(self) -> dict:
        radius = self.radius[0] if len(set(self.radius)) == 1 else list(self.radius)
        return {"type": self.type, "radius": radius, "separation_factor": self.separation_factor}

    @property
    def whole_cloud(self) -> bool:
        """True for ``radius: 0``: a single neighbourhood, the whole cloud, centred on its mean."""
        return self.radius[0] == 0

    @property
    def dims(self) -> int:
        """Number of bounded axes: 2 (x, y) for cylinder/rectangular2d, else 3."""
        return len(self.radius)

    @property
    def spacing(self) -> np.ndarray:
        return np.asarray(self.radius) * self.separation_factor

    def scaled(self, local: np.ndarray) -> np.ndarray:
        """Bounded axes divided by the radius: the shape becomes a unit ball (p=2) or cube (p=inf)."""
        return local[:, : self.dims] / np.asarray(self.radius)

    @property
    def norm(self) -> float:
        return np.inf if self.type.startswith("rectangular") else 2.0


def _is_zero(value: Any) -> bool:
    return isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, bool) and value == 0


def _positive_radius(value: Any) -> float:
    if isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, bool) and not value > 0:
        raise ValueError(f"neighborhood radius must be a positive finite number, or 0 for one neighbourhood "
                         f"holding the whole cloud, got {value!r}")
    return require_positive("neighborhood radius", value)


@dataclass(frozen=True, eq=False)
class SupportGrid:
    """The regular grid of support nodes of a whole tile: node ``index`` (per axis, 0 <= index <
    ``count``) sits at ``start + index * spacing``.

    Built once from the tile's bounds (`over`), it gives every spatial block of the tile the same
    nodes as the whole tile would have, so blocks cut exactly the tile's fields.
    """

    start: np.ndarray
    spacing: np.ndarray
    count: np.ndarray

    @classmethod
    def over(cls, low: np.ndarray, high: np.ndarray, spacing: np.ndarray) -> "SupportGrid":
        """The grid centred on the box [low, high]: ``n = ceil(range/spacing) + 1`` nodes per axis,
        so every point of the box is within half a spacing (per axis) of a node."""
        low, high, spacing = (np.asarray(v, dtype=np.float64) for v in (low, high, spacing))
        count = np.ceil((high - low) / spacing).astype(np.int64) + 1
        return cls((low + high) / 2 - (count - 1) * spacing / 2, spacing, count)


@dataclass(frozen=True, eq=False)
class BlockFrame:
    """What one spatial block of a tile shares with the whole tile: ``origin`` (3,), the tile's
    minimum (the block's local coordinates are relative to it, bit for bit as the tile's are),
    the tile's support ``grid``, and ``owns(positions (K, dims)) -> bool (K,)``, which support
    positions (local) belong to this block: every support position belongs to exactly one block."""

    origin: np.ndarray
    grid: SupportGrid
    owns: Callable[[np.ndarray], np.ndarray]
    supports: np.ndarray | None = None  # the tile's support positions when they are not grid nodes (FPS supports)


def grid_supports(local: np.ndarray, neighborhood: Neighborhood, spacing: np.ndarray,
                  grid: SupportGrid | None = None) -> np.ndarray:
    """Nodes (K, dims) of ``grid`` (default: centred on the bounding box of ``local``, of
    ``spacing``) that lie near enough to a point of ``local`` to matter.

    Only nodes within reach of an occupied grid cell are generated (empty space is never
    enumerated). With the grid of a whole tile and ``local`` one block's points, every node
    whose neighbourhood holds one of those points is among them.
    """
    coords = local[:, : neighborhood.dims]
    grid = SupportGrid.over(coords.min(axis=0), coords.max(axis=0), spacing) if grid is None else grid
    start, spacing, count = grid.start, grid.spacing, grid.count
    shape = tuple(int(c) for c in count)
    cells = np.clip(np.floor((coords - start) / spacing).astype(np.int64), 0, count - 1)
    cells = np.unique(np.ravel_multi_index(tuple(cells.T), shape))
    reach = int(math.ceil(float(np.max(np.asarray(neighborhood.radius) / spacing)))) + 1
    steps = np.arange(-reach, reach + 1)
    offsets = np.stack(np.meshgrid(*[steps] * neighborhood.dims, indexing="ij"), axis=-1).reshape(-1, neighborhood.dims)
    keys = []
    for offset in offsets:  # (2 reach + 1)^dims shifts of the occupied cells, each vectorised
        shifted = np.stack(np.unravel_index(cells, shape), axis=1) + offset
        inside = np.all((shifted >= 0) & (shifted < count), axis=1)
        keys.append(np.ravel_multi_index(tuple(shifted[inside].T), shape))
    nodes = np.stack(np.unravel_index(np.unique(np.concatenate(keys)), shape), axis=1)
    return start + nodes * spacing


def fps_supports(local: np.ndarray, neighborhood: Neighborhood, count: int, fast: bool | int = False,
                 rng: np.random.Generator | None = None, *, nthreads: int = 1) -> np.ndarray:
    """``count`` support positions (K, dims) among the points: furthest-point sampling over the
    bounded axes from the first point (the original's ``support_strategy: "fps"``). ``fast``:
    true, FPS over every ``N // count``-th point only; 2, a random subset of ``count`` points."""
    coords = np.zeros((local.shape[0], 3))
    coords[:, : neighborhood.dims] = local[:, : neighborhood.dims]
    total = np.array([0, local.shape[0]])
    if fast == 2:
        if not isinstance(rng, np.random.Generator):
            raise TypeError(f"rng must be a numpy Generator for random FPS supports, got {rng!r}")
        rows = rng.permutation(local.shape[0])[:count]
    else:
        rows = strided_rows(total, count)[0] if fast else np.arange(local.shape[0])
        chosen = farthest_point_rows(coords[rows], np.array([0, rows.size]), min(count, rows.size),
                                     nthreads=nthreads)[0][0]
        rows = rows[chosen]
    return local[np.sort(rows), : neighborhood.dims]


def snapped_supports(local: np.ndarray, nodes: np.ndarray, neighborhood: Neighborhood) -> np.ndarray:
    """``center_on_pcloud``: each node moved onto its nearest point (Euclidean over the bounded
    axes) within the smallest radius; nodes with no point that close are dropped, and nodes that
    land on the same position are kept once. Returns (K', dims) positions of input points."""
    coords = local[:, : neighborhood.dims]
    if nodes.shape[0] == 0:
        return nodes
    distance, nearest = cKDTree(coords).query(nodes, distance_upper_bound=float(min(neighborhood.radius)))
    return np.unique(coords[nearest[np.isfinite(distance)]], axis=0)


def membership_pairs(local: np.ndarray, supports: np.ndarray, neighborhood: Neighborhood) -> tuple[np.ndarray, np.ndarray]:
    """All (support, point) pairs with the point inside the support's neighbourhood.

    Returns two int64 arrays sorted by support, then by point index. Boundaries are inclusive.
    """
    offsets, members = membership_lists(local, supports, neighborhood)
    return np.repeat(np.arange(offsets.size - 1), np.diff(offsets)), members


def membership_lists(local: np.ndarray, supports: np.ndarray, neighborhood: Neighborhood, *, chunk: int = 0,
                     nthreads: int = 1) -> tuple[np.ndarray, np.ndarray]:
    """The neighbourhood of every support in CSR form: support s holds the points
    ``members[offsets[s]:offsets[s + 1]]`` (ascending). Boundaries are inclusive.

    Points are binned into grid cells (a fraction of the radius); each support takes the points of
    the cells its shape reaches. Compiled (`field_kernels`, ``nthreads`` threads) when numba is
    installed, else array passes that test distances only in cells straddling the boundary.
    ``chunk``: supports handled together (0: automatic); it bounds the working memory only.
    """
    scaled = neighborhood.scaled(local)
    centres = neighborhood.scaled(np.asarray(supports, dtype=np.float64).reshape(-1, neighborhood.dims))
    grid = CellGrid(scaled, centres, neighborhood.norm, max(MAX_MEMBERSHIP_CELLS, 4 * scaled.shape[0]))
    ordered = np.take(scaled, grid.order, axis=0).T.copy()  # (dims, N) in cell order: a cell is one range
    centre_keys = grid.keys_of(centres)
    per_chunk = chunk or (centres.shape[0] if field_kernels.AVAILABLE else max(1, PAIR_CHUNK // grid.stencil_keys.size))
    sizes, parts = [], []
    for first in range(0, centres.shape[0], per_chunk):
        part = slice(first, first + per_chunk)
        if field_kernels.AVAILABLE:
            offsets, members = field_kernels.member_lists(ordered, grid.order, grid.starts, grid.counts,
                                                          centre_keys[part], grid.stencil_keys, centres[part],
                                                          neighborhood.norm == np.inf, nthreads)
            sizes.append(np.diff(offsets))
        else:
            support, members = _chunk_pairs(grid, ordered, centres[part], centre_keys[part], neighborhood.norm)
            sizes.append(np.bincount(support, minlength=centres[part].shape[0]))
        parts.append(members)
    sizes = np.concatenate(sizes) if sizes else np.zeros(0, dtype=np.int64)
    return np.concatenate([[0], np.cumsum(sizes)]).astype(np.int64), np.concatenate(parts or [np.zeros(0, np.int64)])


def _chunk_pairs(grid: "CellGrid", ordered: np.ndarray, chunk: np.ndarray, chunk_keys: np.ndarray,
                 norm: float) -> tuple[np.ndarray, np.ndarray]:
    """(support, point) pairs of the supports ``chunk`` (scaled), sorted by support then point."""
    cells = (chunk_keys[:, None] + grid.stencil_keys).ravel()
    entry = np.flatnonzero(grid.counts[cells])  # (support, stencil) entries whose cell holds points
    support, step = np.divmod(entry, grid.stencil_keys.size)
    corners = grid.corner(chunk_keys[support]) + grid.stencil[step] * grid.side
    near, far = box_distances(chunk[support], corners, grid.side, norm)
    reached = near <= 1.0 + 1e-9
    whole = far[reached] <= 1.0 - 1e-9  # the whole cell lies in the shape: nothing to test
    rows, row_support, keep = grid.rows_of(cells[entry[reached]], support[reached], whole)
    tested = np.flatnonzero(~keep)  # rows in cells on the shape's boundary
    keep[tested] = unit_distances(ordered, rows[tested], chunk.T, row_support[tested], norm) <= 1.0
    support, count = row_support[keep], ordered.shape[1]
    key = np.sort(support * count + grid.order[rows[keep]])  # points ascending within each support
    return support, key - support * count


def unit_distances(points: np.ndarray, rows: np.ndarray, centres: np.ndarray, owners: np.ndarray,
                   norm: float) -> np.ndarray:
    """Distance (p = ``norm``, squared for p = 2) of ``points[:, rows]`` to ``centres[:, owners]`` (both (dims, .))."""
    total = None
    for axis in range(points.shape[0]):
        offset = points[axis].take(rows) - centres[axis].take(owners)
        if norm == np.inf:
            np.abs(offset, out=offset)
            total = offset if total is None else np.maximum(total, offset, out=total)
        else:
            total = offset * offset if total is None else total + offset * offset
    return total


class CellGrid:
    """Points binned into cubic cells (scaled units) over a dense grid of at most ``max_cells`` cells.

    ``order`` sorts the points by cell, so cell key c holds rows ``starts[c] .. starts[c] + counts[c]``
    of it. ``stencil`` (and ``stencil_keys``) are the cell offsets a unit shape can reach from a
    centre anywhere in its own cell; the grid has room for them around every point and centre.
    """

    def __init__(self, scaled: np.ndarray, centres: np.ndarray, norm: float, max_cells: int) -> None:
        dims = scaled.shape[1]
        self.side = 1.0 / MEMBERSHIP_CELLS[dims]
        low = np.minimum(scaled.min(axis=0), centres.min(axis=0, initial=np.inf))
        high = np.maximum(scaled.max(axis=0), centres.max(axis=0, initial=-np.inf))
        while True:
            reach = int(math.ceil(1.0 / self.side)) + 1
            self.low = low - (reach + 1) * self.side
            shape = np.floor((high - self.low) / self.side).astype(np.int64) + reach + 2
            if np.prod(shape.astype(np.float64)) <= max_cells:
                break
            self.side *= 2.0  # a sparse cloud in a huge box: coarser cells keep the grid bounded
        self.shape = tuple(int(extent) for extent in shape)
        steps = np.arange(-reach, reach + 1)
        stencil = np.stack(np.meshgrid(*[steps] * dims, indexing="ij"), axis=-1).reshape(-1, dims)
        gaps = np.maximum(np.abs(stencil) - 1, 0) * self.side  # nearest possible distance to that cell
        self.stencil = stencil[np.linalg.norm(gaps, ord=norm, axis=1) <= 1.0 + 1e-9]
        self.stencil_keys = self.stencil @ np.asarray(np.ravel_multi_index(np.eye(dims, dtype=np.int64).T, self.shape))
        keys = self.keys_of(scaled)
        self.order = np.argsort(keys, kind="stable")
        self.counts = np.bincount(keys, minlength=int(np.prod(shape)))
        self.starts = np.cumsum(self.counts) - self.counts

    def keys_of(self, coords: np.ndarray) -> np.ndarray:
        return np.ravel_multi_index(tuple(np.floor((coords - self.low) / self.side).astype(np.int64).T), self.shape)

    def corner(self, keys: np.ndarray) -> np.ndarray:
        """Lowest corner of each cell (C, dims)."""
        return np.stack(np.unravel_index(keys, self.shape), axis=1) * self.side + self.low

    def rows_of(self, cells: np.ndarray, owner: np.ndarray, flag: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Rows of ``order`` in the given cells, with each cell's ``owner`` and ``flag`` repeated."""
        counts = self.counts[cells]
        ends = np.cumsum(counts)
        rows = np.arange(ends[-1] if ends.size else 0) + np.repeat(self.starts[cells] - (ends - counts), counts)
        return rows, np.repeat(owner, counts), np.repeat(flag, counts)


def box_distances(centres: np.ndarray, corners: np.ndarray, side: float, norm: float) -> tuple[np.ndarray, np.ndarray]:
    """Nearest and farthest distance (p = ``norm``) from each centre to the cube of ``side`` at its corner."""
    below = corners - centres
    above = below + side
    gap = np.maximum(np.maximum(below, -above), 0.0)
    span = np.maximum(np.abs(below), np.abs(above))
    if norm == np.inf:
        return gap.max(axis=-1), span.max(axis=-1)
    return np.sqrt(np.sum(gap * gap, axis=-1)), np.sqrt(np.sum(span * span, axis=-1))


def covering_supports(local: np.ndarray, neighborhood: Neighborhood) -> np.ndarray:
    """Support points whose neighbourhoods contain every point of ``local``.

    Each point is snapped to a grid fine enough (90% of the covering separation) that the
    node is well inside its neighbourhood; the distinct nodes are returned.
    """
    spacing = np.asarray(neighborhood.radius) * COVERING_SEPARATION[neighborhood.type] * 0.9
    nodes = np.unique(np.round(local[:, : neighborhood.dims] / spacing).astype(np.int64), axis=0)
    return nodes * spacing
