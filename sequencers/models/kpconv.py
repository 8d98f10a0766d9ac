"""Kernel point convolution (KPConv) layers over hierarchical FPS batches (``keras.ops`` only).

A batch holds, per element and depth t, coordinates ``X_t`` (B, R_t, 3) and LOCAL index maps
(`pointclouds.hierarchical_fields`): ``N_t`` (B, R_t, k) k-NN within depth t, ``ND_t``
(B, R_t, k) nearest depth t-1 points, ``NU_t`` (B, R_{t-1}, k) nearest depth-t points.
Every gather flattens the batch and offsets element b's indices by ``b * R``, so no element
reads another's rows: an element's output never depends on its batch neighbours.

`KPConv` follows Thomas et al. (2019): rigid kernel points (one at the centre, the others on a
sphere), each with a weight matrix; a neighbour's feature contributes to kernel point q with
the linear influence ``max(0, 1 - |x_j - x_i - q| / sigma)``. Called on a query depth and a
support depth with ``ND`` as neighbours it is the strided KPConv that goes down one depth.
`resnet_block` is the authors' bottleneck block (unary, KPConv, unary, shortcut; batch
normalisation and leaky ReLU).
"""

from __future__ import annotations

import math

import keras
import numpy as np
from keras import ops

from pointseq.arguments import require_int, require_positive

__all__ = ["KPConv", "NeighbourMaxPool", "NeighbourUpsample", "WithOnes", "gather_neighbours", "kernel_points",
           "norm_act", "resnet_block", "unary_block"]

KERNEL_POINT_SHELL = 0.66  # kernel points sit on a sphere of this fraction of the kernel radius
SIGMA_FRACTION = 0.5  # default influence extent, a fraction of the kernel radius
LEAKY_SLOPE = 0.1
BN_MOMENTUM = 0.9  # the authors use 0.98 over long runs; short CPU runs need statistics that follow the weights


def kernel_points(num_points: int, radius: float) -> np.ndarray:
    """Rigid kernel points (num_points, 3) float32: the centre, then ``num_points - 1`` points
    spread evenly (golden-angle spiral) on a sphere of ``KERNEL_POINT_SHELL * radius``."""
    num_points = require_int("num_points", num_points, 1)
    radius = require_positive("radius", radius)
    count = num_points - 1
    if count == 0:
        return np.zeros((1, 3), dtype=np.float32)
    i = np.arange(count) + 0.5
    z = 1.0 - 2.0 * i / count
    ring = np.sqrt(np.maximum(0.0, 1.0 - z ** 2))
    angle = math.pi * (3.0 - math.sqrt(5.0)) * i
    shell = np.column_stack([ring * np.cos(angle), ring * np.sin(angle), z]) * KERNEL_POINT_SHELL * radius
    return np.concatenate([np.zeros((1, 3)), shell]).astype(np.float32)


def gather_neighbours(values, index):
    """``values`` (B, R, C) at local ``index`` (B, Q, k) -> (B, Q, k, C), element by element."""
    batch = ops.shape(values)[0]
    rows, channels = values.shape[1], values.shape[2]
    queries, k = index.shape[1], index.shape[2]
    offsets = ops.reshape(ops.arange(batch, dtype="int32") * rows, (-1, 1, 1))
    flat_index = ops.reshape(ops.cast(index, "int32") + offsets, (-1,))
    gathered = ops.take(ops.reshape(values, (-1, channels)), flat_index, axis=0)
    return ops.reshape(gathered, (-1, queries, k, channels))


def _offsets(query, support, index):
    """Neighbour positions relative to their query point (B, Q, k, 3)."""
    return gather_neighbours(support, index) - ops.expand_dims(query, 2)


@keras.saving.register_keras_serializable(package="pointseq")
class KPConv(keras.layers.Layer):
    """Kernel point convolution of support features onto query points.

    Call on ``[query_xyz (B, Q, 3), support_xyz (B, R, 3), support_features (B, R, C),
    neighbours (B, Q, k)]`` (local indices into the support rows); returns (B, Q, filters).
    Same depth (query = support, ``N_t``): a KPConv; one depth down (``ND_t``): a strided one.

    Args:
        filters: output channels.
        kernel_radius: radius of the kernel in coordinate units (its points sit at
            ``KERNEL_POINT_SHELL`` of it).
        sigma: influence extent of each kernel point (default ``SIGMA_FRACTION * kernel_radius``).
        num_kernel_points: kernel points, the centre included (15 as in the paper).
    """

    def __init__(self, filters: int, kernel_radius: float, sigma: float | None = None,
                 num_kernel_points: int = 15, **kwargs):
        super().__init__(**kwargs)
        self.filters = require_int("filters", filters, 1)
        self.kernel_radius = require_positive("kernel_radius", kernel_radius)
        self.sigma = SIGMA_FRACTION * self.kernel_radius if sigma is None else require_positive("sigma", sigma)
        self.num_kernel_points = require_int("num_kernel_points", num_kernel_points, 1)
        self._points = kernel_points(self.num_kernel_points, self.kernel_radius)

    def build(self, input_shapes):
        channels = input_shapes[2][-1]
        if channels is None:
            raise ValueError("KPConv needs a known number of input feature channels")
        self.kernel = self.add_weight(name="kernel", shape=(self.num_kernel_points * channels, self.filters),
                                      initializer="glorot_uniform")
        self.kernel_xyz = self.add_weight(name="kernel_points", shape=self._points.shape, trainable=False,
                                          initializer=keras.initializers.Constant(self._points))

    def call(self, inputs):
        query, support, features, index = inputs
        k = index.shape[2]
        relative = ops.expand_dims(_offsets(query, support, index), 3) - self.kernel_xyz  # (B, Q, k, K, 3)
        distance = ops.sqrt(ops.maximum(ops.sum(ops.square(relative), axis=-1), 1e-12))
        influence = ops.relu(1.0 - distance / self.sigma)  # (B, Q, k, K)
        neighbours = gather_neighbours(features, index)  # (B, Q, k, C)
        weighted = ops.einsum("bqnk,bqnc->bqkc", influence, neighbours)  # (B, Q, K, C)
        flat = ops.reshape(weighted, (-1, index.shape[1], self.num_kernel_points * features.shape[2]))
        return ops.matmul(flat, self.kernel) / float(k)

    def compute_output_shape(self, input_shapes):
        return (input_shapes[0][0], input_shapes[0][1], self.filters)

    def get_config(self):
        return {**super().get_config(), "filters": self.filters, "kernel_radius": self.kernel_radius,
                "sigma": self.sigma, "num_kernel_points": self.num_kernel_points}


@keras.saving.register_keras_serializable(package="pointseq")
class NeighbourMaxPool(keras.layers.Layer):
    """Max of the support features over each query point's neighbours: ``[features (B, R, C),
    neighbours (B, Q, k)]`` -> (B, Q, C) (the strided block's shortcut, over ``ND_t``)."""

    def call(self, inputs):
        features, index = inputs
        return ops.max(gather_neighbours(features, index), axis=2)

    def compute_output_shape(self, input_shapes):
        return (input_shapes[0][0], input_shapes[1][1], input_shapes[0][2])


@keras.saving.register_keras_serializable(package="pointseq")
class NeighbourUpsample(keras.layers.Layer):
    """Coarse features onto finer points through ``NU``: ``[fine_xyz (B, Q, 3), coarse_xyz
    (B, R, 3), coarse_features (B, R, C), neighbours (B, Q, k)]`` -> (B, Q, C).

    ``mode``: ``"nearest"`` (the first, nearest neighbour, as KPConv's decoder) or
    ``"inverse_distance"`` (weights 1 / (d + eps) over the k neighbours, normalised).
    """

    MODES = ("nearest", "inverse_distance")

    def __init__(self, mode: str = "nearest", **kwargs):
        super().__init__(**kwargs)
        if mode not in self.MODES:
            raise ValueError(f"mode must be one of {list(self.MODES)}, got {mode!r}")
        self.mode = mode

    def call(self, inputs):
        fine, coarse, features, index = inputs
        if self.mode == "nearest":
            return gather_neighbours(features, index[:, :, :1])[:, :, 0, :]
        distance = ops.sqrt(ops.sum(ops.square(_offsets(fine, coarse, index)), axis=-1))
        weights = 1.0 / (distance + 1e-6)
        weights = weights / ops.sum(weights, axis=2, keepdims=True)
        return ops.sum(gather_neighbours(features, index) * ops.expand_dims(weights, -1), axis=2)

    def compute_output_shape(self, input_shapes):
        return (input_shapes[0][0], input_shapes[0][1], input_shapes[2][2])

    def get_config(self):
        return {**super().get_config(), "mode": self.mode}


@keras.saving.register_keras_serializable(package="pointseq")
class WithOnes(keras.layers.Layer):
    """Features (B, R, C) -> (B, R, 1 + C) with a constant 1 first: the first KPConv then
    responds to the neighbours' geometry alone, whatever the features (as KPConv's authors do)."""

    def call(self, features):
        return ops.concatenate([ops.ones_like(features[..., :1]), features], axis=-1)

    def compute_output_shape(self, input_shape):
        return tuple(input_shape[:-1]) + (input_shape[-1] + 1,)


def norm_act(x, name: str, activate: bool = True):
    """Batch normalisation (KPConv's momentum), then leaky ReLU unless ``activate`` is false."""
    x = keras.layers.BatchNormalization(momentum=BN_MOMENTUM, name=f"{name}_bn")(x)
    return keras.layers.LeakyReLU(LEAKY_SLOPE, name=f"{name}_act")(x) if activate else x


def unary_block(x, filters: int, name: str, activate: bool = True):
    """Shared per-point linear map, batch normalisation, leaky ReLU (the authors' unary block)."""
    x = keras.layers.Dense(filters, use_bias=False, name=f"{name}_dense")(x)
    return norm_act(x, name, activate)


def resnet_block(query, support, features, neighbours, filters: int, kernel_radius: float, name: str,
                 strided: bool = False, num_kernel_points: int = 15):
    """The KPConv authors' bottleneck residual block: unary (filters / 4), KPConv, unary
    (filters), plus a shortcut (max-pooled over ``neighbours`` when ``strided``, projected when
    the widths differ); leaky ReLU after the sum. Strided: ``query`` is the next depth's
    coordinates and ``neighbours`` its ``ND`` map into ``support``."""
    inner = max(1, filters // 4)
    x = unary_block(features, inner, f"{name}_in") if features.shape[-1] != inner else features
    x = KPConv(inner, kernel_radius, num_kernel_points=num_kernel_points, name=f"{name}_kpconv")(
        [query, support, x, neighbours])
    x = norm_act(x, f"{name}_kpconv")
    x = unary_block(x, filters, f"{name}_out", activate=False)
    shortcut = NeighbourMaxPool(name=f"{name}_pool")([features, neighbours]) if strided else features
    if shortcut.shape[-1] != filters:
        shortcut = unary_block(shortcut, filters, f"{name}_shortcut", activate=False)
    return keras.layers.LeakyReLU(LEAKY_SLOPE, name=f"{name}_act")(keras.layers.Add(name=f"{name}_add")([x, shortcut]))
