"""Keras layers over shadow batches (``keras.ops`` only, so any backend runs them).

A shadow batch stores depth ``t`` as ``(B, R_t, ...)`` rows padded per element, a
``mask_t`` ``(B, R_t)`` and a ``parent_t`` ``(B, R_t)`` map of LOCAL row indices into the
same element's depth ``t + 1`` rows, where padded rows hold ``R_{t+1}`` (a zero row that
the layers append). The layers flatten the batch internally and offset element ``k`` by
``k * (R_{t+1} + 1)``, so a gather or a segment reduction never crosses from one element into
another: an element's output does not depend on its batch neighbours or its position.
"""

from __future__ import annotations

import keras
from keras import ops

from pointseq.arguments import require_int

__all__ = ["PoolToParent", "UnpoolToChild", "MaskedDense", "ElementMax"]

_REDUCTIONS = ("mean", "max", "sum")


def _flat_index(index, rows_plus_one: int):
    """Local ``(B, R)`` indices -> flat indices into ``(B * rows_plus_one)`` rows."""
    batch = ops.shape(index)[0]
    offsets = ops.expand_dims(ops.arange(batch, dtype="int32") * rows_plus_one, 1)
    return ops.cast(index, "int32") + offsets


@keras.saving.register_keras_serializable(package="pointseq")
class PoolToParent(keras.layers.Layer):
    """Reduce child rows into their parent rows (children -> parents, downsampling).

    Call on ``[x, parent_index, child_mask, parent_mask]``: ``x`` ``(B, R_c, C)``,
    ``parent_index`` ``(B, R_c)`` local parent rows (padding -> ``R_p``), ``child_mask``
    ``(B, R_c)``, ``parent_mask`` ``(B, R_p)``. Returns ``(B, R_p, C)``; padded parents are 0.

    Args:
        reduction: ``"mean"``, ``"max"`` or ``"sum"`` over the (unmasked) children.
    """

    def __init__(self, reduction: str = "mean", **kwargs):
        super().__init__(**kwargs)
        if reduction not in _REDUCTIONS:
            raise ValueError(f"reduction must be one of {_REDUCTIONS}, got {reduction!r}")
        self.reduction = reduction

    def call(self, inputs):
        x, parent_index, child_mask, parent_mask = inputs
        channels = x.shape[-1]
        rows_p = parent_mask.shape[1]
        batch = ops.shape(x)[0]
        num_segments = batch * (rows_p + 1)
        segments = ops.reshape(_flat_index(parent_index, rows_p + 1), (-1,))
        child_mask = ops.cast(ops.expand_dims(child_mask, -1), x.dtype)
        parent_mask = ops.cast(ops.expand_dims(parent_mask, -1), x.dtype)
        flat_x = ops.reshape(x * child_mask, (-1, channels))

        if self.reduction == "max":
            pooled = ops.segment_max(flat_x, segments, num_segments=num_segments)
        else:
            pooled = ops.segment_sum(flat_x, segments, num_segments=num_segments)
        pooled = ops.reshape(pooled, (-1, rows_p + 1, channels))[:, :rows_p, :]

        if self.reduction == "mean":
            counts = ops.segment_sum(
                ops.reshape(child_mask, (-1, 1)), segments, num_segments=num_segments
            )
            counts = ops.reshape(counts, (-1, rows_p + 1, 1))[:, :rows_p, :]
            pooled = pooled / ops.maximum(counts, 1.0)
        # Parents without children (padding) come back as the reduction's identity
        # (the lowest float for max): zero them.
        return ops.where(parent_mask > 0, pooled, ops.zeros_like(pooled))

    def compute_output_shape(self, input_shapes):
        x_shape, _, _, parent_mask_shape = input_shapes
        return (x_shape[0], parent_mask_shape[1], x_shape[-1])

    def get_config(self):
        return {**super().get_config(), "reduction": self.reduction}


@keras.saving.register_keras_serializable(package="pointseq")
class UnpoolToChild(keras.layers.Layer):
    """Copy each parent row to its children (parents -> children, upsampling).

    Call on ``[x_parent, parent_index]``: ``x_parent`` ``(B, R_p, C)``, ``parent_index``
    ``(B, R_c)`` local parent rows (padding -> ``R_p``). Returns ``(B, R_c, C)``; padded
    children read the appended zero row, so they are 0.
    """

    def call(self, inputs):
        x_parent, parent_index = inputs
        channels = x_parent.shape[-1]
        rows_p = x_parent.shape[1]
        zero_row = ops.zeros_like(x_parent[:, :1, :])
        padded = ops.reshape(ops.concatenate([x_parent, zero_row], axis=1), (-1, channels))
        return ops.take(padded, _flat_index(parent_index, rows_p + 1), axis=0)

    def compute_output_shape(self, input_shapes):
        parent_shape, index_shape = input_shapes
        return (index_shape[0], index_shape[1], parent_shape[-1])


@keras.saving.register_keras_serializable(package="pointseq")
class MaskedDense(keras.layers.Layer):
    """A pointwise ``Dense`` whose padded rows are forced to 0.

    Call on ``[x, mask]`` with ``x`` ``(B, R, C)`` and ``mask`` ``(B, R)``. Zeroing padded rows
    keeps biases and activations of padding from leaking into later reductions.
    """

    def __init__(self, units: int, activation=None, use_bias: bool = True, **kwargs):
        super().__init__(**kwargs)
        self.units = require_int("units", units, 1)
        self.activation = keras.activations.get(activation)
        self.use_bias = use_bias
        self.dense = keras.layers.Dense(units, activation=activation, use_bias=use_bias)

    def build(self, input_shapes):
        self.dense.build(input_shapes[0])

    def call(self, inputs):
        x, mask = inputs
        y = self.dense(x)
        return y * ops.cast(ops.expand_dims(mask, -1), y.dtype)

    def compute_output_shape(self, input_shapes):
        return (*input_shapes[0][:-1], self.units)

    def get_config(self):
        return {
            **super().get_config(),
            "units": self.units,
            "activation": keras.activations.serialize(self.activation),
            "use_bias": self.use_bias,
        }


@keras.saving.register_keras_serializable(package="pointseq")
class ElementMax(keras.layers.Layer):
    """Each element's max over its unmasked rows, copied to those rows (a field-wide context).

    Call on ``[x, mask]`` with ``x`` ``(B, R, C)`` and ``mask`` ``(B, R)``; returns ``(B, R, C)``
    with padded rows 0. Only the element's own rows enter its max.
    """

    def call(self, inputs):
        x, mask = inputs
        valid = ops.expand_dims(ops.cast(mask, "bool"), -1)
        lowest = ops.full_like(x, -3.0e38)
        pooled = ops.max(ops.where(valid, x, lowest), axis=1, keepdims=True)
        return ops.where(valid, ops.broadcast_to(pooled, ops.shape(x)), ops.zeros_like(x))

    def compute_output_shape(self, input_shapes):
        return input_shapes[0]
