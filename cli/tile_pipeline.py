"""Everything between a point-cloud tile and its per-point predictions, as a training output folder keeps it.

``pipeline.json`` in the training output holds the model type, the sampler (covering fields,
no class balancing at prediction), the feature spec with its normalisation, the field scale,
the class map and the label dimension; with ``model.keras`` that is all `predict_cloud` needs.
A tile is cut into covering fields (a large tile in spatial blocks, `pointclouds.blocks`), their
inputs are built and predicted a batch of fields at a time (memory: the batch's inputs and
probabilities, one block's fields and the tile's per-point sums), and the probabilities are
propagated back to every point with `PropagationAccumulator` and `TileAccumulator`.
"""

from __future__ import annotations

import json
import os

import keras
import numpy as np

from pointseq.cli.models import model_type
from pointseq.cli.usage_error import UsageError
from pointseq.pointclouds import ClassMap, FeatureSpec, PointCloud, PropagationAccumulator, sampler_from_spec
from pointseq.pointclouds.blocks import DEFAULT_BLOCK_POINTS, TileAccumulator, tile_blocks
from pointseq.sequencers.seeding import field_rng

PIPELINE_FILE = "pipeline.json"
MODEL_FILE = "model.keras"
FIELDS_PER_BLOCK = 256  # fields whose inputs and probabilities are held at once


def make_pipeline(model_spec: dict, pcloud_config: dict, prediction_settings: dict | None = None) -> dict:
    """The ``pipeline.json`` content from the model spec (plus what its type needs to predict,
    e.g. the shadow model's padded rows) and a cache's stored ``offline_pcloud`` config."""
    sampler = dict(pcloud_config["sampler"])
    sampler["training_class_distribution"] = None  # prediction covers every point
    model = {**{k: v for k, v in model_spec.items() if k != "num_classes"}, **(prediction_settings or {})}
    return {"model": model, "sampler": sampler,
            "features": pcloud_config["feature_normalisation"], "inputs": pcloud_config.get("inputs"),
            "class_map": pcloud_config["class_map"], "label": pcloud_config.get("label", "classification"),
            "seed": pcloud_config.get("seed", 0)}


def load_training_output(folder: str) -> tuple[keras.Model, dict]:
    """``(model, pipeline)`` of a training output folder; `UsageError` naming what is missing."""
    if not os.path.isdir(folder):
        raise UsageError(f"training output {folder!r} is not a folder (give the 'output' folder of pointseq train)")
    missing = [name for name in (MODEL_FILE, PIPELINE_FILE) if not os.path.isfile(os.path.join(folder, name))]
    if missing:
        raise UsageError(f"training output {folder!r} lacks {missing}: train on point-cloud files "
                         "(offline_pcloud) with pointseq train to get them")
    try:
        with open(os.path.join(folder, PIPELINE_FILE), encoding="utf-8") as f:
            pipeline = json.load(f)
        model_type(pipeline["model"])
        ClassMap.from_config(pipeline["class_map"])
        model = keras.saving.load_model(os.path.join(folder, MODEL_FILE))
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise UsageError(f"training output {folder!r} cannot be loaded: {' '.join(str(exc).split())}") from None
    return model, pipeline


def predict_cloud(model: keras.Model, pipeline: dict, cloud: PointCloud, *, batch_size: int = 16,
                  progress: bool = False, block_points: int = DEFAULT_BLOCK_POINTS) -> np.ndarray:
    """Per-point class probabilities (N, C) of ``cloud``, every point covered.

    A tile of more than ``block_points`` points is cut in xy blocks of about that many points
    (`pointclouds.blocks`): the same fields and the same result as the whole tile at once, with
    memory for one block's fields and the tile's per-point sums.
    """
    sampler = sampler_from_spec(pipeline["sampler"])
    seed = int(pipeline.get("seed", 0))
    feature_spec = FeatureSpec.from_spec(pipeline["features"])
    entry = model_type(pipeline["model"])
    tile = TileAccumulator(len(cloud), ClassMap.from_config(pipeline["class_map"]).num_classes)
    for block in tile_blocks(sampler, cloud.points, block_points, lambda number: field_rng(seed, number)):
        part = cloud if block.indices is None else block_cloud(cloud, block.indices)
        fields = block.fields
        accumulator = PropagationAccumulator(fields, tile.num_classes)
        bar = keras.utils.Progbar(len(fields), unit_name="field") if progress else None
        features = feature_spec(part)
        for first in range(0, len(fields), FIELDS_PER_BLOCK):
            stop = min(first + FIELDS_PER_BLOCK, len(fields))
            accumulator.add(first, entry.predict_fields(model, pipeline, part.points, fields, features, first, stop,
                                                        batch_size))
            if bar is not None:
                bar.update(stop)
        tile.add(block, accumulator)
    return tile.result()


def block_cloud(cloud: PointCloud, indices: np.ndarray) -> PointCloud:
    """The points ``indices`` of ``cloud`` with their attributes (what a block's features need)."""
    return PointCloud(cloud.points[indices], {name: values[indices] for name, values in cloud.attributes.items()},
                      None if cloud.labels is None else cloud.labels[indices], cloud.path)
