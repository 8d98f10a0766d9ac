"""Hierarchical FPS receptive fields: every covering field as a pyramid of point sets with neighbour maps.

Depth 1 is a field's P kept points (the covering sampler's furthest-point subset, `Fields`);
each next depth is a furthest-point subset of the previous one. Per field and depth the
encoder emits (field first axis, shapes fixed per depth, so batches need no padding):

- ``X_t`` (R_t, 3) float32: coordinates relative to the field centre (float64 until the cast),
  divided by the field scale like the dense encoder;
- ``F`` (R_1, 1 + F): the height above the field's low point (1st percentile), then the features;
- ``N_t`` (R_t, k): each depth-t point's k nearest depth-t points (itself first);
- ``ND_t`` (R_t, k), t >= 2: each depth-t point's nearest depth t-1 points (downsampling);
- ``NU_t`` (R_{t-1}, k), t >= 2: each depth t-1 point's nearest depth-t points (upsampling);
- ``labels`` (R_1,) the kept points' labels, when the fields have them.

Every index is local to its field (0..R-1), so an element never depends on its batch
neighbours. All fields are handled together: furthest-point sampling over the whole
(M, R_t, 3) block (`subsampling.farthest_point_positions`, which takes padded blocks) and
k-nearest searches in one compiled pass over the fields (`field_kernels.nearest_in_groups`, numba) or,
without numba, by brute force over blocks of fields (R x Q up to 128 x 128) or one KD-tree over all
fields (`subsampling.nearest_within_groups`, larger R); never one Python iteration per field.

The spec takes the original ``HierarchicalFPSPreProcessor`` keys (``num_points_per_depth``,
``fast_flag_per_depth``, ``num_downsampling_neighbors``, ``num_pwise_neighbors``,
``num_upsampling_neighbors``, ``neighborhood``); the first entry of each list belongs to depth 1,
which the covering sampler makes (`hierarchical_sampler_from_spec`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from pointseq.arguments import check_spec_keys, require_int
from pointseq.pointclouds.field_encoders import FieldEncoder, register_encoder
from pointseq.pointclouds.field_inputs import HEIGHT_PERCENTILE, field_scale
from pointseq.pointclouds.neighborhoods import Neighborhood
from pointseq.pointclouds.receptive_fields import CoveringFieldSampler, Fields
from pointseq.pointclouds import field_kernels
from pointseq.pointclouds.subsampling import (PADDED_BLOCK_ELEMENTS, compiled, farthest_point_positions,
                                              nearest_within_groups)

SPEC_KEYS = ("num_points_per_depth", "fast_flag_per_depth", "num_downsampling_neighbors", "num_pwise_neighbors",
             "num_upsampling_neighbors", "neighborhood", "scale", "seed")
SAMPLER_KEYS = ("to_unit_sphere", "training_class_distribution", "center_on_pcloud", "support_strategy",
                "support_strategy_num_points", "support_strategy_fast", "support_chunk_size", "nthreads")
ORIGINAL_KEYS = ("type", *(k for k in SPEC_KEYS if k not in ("scale", "seed")), *SAMPLER_KEYS)
BRUTE_FORCE_PAIRS = 1 << 22  # query x reference pairs per brute-force k-NN block
BRUTE_FORCE_MAX_PAIRS = 128 * 128  # query x reference points per field above which one KD-tree answers (measured)


def _int_list(name: str, value: Any, depth: int | None, minimum: int) -> list[int]:
    if isinstance(value, (str, bytes)) or not isinstance(value, (Sequence, np.ndarray)):
        raise TypeError(f"{name} must be a list of ints (one per depth), got {value!r}")
    values = [require_int(f"{name} entry", v, minimum) for v in value]
    if not values:
        raise ValueError(f"{name} must hold at least one depth, got {value!r}")
    if depth is not None and len(values) != depth:
        raise ValueError(f"{name} must hold one value per depth ({depth}, like num_points_per_depth), got {value!r}")
    return values


def _fast_flags(value: Any, depth: int) -> list[int]:
    """Fast flags as 0 (exact FPS), 1 (uniform stride, then FPS) or 2 (random subset)."""
    if value is None:
        return [0] * depth
    if isinstance(value, (str, bytes)) or not isinstance(value, (Sequence, np.ndarray)) or len(value) != depth:
        raise ValueError(f"fast_flag_per_depth must be a list of {depth} flags (false, true or 2), got {value!r}")
    flags = []
    for flag in value:
        if flag is True or flag is False or flag in (0, 1, 2):
            flags.append(int(flag))
        else:
            raise ValueError(f"fast_flag_per_depth entries must be false, true or 2, got {flag!r}")
    return flags


class HierarchicalFPSEncoder(FieldEncoder):
    """Fields as FPS pyramids with k-NN, down- and upsampling maps (see the module doc).

    ``num_points_per_depth``: R_1 >= R_2 >= ...; R_1 must equal the sampler's ``num_points``
    (depth 1 is the kept points). ``num_pwise_neighbors[t]``: k of ``N_t``;
    ``num_downsampling_neighbors[t]`` / ``num_upsampling_neighbors[t]``: k of ``ND_t`` /
    ``NU_t`` for t >= 2 (the first entries serve the covering sampler's depth 1).
    ``fast_flag_per_depth[t]`` for t >= 2: false (exact FPS), true (every n-th point, then FPS),
    2 (a random subset, drawn from ``seed`` and the field's position: reproducible).
    ``neighborhood``: optional, checked against the sampler's at `bind`. ``scale``: what
    coordinates are divided by (set by `bind`).
    """

    type_name = "hierarchical_fps"
    backbones = ("Sequencer",)

    def __init__(self, num_points_per_depth: Sequence[int], fast_flag_per_depth: Sequence[Any] | None = None,
                 num_downsampling_neighbors: Sequence[int] | None = None,
                 num_pwise_neighbors: Sequence[int] | None = None,
                 num_upsampling_neighbors: Sequence[int] | None = None,
                 neighborhood: Mapping[str, Any] | None = None, scale: float | None = None, seed: int = 0) -> None:
        self.num_points_per_depth = _int_list("num_points_per_depth", num_points_per_depth, None, 1)
        depth = len(self.num_points_per_depth)
        if any(b > a for a, b in zip(self.num_points_per_depth, self.num_points_per_depth[1:])):
            raise ValueError(f"num_points_per_depth must not grow with depth, got {num_points_per_depth!r}")
        self.fast_flag_per_depth = _fast_flags(fast_flag_per_depth, depth)
        self.num_downsampling_neighbors = _int_list(
            "num_downsampling_neighbors", [1] * depth if num_downsampling_neighbors is None else num_downsampling_neighbors,
            depth, 1)
        self.num_pwise_neighbors = _int_list(
            "num_pwise_neighbors", [min(16, r) for r in self.num_points_per_depth] if num_pwise_neighbors is None
            else num_pwise_neighbors, depth, 1)
        self.num_upsampling_neighbors = _int_list(
            "num_upsampling_neighbors", [1] * depth if num_upsampling_neighbors is None else num_upsampling_neighbors,
            depth, 1)
        self._check_neighbour_counts()
        self.neighborhood = None if neighborhood is None else Neighborhood.from_spec(neighborhood).get_config()
        self.scale = None if scale is None else float(scale)
        self.seed = require_int("seed", seed, 0)
        self.nthreads = 1  # execution only: the bound sampler's threads (`bind`)

    def _check_neighbour_counts(self) -> None:
        points = self.num_points_per_depth
        for t, (k, r) in enumerate(zip(self.num_pwise_neighbors, points)):
            if k > r:
                raise ValueError(f"num_pwise_neighbors[{t}] = {k} exceeds the {r} points of depth {t + 1}")
        for t in range(1, len(points)):
            if self.num_downsampling_neighbors[t] > points[t - 1]:
                raise ValueError(f"num_downsampling_neighbors[{t}] = {self.num_downsampling_neighbors[t]} exceeds "
                                 f"the {points[t - 1]} points of depth {t}")
            if self.num_upsampling_neighbors[t] > points[t]:
                raise ValueError(f"num_upsampling_neighbors[{t}] = {self.num_upsampling_neighbors[t]} exceeds "
                                 f"the {points[t]} points of depth {t + 1}")

    @property
    def depth(self) -> int:
        return len(self.num_points_per_depth)

    def get_config(self) -> dict:
        return {"type": self.type_name, "num_points_per_depth": list(self.num_points_per_depth),
                "fast_flag_per_depth": [bool(f) if f < 2 else 2 for f in self.fast_flag_per_depth],
                "num_downsampling_neighbors": list(self.num_downsampling_neighbors),
                "num_pwise_neighbors": list(self.num_pwise_neighbors),
                "num_upsampling_neighbors": list(self.num_upsampling_neighbors),
                "neighborhood": self.neighborhood, "scale": self.scale, "seed": self.seed}

    def bind(self, sampler: CoveringFieldSampler) -> None:
        if sampler.num_points != self.num_points_per_depth[0]:
            raise ValueError(f"num_points_per_depth[0] must equal the sampler's num_points ({sampler.num_points}): "
                             f"depth 1 is the fields' kept points, got {self.num_points_per_depth[0]}")
        if self.neighborhood is not None and self.neighborhood != sampler.neighborhood.get_config():
            raise ValueError(f"neighborhood {self.neighborhood!r} differs from the sampler's "
                             f"{sampler.neighborhood.get_config()!r}")
        self.scale = field_scale(sampler)
        self.nthreads = sampler.nthreads

    def encode(self, points: np.ndarray, fields: Fields, features: np.ndarray | None,
               first: int = 0, stop: int | None = None) -> dict:
        if self.scale is None:
            raise ValueError("the hierarchical_fps encoder needs its field scale: call bind(sampler) first")
        if fields.num_points != self.num_points_per_depth[0]:
            raise ValueError(f"fields hold {fields.num_points} points each, but num_points_per_depth[0] is "
                             f"{self.num_points_per_depth[0]}")
        stop = len(fields) if stop is None else stop
        indices = fields.indices[first:stop]
        divisor = fields.scales[first:stop, None, None] * self.scale
        relative = (np.take(np.asarray(points, dtype=np.float64), indices, axis=0)
                    - fields.centres[first:stop, None, :]) / divisor
        low = np.percentile(relative[..., 2], HEIGHT_PERCENTILE, axis=1)[:, None]
        columns = [(relative[..., 2] - low)[..., None]]
        if features is not None:
            columns.append(np.take(features, indices, axis=0))
        samples = self.pyramid(relative, np.random.default_rng([self.seed, first]))
        samples["F"] = np.concatenate(columns, axis=-1).astype(np.float32)
        if fields.labels is not None:
            samples["labels"] = fields.labels[first:stop]
        return samples

    def pyramid(self, relative: np.ndarray, rng: np.random.Generator | None = None) -> dict:
        """``X_t``, ``N_t``, ``ND_t``, ``NU_t`` of fields whose depth-1 points are ``relative`` (M, R_1, 3)."""
        coords = [np.asarray(relative, dtype=np.float64)]
        for t in range(1, self.depth):
            chosen = depth_positions(coords[-1], self.num_points_per_depth[t], self.fast_flag_per_depth[t], rng,
                                     self.nthreads)
            coords.append(np.take_along_axis(coords[-1], chosen[..., None], axis=1))
        maps = {}
        for t, xyz in enumerate(coords):
            name = t + 1
            maps[f"X_{name}"] = xyz.astype(np.float32)
            maps[f"N_{name}"] = nearest_in_fields(xyz, xyz, self.num_pwise_neighbors[t], self.nthreads)
            if t:
                maps[f"ND_{name}"] = nearest_in_fields(coords[t - 1], xyz, self.num_downsampling_neighbors[t],
                                                       self.nthreads)
                maps[f"NU_{name}"] = nearest_in_fields(xyz, coords[t - 1], self.num_upsampling_neighbors[t],
                                                       self.nthreads)
        return maps

    def input_names(self) -> list[str]:
        """The model's input keys: ``X_1..X_d``, ``F``, ``N_1..N_d``, ``ND_2..ND_d``, ``NU_2..NU_d``."""
        d = range(1, self.depth + 1)
        return ([f"X_{t}" for t in d] + ["F"] + [f"N_{t}" for t in d]
                + [f"ND_{t}" for t in d if t > 1] + [f"NU_{t}" for t in d if t > 1])

    def coordinate_names(self) -> list[str]:
        """The inputs an augmentor rotates and scales together (``augment_inputs``)."""
        return [f"X_{t}" for t in range(1, self.depth + 1)]

    def inputs(self, samples: dict) -> dict:
        return {name: samples[name] for name in self.input_names()}

    def targets(self, samples: dict, num_classes: int) -> tuple[np.ndarray, np.ndarray]:
        trained = samples["labels"] < num_classes
        return np.where(trained, samples["labels"], 0), trained.astype(np.float32)

    def to_points(self, outputs: np.ndarray, samples: dict) -> np.ndarray:
        return np.asarray(outputs, dtype=np.float32)  # depth 1 is the kept points themselves

    def num_input_features(self, num_point_features: int) -> int:
        return 1 + num_point_features


def depth_positions(coords: np.ndarray, num: int, fast: int, rng: np.random.Generator | None,
                    nthreads: int = 1) -> np.ndarray:
    """Positions (M, num) of the next depth's points among ``coords`` (M, R, 3), for all fields at once.

    ``fast`` 0: exact furthest-point sampling from position 0; 1: every (R // num)-th point,
    then FPS among those; 2: a random subset (``rng``).
    """
    count, width = coords.shape[:2]
    if fast == 2:
        if rng is None:
            raise TypeError("a random subset (fast flag 2) needs a numpy Generator rng")
        return np.argsort(rng.random((count, width)), axis=1)[:, :num]
    candidates = np.arange(0, width, max(1, width // num) if fast == 1 else 1)
    sub = coords[:, candidates].astype(np.float32)
    chosen = np.empty((count, num), dtype=np.int64)
    step = max(1, PADDED_BLOCK_ELEMENTS // candidates.size)
    valid = np.ones((min(step, count), candidates.size), dtype=bool)
    for start in range(0, count, step):  # cache-sized blocks of fields
        block = sub[start:start + step]
        chosen[start:start + step] = farthest_point_positions(block, valid[: len(block)], num, nthreads=nthreads)
    return candidates[chosen]


def nearest_in_fields(reference: np.ndarray, query: np.ndarray, k: int, nthreads: int = 1) -> np.ndarray:
    """Local positions (M, Q, k) int32 of the k nearest ``reference`` (M, R, 3) points of each
    ``query`` (M, Q, 3) point in the same field, nearest first (``nthreads``: the compiled path's)."""
    count, width = reference.shape[:2]
    if compiled():
        return field_kernels.nearest_in_groups(reference, query, k, nthreads)
    if width * query.shape[1] <= BRUTE_FORCE_MAX_PAIRS:
        return _nearest_brute_force(reference, query, k)
    groups = np.arange(count)
    found = nearest_within_groups(reference.reshape(-1, 3), np.repeat(groups, width), query.reshape(-1, 3),
                                  np.repeat(groups, query.shape[1]), k)
    return (found.reshape(count, query.shape[1], k) % width).astype(np.int32)


def _nearest_brute_force(reference: np.ndarray, query: np.ndarray, k: int) -> np.ndarray:
    """`nearest_in_fields` from the full (fields, Q, R) distance block, a few fields at a time."""
    count, width = reference.shape[:2]
    out = np.empty((count, query.shape[1], k), dtype=np.int32)
    step = max(1, BRUTE_FORCE_PAIRS // max(1, width * query.shape[1]))
    for start in range(0, count, step):
        ref, qry = reference[start:start + step], query[start:start + step]
        dist = (np.einsum("bqc,bqc->bq", qry, qry)[:, :, None] + np.einsum("brc,brc->br", ref, ref)[:, None, :]
                - 2.0 * np.matmul(qry, ref.transpose(0, 2, 1)))
        part = np.argpartition(dist, k - 1, axis=2)[..., :k] if k < width else np.broadcast_to(
            np.arange(width), dist.shape).copy()
        order = np.argsort(np.take_along_axis(dist, part, axis=2), axis=2, kind="stable")
        out[start:start + step] = np.take_along_axis(part, order, axis=2)
    return out


def hierarchical_sampler_from_spec(spec: Mapping[str, Any]) -> tuple[CoveringFieldSampler, HierarchicalFPSEncoder]:
    """The covering sampler (depth 1) and the encoder (depths 2..) of an original
    ``HierarchicalFPSPreProcessor`` spec; ``_`` keys are comments."""
    check_spec_keys(spec, "HierarchicalFPSPreProcessor", ORIGINAL_KEYS, ("num_points_per_depth", "neighborhood"))
    spec = {k: v for k, v in spec.items() if not str(k).startswith("_")}
    encoder = HierarchicalFPSEncoder(**{k: spec[k] for k in SPEC_KEYS if k in spec})
    common = {k: spec[k] for k in SAMPLER_KEYS if k in spec}
    sampler = CoveringFieldSampler(encoder.num_points_per_depth[0], spec["neighborhood"],
                                   subsampling="random" if encoder.fast_flag_per_depth[0] == 2 else "fps",
                                   num_encoding_neighbors=encoder.num_downsampling_neighbors[0], **common)
    encoder.bind(sampler)
    return sampler, encoder


def _encoder_from_spec(spec: dict) -> HierarchicalFPSEncoder:
    check_spec_keys(spec, "hierarchical_fps encoder", SPEC_KEYS, ("num_points_per_depth",))
    return HierarchicalFPSEncoder(**spec)


register_encoder("hierarchical_fps", _encoder_from_spec)
