"""Neighbourhood shapes, grid support points and which points lie in which neighbourhood.

Everything here works on float64 coordinates relative to the cloud's bounding-box minimum, so
tiles at offsets of 1e6-1e7 lose no precision. Membership is computed in batches with KD-tree
dual-tree queries (`cKDTree.sparse_distance_matrix`), never one neighbourhood at a time.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy.spatial import cKDTree

from pointseq.arguments import check_spec_keys, require_positive

NEIGHBORHOOD_TYPES = ("sphere", "cylinder", "rectangular2d", "rectangular3d")
# Largest separation factor whose grid still covers every point (each point lies within half a
# spacing per axis of its nearest node): 2/sqrt(dims) for round shapes, 2 for boxes.
COVERING_SEPARATION = {"sphere": 2 / math.sqrt(3), "cylinder": math.sqrt(2), "rectangular2d": 2.0,
                       "rectangular3d": 2.0}
POINT_CHUNK = 1 << 18  # points per membership query: bounds the memory of the pair lists


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
    support_tree = cKDTree(neighborhood.scaled(supports))
    scaled = neighborhood.scaled(local)
    support_parts, point_parts = [], []
    for first in range(0, scaled.shape[0], POINT_CHUNK):
        pairs = support_tree.sparse_distance_matrix(cKDTree(scaled[first:first + POINT_CHUNK]), 1.0,
                                                    p=neighborhood.norm, output_type="ndarray")
        support_parts.append(pairs["i"])
        point_parts.append(pairs["j"] + first)
    support = np.concatenate(support_parts)
    point = np.concatenate(point_parts)
    order = np.lexsort((point, support))
    return support[order], point[order]


def covering_supports(local: np.ndarray, neighborhood: Neighborhood) -> np.ndarray:
    """Support points whose neighbourhoods contain every point of ``local``.

    Each point is snapped to a grid fine enough (90% of the covering separation) that the
    node is well inside its neighbourhood; the distinct nodes are returned.
    """
    spacing = np.asarray(neighborhood.radius) * COVERING_SEPARATION[neighborhood.type] * 0.9
    nodes = np.unique(np.round(local[:, : neighborhood.dims] / spacing).astype(np.int64), axis=0)
    return nodes * spacing
