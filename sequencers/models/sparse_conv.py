"""Sparse 3D convolutions over shadow batches (``keras.ops`` only, so any backend runs them).

The semantics are those of MinkowskiEngine's and spconv's layers, on the maps a shadow batch
carries (`pointseq.pointclouds.shadow_batch`) instead of an in-graph hash table:

- `SparseConv3D`: submanifold convolution; the output cells are the input cells, and cell
  ``i`` gets ``sum_o W_o x[neighbour_o(i)]`` over the kernel offsets ``o`` whose neighbour is
  active (``neighbors_t``, one weight matrix per offset).
- `SparseDownConv3D`: kernel 2, stride 2, from depth ``t`` to its parent depth ``t + 1``: a parent
  gets ``sum_p W_p x[child_p]`` over its active children (``children_t``, one weight matrix per
  child position 0..7).
- `SparseUpConv3D`: the transposed form, from ``t + 1`` back to the cells of ``t``: a cell gets
  ``W_p x[parent]`` with ``p`` its position in the parent (``parent_t``, ``position_t``).
- `MaskedBatchNormalization`: batch normalisation whose statistics count real rows only.

Index maps are LOCAL rows of the same element, with the element's zero row (``R``, one past
its last row) standing for a missing neighbour or a padded row. Each layer appends that zero
row per element, flattens the batch and offsets element ``k`` by ``k * (R + 1)``, so a gather
never crosses from one element into another: an element's output does not depend on the
other elements of its batch or on its position. Padded rows of every output are zero. Row
counts may differ from batch to batch (the models' row dimensions are free).

A larger kernel (5x5x5) needs no new layer: build the batch maps with
``grid_neighbors.neighbor_rows(..., kernel_size=5)`` (``(B, R, 125)`` rows) and pass
``kernel_size=5`` here; the layer takes one weight matrix per offset, 125 of them.
"""

from __future__ import annotations

import keras
from keras import ops

from pointseq.arguments import require_int

__all__ = ["SparseConv3D", "SparseDownConv3D", "SparseUpConv3D", "MaskedBatchNormalization", "gather_rows"]

NUM_CHILDREN = 8


def gather_rows(x, index):
    """Rows of each element's ``x`` ``(B, R, C)`` at LOCAL ``index`` ``(B, M, K)`` (``R``: zero row).

    Returns ``(B, M, K, C)``; indices never leave their own element.
    """
    channels = x.shape[-1]
    batch, rows = ops.shape(x)[0], ops.shape(x)[1]
    padded = ops.concatenate([x, ops.zeros_like(x[:, :1, :])], axis=1)
    flat = ops.reshape(padded, (-1, channels))
    offsets = ops.reshape(ops.arange(batch, dtype="int32") * (rows + 1), (-1, 1, 1))
    return ops.take(flat, ops.cast(index, "int32") + offsets, axis=0)


def _masked(y, mask):
    return y * ops.cast(ops.expand_dims(mask, -1), y.dtype)


class _MapConv(keras.layers.Layer):
    """Shared parts: ``filters``, one ``(C, filters)`` weight matrix per map slot, a bias."""

    def __init__(self, filters: int, *, use_bias: bool = True, kernel_initializer="he_normal", **kwargs):
        super().__init__(**kwargs)
        self.filters = require_int("filters", filters, 1)
        self.use_bias = bool(use_bias)
        self.kernel_initializer = keras.initializers.get(kernel_initializer)

    def _build_weights(self, slots: int, channels: int) -> None:
        if channels is None:
            raise ValueError(f"{type(self).__name__} needs a known channel count, got input shape with None channels")
        # One (C, F) matrix per slot, stored flat so the layer is one matmul after the gather.
        self.kernel = self.add_weight(name="kernel", shape=(slots * channels, self.filters),
                                      initializer=self.kernel_initializer)
        self.bias = self.add_weight(name="bias", shape=(self.filters,), initializer="zeros") if self.use_bias else None

    def _finish(self, y, mask):
        if self.bias is not None:
            y = y + self.bias
        return _masked(y, mask)

    def get_config(self) -> dict:
        return {**super().get_config(), "filters": self.filters, "use_bias": self.use_bias,
                "kernel_initializer": keras.initializers.serialize(self.kernel_initializer)}


@keras.saving.register_keras_serializable(package="pointseq")
class SparseConv3D(_MapConv):
    """Submanifold sparse convolution: output cells = input cells, one weight matrix per offset.

    Call on ``[x, neighbors, mask]``: ``x`` ``(B, R, C)``, ``neighbors`` ``(B, R, K)`` LOCAL rows
    of the active cell at each of the ``K = kernel_size**3`` offsets (missing and padding:
    ``R``), ``mask`` ``(B, R)``. Returns ``(B, R, filters)``, zero on padded rows.
    """

    def __init__(self, filters: int, kernel_size: int = 3, **kwargs):
        super().__init__(filters, **kwargs)
        size = require_int("kernel_size", kernel_size, 1)
        if size % 2 == 0:
            raise ValueError(f"kernel_size must be odd (a kernel centred on its cell), got {size}")
        self.kernel_size = size

    @property
    def num_offsets(self) -> int:
        return self.kernel_size**3

    def build(self, input_shapes):
        x_shape, neighbors_shape, _ = input_shapes
        if neighbors_shape[-1] is not None and neighbors_shape[-1] != self.num_offsets:
            raise ValueError(f"neighbors must hold {self.num_offsets} offsets for kernel_size={self.kernel_size}, "
                             f"got shape {tuple(neighbors_shape)}")
        self._build_weights(self.num_offsets, x_shape[-1])

    def call(self, inputs):
        x, neighbors, mask = inputs
        gathered = gather_rows(x, neighbors)  # (B, R, K, C)
        shape = ops.shape(gathered)
        y = ops.matmul(ops.reshape(gathered, (shape[0], shape[1], -1)), self.kernel)
        return self._finish(y, mask)

    def compute_output_shape(self, input_shapes):
        return (*input_shapes[0][:-1], self.filters)

    def get_config(self) -> dict:
        return {**super().get_config(), "kernel_size": self.kernel_size}


@keras.saving.register_keras_serializable(package="pointseq")
class SparseDownConv3D(_MapConv):
    """Strided sparse convolution (kernel 2, stride 2) from depth ``t`` to its parents at ``t + 1``.

    Call on ``[x, children, parent_mask]``: ``x`` ``(B, R_t, C)``, ``children`` ``(B, R_{t+1}, 8)``
    LOCAL depth-``t`` rows of each parent's child at positions 0..7 (none and padding:
    ``R_t``), ``parent_mask`` ``(B, R_{t+1})``. Returns ``(B, R_{t+1}, filters)``.
    """

    def build(self, input_shapes):
        self._build_weights(NUM_CHILDREN, input_shapes[0][-1])

    def call(self, inputs):
        x, children, parent_mask = inputs
        gathered = gather_rows(x, children)  # (B, R_p, 8, C)
        shape = ops.shape(gathered)
        y = ops.matmul(ops.reshape(gathered, (shape[0], shape[1], -1)), self.kernel)
        return self._finish(y, parent_mask)

    def compute_output_shape(self, input_shapes):
        return (input_shapes[1][0], input_shapes[1][1], self.filters)


@keras.saving.register_keras_serializable(package="pointseq")
class SparseUpConv3D(_MapConv):
    """Transposed strided sparse convolution from depth ``t + 1`` back to the cells of depth ``t``.

    Call on ``[x_parent, parent, position, mask]``: ``x_parent`` ``(B, R_{t+1}, C)``, ``parent``
    ``(B, R_t)`` LOCAL parent rows (padding: ``R_{t+1}``), ``position`` ``(B, R_t)`` each cell's
    position 0..7 in its parent, ``mask`` ``(B, R_t)``. Returns ``(B, R_t, filters)``: each cell
    gets its parent's features through the weight matrix of its position.
    """

    def build(self, input_shapes):
        channels = input_shapes[0][-1]
        if channels is None:
            raise ValueError("SparseUpConv3D needs a known channel count")
        # (C, 8 * F): every parent row is multiplied once, each child picks its position's F.
        self.kernel = self.add_weight(name="kernel", shape=(channels, NUM_CHILDREN * self.filters),
                                      initializer=self.kernel_initializer)
        self.bias = self.add_weight(name="bias", shape=(self.filters,), initializer="zeros") if self.use_bias else None

    def call(self, inputs):
        x_parent, parent, position, mask = inputs
        per_position = ops.matmul(x_parent, self.kernel)  # (B, R_p, 8F)
        shape = ops.shape(per_position)
        per_position = ops.reshape(per_position, (shape[0], shape[1] * NUM_CHILDREN, self.filters))
        # Row (parent * 8 + position) of the element's (R_p + 1) * 8 rows; the zero row's 8 slots
        # come last, so a padded cell (parent R_p) reads zeros.
        index = ops.cast(parent, "int32") * NUM_CHILDREN + ops.cast(position, "int32")
        rows = shape[1] * NUM_CHILDREN
        padded = ops.concatenate([per_position, ops.zeros_like(per_position[:, :NUM_CHILDREN, :])], axis=1)
        flat = ops.reshape(padded, (-1, self.filters))
        offsets = ops.reshape(ops.arange(shape[0], dtype="int32") * (rows + NUM_CHILDREN), (-1, 1))
        y = ops.take(flat, index + offsets, axis=0)
        return self._finish(y, mask)

    def compute_output_shape(self, input_shapes):
        return (input_shapes[1][0], input_shapes[1][1], self.filters)


@keras.saving.register_keras_serializable(package="pointseq")
class MaskedBatchNormalization(keras.layers.Layer):
    """Batch normalisation over the real rows only: padding never enters the statistics.

    Call on ``[x, mask]`` with ``x`` ``(B, R, C)`` and ``mask`` ``(B, R)``. In training the mean and
    variance per channel are taken over the rows whose mask is 1 in the whole batch (and the
    moving averages follow them); in inference the moving averages are used, so an element's
    output does not depend on its batch. Padded rows come out zero.
    """

    def __init__(self, momentum: float = 0.99, epsilon: float = 1e-3, **kwargs):
        super().__init__(**kwargs)
        if not 0.0 <= float(momentum) < 1.0:
            raise ValueError(f"momentum must be in [0, 1), got {momentum!r}")
        if not float(epsilon) > 0.0:
            raise ValueError(f"epsilon must be > 0, got {epsilon!r}")
        self.momentum = float(momentum)
        self.epsilon = float(epsilon)

    def build(self, input_shapes):
        channels = input_shapes[0][-1]
        self.gamma = self.add_weight(name="gamma", shape=(channels,), initializer="ones")
        self.beta = self.add_weight(name="beta", shape=(channels,), initializer="zeros")
        self.moving_mean = self.add_weight(name="moving_mean", shape=(channels,), initializer="zeros",
                                           trainable=False)
        self.moving_variance = self.add_weight(name="moving_variance", shape=(channels,), initializer="ones",
                                               trainable=False)

    def call(self, inputs, training=None):
        x, mask = inputs
        weight = ops.cast(ops.expand_dims(mask, -1), x.dtype)
        if training:
            count = ops.maximum(ops.sum(weight), 1.0)
            mean = ops.sum(x * weight, axis=(0, 1)) / count
            variance = ops.sum(ops.square((x - mean) * weight), axis=(0, 1)) / count
            m = self.momentum
            self.moving_mean.assign(self.moving_mean * m + mean * (1.0 - m))
            self.moving_variance.assign(self.moving_variance * m + variance * (1.0 - m))
        else:
            mean, variance = self.moving_mean, self.moving_variance
        y = (x - mean) * ops.rsqrt(variance + self.epsilon) * self.gamma + self.beta
        return y * weight

    def compute_output_shape(self, input_shapes):
        return input_shapes[0]

    def get_config(self) -> dict:
        return {**super().get_config(), "momentum": self.momentum, "epsilon": self.epsilon}
