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
import warnings

import keras
import numpy as np

from pointseq.pointclouds import ClassMap, FeatureSpec, PointCloud, read_point_cloud, write_point_cloud
from pointseq.pointclouds.blocks import DEFAULT_BLOCK_POINTS
from pointseq.pointclouds.las_stream import read_las_columns, write_las_streaming
from pointseq.pointclouds.reading import LAS_SUFFIXES
from pointseq.tiles.evaluation import prediction_record
from pointseq.tiles.pipeline import predict_cloud
from pointseq.tiles.recipe import coordinate_unit_metres

UNIT_TOLERANCE = 1e-4  # relative: a foot and a US survey foot (2e-6 apart) cut the same fields


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


def check_tile_unit(pipeline: dict, path: str, allow_unit_mismatch: bool = False) -> None:
    """Compare the coordinate unit a tile's CRS states with the training files' (``pipeline``).

    Fields and mined features are cut at sizes in the training files' unit, so a tile in
    another unit is seen at the wrong scale: ValueError when both state different units
    (a warning with ``allow_unit_mismatch``), a warning when only one states a unit other
    than the metre and the other is taken to share it."""
    trained, tile = pipeline.get("unit_metres"), coordinate_unit_metres(path)
    if trained is not None and tile is not None:
        if abs(tile - trained) <= UNIT_TOLERANCE * trained:
            return
        message = (f"tile {path!r} has coordinates in units of {tile:g} m (its CRS) but the model was trained on "
                   f"files in units of {trained:g} m, so its fields and features would be cut "
                   f"{trained / tile:.3g} times too large")
        if not allow_unit_mismatch:
            raise ValueError(message + "; reproject the tile to the training files' unit, or allow the mismatch "
                             "(allow_unit_mismatch=True, --allow-unit-mismatch) to predict it anyway")
        warnings.warn(message, UserWarning, stacklevel=2)
    elif (trained or 1.0) != (tile or 1.0):
        stated, side = (trained, "the training files state") if tile is None else (tile, f"tile {path!r} states")
        warnings.warn(f"{side} a coordinate unit of {stated:g} m and the other side none; both are taken to "
                      f"be in units of {trained or 1.0:g} m (the model's): check the tile's CRS",
                      UserWarning, stacklevel=2)


def predict_file(model: keras.Model, pipeline: dict, path: str, target: str, *, probabilities: bool = False,
                 write_classification: bool = False, batch_size: int = 16,
                 block_points: int = DEFAULT_BLOCK_POINTS, progress: bool = False,
                 allow_unit_mismatch: bool = False, preview: bool = False) -> tuple[str, np.ndarray, PointCloud]:
    """Predict ``path`` and write ``target``; returns ``(target, per-point codes, cloud)``.
    A tile in another coordinate unit than the training files is refused (`check_tile_unit`).
    With ``preview``, also a top-down picture of the result at `preview_path` ``(target)``."""
    if os.path.abspath(target) == os.path.abspath(path):
        raise ValueError(f"target {target!r} would overwrite its input; choose another path")
    check_tile_unit(pipeline, path, allow_unit_mismatch)
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
    if preview:
        from pointseq.tiles.pictures import save_prediction_preview

        save_prediction_preview(cloud.points, codes, preview_path(target),
                                title=f"{os.path.basename(target)}: {len(codes):,} points, predicted")
    return target, codes, cloud


def preview_path(target: str | os.PathLike) -> str:
    """Where `predict_file` puts the preview of ``target``: ``<target without suffix>_preview.png``."""
    return os.path.splitext(os.fspath(target))[0] + "_preview.png"
