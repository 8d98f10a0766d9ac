"""A small reference segmentation network over shadow batches.

An encoder-decoder over the grid hierarchy: pointwise layers per depth, max pooling from
children into parents on the way down, the element's max over its coarsest cells added to
each of them (a field-wide context: without it a cell sees at most its coarsest ancestor, and
a flat roof looks like ground), unpooling plus a skip connection on the way up, and a
per-cell softmax at depth 0. It exists to prove that the shadow path trains end to end and
that an element's output does not depend on its batch neighbours.
"""

from __future__ import annotations

from collections.abc import Sequence

import keras

from pointseq.arguments import require_int

from pointseq.sequencers.models.shadow_layers import ElementMax, MaskedDense, PoolToParent, UnpoolToChild

__all__ = ["build_shadow_segmentation_model", "shadow_batch_inputs", "shadow_input_names"]


def shadow_input_names(depth: int, *, neighbors: bool = True) -> list[str]:
    """Names of a shadow batch's entries (`pointclouds.shadow_batch`), in the models' input order;
    ``neighbors``: with the maps of sparse convolutions."""
    names = ["features"]
    for t in range(depth):
        names += [f"coords_{t}", f"mask_{t}", f"lengths_{t}"]
        if t < depth - 1:
            names.append(f"parent_{t}")
    if neighbors:
        names += [f"neighbors_{t}" for t in range(depth)]
        for t in range(depth - 1):
            names += [f"position_{t}", f"children_{t}"]
    return names


def shadow_batch_inputs(num_features: int, depth: int, rows: Sequence[int | None] | None = None, *,
                        neighbors: bool = True, kernel_offsets: int = 27) -> dict:
    """One ``keras.Input`` per entry of a shadow batch, so the batch dict feeds a model as it is
    (entries a model does not use are accepted all the same); ``rows``: rows per depth, None
    for free row dimensions (any row count per batch)."""
    rows = [None] * depth if rows is None else list(rows)
    shapes = {"features": ((rows[0], num_features), "float32")}
    for t in range(depth):
        shapes[f"coords_{t}"] = ((rows[t], 3), "float32")
        shapes[f"mask_{t}"] = ((rows[t],), "float32")
        shapes[f"lengths_{t}"] = ((), "int32")
        shapes[f"neighbors_{t}"] = ((rows[t], kernel_offsets), "int32")
        if t < depth - 1:
            shapes[f"parent_{t}"] = ((rows[t],), "int32")
            shapes[f"position_{t}"] = ((rows[t],), "int32")
            shapes[f"children_{t}"] = ((rows[t + 1], 8), "int32")
    return {name: keras.Input(shapes[name][0], dtype=shapes[name][1], name=name)
            for name in shadow_input_names(depth, neighbors=neighbors)}


def build_shadow_segmentation_model(
    num_features: int,
    num_classes: int,
    depth: int,
    max_rows: Sequence[int],
    *,
    width: int = 32,
) -> keras.Model:
    """Build the reference model for shadow batches with ``max_rows[t]`` rows at depth ``t``.

    The model takes the whole batch dict of a ``SparseShadowSequencer`` (use the sequencer's
    ``max_rows`` here) and returns per-cell class probabilities ``(B, max_rows[0],
    num_classes)``; compile it with ``sparse_categorical_crossentropy``; the sequencer's
    sample weights mask the padding out of the loss.
    """
    checks = (
        ("num_features", num_features, 1),
        ("num_classes", num_classes, 2),
        ("depth", depth, 1),
        ("width", width, 1),
    )
    for name, value, low in checks:
        require_int(name, value, low)
    rows = [int(r) for r in max_rows]
    if len(rows) != depth or any(r < 1 for r in rows):
        raise ValueError(
            f"max_rows must hold {depth} positive row counts (one per depth), got {list(max_rows)}"
        )

    inputs = shadow_batch_inputs(num_features, depth, rows)

    def block(x, t, units):
        return MaskedDense(units, activation="relu")([x, inputs[f"mask_{t}"]])

    def concat(tensors):
        return keras.layers.Concatenate(axis=-1)(tensors)

    h = block(concat([inputs["features"], inputs["coords_0"]]), 0, width)
    skips = [h]
    for t in range(depth - 1):
        pooled = PoolToParent("max")(
            [h, inputs[f"parent_{t}"], inputs[f"mask_{t}"], inputs[f"mask_{t + 1}"]]
        )
        h = block(concat([pooled, inputs[f"coords_{t + 1}"]]), t + 1, width * 2 ** (t + 1))
        skips.append(h)
    h = skips[-1] = block(concat([h, ElementMax()([h, inputs[f"mask_{depth - 1}"]])]), depth - 1,
                          width * 2 ** (depth - 1))
    for t in range(depth - 2, -1, -1):
        up = UnpoolToChild()([h, inputs[f"parent_{t}"]])
        h = block(concat([up, skips[t]]), t, width * 2**t)
    outputs = keras.layers.Dense(num_classes, activation="softmax", name="cell_probs")(h)
    return keras.Model(inputs=inputs, outputs=outputs, name="shadow_segmentation")
