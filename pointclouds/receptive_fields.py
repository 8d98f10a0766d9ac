"""Covering receptive fields: every point of a cloud lies in at least one fixed-size field.

Support points sit on a regular grid over the cloud (spacing = radius x separation_factor);
each keeps the points of its neighbourhood (sphere, cylinder, 2d/3d box), reduced to
``num_points`` by furthest-point, grid or random subsampling, or repeated when it holds fewer.
Grid nodes whose neighbourhood is empty are dropped; a coverage pass adds support points for
any point the grid misses (separation factors above the covering limit), so the whole cloud is
covered and predictions can be propagated back to every point (`propagation.propagate`).
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from pointseq.arguments import check_spec_keys, require_bool, require_int, require_positive
from pointseq.pointclouds import field_kernels
from pointseq.pointclouds.field_kernels import field_kernel
from pointseq.pointclouds.neighborhoods import (
    BlockFrame,
    Neighborhood,
    covering_supports,
    fps_supports,
    grid_supports,
    membership_lists,
    snapped_supports,
)
from pointseq.pointclouds.subsampling import (
    compiled,
    farthest_point_rows,
    grid_rows,
    group_rows,
    keyed_draws,
    nearest_kept_slots,
    nearest_within_groups,
    position_keys,
    random_rows,
    strided_rows,
)

SUBSAMPLING = ("fps", "uniform_fps", "grid", "random")
SUPPORT_STRATEGIES = ("grid", "fps")
BLOCK_MEMBERS = 1 << 22  # neighbourhood members processed together: bounds the working memory
BRUTE_FORCE_SLOTS = 256  # up to this many kept points, members find their nearest ones by brute force


@dataclass(frozen=True)
class Fields:
    """The receptive fields of one cloud and their link back to its points.

    ``centres`` (M, 3) float64 absolute support points; ``indices`` (M, P) int64 source-point
    indices of the kept points (repeated when a neighbourhood holds fewer than P);
    ``points`` (M, P, 3) float32 kept coordinates relative to the centre (divided by
    ``scales`` when ``to_unit_sphere``); ``labels`` (M, P) int64 reduced labels or None.
    The neighbourhoods, for propagation, in CSR form: field f holds the source points
    ``member_indices[member_offsets[f]:member_offsets[f+1]]`` (ascending), and
    ``member_slots`` (nnz, k) gives for each of them its k nearest kept points (0..P-1).
    """

    centres: np.ndarray
    indices: np.ndarray
    points: np.ndarray
    scales: np.ndarray
    labels: np.ndarray | None
    member_offsets: np.ndarray
    member_indices: np.ndarray
    member_slots: np.ndarray
    num_source_points: int

    def __len__(self) -> int:
        return int(self.centres.shape[0])

    @property
    def num_points(self) -> int:
        return int(self.indices.shape[1])

    def member_fields(self, first: int = 0, stop: int | None = None) -> np.ndarray:
        """Field id of each member row of fields [first, stop)."""
        stop = len(self) if stop is None else stop
        return np.repeat(np.arange(first, stop), np.diff(self.member_offsets[first:stop + 1]))


class CoveringFieldSampler:
    """Cuts a cloud into receptive fields that together cover every point.

    ``num_points``: points per field. ``neighborhood``: ``{"type": "sphere" | "cylinder" |
    "rectangular2d" | "rectangular3d", "radius", "separation_factor"}`` (radius is a half side
    for the boxes, scalar or per axis). ``subsampling``: ``"fps"`` (exact furthest-point
    sampling, starting at the neighbourhood's lowest point index), ``"uniform_fps"`` (the
    original's ``fast: true``: every ``n // num_points``-th point of the neighbourhood, in index
    order, then exact FPS), ``"grid"`` (one random point per cell of side ``cell_size * radius``,
    then random cells) or ``"random"``. Random draws are keyed by the field's support position
    and each point's position, so a spatial block of a tile draws what the whole tile draws.
    ``num_encoding_neighbors``: k for label reduction and for propagation back.
    ``training_class_distribution``: per-class numbers of centres drawn from the points of that
    class when labels are given (class-balanced training fields; these need not cover the cloud).
    ``center_on_pcloud``: move each grid node onto its nearest point within the (smallest)
    radius, drop nodes with none, keep coinciding ones once (the coverage pass still runs).
    ``support_strategy``: ``"grid"`` (nodes of a regular grid) or ``"fps"`` (``support_strategy_num_points``
    points of the cloud by FPS over the bounded axes; ``support_strategy_fast``: true, every
    ``N // count``-th point first; 2, a random subset instead); a coverage pass then adds
    supports for any point no neighbourhood reaches.
    ``neighborhood.radius: 0``: one field whose neighbourhood is the whole cloud, centred on
    the mean of the points. Execution only (same fields, not in `get_config`): ``nthreads``
    (threads of the compiled kernels, -1: every core) and ``support_chunk_size`` (supports per
    membership pass, 0: automatic; bounds the working memory).
    """

    def __init__(self, num_points: int, neighborhood: Mapping[str, Any] | Neighborhood, *,
                 subsampling: str = "fps", cell_size: float | Sequence[float] = 0.1,
                 num_encoding_neighbors: int = 3, to_unit_sphere: bool = False,
                 training_class_distribution: Sequence[int] | None = None, center_on_pcloud: bool = False,
                 support_strategy: str = "grid", support_strategy_num_points: int = 1000,
                 support_strategy_fast: bool | int = False, support_chunk_size: int = 0, nthreads: int = 1) -> None:
        self.num_points = require_int("num_points", num_points, 1)
        self.neighborhood = neighborhood if isinstance(neighborhood, Neighborhood) else Neighborhood.from_spec(neighborhood)
        if subsampling not in SUBSAMPLING:
            raise ValueError(f"subsampling must be one of {list(SUBSAMPLING)}, got {subsampling!r}")
        self.subsampling = subsampling
        cells = np.broadcast_to(np.asarray(cell_size, dtype=np.float64), (3,))
        self.cell_size = tuple(require_positive("cell_size", float(c)) for c in cells)
        self.num_encoding_neighbors = require_int("num_encoding_neighbors", num_encoding_neighbors, 1)
        self.to_unit_sphere = require_bool("to_unit_sphere", to_unit_sphere)
        self.center_on_pcloud = require_bool("center_on_pcloud", center_on_pcloud)
        self.training_class_distribution = _checked_distribution(training_class_distribution)
        if support_strategy not in SUPPORT_STRATEGIES:
            raise ValueError(f"support_strategy must be one of {list(SUPPORT_STRATEGIES)}, got {support_strategy!r}")
        self.support_strategy = support_strategy
        self.support_strategy_num_points = require_int("support_strategy_num_points", support_strategy_num_points, 1)
        if support_strategy_fast not in (False, True, 2) or isinstance(support_strategy_fast, float):
            raise ValueError(f"support_strategy_fast must be false, true or 2, got {support_strategy_fast!r}")
        self.support_strategy_fast = support_strategy_fast if support_strategy_fast == 2 else bool(support_strategy_fast)
        self.support_chunk_size = require_int("support_chunk_size", support_chunk_size, 0)
        self.nthreads = _checked_threads(nthreads)

    def get_config(self) -> dict:
        """The spec, JSON-ready: ``sampler_from_spec(config)`` rebuilds the sampler (the FPS
        support keys appear only when ``support_strategy`` is "fps"; execution settings never)."""
        config = {"type": "CoveringFieldSampler", "num_points": self.num_points, "neighborhood": self.neighborhood.get_config(),
                  "subsampling": self.subsampling, "cell_size": list(self.cell_size),
                  "num_encoding_neighbors": self.num_encoding_neighbors, "to_unit_sphere": self.to_unit_sphere,
                  "training_class_distribution": self.training_class_distribution,
                  "center_on_pcloud": self.center_on_pcloud}
        if self.support_strategy != "grid":
            config.update(support_strategy=self.support_strategy, support_strategy_num_points=self.support_strategy_num_points,
                          support_strategy_fast=self.support_strategy_fast)
        return config

    @classmethod
    def from_spec(cls, spec: Mapping[str, Any]) -> "CoveringFieldSampler":
        """Build from an original pre-processor spec (see `sampler_from_spec`)."""
        return sampler_from_spec(spec)

    def needs_rng(self, labels: bool = False) -> bool:
        """Whether cutting fields draws random numbers (then `__call__` needs a Generator)."""
        return (self.subsampling in ("grid", "random") or (labels and bool(self.training_class_distribution))
                or (self.support_strategy == "fps" and self.support_strategy_fast == 2))

    def __call__(self, points: np.ndarray, rng: np.random.Generator | None = None,
                 labels: np.ndarray | None = None, *, block: BlockFrame | None = None) -> Fields:
        """Fields of one cloud (``points`` (N, 3), absolute float64; ``labels`` (N,) class ids or None).

        ``rng`` drives grid/random subsampling, random FPS supports and class-balanced centres;
        FPS over a grid is deterministic and needs none. ``block``: ``points`` are one spatial
        block of a larger tile (with every point within reach of the block, see
        `pointclouds.blocks`); the block gets exactly the tile's fields whose support it owns,
        indexed into ``points`` (the same generator state gives the same random draws).
        """
        points = _checked_points(points)
        labels = None if labels is None else _checked_labels(labels, points.shape[0])
        if self.needs_rng(labels is not None) and not isinstance(rng, np.random.Generator):
            raise TypeError(f"rng must be a numpy Generator for this sampler, got {rng!r}")
        if block is not None and self.neighborhood.whole_cloud:
            raise ValueError("a neighborhood of radius 0 is one field holding the whole cloud: it cannot be "
                             "cut into spatial blocks")
        seed = self.field_seed(rng)  # first, so that blocks (`tile_blocks`) draw what the whole tile draws
        origin = points.min(axis=0) if block is None else np.asarray(block.origin, dtype=np.float64)
        local = points - origin  # float64: exact at any offset
        supports, offsets, member = self._membership(local, rng, labels, block)
        keys = position_keys(supports, seed) if self.subsampling in ("grid", "random") else None
        if supports.shape[1] == 2:  # z-unbounded shapes: centre at the neighbourhood's mean height
            heights = np.add.reduceat(local[member, 2], offsets[:-1]) / np.diff(offsets)
            supports = np.column_stack([supports, heights])
        fields = self._build_fields(local, origin, supports, offsets, member, (seed, keys))
        if labels is None:
            return fields
        return replace(fields, labels=reduce_labels(fields, points, labels, self.num_encoding_neighbors))

    def field_seed(self, rng: np.random.Generator | None) -> int:
        """The seed of the keyed random draws of one call (grid and random subsampling; else 0),
        the first number a call draws from ``rng``."""
        return int(rng.integers(1 << 63)) if self.subsampling in ("grid", "random") else 0

    def _membership(self, local: np.ndarray, rng: np.random.Generator | None, labels: np.ndarray | None,
                    block: BlockFrame | None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Supports (M, dims) and their neighbourhoods (CSR offsets (M + 1,), members ascending);
        empty ones dropped; with a ``block``, only the supports it owns."""
        hood = self.neighborhood
        if hood.whole_cloud:
            count = local.shape[0]
            return local.mean(axis=0)[None, : hood.dims], np.array([0, count]), np.arange(count)
        if labels is not None and self.training_class_distribution:
            supports = local[class_balanced_centres(labels, self.training_class_distribution, rng), : hood.dims]
            offsets, member = self._members(local, supports)
        else:
            supports = self._supports(local, rng, block)
            offsets, member = self._members(local, supports)
            missed = np.bincount(member, minlength=local.shape[0]) == 0
            if missed.any():  # separation above the covering limit: add supports for the missed points
                extra = covering_supports(local[missed], hood)
                more_offsets, more_member = self._members(local, extra)
                offsets = np.concatenate([offsets, more_offsets[1:] + offsets[-1]])
                member, supports = np.concatenate([member, more_member]), np.concatenate([supports, extra])
            if np.any(np.bincount(member, minlength=local.shape[0]) == 0):
                raise AssertionError("covering fields missed a point")  # covering_supports rules this out
        keep = np.diff(offsets) > 0
        if block is not None:  # the block's own supports: their neighbourhoods are complete here
            keep &= np.asarray(block.owns(supports), dtype=bool)
        counts = np.diff(offsets)
        member = member[np.repeat(keep, counts)]
        return supports[keep], np.concatenate([[0], np.cumsum(counts[keep])]).astype(np.int64), member

    def _members(self, local: np.ndarray, supports: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        return membership_lists(local, supports, self.neighborhood, chunk=self.support_chunk_size,
                                nthreads=self.nthreads)

    def _supports(self, local: np.ndarray, rng: np.random.Generator | None, block: BlockFrame | None) -> np.ndarray:
        """Support positions (K, dims): grid nodes (snapped onto the cloud with ``center_on_pcloud``)
        or the FPS supports (a block takes the tile's, see `tile_supports`)."""
        hood = self.neighborhood
        if self.support_strategy == "fps":
            if block is not None:
                if block.supports is None:
                    raise ValueError("a block of a tile with FPS supports needs the tile's supports (BlockFrame.supports)")
                return _within_reach(block.supports, local, hood)
            return self.tile_supports(local, rng)
        if block is not None and block.supports is not None:
            raise ValueError("BlockFrame.supports are FPS supports, but this sampler's support_strategy is 'grid'")
        supports = grid_supports(local, hood, hood.spacing, None if block is None else block.grid)
        return snapped_supports(local, supports, hood) if self.center_on_pcloud else supports

    def tile_supports(self, local: np.ndarray, rng: np.random.Generator | None = None) -> np.ndarray | None:
        """The FPS support positions (K, dims) of a whole cloud (``local``: relative to its minimum),
        or None for grid supports (which each block finds alone)."""
        if self.support_strategy != "fps":
            return None
        return fps_supports(local, self.neighborhood, self.support_strategy_num_points, self.support_strategy_fast,
                            rng, nthreads=self.nthreads)

    def _build_fields(self, local: np.ndarray, origin: np.ndarray, centres: np.ndarray, offsets: np.ndarray,
                      member: np.ndarray, keys: tuple[int, np.ndarray | None]) -> Fields:
        """Subsample each neighbourhood and link each of its points to its nearest kept points."""
        k = self.num_encoding_neighbors
        if compiled(k) and self.subsampling != "grid":
            kept, nearest = self._compiled_fields(local, centres, offsets, member, keys)
        else:
            kept, nearest = self._numpy_fields(local, centres, offsets, member, keys)
        indices = np.take(member, offsets[:-1, None] + kept)
        slots = np.where(nearest < 0, nearest[:, :1], nearest).astype(np.int32)  # fewer than k kept: the nearest again
        relative = np.take(local, indices, axis=0) - centres[:, None, :]
        scales = np.ones(centres.shape[0])
        if self.to_unit_sphere:
            norms = np.sqrt(np.max(np.sum(relative ** 2, axis=2), axis=1))
            scales = np.where(norms > 0, norms, 1.0)
        points = (relative / scales[:, None, None]).astype(np.float32)
        return Fields(origin + centres, indices, points, scales, None, offsets, member, slots, local.shape[0])

    def _compiled_fields(self, local: np.ndarray, centres: np.ndarray, offsets: np.ndarray, member: np.ndarray,
                         keys: tuple[int, np.ndarray | None]) -> tuple[np.ndarray, np.ndarray]:
        """Kept positions (M, P) within each neighbourhood and every member's k nearest slots, compiled."""
        num, k, threads = self.num_points, self.num_encoding_neighbors, self.nthreads
        kept = None
        if self.subsampling == "random":
            kept = field_kernels.smallest_draws(self._draws(local, offsets, member, keys), offsets, num, threads)
        elif self.subsampling == "uniform_fps":
            rows, sub_offsets = strided_rows(offsets, num)
            kept = field_kernel(local, member[rows], centres, sub_offsets, num, 0, nthreads=threads)[0]
            kept = np.take(rows, sub_offsets[:-1, None] + kept) - offsets[:-1, None]
        return field_kernel(local, member, centres, offsets, num, k, kept, nthreads=threads)

    def _draws(self, local: np.ndarray, offsets: np.ndarray, member: np.ndarray, keys: tuple[int, np.ndarray | None],
               columns: int = 1) -> np.ndarray:
        """Random draws (nnz,) (or (nnz, columns)) of the member rows, keyed by support and point position."""
        seed, field_keys = keys
        point_keys = position_keys(local, seed ^ 0x5851F42D4C957F2D)[member]
        row_fields = np.repeat(np.arange(offsets.size - 1), np.diff(offsets))
        draws = np.column_stack([keyed_draws(field_keys, row_fields, point_keys, salt) for salt in range(columns)])
        return draws[:, 0] if columns == 1 else draws

    def _numpy_fields(self, local: np.ndarray, centres: np.ndarray, offsets: np.ndarray, member: np.ndarray,
                      keys: tuple[int, np.ndarray | None]) -> tuple[np.ndarray, np.ndarray]:
        """`_compiled_fields` in padded numpy blocks of fields (and for grid subsampling)."""
        kept = np.empty((centres.shape[0], self.num_points), dtype=np.int64)
        nearest = np.empty((member.size, self.num_encoding_neighbors), dtype=np.int64)
        draws = None if self.subsampling in ("fps", "uniform_fps") else self._draws(
            local, offsets, member, keys, 2 if self.subsampling == "grid" else 1)
        for first, stop in field_blocks(offsets, BLOCK_MEMBERS):
            rows = slice(offsets[first], offsets[stop])
            block_offsets = offsets[first:stop + 1] - offsets[first]
            group = np.repeat(np.arange(stop - first), np.diff(block_offsets))
            relative = np.take(local, member[rows], axis=0) - np.take(centres, first + group, axis=0)
            block_nearest = np.full((relative.shape[0], self.num_encoding_neighbors), -1, dtype=np.int64)
            tracked = np.zeros(stop - first, dtype=bool)  # groups whose rows FPS already linked to their nearest
            if self.subsampling == "fps":
                block_kept, block_nearest, tracked = farthest_point_rows(relative, block_offsets, self.num_points,
                                                                         self.num_encoding_neighbors)
            else:
                block_kept = self._subsample(relative, block_offsets, None if draws is None else draws[rows])
            searched = np.flatnonzero(~tracked)
            if searched.size:
                sub_rows, sub_offsets = group_rows(block_offsets, searched)
                sub_kept = block_kept[searched] - block_offsets[searched, None] + sub_offsets[:-1, None]
                block_nearest[sub_rows] = self._nearest(relative[sub_rows], sub_offsets, sub_kept)
            nearest[rows] = block_nearest
            kept[first:stop] = block_kept - block_offsets[:-1, None]
        return kept, nearest

    def _subsample(self, relative: np.ndarray, offsets: np.ndarray, draws: np.ndarray | None) -> np.ndarray:
        """Kept rows (M, P) of one block of neighbourhoods."""
        num = self.num_points
        if self.subsampling == "uniform_fps":
            rows, sub_offsets = strided_rows(offsets, num)
            return rows[farthest_point_rows(relative[rows], sub_offsets, num)[0]]
        if self.subsampling == "random":
            return random_rows(offsets, num, draws)
        cell = np.asarray(self.cell_size) * np.resize(np.asarray(self.neighborhood.radius), 3)
        return grid_rows(relative, offsets, num, cell, draws)

    def _nearest(self, relative: np.ndarray, offsets: np.ndarray, kept: np.ndarray) -> np.ndarray:
        """Every row's k nearest kept slots (nnz, k), nearest first, ties to the lower slot: brute
        force for a few hundred kept points, else a KD-tree over all groups (ties in its order)."""
        k = self.num_encoding_neighbors
        if self.num_points <= BRUTE_FORCE_SLOTS:
            return nearest_kept_slots(relative, offsets, np.take(relative, kept, axis=0), k, nthreads=self.nthreads)
        group = np.repeat(np.arange(offsets.size - 1), np.diff(offsets))
        found = nearest_within_groups(relative[kept.ravel()], np.repeat(np.arange(kept.shape[0]), self.num_points),
                                      relative, group, k)
        return np.where(found < 0, -1, found % self.num_points)  # row g * P + slot


def field_blocks(offsets: np.ndarray, max_members: int) -> list[tuple[int, int]]:
    """Consecutive ranges [first, stop) of fields holding about ``max_members`` members each (>= 1 field)."""
    bounds = [0]
    count = offsets.size - 1
    while bounds[-1] < count:
        first = bounds[-1]
        stop = int(np.searchsorted(offsets, offsets[first] + max_members, side="right")) - 1
        bounds.append(min(max(stop, first + 1), count))
    return list(zip(bounds[:-1], bounds[1:]))


def _within_reach(supports: np.ndarray, local: np.ndarray, hood: Neighborhood) -> np.ndarray:
    """The ``supports`` within a radius of the bounding box of ``local``: the others reach none of its points."""
    coords = local[:, : hood.dims]
    radius = np.asarray(hood.radius)
    near = np.all((supports >= coords.min(axis=0) - radius) & (supports <= coords.max(axis=0) + radius), axis=1)
    return supports[near]


def class_balanced_centres(labels: np.ndarray, distribution: Sequence[int], rng: np.random.Generator) -> np.ndarray:
    """Point indices: ``distribution[c]`` random points of each class c (all of them if fewer), shuffled."""
    chosen = [rng.permutation(np.flatnonzero(labels == c))[:wanted] for c, wanted in enumerate(distribution)]
    chosen = np.concatenate(chosen).astype(np.int64)
    if chosen.size == 0:
        raise ValueError(f"training_class_distribution {list(distribution)} selects no point of the cloud's classes")
    return rng.permutation(chosen)


def reduce_labels(fields: Fields, points: np.ndarray, labels: np.ndarray, num_encoding_neighbors: int) -> np.ndarray:
    """Labels (M, P) of the kept points: the majority label of each kept point's k nearest
    points of its field's neighbourhood (k = ``num_encoding_neighbors``; ties to the smallest label).

    With k = 1 each kept point keeps its own label. ``points`` are the cloud's (N, 3) coordinates.
    """
    k = require_int("num_encoding_neighbors", num_encoding_neighbors, 1)
    labels = _checked_labels(labels, fields.num_source_points)
    if k == 1:
        return labels[fields.indices]
    offsets, member = fields.member_offsets, fields.member_indices
    result = np.empty(fields.indices.shape, dtype=np.int64)
    for first, stop in field_blocks(offsets, BLOCK_MEMBERS):
        rows = slice(offsets[first], offsets[stop])
        group = fields.member_fields(first, stop) - first
        relative = np.take(points, member[rows], axis=0) - np.take(fields.centres, first + group, axis=0)
        query = np.take(points, fields.indices[first:stop], axis=0) - fields.centres[first:stop, None, :]
        query_group = np.repeat(np.arange(stop - first), fields.num_points)
        nearest = nearest_within_groups(relative, group, query.reshape(-1, 3), query_group, k)
        votes = np.where(nearest >= 0, labels[member[rows]][nearest], -1)
        result[first:stop] = majority(votes).reshape(stop - first, -1)
    return result


def majority(votes: np.ndarray) -> np.ndarray:
    """Most frequent value of each row of ``votes`` (Q, k); ties go to the smallest value; -1 is no vote."""
    ordered = np.sort(votes, axis=1)
    counts = (ordered[:, :, None] == ordered[:, None, :]).sum(axis=2)
    counts[ordered < 0] = 0
    return ordered[np.arange(ordered.shape[0]), counts.argmax(axis=1)]


def _checked_distribution(distribution: Any) -> list[int] | None:
    if distribution is None:
        return None
    if isinstance(distribution, (str, bytes)) or not isinstance(distribution, Sequence):
        raise TypeError(f"training_class_distribution must be a list of counts per class or None, got {distribution!r}")
    return [require_int("training_class_distribution count", c, 0) for c in distribution]


def _checked_threads(nthreads: Any) -> int:
    """``nthreads`` as a thread count: an int >= 1, or -1 for every core."""
    if isinstance(nthreads, (int, np.integer)) and not isinstance(nthreads, bool) and nthreads == -1:
        return os.cpu_count() or 1
    return require_int("nthreads", nthreads, 1)


def _checked_points(points: Any) -> np.ndarray:
    if not isinstance(points, np.ndarray):
        raise TypeError(f"points must be a numpy array (N, 3), got {type(points).__name__}")
    if points.ndim != 2 or points.shape[1] != 3 or points.shape[0] == 0:
        raise ValueError(f"points must have shape (N, 3) with N >= 1, got {points.shape}")
    points = points.astype(np.float64, copy=False)
    if not np.all(np.isfinite(points)):
        raise ValueError("points must be finite (no NaN or inf coordinates)")
    return points


def _checked_labels(labels: Any, count: int) -> np.ndarray:
    if not isinstance(labels, np.ndarray) or not np.issubdtype(labels.dtype, np.integer):
        raise TypeError(f"labels must be an integer numpy array, got {getattr(labels, 'dtype', type(labels).__name__)}")
    if labels.shape != (count,):
        raise ValueError(f"labels must have shape ({count},) like the points, got {labels.shape}")
    return labels.astype(np.int64, copy=False)


SUPPORT_KEYS = ("support_strategy", "support_strategy_num_points", "support_strategy_fast", "support_chunk_size",
                "nthreads")
# The original's report and export paths: pointseq writes no receptive-field reports; accepted, ignored, named once.
REPORT_KEYS = ("receptive_fields_distribution_report_path", "receptive_fields_distribution_plot_path",
               "receptive_fields_dir", "training_receptive_fields_distribution_report_path",
               "training_receptive_fields_distribution_plot_path", "training_receptive_fields_dir",
               "training_support_points_report_path", "support_points_report_path")
COMMON_KEYS = ("num_encoding_neighbors", "to_unit_sphere", "training_class_distribution", "center_on_pcloud") + SUPPORT_KEYS
FPS_KEYS = ("type", "pre_processor", "num_points", "neighborhood", "fast") + COMMON_KEYS + REPORT_KEYS
GRID_KEYS = ("type", "pre_processor", "sphere_radius", "separation_factor", "cell_size", "interpolate",
             "num_points") + COMMON_KEYS + REPORT_KEYS
OWN_KEYS = ("type", "num_points", "neighborhood", "subsampling", "cell_size") + COMMON_KEYS
PRE_PROCESSORS = {"furthest_point_subsampling": "furthestpointsubsamplingpreprocessor",
                  "grid_subsampling": "gridsubsamplingpreprocessor"}  # the original's pipeline names


def sampler_from_spec(spec: Mapping[str, Any]) -> CoveringFieldSampler:
    """A `CoveringFieldSampler` from a spec dict; type names are case-insensitive, keys starting
    with ``_`` are comments, any other unknown key is refused. The original's form
    ``{"pre_processor": "furthest_point_subsampling" | "grid_subsampling", ...}`` is read too.

    - ``FurthestPointSubsamplingPreProcessor``: ``num_points`` (8000), ``num_encoding_neighbors``
      (3), ``neighborhood`` (required), ``to_unit_sphere``, ``training_class_distribution``,
      ``fast`` (false: exact FPS; true: uniform downsampling to every ``n // num_points``-th
      point first; 2: random subset), ``center_on_pcloud`` (false); ``neighborhood.radius: 0``
      is one field holding the whole cloud.
    - ``GridSubsamplingPreProcessor``: a sphere of ``sphere_radius`` (1.0), ``separation_factor``
      (sqrt(3)/4), ``cell_size`` (0.1, a fraction of the radius), ``num_points`` (default one per
      cell of the sphere's bounding cube), ``num_encoding_neighbors`` (1). Fields keep one real
      point per occupied cell, so ``interpolate`` (of empty cells) is accepted and has no effect.
    - both: ``support_strategy`` ("grid" or "fps"), ``support_strategy_num_points`` (1000),
      ``support_strategy_fast``, ``support_chunk_size`` (supports per membership pass),
      ``nthreads`` (threads; -1 every core); the report and export paths (`REPORT_KEYS`) are
      accepted and ignored, with one warning naming them.
    - ``CoveringFieldSampler``: the constructor's arguments, as `get_config` writes them.
    """
    if not isinstance(spec, Mapping):
        raise TypeError(f"receptive field spec must be a dict, got {spec!r} ({type(spec).__name__})")
    spec = {key: value for key, value in spec.items() if not str(key).startswith("_")}
    kind = str(spec.get("type", "")).lower()
    if "type" not in spec and "pre_processor" in spec:
        kind = PRE_PROCESSORS.get(str(spec["pre_processor"]).lower(), str(spec["pre_processor"]))
    ignored = [key for key in REPORT_KEYS if key in spec]
    if ignored and kind != "coveringfieldsampler":
        warnings.warn(f"receptive field spec: {', '.join(ignored)} ignored (pointseq writes no receptive-field "
                      f"reports or exports)", UserWarning, stacklevel=2)
    common = {key: spec[key] for key in COMMON_KEYS if key in spec}
    if kind == "furthestpointsubsamplingpreprocessor":
        check_spec_keys(spec, "FurthestPointSubsamplingPreProcessor", FPS_KEYS, ("neighborhood",))
        fast = spec.get("fast", False)
        if fast not in (False, True, 2) or isinstance(fast, float):
            raise ValueError(f"fast must be false (exact FPS), true (uniform downsampling, then FPS) or 2 "
                             f"(random subset), got {fast!r}")
        subsampling = "random" if fast == 2 else "uniform_fps" if fast else "fps"
        return CoveringFieldSampler(spec.get("num_points", 8000), spec["neighborhood"], subsampling=subsampling, **common)
    if kind == "gridsubsamplingpreprocessor":
        check_spec_keys(spec, "GridSubsamplingPreProcessor", GRID_KEYS)
        cell = np.broadcast_to(np.asarray(spec.get("cell_size", 0.1), dtype=np.float64), (3,))
        num_points = spec.get("num_points", int(np.prod(np.ceil(2.0 / cell))))
        hood = {"type": "sphere", "radius": spec.get("sphere_radius", 1.0),
                "separation_factor": spec.get("separation_factor", 3 ** 0.5 / 4)}
        common.setdefault("num_encoding_neighbors", 1)
        return CoveringFieldSampler(num_points, hood, subsampling="grid", cell_size=list(cell), **common)
    if kind == "coveringfieldsampler":
        check_spec_keys(spec, "CoveringFieldSampler", OWN_KEYS, ("num_points", "neighborhood"))
        return CoveringFieldSampler(**{key: value for key, value in spec.items() if key != "type"})
    raise ValueError(f"receptive field type must be 'FurthestPointSubsamplingPreProcessor', "
                     f"'GridSubsamplingPreProcessor' or 'CoveringFieldSampler', got {spec.get('type')!r}")
