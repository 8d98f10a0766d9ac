"""Everything between a point-cloud tile and its per-point predictions, as a training output keeps it.

``pipeline.json`` in the training output holds the model settings (type included), the
sampler (covering fields, no class balancing at prediction), the field encoder as training
settled it (e.g. padded rows), the feature spec with its normalisation, the class map, the
label dimension, the seed and the files' coordinate unit; with ``model.keras`` that is all
`predict_cloud` needs. A tile is cut into covering fields (a large tile in spatial blocks,
`pointclouds.blocks`), the model type's encoder turns a batch of fields at a time into model
inputs (the same encoder built the training cache), and the probabilities are propagated
back to every point with `PropagationAccumulator` and `TileAccumulator`.
"""

from __future__ import annotations

import json
import os
import sys
from typing import Any, Callable

import keras
import numpy as np

from pointseq.pointclouds import ClassMap, FeatureSpec, PointCloud, PropagationAccumulator, sampler_from_spec
from pointseq.pointclouds.blocks import DEFAULT_BLOCK_POINTS, TileAccumulator, tile_blocks
from pointseq.pointclouds.field_encoders import FieldEncoder, count_samples, encoder_from_spec, take_samples
from pointseq.pointclouds.receptive_fields import Fields
from pointseq.sequencers.seeding import field_rng
from pointseq.tiles.model_types import model_type

PIPELINE_FILE = "pipeline.json"
MODEL_FILE = "model.keras"
FIELDS_PER_BLOCK = 256  # fields whose inputs and probabilities are held at once


def make_pipeline(settings: dict, pcloud_config: dict, unit_metres: float | None = None) -> dict:
    """The ``pipeline.json`` content from the model settings, a cache's stored ``offline_pcloud``
    config and the coordinate unit the training files' CRS state (None: none states one)."""
    sampler = dict(pcloud_config["sampler"])
    sampler["training_class_distribution"] = None  # prediction covers every point
    return {"model": {k: v for k, v in settings.items() if k != "num_classes"}, "sampler": sampler,
            "encoder": pcloud_config["encoder"], "features": pcloud_config["feature_normalisation"],
            "inputs": pcloud_config.get("inputs"), "class_map": pcloud_config["class_map"],
            "label": pcloud_config.get("label", "classification"), "seed": pcloud_config.get("seed", 0),
            "unit_metres": unit_metres}


def load_training_output(folder: str) -> tuple[keras.Model, dict]:
    """``(model, pipeline)`` of a training output folder; ValueError naming what is missing."""
    folder = os.fspath(folder)
    if not os.path.isdir(folder):
        raise ValueError(f"training output {folder!r} is not a folder (give the output folder of a training run)")
    missing = [name for name in (MODEL_FILE, PIPELINE_FILE) if not os.path.isfile(os.path.join(folder, name))]
    if missing:
        raise ValueError(f"training output {folder!r} lacks {missing}: train on point-cloud files first "
                         "(Segmenter.fit or pointseq train)")
    try:
        with open(os.path.join(folder, PIPELINE_FILE), encoding="utf-8") as f:
            pipeline = json.load(f)
        model_type(pipeline["model"])
        ClassMap.from_config(pipeline["class_map"])
        encoder_from_spec(pipeline.get("encoder"))
        model = keras.saving.load_model(os.path.join(folder, MODEL_FILE))
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise ValueError(f"training output {folder!r} cannot be loaded: {' '.join(str(exc).split())}") from None
    return model, pipeline


def predict_fields(model: keras.Model, encoder: FieldEncoder, points: np.ndarray, fields: Fields,
                   features: np.ndarray | None, first: int, stop: int, batch_size: int) -> np.ndarray:
    """Probabilities ``(stop - first, P, C)`` of the kept points of fields ``[first, stop)``.

    Every model call sees ``batch_size`` fields (the last batch repeats its last field), so the
    model is traced once whatever the block."""
    samples = encoder.encode(points, fields, features, first, stop)
    out = []
    for start in range(0, count_samples(samples), batch_size):
        batch = take_samples(samples, slice(start, start + batch_size))
        outputs = keras.ops.convert_to_numpy(model.predict_on_batch(encoder.prediction_inputs(batch, batch_size)))
        out.append(encoder.to_points(outputs[:count_samples(batch)], batch))
    return np.concatenate(out).astype(np.float32, copy=False)


def predict_cloud(model: keras.Model, pipeline: dict, cloud: PointCloud, *, batch_size: int = 16,
                  progress: bool = False, block_points: int = DEFAULT_BLOCK_POINTS,
                  on_fields: Callable[[int], Any] | None = None) -> np.ndarray:
    """Per-point class probabilities (N, C) float32 of ``cloud``, every point covered.

    A tile of more than ``block_points`` points is cut in xy blocks of about that many points
    (`pointclouds.blocks`), with memory for one block's fields and the tile's per-point sums.
    ``on_fields(count)`` hears how many fields each block holds.
    """
    if len(cloud) == 0:
        raise ValueError(f"point cloud {cloud.path or ''!r} holds no points: nothing to predict")
    sampler = sampler_from_spec(pipeline["sampler"])
    encoder = encoder_from_spec(pipeline.get("encoder"))
    encoder.bind(sampler)
    seed = int(pipeline.get("seed", 0))
    # Features of the whole tile, once: mined features of a block's points would miss their
    # neighbours beyond the block.
    tile_features = FeatureSpec.from_spec(pipeline["features"])(cloud)
    tile = TileAccumulator(len(cloud), ClassMap.from_config(pipeline["class_map"]).num_classes)
    for block in tile_blocks(sampler, cloud.points, block_points, lambda number: field_rng(seed, number)):
        part = cloud if block.indices is None else block_cloud(cloud, block.indices)
        fields = block.fields
        if on_fields is not None:
            on_fields(len(fields))
        accumulator = PropagationAccumulator(fields, tile.num_classes)
        bar = keras.utils.Progbar(len(fields), unit_name="field", verbose=1 if sys.stdout.isatty() else 2) \
            if progress else None  # a redirected stdout gets one plain line per block
        features = (tile_features if block.indices is None or tile_features is None
                    else tile_features[block.indices])
        for first in range(0, len(fields), FIELDS_PER_BLOCK):
            stop = min(first + FIELDS_PER_BLOCK, len(fields))
            accumulator.add(first, predict_fields(model, encoder, part.points, fields, features, first, stop,
                                                  batch_size))
            if bar is not None:
                bar.update(stop)
        tile.add(block, accumulator)
    return tile.result()


def block_cloud(cloud: PointCloud, indices: np.ndarray) -> PointCloud:
    """The points ``indices`` of ``cloud`` with their attributes (what a block's features need)."""
    return PointCloud(cloud.points[indices], {name: values[indices] for name, values in cloud.attributes.items()},
                      None if cloud.labels is None else cloud.labels[indices], cloud.path)
