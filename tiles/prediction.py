"""Classified files out: predict a point-cloud file and write it with its predictions.

The output keeps every point in its order and every dimension of a LAS/LAZ input, and adds
the extra-bytes dimension ``prediction`` (the source class codes), optionally one
``prob_<class>`` float32 dimension per class and the codes in ``classification`` too; a VLR
names the dimensions the prediction wrote (`evaluation.prediction_record`), so ``evaluate``
refuses to score a prediction against itself. Files are written under a temporary name and
renamed, so a failure never leaves half a file. A LAS/LAZ input is read (xyz and the
dimensions the features need) and its output written a chunk of points at a time.
"""

from __future__ import annotations

import os
import re

import keras
import numpy as np

from pointseq.pointclouds import ClassMap, FeatureSpec, PointCloud, read_point_cloud, write_point_cloud
from pointseq.pointclouds.blocks import DEFAULT_BLOCK_POINTS
from pointseq.pointclouds.las_stream import read_las_columns, write_las_streaming
from pointseq.pointclouds.reading import LAS_SUFFIXES
from pointseq.tiles.evaluation import prediction_record
from pointseq.tiles.pipeline import predict_cloud


def output_path(folder: str, source: str) -> str:
    """``folder/<name>``: a LAS/LAZ input keeps its suffix, any other becomes ``.laz``."""
    stem, suffix = os.path.splitext(os.path.basename(source))
    return os.path.join(folder, stem + (suffix if suffix.lower() in LAS_SUFFIXES else ".laz"))


def probability_names(class_map: ClassMap) -> list[str]:
    """``prob_<class name>`` per class, as LAS extra-bytes names allow (32 characters)."""
    return [("prob_" + re.sub(r"[^A-Za-z0-9_]", "_", name))[:32] for name in class_map.names]


def read_for_prediction(path: str, pipeline: dict) -> PointCloud:
    """The cloud of ``path`` with xyz and the dimensions the pipeline's features need."""
    if os.path.splitext(path)[1].lower() in LAS_SUFFIXES:
        return read_las_columns(path, FeatureSpec.from_spec(pipeline["features"]).dimensions)
    return read_point_cloud(path, label=None)


def predict_file(model: keras.Model, pipeline: dict, path: str, target: str, *, probabilities: bool = False,
                 write_classification: bool = False, batch_size: int = 16,
                 block_points: int = DEFAULT_BLOCK_POINTS, progress: bool = False) -> tuple[str, np.ndarray, PointCloud]:
    """Predict ``path`` and write ``target``; returns ``(target, per-point codes, cloud)``."""
    if os.path.abspath(target) == os.path.abspath(path):
        raise ValueError(f"target {target!r} would overwrite its input; choose another path")
    cloud = read_for_prediction(path, pipeline)
    proba = predict_cloud(model, pipeline, cloud, batch_size=batch_size, progress=progress,
                          block_points=block_points)
    class_map = ClassMap.from_config(pipeline["class_map"])
    codes = class_map.to_codes(proba.argmax(axis=1))
    extra = {"prediction": codes.astype(np.uint8 if codes.max(initial=0) <= 255 else np.uint16)}
    if probabilities:
        extra.update(zip(probability_names(class_map), proba.T))
    classification = codes if write_classification else None
    record = prediction_record([*extra, *(["classification"] if write_classification else [])], path)
    os.makedirs(os.path.dirname(os.path.abspath(target)), exist_ok=True)  # after predicting: no empty folder on failure
    if os.path.splitext(path)[1].lower() in LAS_SUFFIXES:
        write_las_streaming(target, path, extra=extra, classification=classification, vlrs=[record])
    else:
        write_point_cloud(target, cloud, extra=extra, classification=classification, vlrs=[record])
    return target, codes, cloud
