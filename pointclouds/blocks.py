"""Spatial blocks: cut a large tile's covering fields a block at a time, with the whole tile's result.

The tile's xy plane is split into blocks of about ``block_points`` points each (strips of
equal point counts along x, each split by y the same way). Every support position belongs to
exactly one block (the block whose core, a half-open xy box, contains it). A block reads the
points within its core grown by a halo: the neighbourhood's xy reach plus half a coverage-pass
spacing (three reaches with ``center_on_pcloud``, whose nodes move up to one radius), all z.
With the tile's origin and the tile's support grid (`SupportGrid`) the block then finds
exactly the supports, neighbourhoods, mean heights and coverage-pass supports the whole tile
would, keeps the ones it owns, and builds those fields from the same points in the same order
(FPS starts at the neighbourhood's lowest point index either way). So the per-point sums of
all blocks equal the whole tile's up to the float32 rounding of the sums, which differs with
the order of the additions (an exact tie between two classes can then go either way). Random
subsampling agrees too: every block cuts with a copy of the tile's generator, and each draw is
keyed by its field's support position and its point's position, not by block or index.

Memory: the tile's xyz (float64) and the per-point sums (N x C float64) and field counts, plus
one block at a time (its points and the fields it owns), instead of all fields of the tile.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import numpy as np

from pointseq.arguments import require_int
from pointseq.pointclouds.neighborhoods import COVERING_SEPARATION, BlockFrame, SupportGrid
from pointseq.pointclouds.propagation import PropagationAccumulator, mean_over_fields
from pointseq.pointclouds.receptive_fields import CoveringFieldSampler, Fields, _checked_points

DEFAULT_BLOCK_POINTS = 2_000_000  # points per block core; bench_blocks.py: ~0.75 GB peak per 1M points cut whole


@dataclass(frozen=True)
class Block:
    """One block's ``indices`` (ascending) into the tile's points, or None for the whole tile, and its fields."""

    number: int
    indices: np.ndarray | None
    fields: Fields


@dataclass(frozen=True, eq=False)
class BlockPlan:
    """xy blocks of a tile in local coordinates: ``x_edges`` (bx + 1,) bound the strips,
    ``y_edges`` (bx, by + 1) the blocks of each strip (the outer edges are -inf and inf)."""

    x_edges: np.ndarray
    y_edges: np.ndarray
    halo: float

    @classmethod
    def for_tile(cls, local_xy: np.ndarray, block_points: int, halo: float) -> "BlockPlan":
        """About ``block_points`` points per block core, blocks about square."""
        count = math.ceil(local_xy.shape[0] / block_points)
        extent = np.ptp(local_xy, axis=0) + 1e-12
        strips = int(np.clip(round(math.sqrt(count * extent[0] / extent[1])), 1, count))
        per_strip = math.ceil(count / strips)
        x_edges = _quantile_edges(local_xy[:, 0], strips)
        strip_of = np.searchsorted(x_edges[1:-1], local_xy[:, 0], side="right")
        y_edges = np.stack([_quantile_edges(local_xy[strip_of == s, 1], per_strip) for s in range(strips)])
        return cls(x_edges, y_edges, halo)

    def __len__(self) -> int:
        return int(self.y_edges.shape[0] * (self.y_edges.shape[1] - 1))

    def owner(self, xy: np.ndarray) -> np.ndarray:
        """Block number of each xy position (K, 2): every position has exactly one."""
        strip = np.searchsorted(self.x_edges[1:-1], xy[:, 0], side="right")
        per_strip = self.y_edges.shape[1] - 1
        row = np.empty(xy.shape[0], dtype=np.int64)
        for s in np.unique(strip):
            at = strip == s
            row[at] = np.searchsorted(self.y_edges[s, 1:-1], xy[at, 1], side="right")
        return strip * per_strip + row

    def read_mask(self, points: np.ndarray, origin: np.ndarray, number: int) -> np.ndarray:
        """The points (N, >= 2, absolute; ``origin`` the tile's local origin) block ``number``
        reads: within its core grown by the halo in x and y (the halo's margin absorbs rounding)."""
        strip, row = divmod(number, self.y_edges.shape[1] - 1)
        x_low, x_high = self.x_edges[strip] - self.halo + origin[0], self.x_edges[strip + 1] + self.halo + origin[0]
        y_low = self.y_edges[strip, row] - self.halo + origin[1]
        y_high = self.y_edges[strip, row + 1] + self.halo + origin[1]
        x, y = points[:, 0], points[:, 1]
        return (x >= x_low) & (x <= x_high) & (y >= y_low) & (y <= y_high)


def _quantile_edges(values: np.ndarray, parts: int) -> np.ndarray:
    """``parts + 1`` edges splitting ``values`` into parts of equal counts; outer edges infinite."""
    inner = np.quantile(values, np.arange(1, parts) / parts) if values.size else np.zeros(parts - 1)
    return np.concatenate([[-np.inf], inner, [np.inf]])


def block_halo(sampler: CoveringFieldSampler) -> float:
    """How far beyond its core a block must read (CRS units, x and y) to cut its fields exactly."""
    hood = sampler.neighborhood
    reach = float(max(hood.radius[:2]))
    cover = float(max(np.asarray(hood.radius[:2]) * COVERING_SEPARATION[hood.type]))  # >= the pass's spacing
    halo = (3 * reach if sampler.center_on_pcloud else reach) + cover / 2
    return halo * (1 + 1e-6) + 1e-6  # a superset: rounding at the boundary never loses a point


def tile_blocks(sampler: CoveringFieldSampler, points: np.ndarray, block_points: int,
                rng: np.random.Generator | Callable[[int], np.random.Generator | None] | None = None) -> Iterator[Block]:
    """The tile's covering fields, block by block (`Block`); one block (indices None) when the
    tile has at most ``block_points`` points or its neighbourhood is the whole cloud.

    ``points`` (N, 3) absolute float64. ``rng``: the tile's generator (grid and random
    subsampling, random FPS supports; FPS needs none), or a callable whose value for 0 is it.
    Every block cuts with a copy of it, and random draws are keyed by support and point
    position, so for every sampler the blocks cut exactly the fields of ``sampler(points, rng)``.
    FPS supports are chosen once over the whole tile. Blocks that own no support are skipped.
    Each block also reads a halo (`block_halo`) around its core: blocks much narrower than
    their halo read mostly their neighbours' points and bound memory little.
    """
    block_points = require_int("block_points", block_points, 1)
    if not isinstance(sampler, CoveringFieldSampler):
        raise TypeError(f"sampler must be a CoveringFieldSampler, got {type(sampler).__name__}")
    points = _checked_points(points)  # before the plan: NaN would make every edge NaN
    rng = rng(0) if callable(rng) else rng
    if points.shape[0] <= block_points or sampler.neighborhood.whole_cloud:
        return iter([Block(0, None, sampler(points, rng))])
    if sampler.needs_rng() and not isinstance(rng, np.random.Generator):
        raise TypeError(f"rng must be a numpy Generator for this sampler, got {rng!r}")
    return _blocks(sampler, points, block_points, rng)


def _blocks(sampler: CoveringFieldSampler, points: np.ndarray, block_points: int,
            rng: np.random.Generator | None) -> Iterator[Block]:
    origin = points.min(axis=0)
    local_xy = points[:, :2] - origin[:2]
    hood = sampler.neighborhood  # the tile's grid (rounding is monotonic: max(p - o) == max(p) - o)
    grid = SupportGrid.over(np.zeros(hood.dims), (points.max(axis=0) - origin)[: hood.dims], hood.spacing)
    plan = BlockPlan.for_tile(local_xy, block_points, block_halo(sampler))
    del local_xy
    supports = None
    if sampler.support_strategy == "fps":  # the whole tile's FPS supports, drawn as the whole tile would
        tile_rng = copy.deepcopy(rng)
        sampler.field_seed(tile_rng)
        supports = sampler.tile_supports(points - origin, tile_rng)
    for number in range(len(plan)):
        indices = np.flatnonzero(plan.read_mask(points, origin, number))
        if indices.size == 0:
            continue
        frame = BlockFrame(origin, grid, lambda positions, number=number: plan.owner(positions[:, :2]) == number,
                           supports)
        fields = sampler(points[indices], copy.deepcopy(rng), block=frame)
        if len(fields):
            yield Block(number, indices, fields)


class TileAccumulator:
    """Per-point sums of a whole tile from the `PropagationAccumulator` of each of its blocks."""

    def __init__(self, num_points: int, num_classes: int) -> None:
        self.num_points = require_int("num_points", num_points, 1)
        self.num_classes = require_int("num_classes", num_classes, 1)
        self.sums: np.ndarray | None = None
        self.counts = np.zeros(self.num_points, dtype=np.int64)

    def add(self, block: Block, accumulator: PropagationAccumulator) -> None:
        """Add a block whose fields were all added to ``accumulator``."""
        if not accumulator.added.all():
            raise ValueError(f"{int(np.sum(~accumulator.added))} fields of block {block.number} were never added")
        sums = accumulator.sums.reshape(-1, self.num_classes)
        counts = np.bincount(block.fields.member_indices, minlength=sums.shape[0])
        if block.indices is None and self.sums is None:  # the whole tile at once: keep its sums, no copy
            self.sums = sums
            self.counts += counts
            return
        if self.sums is None:
            self.sums = np.zeros((self.num_points, self.num_classes))
        where = slice(None) if block.indices is None else block.indices  # indices are distinct: += is exact
        self.sums[where] += sums
        self.counts[where] += counts

    def result(self) -> np.ndarray:
        """Mean probabilities (N, C) float32 over the fields containing each point."""
        return mean_over_fields(self.sums, self.counts, "the blocks do not cover the tile")
