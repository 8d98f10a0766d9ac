"""A KPConv U-Net for point-wise classification of hierarchical FPS fields.

Encoder: at depth 1 a KPConv block on the features (plus a constant 1, so the kernel sees
geometry even without features) and a residual block; at each next depth a strided residual
block (KPConv over ``ND_t``) and a residual block (over ``N_t``), the width doubling per depth.
Decoder: back up one depth at a time, upsampling over ``NU_t``, concatenating the encoder's
features of that depth (skip connection) and mixing them with a unary block. Head: a unary
block and a per-point softmax at depth 1 (the fields' kept points).

Kernel radii follow the points' spacing: in a field scaled to the unit ball whose points lie
on a surface, the k nearest of R points lie within about ``sqrt(k / R)``, so a KPConv over k
neighbours among R support points gets ``radius_factor * sqrt(k / R)``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import keras

from pointseq.arguments import require_int, require_positive
from pointseq.sequencers.models.kpconv import KPConv, NeighbourUpsample, WithOnes, norm_act, resnet_block, unary_block


def kpconv_input_names(depth: int) -> list[str]:
    """Input keys of a depth-``depth`` model: ``X_t``, ``F``, ``N_t``, ``ND_t``, ``NU_t``."""
    d = range(1, depth + 1)
    return ([f"X_{t}" for t in d] + ["F"] + [f"N_{t}" for t in d] + [f"ND_{t}" for t in d if t > 1]
            + [f"NU_{t}" for t in d if t > 1])


def _inputs(num_features: int, points: Sequence[int], pwise: Sequence[int], down: Sequence[int],
            up: Sequence[int]) -> dict:
    inputs = {}
    for t, count in enumerate(points, start=1):
        inputs[f"X_{t}"] = keras.Input((count, 3), name=f"X_{t}")
    inputs["F"] = keras.Input((points[0], num_features), name="F")
    for t, count in enumerate(points, start=1):
        inputs[f"N_{t}"] = keras.Input((count, pwise[t - 1]), name=f"N_{t}", dtype="int32")
    for t in range(2, len(points) + 1):
        inputs[f"ND_{t}"] = keras.Input((points[t - 1], down[t - 1]), name=f"ND_{t}", dtype="int32")
    for t in range(2, len(points) + 1):
        inputs[f"NU_{t}"] = keras.Input((points[t - 2], up[t - 1]), name=f"NU_{t}", dtype="int32")
    return inputs


def _lists(num_points_per_depth, num_pwise_neighbors, num_downsampling_neighbors, num_upsampling_neighbors):
    points = [require_int("num_points_per_depth entry", r, 1) for r in num_points_per_depth]
    lists = [points]
    for name, values in (("num_pwise_neighbors", num_pwise_neighbors),
                         ("num_downsampling_neighbors", num_downsampling_neighbors),
                         ("num_upsampling_neighbors", num_upsampling_neighbors)):
        if len(values) != len(points):
            raise ValueError(f"{name} must hold one value per depth ({len(points)}), got {list(values)!r}")
        lists.append([require_int(f"{name} entry", v, 1) for v in values])
    return lists


def build_kpconv_model(num_features: int, num_classes: int, num_points_per_depth: Sequence[int],
                       num_pwise_neighbors: Sequence[int], num_downsampling_neighbors: Sequence[int],
                       num_upsampling_neighbors: Sequence[int], *, width: int = 16, radius_factor: float = 1.0,
                       num_kernel_points: int = 15, upsampling: str = "nearest") -> keras.Model:
    """The KPConv U-Net (module doc). Inputs: a dict keyed like the ``hierarchical_fps``
    encoder's samples (`kpconv_input_names`), ``F`` with ``num_features`` columns; output
    ``(batch, num_points_per_depth[0], num_classes)`` softmax probabilities.

    ``width``: channels at depth 1 (doubling per depth); ``radius_factor``: kernel radius in
    units of the expected k-NN radius; ``upsampling``: ``"nearest"`` or ``"inverse_distance"``.
    """
    num_features = require_int("num_features", num_features, 1)
    num_classes = require_int("num_classes", num_classes, 1)
    width = require_int("width", width, 4)
    radius_factor = require_positive("radius_factor", radius_factor)
    points, pwise, down, up = _lists(num_points_per_depth, num_pwise_neighbors, num_downsampling_neighbors,
                                     num_upsampling_neighbors)
    inputs = _inputs(num_features, points, pwise, down, up)
    x = {t: inputs[f"X_{t}"] for t in range(1, len(points) + 1)}

    def radius(k: int, support: int) -> float:
        return radius_factor * math.sqrt(k / support)

    h = WithOnes(name="features_and_one")(inputs["F"])
    h = KPConv(width, radius(pwise[0], points[0]), num_kernel_points=num_kernel_points, name="d1_kpconv")(
        [x[1], x[1], h, inputs["N_1"]])
    h = norm_act(h, "d1_kpconv")
    h = resnet_block(x[1], x[1], h, inputs["N_1"], width, radius(pwise[0], points[0]), "d1_res",
                     num_kernel_points=num_kernel_points)
    skips = {1: h}
    for t in range(2, len(points) + 1):
        filters = width * 2 ** (t - 1)
        h = resnet_block(x[t], x[t - 1], h, inputs[f"ND_{t}"], filters, radius(down[t - 1], points[t - 2]),
                         f"d{t}_strided", strided=True, num_kernel_points=num_kernel_points)
        h = resnet_block(x[t], x[t], h, inputs[f"N_{t}"], filters, radius(pwise[t - 1], points[t - 1]),
                         f"d{t}_res", num_kernel_points=num_kernel_points)
        skips[t] = h
    for t in range(len(points), 1, -1):
        h = NeighbourUpsample(upsampling, name=f"u{t}_upsample")([x[t - 1], x[t], h, inputs[f"NU_{t}"]])
        h = keras.layers.Concatenate(name=f"u{t}_skip")([h, skips[t - 1]])
        h = unary_block(h, width * 2 ** (t - 2), f"u{t}_unary")
    h = unary_block(h, width, "head")
    out = keras.layers.Dense(num_classes, activation="softmax", name="probabilities")(h)
    return keras.Model(inputs, out, name="kpconv_segmentation")


def kpconv_model_for_encoder(encoder, num_point_features: int, num_classes: int, **options) -> keras.Model:
    """`build_kpconv_model` shaped for a `HierarchicalFPSEncoder` and clouds with
    ``num_point_features`` features; ``options``: ``width``, ``radius_factor``, ..."""
    return build_kpconv_model(encoder.num_input_features(num_point_features), num_classes,
                              encoder.num_points_per_depth, encoder.num_pwise_neighbors,
                              encoder.num_downsampling_neighbors, encoder.num_upsampling_neighbors, **options)
