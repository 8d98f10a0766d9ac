"""A small PointNet-style per-point segmentation model for dense point batches."""

from __future__ import annotations

import keras

from pointseq.arguments import require_int


def build_pointnet_segmentation_model(
    num_points: int, num_classes: int, *, num_features: int = 3, width: int = 64
) -> keras.Model:
    """Shared per-point MLP, a global max-pooled context, and a per-point softmax head.

    Input ``(batch, num_points, num_features)``; output ``(batch, num_points, num_classes)``
    probabilities, for ``sparse_categorical_crossentropy`` against ``(batch, num_points)``
    integer labels.
    """
    for name, value in (("num_points", num_points), ("num_classes", num_classes),
                        ("num_features", num_features), ("width", width)):
        require_int(name, value, 1)
    points = keras.Input((num_points, num_features), name="points")
    local = keras.layers.Dense(width // 2, activation="relu")(points)
    local = keras.layers.Dense(width, activation="relu")(local)
    context = keras.layers.GlobalMaxPooling1D()(keras.layers.Dense(2 * width, activation="relu")(local))
    context = keras.layers.RepeatVector(num_points)(context)
    merged = keras.layers.Concatenate()([local, context])
    head = keras.layers.Dense(width, activation="relu")(merged)
    out = keras.layers.Dense(num_classes, activation="softmax")(head)
    return keras.Model(points, out, name="pointnet_segmentation")
