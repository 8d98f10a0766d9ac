"""The default training recipe of ``pointseq train`` and ``pointseq demo`` on LiDAR tiles.

Measured on the synthetic tiles (see the README's recipe section): both models learn
every class when (1) a field's coordinates are relative to its centre and scaled by its
radius, with z measured from the field's lowest (1st percentile) point, so every field looks
alike wherever the tile lies; (2) intensity and return numbers come in normalised to [0, 1];
(3) the loss weights each class by its inverse frequency and gives ignored points (noise)
weight 0; (4) the learning rate decays along a cosine over the whole run.
"""

from __future__ import annotations

from typing import Any

import keras
import numpy as np

from pointseq.arguments import require_int, require_positive
from pointseq.sequencers.models.losses import WeightedSparseCrossEntropy

# Fields and features.
FIELD_RADIUS = 7.5  # metres: half side of a square field (15 m across: a building or a crown in full)
NUM_POINTS = 1024  # points drawn per field
# Training field centres 5 m apart (2/3 of the radius): overlapping fields, more batches per tile.
FIELD_SEPARATION_FACTOR = 2.0 / 3.0
FEATURES = ("x", "y", "height", "intensity", "return_ratio", "number_of_returns")
NUM_FEATURES = len(FEATURES)
HEIGHT_PERCENTILE = 1.0  # the field's "lowest point", robust to noise below the terrain
MAX_RETURNS = 5.0
# ASPRS codes -> classes; every other code (noise 7, unclassified 1, ...) is ignored.
CLASS_CODES = {2: "ground", 5: "vegetation", 6: "building"}
IGNORE_LABEL = len(CLASS_CODES)
# Training.
LEARNING_RATE = 3e-3
FINAL_LEARNING_RATE_FRACTION = 0.05
BATCH_SIZE = 16
DENSE = {"width": 64, "epochs": 6}
SHADOW = {"width": 32, "epochs": 4, "cell_size": 0.5, "depth": 4}  # cell in metres, before scaling


def labels_from_codes(codes: np.ndarray) -> np.ndarray:
    """ASPRS codes -> class indices in ``CLASS_CODES`` order; other codes -> ``IGNORE_LABEL``."""
    lookup = np.full(256, IGNORE_LABEL, np.int32)
    lookup[list(CLASS_CODES)] = np.arange(len(CLASS_CODES))
    return lookup[np.asarray(codes, dtype=np.uint8)]


def field_features(xyz: np.ndarray, intensity: np.ndarray, return_number: np.ndarray,
                   number_of_returns: np.ndarray, centre: np.ndarray, radius: float = FIELD_RADIUS
                   ) -> np.ndarray:
    """The ``FEATURES`` of fields, float32 ``(..., N, 6)``, from points ``(..., N, 3)`` (float64,
    any offset) and field centres ``(..., 2)``.

    x and y are relative to the centre and divided by the radius; height is z above the
    field's 1st-percentile z divided by the radius; intensity is divided by 65535; the return
    ratio is ``return_number / number_of_returns`` and the count is divided by 5.
    """
    radius = require_positive("radius", radius)
    xyz = np.asarray(xyz, dtype=np.float64)
    low = np.percentile(xyz[..., 2], HEIGHT_PERCENTILE, axis=-1)[..., None]
    returns = np.maximum(np.asarray(number_of_returns, dtype=np.float64), 1.0)
    columns = [
        (xyz[..., 0] - np.asarray(centre)[..., 0:1]) / radius,
        (xyz[..., 1] - np.asarray(centre)[..., 1:2]) / radius,
        (xyz[..., 2] - low) / radius,
        np.asarray(intensity, dtype=np.float64) / 65535.0,
        np.asarray(return_number, dtype=np.float64) / returns,
        returns / MAX_RETURNS,
    ]
    return np.stack(columns, axis=-1).astype(np.float32)


def inverse_frequency_weights(labels: np.ndarray, num_classes: int = len(CLASS_CODES)) -> list[float]:
    """``total / (num_classes * count)`` per class over the non-ignored labels (mean 1 when
    balanced); a class absent from ``labels`` gets weight 1."""
    num_classes = require_int("num_classes", num_classes, 1)
    labels = np.asarray(labels).ravel()
    counts = np.bincount(labels[labels < num_classes], minlength=num_classes).astype(np.float64)
    if counts.sum() == 0:
        raise ValueError("labels must hold at least one non-ignored label, got none")
    weights = np.where(counts > 0, counts.sum() / (num_classes * np.maximum(counts, 1)), 1.0)
    return weights.tolist()


def compile_for_recipe(model: keras.Model, labels: np.ndarray, total_steps: int,
                       learning_rate: float = LEARNING_RATE) -> dict[str, Any]:
    """Compile ``model`` with the recipe's loss (inverse-frequency weights, ignored label) and
    Adam on a cosine decay over ``total_steps`` batches; returns the settings used."""
    total_steps = require_int("total_steps", total_steps, 1)
    num_classes = int(model.output.shape[-1])
    weights = inverse_frequency_weights(labels, num_classes)
    schedule = keras.optimizers.schedules.CosineDecay(
        require_positive("learning_rate", learning_rate), total_steps, alpha=FINAL_LEARNING_RATE_FRACTION)
    model.compile(keras.optimizers.Adam(schedule),
                  WeightedSparseCrossEntropy(weights, ignore_label=num_classes))
    return {"class_weights": weights, "learning_rate": learning_rate, "total_steps": total_steps,
            "schedule": "cosine", "final_learning_rate": learning_rate * FINAL_LEARNING_RATE_FRACTION}
