"""Covering receptive fields: every point of a cloud lies in at least one fixed-size field.

Support points sit on a regular grid over the cloud (spacing = radius x separation_factor);
each keeps the points of its neighbourhood (sphere, cylinder, 2d/3d box), reduced to
``num_points`` by furthest-point, grid or random subsampling, or repeated when it holds fewer.
Grid nodes whose neighbourhood is empty are dropped; a coverage pass adds support points for
any point the grid misses (separation factors above the covering limit), so the whole cloud is
covered and predictions can be propagated back to every point (`propagation.propagate`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from pointseq.arguments import check_spec_keys, require_bool, require_int, require_positive
from pointseq.pointclouds.neighborhoods import (
    BlockFrame,
    Neighborhood,
    covering_supports,
    grid_supports,
    membership_pairs,
    snapped_supports,
)
from pointseq.pointclouds.subsampling import (
    farthest_point_rows,
    grid_rows,
    nearest_kept_slots,
    nearest_within_groups,
    random_rows,
)

SUBSAMPLING = ("fps", "grid", "random")
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
    sampling, starting at the neighbourhood's lowest point index), ``"grid"`` (one random point
    per cell of side ``cell_size * radius``, then random cells) or ``"random"``.
    ``num_encoding_neighbors``: k for label reduction and for propagation back.
    ``training_class_distribution``: per-class numbers of centres drawn from the points of that
    class when labels are given (class-balanced training fields; these need not cover the cloud).
    ``center_on_pcloud``: move each grid node onto its nearest point within the (smallest)
    radius, drop nodes with none, keep coinciding ones once (the coverage pass still runs).
    ``neighborhood.radius: 0``: one field whose neighbourhood is the whole cloud, centred on
    the mean of the points.
    """

    def __init__(self, num_points: int, neighborhood: Mapping[str, Any] | Neighborhood, *,
                 subsampling: str = "fps", cell_size: float | Sequence[float] = 0.1,
                 num_encoding_neighbors: int = 3, to_unit_sphere: bool = False,
                 training_class_distribution: Sequence[int] | None = None, center_on_pcloud: bool = False) -> None:
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
        if training_class_distribution is not None:
            if isinstance(training_class_distribution, (str, bytes)) or not isinstance(training_class_distribution, Sequence):
                raise TypeError(f"training_class_distribution must be a list of counts per class or None, "
                                f"got {training_class_distribution!r}")
            training_class_distribution = [require_int("training_class_distribution count", c, 0)
                                           for c in training_class_distribution]
        self.training_class_distribution = training_class_distribution

    def get_config(self) -> dict:
        """The spec, JSON-ready: ``sampler_from_spec(config)`` rebuilds the sampler."""
        return {"type": "CoveringFieldSampler", "num_points": self.num_points, "neighborhood": self.neighborhood.get_config(),
                "subsampling": self.subsampling, "cell_size": list(self.cell_size),
                "num_encoding_neighbors": self.num_encoding_neighbors, "to_unit_sphere": self.to_unit_sphere,
                "training_class_distribution": self.training_class_distribution,
                "center_on_pcloud": self.center_on_pcloud}

    @classmethod
    def from_spec(cls, spec: Mapping[str, Any]) -> "CoveringFieldSampler":
        """Build from an original pre-processor spec (see `sampler_from_spec`)."""
        return sampler_from_spec(spec)

    def __call__(self, points: np.ndarray, rng: np.random.Generator | None = None,
                 labels: np.ndarray | None = None, *, block: BlockFrame | None = None) -> Fields:
        """Fields of one cloud (``points`` (N, 3), absolute float64; ``labels`` (N,) class ids or None).

        ``rng`` drives grid/random subsampling and class-balanced centres; FPS over a grid is
        deterministic and needs none. ``block``: ``points`` are one spatial block of a larger
        tile (with every point within reach of the block, see `pointclouds.blocks`); the block
        gets exactly the tile's fields whose support it owns, indexed into ``points``.
        """
        points = _checked_points(points)
        labels = None if labels is None else _checked_labels(labels, points.shape[0])
        needs_rng = self.subsampling != "fps" or (labels is not None and self.training_class_distribution)
        if needs_rng and not isinstance(rng, np.random.Generator):
            raise TypeError(f"rng must be a numpy Generator for this sampler, got {rng!r}")
        if block is not None and self.neighborhood.whole_cloud:
            raise ValueError("a neighborhood of radius 0 is one field holding the whole cloud: it cannot be "
                             "cut into spatial blocks")
        origin = points.min(axis=0) if block is None else np.asarray(block.origin, dtype=np.float64)
        local = points - origin  # float64: exact at any offset
        supports, field_of, member = self._membership(local, rng, labels, block)
        offsets = np.concatenate([[0], np.cumsum(np.bincount(field_of, minlength=supports.shape[0]))]).astype(np.int64)
        if supports.shape[1] == 2:  # z-unbounded shapes: centre at the neighbourhood's mean height
            heights = np.bincount(field_of, weights=local[member, 2], minlength=supports.shape[0]) / np.diff(offsets)
            supports = np.column_stack([supports, heights])
        fields = self._build_fields(local, origin, supports, offsets, member, rng)
        if labels is None:
            return fields
        return replace(fields, labels=reduce_labels(fields, points, labels, self.num_encoding_neighbors))

    def _membership(self, local: np.ndarray, rng: np.random.Generator | None, labels: np.ndarray | None,
                    block: BlockFrame | None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Supports (M, dims) and their (field, point) pairs sorted by field; empty ones dropped;
        with a ``block``, only the supports it owns."""
        hood = self.neighborhood
        if hood.whole_cloud:
            count = local.shape[0]
            return local.mean(axis=0)[None, : hood.dims], np.zeros(count, dtype=np.int64), np.arange(count)
        if labels is not None and self.training_class_distribution:
            chosen = class_balanced_centres(labels, self.training_class_distribution, rng)
            supports = local[chosen, : hood.dims]
            support, member = membership_pairs(local, supports, hood)
        else:
            supports = grid_supports(local, hood, hood.spacing, None if block is None else block.grid)
            if self.center_on_pcloud:
                supports = snapped_supports(local, supports, hood)
            support, member = membership_pairs(local, supports, hood)
            missed = np.bincount(member, minlength=local.shape[0]) == 0
            if missed.any():  # separation above the covering limit: add supports for the missed points
                extra = covering_supports(local[missed], hood)
                more_support, more_member = membership_pairs(local, extra, hood)
                support = np.concatenate([support, more_support + supports.shape[0]])
                member = np.concatenate([member, more_member])
                supports = np.concatenate([supports, extra])
            if np.any(np.bincount(member, minlength=local.shape[0]) == 0):
                raise AssertionError("covering fields missed a point")  # covering_supports rules this out
        if block is not None:  # the block's own supports: their neighbourhoods are complete here
            kept = np.asarray(block.owns(supports), dtype=bool)[support]
            support, member = support[kept], member[kept]
        used, field_of = np.unique(support, return_inverse=True)
        order = np.argsort(field_of, kind="stable")  # pairs were sorted by support: points stay ascending
        return supports[used], field_of[order], member[order]

    def _build_fields(self, local: np.ndarray, origin: np.ndarray, centres: np.ndarray, offsets: np.ndarray,
                      member: np.ndarray, rng: np.random.Generator | None) -> Fields:
        """Subsample each neighbourhood and link each of its points to its nearest kept points."""
        count = centres.shape[0]
        indices = np.empty((count, self.num_points), dtype=np.int64)
        slots = np.empty((member.size, self.num_encoding_neighbors), dtype=np.int32)
        for first, stop in field_blocks(offsets, BLOCK_MEMBERS):
            rows = slice(offsets[first], offsets[stop])
            block_offsets = offsets[first:stop + 1] - offsets[first]
            group = np.repeat(np.arange(stop - first), np.diff(block_offsets))
            relative = np.take(local, member[rows], axis=0) - np.take(centres, first + group, axis=0)
            kept, nearest, tracked = self._subsample(relative, block_offsets, rng)
            indices[first:stop] = member[rows][kept]
            untracked = ~tracked[group]  # rows whose k nearest kept points the subsampling did not give
            if untracked.any():
                searched = np.flatnonzero(~tracked)
                found = nearest_within_groups(relative[kept[searched].ravel()], np.repeat(searched, self.num_points),
                                              relative[untracked], group[untracked], self.num_encoding_neighbors)
                nearest[untracked] = np.where(found < 0, -1, found % self.num_points)  # row g * P + slot
            slots[rows] = np.where(nearest < 0, nearest[:, :1], nearest)  # fewer than k kept rows: the nearest again
        relative = np.take(local, indices, axis=0) - centres[:, None, :]
        scales = np.ones(count)
        if self.to_unit_sphere:
            norms = np.sqrt(np.max(np.sum(relative ** 2, axis=2), axis=1))
            scales = np.where(norms > 0, norms, 1.0)
        points = (relative / scales[:, None, None]).astype(np.float32)
        return Fields(origin + centres, indices, points, scales, None, offsets, member, slots, local.shape[0])

    def _subsample(self, relative: np.ndarray, offsets: np.ndarray,
                   rng) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Kept rows (M, P); the k nearest kept slots (nnz, k) of the rows of the groups (M,) marked
        as tracked: furthest-point sampling measures those distances anyway, few kept points are
        compared by brute force; the others are left to a KD-tree search."""
        k = self.num_encoding_neighbors
        if self.subsampling == "fps":
            return farthest_point_rows(relative, offsets, self.num_points, k)
        if self.subsampling == "random":
            kept = random_rows(offsets, self.num_points, rng)
        else:
            cell = np.asarray(self.cell_size) * np.resize(np.asarray(self.neighborhood.radius), 3)
            kept = grid_rows(relative, offsets, self.num_points, cell, rng)
        if self.num_points <= BRUTE_FORCE_SLOTS:
            nearest = nearest_kept_slots(relative, offsets, np.take(relative, kept, axis=0), k)
            return kept, nearest, np.ones(offsets.size - 1, dtype=bool)
        return kept, np.full((relative.shape[0], k), -1, dtype=np.int64), np.zeros(offsets.size - 1, dtype=bool)


def field_blocks(offsets: np.ndarray, max_members: int) -> list[tuple[int, int]]:
    """Consecutive ranges [first, stop) of fields holding about ``max_members`` members each (>= 1 field)."""
    bounds = [0]
    count = offsets.size - 1
    while bounds[-1] < count:
        first = bounds[-1]
        stop = int(np.searchsorted(offsets, offsets[first] + max_members, side="right")) - 1
        bounds.append(min(max(stop, first + 1), count))
    return list(zip(bounds[:-1], bounds[1:]))


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


FPS_KEYS = ("type", "num_points", "num_encoding_neighbors", "neighborhood", "to_unit_sphere",
            "training_class_distribution", "fast", "support_strategy", "center_on_pcloud")
GRID_KEYS = ("type", "sphere_radius", "separation_factor", "cell_size", "interpolate", "num_points",
             "num_encoding_neighbors", "to_unit_sphere", "training_class_distribution", "support_strategy",
             "center_on_pcloud")
OWN_KEYS = ("type", "num_points", "neighborhood", "subsampling", "cell_size", "num_encoding_neighbors",
            "to_unit_sphere", "training_class_distribution", "center_on_pcloud")


def sampler_from_spec(spec: Mapping[str, Any]) -> CoveringFieldSampler:
    """A `CoveringFieldSampler` from a spec dict; type names are case-insensitive, keys starting
    with ``_`` are comments, any other unknown key is refused.

    - ``FurthestPointSubsamplingPreProcessor``: ``num_points`` (8000), ``num_encoding_neighbors``
      (3), ``neighborhood`` (required), ``to_unit_sphere``, ``training_class_distribution``,
      ``fast`` (false: exact FPS; 2: random subset), ``support_strategy`` ("grid" only),
      ``center_on_pcloud`` (false); ``neighborhood.radius: 0`` is one field holding the whole cloud.
    - ``GridSubsamplingPreProcessor``: a sphere of ``sphere_radius`` (1.0), ``separation_factor``
      (sqrt(3)/4), ``cell_size`` (0.1, a fraction of the radius), ``num_points`` (default one per
      cell of the sphere's bounding cube), ``num_encoding_neighbors`` (1). Fields keep one real
      point per occupied cell, so ``interpolate`` (of empty cells) is accepted and has no effect.
    - ``CoveringFieldSampler``: the constructor's arguments, as `get_config` writes them.
    """
    if not isinstance(spec, Mapping):
        raise TypeError(f"receptive field spec must be a dict, got {spec!r} ({type(spec).__name__})")
    spec = {key: value for key, value in spec.items() if not str(key).startswith("_")}
    kind = str(spec.get("type", "")).lower()
    if spec.get("support_strategy", "grid") != "grid":
        raise ValueError(f"support_strategy must be 'grid' (the covering grid), got {spec['support_strategy']!r}")
    common = {key: spec[key] for key in ("num_encoding_neighbors", "to_unit_sphere", "training_class_distribution",
                                         "center_on_pcloud") if key in spec}
    if kind == "furthestpointsubsamplingpreprocessor":
        check_spec_keys(spec, "FurthestPointSubsamplingPreProcessor", FPS_KEYS, ("neighborhood",))
        fast = spec.get("fast", False)
        if fast not in (False, 2) or fast is True:
            raise ValueError(f"fast must be false (exact FPS) or 2 (random subset), got {fast!r}")
        return CoveringFieldSampler(spec.get("num_points", 8000), spec["neighborhood"],
                                    subsampling="random" if fast == 2 else "fps", **common)
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
