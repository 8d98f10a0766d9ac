"""KPConv learns local geometry on synthetic tiles: it beats the majority class by a margin and
a PointNet trained for the same number of updates on the same fields."""

import importlib

import keras
import numpy as np
import pytest

from pointseq.pointclouds.field_encoders import encoder_from_spec
from pointseq.pointclouds.metrics import classification_metrics
from pointseq.pointclouds.receptive_fields import CoveringFieldSampler
from pointseq.sequencers.models.kpconv_model import kpconv_model_for_encoder
from pointseq.sequencers.models.losses import WeightedSparseCrossEntropy
from pointseq.sequencers.models.pointnet_model import build_pointnet_segmentation_model

SYNTHETIC = "pointseq.tiles.synthetic"  # moving to pointseq.tiles.synthetic
CODES = (2, 5, 6)  # ground, vegetation, building; noise (7) is ignored
UPDATES, BATCH = 120, 8
HIERARCHY = {"type": "hierarchical_fps", "num_points_per_depth": [128, 32, 8], "num_pwise_neighbors": [12, 8, 4],
             "num_downsampling_neighbors": [1, 6, 4], "num_upsampling_neighbors": [1, 1, 1]}


def tile_fields(seed, sampler, encoders):
    synthetic = importlib.import_module(SYNTHETIC)
    tile = synthetic.make_tile(np.random.default_rng(seed), size=40.0, density=3.0)
    table = np.full(256, len(CODES), dtype=np.int64)
    table[list(CODES)] = np.arange(len(CODES))
    fields = sampler(tile["xyz"], labels=table[tile["classification"]])
    return [encoder.encode(tile["xyz"], fields, None) for encoder in encoders]


def fit_and_score(model, encoder, train, test):
    model.compile(keras.optimizers.Adam(1e-2), WeightedSparseCrossEntropy([1.0] * len(CODES), len(CODES)))
    x, labels = encoder.inputs(train), train["labels"]
    order = np.random.default_rng(0).integers(0, len(labels), (UPDATES, BATCH))
    for rows in order:
        model.train_on_batch({k: v[rows] for k, v in x.items()} if isinstance(x, dict) else x[rows], labels[rows])
    predicted = model.predict(encoder.inputs(test), batch_size=32, verbose=0).argmax(-1)
    return classification_metrics(test["labels"].ravel(), predicted.ravel(), len(CODES) + 1, ignored=[len(CODES)])


def test_kpconv_beats_majority_and_pointnet():
    keras.utils.set_random_seed(0)
    sampler = CoveringFieldSampler(128, {"type": "sphere", "radius": 6.0, "separation_factor": 0.8})
    hierarchical, dense = encoder_from_spec(HIERARCHY), encoder_from_spec({"type": "dense"})
    hierarchical.bind(sampler)
    dense.bind(sampler)
    (h_train, d_train), (h_test, d_test) = (tile_fields(seed, sampler, [hierarchical, dense]) for seed in (1, 2))
    kp = fit_and_score(kpconv_model_for_encoder(hierarchical, 0, len(CODES), width=16), hierarchical, h_train, h_test)
    pn = fit_and_score(build_pointnet_segmentation_model(128, len(CODES), num_features=dense.num_input_features(0),
                                                         width=32), dense, d_train, d_test)
    labels = h_test["labels"][h_test["labels"] < len(CODES)]
    majority = np.bincount(labels).max() / labels.size
    print(f"kpconv accuracy {kp.overall_accuracy:.3f} mIoU {kp.mean_iou:.3f}; pointnet accuracy "
          f"{pn.overall_accuracy:.3f} mIoU {pn.mean_iou:.3f}; majority {majority:.3f}")
    assert kp.overall_accuracy > majority + 0.1
    assert kp.mean_iou > pn.mean_iou + 0.05
