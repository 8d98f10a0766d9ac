"""A sparse-convolution U-Net over shadow batches (MinkUNet-like), the ``shadow`` model.

Encoder: at each depth ``t`` residual blocks of two submanifold `SparseConv3D` (3x3x3), masked
batch normalisation and ReLU, then a strided `SparseDownConv3D` to the parent depth (channels
double per depth up to ``max_width``). Decoder: a transposed `SparseUpConv3D` back to the cells
of ``t``, concatenated with the encoder's features there (skip connection), residual blocks;
a per-cell softmax at depth 0. Every cell sees its 3x3x3 neighbourhood at every depth, so its
receptive field spans ``~3 * 2**(depth - 1)`` depth-0 cells either way.

Row dimensions are free (``keras.Input((None, ...))``): one model predicts batches of any row
count, e.g. prediction batches padded further than training's to hold a larger grid. Every
layer keeps the batch-invariance contract (`sparse_conv`): in inference an element's output
does not depend on the other elements of its batch.
"""

from __future__ import annotations

import keras

from pointseq.arguments import require_int
from pointseq.sequencers.models.shadow_model import shadow_batch_inputs
from pointseq.sequencers.models.sparse_conv import (
    MaskedBatchNormalization,
    SparseConv3D,
    SparseDownConv3D,
    SparseUpConv3D,
)
from pointseq.sequencers.models.shadow_layers import ElementMax, MaskedDense

__all__ = ["build_sparse_unet"]


def build_sparse_unet(
    num_features: int,
    num_classes: int,
    depth: int,
    *,
    width: int = 32,
    max_width: int = 256,
    blocks: int = 1,
    kernel_size: int = 3,
    global_context: bool = True,
    momentum: float = 0.9,
) -> keras.Model:
    """Build the sparse U-Net for shadow batches of ``depth`` depths and ``num_features`` features.

    Args:
        num_features: width of the batch's ``features``.
        num_classes: classes of the per-cell softmax (>= 2).
        depth: grid depths the batches hold (>= 1); the U-Net has ``depth - 1`` strided levels.
        width: channels at depth 0; doubled per depth, at most ``max_width``.
        blocks: residual blocks per depth in the encoder and in the decoder.
        kernel_size: submanifold kernel edge; the batches' ``neighbors_t`` must hold
            ``kernel_size**3`` offsets (3 unless built otherwise, see `sparse_conv`).
        global_context: add each element's max over its coarsest cells to them (a field-wide
            context: a flat roof and flat ground look alike locally).
        momentum: of the moving statistics of the masked batch normalisation.

    The model takes the whole batch dict (`pointclouds.shadow_batch`, free row counts) and
    returns per-cell class probabilities ``(B, R_0, num_classes)``; compile it with a sparse
    cross-entropy; the batches' sample weights mask padding out of the loss.
    """
    for name, value, low in (("num_features", num_features, 1), ("num_classes", num_classes, 2),
                             ("depth", depth, 1), ("width", width, 1), ("max_width", max_width, 1),
                             ("blocks", blocks, 1)):
        require_int(name, value, low)
    inputs = shadow_batch_inputs(num_features, depth, kernel_offsets=require_int("kernel_size", kernel_size, 1) ** 3)
    masks = [inputs[f"mask_{t}"] for t in range(depth)]
    neighbors = [inputs[f"neighbors_{t}"] for t in range(depth)]
    widths = [min(width * 2**t, max_width) for t in range(depth)]

    def blocks_at(h, t):
        for _ in range(blocks):
            h = _residual(h, neighbors[t], masks[t], widths[t], kernel_size, momentum)
        return h

    h = _conv_bn(inputs["features"], neighbors[0], masks[0], widths[0], kernel_size, momentum)
    skips = []
    for t in range(depth):
        if t > 0:
            h = SparseDownConv3D(widths[t], use_bias=False)([h, inputs[f"children_{t - 1}"], masks[t]])
            h = keras.layers.ReLU()(MaskedBatchNormalization(momentum)([h, masks[t]]))
        skips.append(h := blocks_at(h, t))
    if global_context:
        h = keras.layers.Concatenate(axis=-1)([h, ElementMax()([h, masks[-1]])])
        h = _residual(h, neighbors[-1], masks[-1], widths[-1], kernel_size, momentum)
    for t in range(depth - 2, -1, -1):
        up = SparseUpConv3D(widths[t], use_bias=False)([h, inputs[f"parent_{t}"], inputs[f"position_{t}"], masks[t]])
        up = keras.layers.ReLU()(MaskedBatchNormalization(momentum)([up, masks[t]]))
        h = blocks_at(keras.layers.Concatenate(axis=-1)([up, skips[t]]), t)
    outputs = keras.layers.Dense(num_classes, activation="softmax", name="cell_probs")(h)
    return keras.Model(inputs=inputs, outputs=outputs, name="sparse_unet")


def _conv_bn(x, neighbors, mask, units: int, kernel_size: int, momentum: float, relu: bool = True):
    """Submanifold convolution, masked batch normalisation and (optionally) ReLU at one depth."""
    h = SparseConv3D(units, kernel_size, use_bias=False)([x, neighbors, mask])
    h = MaskedBatchNormalization(momentum)([h, mask])
    return keras.layers.ReLU()(h) if relu else h


def _residual(x, neighbors, mask, units: int, kernel_size: int, momentum: float):
    """Two convolutions with a shortcut (a masked projection where the width changes)."""
    shortcut = x if x.shape[-1] == units else MaskedDense(units, use_bias=False)([x, mask])
    h = _conv_bn(x, neighbors, mask, units, kernel_size, momentum)
    h = _conv_bn(h, neighbors, mask, units, kernel_size, momentum, relu=False)
    return keras.layers.ReLU()(keras.layers.Add()([h, shortcut]))
