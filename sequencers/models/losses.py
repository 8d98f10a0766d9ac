"""A class-weighted sparse cross-entropy that ignores one label, for per-point segmentation.

Keras' ``class_weight`` argument of ``fit`` does not take per-point targets ``(B, N)``, and
rare classes (buildings, vegetation against ground) otherwise barely move the loss.
"""

from __future__ import annotations

from collections.abc import Sequence

import keras
from keras import ops

from pointseq.arguments import require_int

__all__ = ["WeightedSparseCrossEntropy"]


@keras.saving.register_keras_serializable(package="pointseq")
class WeightedSparseCrossEntropy(keras.losses.Loss):
    """Cross-entropy over probabilities, each target weighted by its class's weight.

    Args:
        class_weights: one weight >= 0 per class.
        ignore_label: a label (>= the number of classes) whose points count for nothing, e.g.
            noise; ``None`` when every label is a class.
    """

    def __init__(self, class_weights: Sequence[float], ignore_label: int | None = None, **kwargs):
        super().__init__(**kwargs)
        weights = [float(w) for w in class_weights]
        if not weights or any(not w >= 0 for w in weights):
            raise ValueError(f"class_weights must be a non-empty list of weights >= 0, got {list(class_weights)}")
        if ignore_label is not None:
            require_int("ignore_label", ignore_label, len(weights))
        self.class_weights = weights
        self.ignore_label = ignore_label

    def call(self, y_true, y_pred):
        labels = ops.cast(y_true, "int32")
        num_classes = len(self.class_weights)
        # Every label >= num_classes (the ignored one) reads weight 0 from the appended slot.
        table = ops.convert_to_tensor(self.class_weights + [0.0], dtype=y_pred.dtype)
        weight = ops.take(table, ops.minimum(labels, num_classes))
        safe = ops.minimum(labels, num_classes - 1)
        return keras.losses.sparse_categorical_crossentropy(safe, y_pred) * weight

    def get_config(self) -> dict:
        return {**super().get_config(), "class_weights": self.class_weights, "ignore_label": self.ignore_label}
