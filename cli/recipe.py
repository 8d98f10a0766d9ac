"""The default training recipe of ``pointseq train`` and ``pointseq demo`` on LiDAR tiles.

Measured on the synthetic tiles (see the README's recipe section): both models learn
every class when (1) a field's coordinates are relative to its centre and scaled by its
radius, with a height above the field's lowest (1st percentile) point, so every field looks
alike wherever the tile lies (`pointseq.pointclouds.field_inputs`); (2) intensity and return
numbers come in normalised to [0, 1] (`FeatureSpec`); (3) the loss weights each class by its
inverse frequency and ignored points (noise) have sample weight 0 (`ClassMap`); (4) the
learning rate decays along a cosine over the whole run. These are the defaults of
``pointseq train`` on point-cloud files.
"""

from __future__ import annotations

from typing import Any

import keras
import numpy as np

from pointseq.arguments import require_int, require_positive
from pointseq.sequencers.models.losses import WeightedSparseCrossEntropy

# Fields: square fields 15 m across (a building or a crown in full), 1024 points drawn at random
# per field; centres 5 m apart (2/3 of the half side): overlapping fields, more batches per tile.
FIELD_RADIUS = 7.5  # metres: half side of a square field
NUM_POINTS = 1024
FIELD_SEPARATION_FACTOR = 2.0 / 3.0
SAMPLER = {"type": "CoveringFieldSampler", "num_points": NUM_POINTS, "subsampling": "random",
           "neighborhood": {"type": "rectangular2d", "radius": FIELD_RADIUS,
                            "separation_factor": FIELD_SEPARATION_FACTOR}}
# Point features (`FeatureSpec`) after the field geometry (x, y, z, height; `field_inputs`):
# intensity / 65535, return_number / number_of_returns, number_of_returns / 5.
MAX_RETURNS = 5.0
FEATURES = ["intensity", "return_ratio",
            {"name": "number_of_returns", "normalisation": {"scale": 1.0 / MAX_RETURNS, "offset": 0.0}}]
# `ClassMap` spec: every code found is a class except the ASPRS noise codes (low 7, high 18).
CLASSES = {"ignore": [7, 18]}
# Training.
LEARNING_RATE = 3e-3
FINAL_LEARNING_RATE_FRACTION = 0.05
BATCH_SIZE = 16
DENSE = {"width": 64, "epochs": 6}
SHADOW = {"width": 32, "epochs": 6, "cell_size": 0.5, "depth": 4}  # cell in metres, before scaling


def default_epochs(model_spec: dict) -> int:
    """The recipe's epochs for a model spec's type (``pointnet`` unless it says ``shadow``)."""
    shadow = str(model_spec.get("type", "pointnet")).lower() == "shadow"
    return (SHADOW if shadow else DENSE)["epochs"]


def inverse_frequency_weights(class_counts: list[int] | np.ndarray) -> list[float]:
    """``total / (num_classes * count)`` per class from the trained points per class id (mean 1
    when balanced; ignored points are not counted); a class without points gets weight 1."""
    counts = np.asarray(class_counts, dtype=np.float64)
    if counts.ndim != 1 or counts.size == 0 or np.any(counts < 0):
        raise ValueError(f"class_counts must be a non-empty list of counts >= 0, got {class_counts!r}")
    if counts.sum() == 0:
        raise ValueError("class_counts must count at least one trained point, got none")
    weights = np.where(counts > 0, counts.sum() / (counts.size * np.maximum(counts, 1)), 1.0)
    return weights.tolist()


def compile_for_recipe(model: keras.Model, class_counts: list[int] | np.ndarray, total_steps: int,
                       learning_rate: float = LEARNING_RATE) -> dict[str, Any]:
    """Compile ``model`` with the recipe's loss (inverse-frequency class weights; ignored points
    come with sample weight 0) and Adam on a cosine decay over ``total_steps`` batches; returns
    the settings used."""
    total_steps = require_int("total_steps", total_steps, 1)
    num_classes = int(model.output.shape[-1])
    weights = inverse_frequency_weights(class_counts)
    if len(weights) != num_classes:
        raise ValueError(f"class_counts must have one count per model class ({num_classes}), got {len(weights)}")
    schedule = keras.optimizers.schedules.CosineDecay(
        require_positive("learning_rate", learning_rate), total_steps, alpha=FINAL_LEARNING_RATE_FRACTION)
    model.compile(keras.optimizers.Adam(schedule),
                  WeightedSparseCrossEntropy(weights, ignore_label=num_classes))
    return {"class_weights": weights, "learning_rate": learning_rate, "total_steps": total_steps,
            "schedule": "cosine", "final_learning_rate": learning_rate * FINAL_LEARNING_RATE_FRACTION}
