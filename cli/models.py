"""Model types of ``pointseq train`` and ``pointseq predict``: ``"model": {"type": ...}`` -> functions.

Each entry says how to make the training sequencer from the spec, how to build the model
for that sequencer's batches, what prediction needs besides the model (stored in
``pipeline.json``), and how to predict per-field probabilities for a block of covering
fields of a tile. Train and predict use nothing else of a model type, so another type is
one more entry in `MODEL_TYPES`.

- ``pointnet``: each field's points as one array ``(P, 4 + F)`` (`field_inputs`).
- ``shadow``: each field as a hierarchical sparse grid, padded to the training's row
  counts (`pointseq.cli.shadow_pipeline`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

import keras
import numpy as np

from pointseq.cli import shadow_pipeline
from pointseq.pointclouds import Fields, sampler_from_spec
from pointseq.pointclouds.field_inputs import field_inputs, field_scale
from pointseq.sequencers import Sequencer, build_sequencer
from pointseq.sequencers.models.pointnet_model import build_pointnet_segmentation_model

DEFAULT_WIDTH = 64  # the recipe's dense width (measured: cli/recipe.py)


@dataclass(frozen=True)
class ModelType:
    """``training_sequencer(sequencer_spec, X, y, model_spec) -> sequencer``;
    ``build(model_spec, sequencer, num_classes) -> model``;
    ``prediction_settings(model_spec, sequencer) -> dict`` (kept in ``pipeline.json``'s model);
    ``predict_fields(model, pipeline, points, fields, features, first, stop, batch_size)
    -> probabilities (stop - first, P, C)``."""

    training_sequencer: Callable[[dict, Any, Any, dict], Any]
    build: Callable[[dict, Any, int], keras.Model]
    prediction_settings: Callable[[dict, Any], dict]
    predict_fields: Callable[..., np.ndarray]
    spec_keys: tuple[str, ...]


# ------------------------------------------------------------------------------ pointnet
def _pointnet_sequencer(sequencer_spec: dict, X: Any, y: Any, model_spec: dict) -> Any:
    train = build_sequencer(sequencer_spec, X, y)
    x, labels = train[0][:2]
    if not isinstance(x, np.ndarray) or x.ndim != 3 or labels is None or labels.shape != x.shape[:2]:
        raise ValueError(
            "the pointnet model takes batches of one array (B, N, F) with labels (B, N); got x "
            f"{getattr(x, 'shape', type(x).__name__)} and y {getattr(labels, 'shape', None)}")
    return train


def _build_pointnet(spec: dict, train: Any, num_classes: int) -> keras.Model:
    num_points, num_features = train[0][0].shape[1:]
    return build_pointnet_segmentation_model(num_points, num_classes, num_features=num_features,
                                             width=int(spec.get("width", DEFAULT_WIDTH)))


def _predict_pointnet(model: keras.Model, pipeline: dict, points: np.ndarray, fields: Fields,
                      features: np.ndarray | None, first: int, stop: int, batch_size: int) -> np.ndarray:
    """Probabilities of a block of fields through a predict-mode `Sequencer` (no shuffling, no augmentation)."""
    inputs = field_inputs(fields, features, field_scale(sampler_from_spec(pipeline["sampler"])), first, stop)
    return np.asarray(model.predict(Sequencer(inputs, None, batch_size=batch_size, training=False), verbose=0))


# -------------------------------------------------------------------------------- shadow
def _shadow_settings(spec: dict) -> dict:
    return shadow_pipeline.shadow_model_settings({k: v for k, v in spec.items() if k != "num_classes"})


def _shadow_sequencer(sequencer_spec: dict, X: Any, y: Any, model_spec: dict) -> Any:
    """The spec's ``OfflineSequencer`` with a `SparseShadowSequencer` backbone and the model's grid."""
    if X is not None or not isinstance(sequencer_spec.get("offline_pcloud"), dict):
        raise ValueError("the shadow model trains on point-cloud files: give the sequencer an offline_pcloud "
                         "with 'paths' and no 'data'")
    settings = _shadow_settings(model_spec)
    backbone = {k: v for k, v in sequencer_spec.get("backbone", {}).items() if k not in ("type", "augmentor")}
    spec = {**sequencer_spec, "backbone": {**backbone, "type": "SparseShadowSequencer"},
            "offline_pcloud": {**sequencer_spec["offline_pcloud"], "grid": shadow_pipeline.grid_spec(settings)}}
    return build_sequencer(spec)


def _build_shadow(spec: dict, train: Any, num_classes: int) -> keras.Model:
    shapes = shadow_pipeline.shadow_shapes(train)
    width = _shadow_settings(spec)["width"]
    return shadow_pipeline.build_shadow_model(shapes["num_features"], num_classes, shapes["max_rows"], width=width)


def _shadow_prediction_settings(spec: dict, train: Any) -> dict:
    settings = _shadow_settings(spec)
    shapes = shadow_pipeline.shadow_shapes(train)
    return {"grid": shadow_pipeline.grid_spec({**settings, "max_rows": shapes["max_rows"]}),
            "max_rows": shapes["max_rows"]}


def _predict_shadow(model: keras.Model, pipeline: dict, points: np.ndarray, fields: Fields,
                    features: np.ndarray | None, first: int, stop: int, batch_size: int) -> np.ndarray:
    settings = pipeline["model"]
    return shadow_pipeline.predict_fields(model, points, fields, features, settings["grid"], settings["max_rows"],
                                          first, stop, batch_size=batch_size)


MODEL_TYPES: dict[str, ModelType] = {
    "pointnet": ModelType(_pointnet_sequencer, _build_pointnet, lambda spec, train: {}, _predict_pointnet,
                          ("type", "num_classes", "width")),
    "shadow": ModelType(_shadow_sequencer, _build_shadow, _shadow_prediction_settings, _predict_shadow,
                        ("num_classes", *shadow_pipeline.MODEL_KEYS)),
}


def model_type(spec: dict) -> ModelType:
    """The entry of ``spec["type"]`` (default ``pointnet``); ValueError naming the known types."""
    name = str(spec.get("type", "pointnet")).lower()
    if name not in MODEL_TYPES:
        raise ValueError(f"model.type must be one of {sorted(MODEL_TYPES)}, got {spec.get('type')!r}")
    return MODEL_TYPES[name]
