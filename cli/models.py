"""Model types of ``pointseq train`` and ``pointseq predict``: ``"model": {"type": ...}`` -> functions.

Each entry says how to build the model for fields of a given input shape, how to make the
training sequencer from the spec, and how to predict per-field probabilities for a block of
field inputs. Train and predict use nothing else of a model type, so another type is one
more entry in `MODEL_TYPES`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

import keras
import numpy as np

from pointseq.sequencers import Sequencer, build_sequencer
from pointseq.sequencers.models.pointnet_model import build_pointnet_segmentation_model

DEFAULT_WIDTH = 64  # the recipe's dense width (measured: cli/recipe.py)


@dataclass(frozen=True)
class ModelType:
    """``build(model_spec, field_shape (P, F), num_classes) -> model``;
    ``training_sequencer(sequencer_spec, X, y) -> sequencer``;
    ``predict_fields(model, inputs (B, P, F), batch_size) -> probabilities (B, P, C)``."""

    build: Callable[[dict, tuple[int, int], int], keras.Model]
    training_sequencer: Callable[[dict, Any, Any], Any]
    predict_fields: Callable[[keras.Model, np.ndarray, int], np.ndarray]
    spec_keys: tuple[str, ...]


def _build_pointnet(spec: dict, field_shape: tuple[int, int], num_classes: int) -> keras.Model:
    return build_pointnet_segmentation_model(field_shape[0], num_classes, num_features=field_shape[1],
                                             width=int(spec.get("width", DEFAULT_WIDTH)))


def _predict_pointnet(model: keras.Model, inputs: np.ndarray, batch_size: int) -> np.ndarray:
    """Probabilities of a block of fields through a predict-mode `Sequencer` (no shuffling, no augmentation)."""
    return np.asarray(model.predict(Sequencer(inputs, None, batch_size=batch_size, training=False), verbose=0))


MODEL_TYPES: dict[str, ModelType] = {
    "pointnet": ModelType(_build_pointnet, build_sequencer, _predict_pointnet, ("type", "num_classes", "width")),
}


def model_type(spec: dict) -> ModelType:
    """The entry of ``spec["type"]`` (default ``pointnet``); ValueError naming the known types."""
    name = str(spec.get("type", "pointnet")).lower()
    if name not in MODEL_TYPES:
        raise ValueError(f"model.type must be one of {sorted(MODEL_TYPES)}, got {spec.get('type')!r}")
    return MODEL_TYPES[name]
