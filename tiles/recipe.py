"""The default training recipe of the whole-tile workflow (`Segmenter`, ``pointseq train``, the demo).

Measured on the synthetic tiles (see docs/recipe.md): both models learn
every class when (1) a field's coordinates are relative to its centre and scaled by its
radius, with a height above the field's lowest (1st percentile) point, so every field looks
alike wherever the tile lies (`pointseq.pointclouds.field_inputs`); (2) intensity and return
numbers come in normalised to [0, 1] (`FeatureSpec`); (3) the loss weights each class by its
inverse frequency and ignored points (noise) have sample weight 0 (`ClassMap`); (4) the
learning rate decays along a cosine over the whole run. These are the defaults of
``pointseq train`` on point-cloud files.

Measured on a real tile (autzen_trim.laz, US feet, 8-bit intensity in a 16-bit field; see
docs/recipe.md): sizes are in metres, so a file whose CRS is in feet gets fields (and shadow cells) of
the same size on the ground (`coordinate_unit_metres`); intensity is divided by the bit depth
the files use (8, 12 or 16 bits: `intensity_bit_depth`), not by the field's type; and the class
weights are the inverse frequency to the power 0.6, which still lifts rare classes but no
longer makes the model predict a minority class wherever it is merely plausible.
"""

from __future__ import annotations

import math
import os
import re
from collections.abc import Sequence
from typing import Any

import keras
import laspy
import numpy as np

from pointseq.arguments import require_int, require_positive
from pointseq.pointclouds import PointCloudFileError, read_point_cloud
from pointseq.pointclouds.las_stream import read_las_columns
from pointseq.pointclouds.reading import LAS_SUFFIXES
from pointseq.sequencers.models.losses import WeightedSparseCrossEntropy
from pointseq.tiles.model_types import model_type

# Fields: square fields 15 m across (a building or a crown in full), 512 points drawn at random
# per field; centres 5 m apart (2/3 of the half side): overlapping fields, more batches per tile.
FIELD_RADIUS = 7.5  # metres: half side of a square field (divided by the files' unit: `sampler_spec`)
NUM_POINTS = 512
FIELD_SEPARATION_FACTOR = 2.0 / 3.0
SAMPLER = {"type": "CoveringFieldSampler", "num_points": NUM_POINTS, "subsampling": "random",
           "neighborhood": {"type": "rectangular2d", "radius": FIELD_RADIUS,
                            "separation_factor": FIELD_SEPARATION_FACTOR}}
# Point features (`FeatureSpec`) after the field geometry (x, y, z, height; `field_inputs`):
# intensity / (2^bits - 1) with the files' bit depth (`features_spec`; FEATURES: 16 bits),
# return_number / number_of_returns, number_of_returns / 5.
MAX_RETURNS = 5.0
INTENSITY_BIT_DEPTHS = (8, 12, 16)  # the smallest that holds the files' largest intensity
FEATURES = ["intensity", "return_ratio",
            {"name": "number_of_returns", "normalisation": {"scale": 1.0 / MAX_RETURNS, "offset": 0.0}}]
# Geometric features mined per point (`pointclouds.miners`), sizes in metres (divided by the
# files' unit): eigenvalue features at two scales (a roof is planar at 1 m and at 2.5 m, a crown
# is not), the height above the lowest point of a 5 m and a 20 m cell (terrain vs objects) and
# below the highest of a 5 m cell; heights come in per 10 m.
GEOMETRY_RADII = (1.0, 2.5)
EIGEN_FEATURES = ("linearity", "planarity", "sphericity", "verticality", "normal_z")
HEIGHT_CELLS = (("height_above_min", 5.0), ("height_above_min", 20.0), ("height_below_max", 5.0))
HEIGHT_SCALE = 0.1  # per metre
# Field inputs are augmented in training: a rotation about z, a scale, a small jitter (of the
# normalised coordinates: 0.005 of the 7.5 m radius, about 4 cm).
AUGMENTATION = {"transformations": [
    {"type": "Rotation", "axis": [0, 0, 1], "angle_distribution": {"type": "uniform", "start": -math.pi,
                                                                    "end": math.pi}},
    {"type": "Scale", "scale_distribution": {"type": "uniform", "start": 0.9, "end": 1.1}},
    {"type": "Jitter", "noise_distribution": {"type": "normal", "mean": 0.0, "stdev": 0.005}, "clip": 0.02}]}
# CRS linear units: EPSG unit code (GeoTIFF ProjLinearUnitsGeoKey) -> metres.
PROJ_LINEAR_UNITS_KEY = 3076
LINEAR_UNITS = {9001: 1.0, 9002: 0.3048, 9003: 1200.0 / 3937.0}
ANGULAR_UNIT_WORDS = ("degree", "radian", "grad", "gon", "arc")
# `ClassMap` spec: every code found is a class except the ASPRS noise codes (low 7, high 18).
CLASSES = {"ignore": [7, 18]}
# Training: Adam at the model type's rate (`model_types`), cosine decay to 5% of it.
FINAL_LEARNING_RATE_FRACTION = 0.05
BATCH_SIZE = 16
# Training length when a spec names no updates: PASSES passes over the training fields, at
# least the model type's updates and at most MAX_UPDATES. Measured on autzen_trim.laz halves
# (~900 fields, 56 batches a pass): pointnet at 150 / 600 / 2000 updates, mean IoU 0.443 / 0.456
# / 0.484 (x split) and 0.385 (the majority) / 0.495 / 0.511 (y split); on the six-class tile's
# halves (10-16 fields) more updates overfit (0.660 / 0.645 / 0.617), so small data keeps the
# type's minimum.
PASSES = 10
MAX_UPDATES = 2000
SEED = 0  # a spec without a seed is still repeatable: this one is used and recorded
CLASS_WEIGHT_POWER = 0.6  # class weights: (inverse frequency) ** power


def inverse_frequency_weights(class_counts: list[int] | np.ndarray, power: float = CLASS_WEIGHT_POWER) -> list[float]:
    """``(total / (num_classes * count)) ** power`` per class from the trained points per class id
    (1 when balanced; ignored points are not counted); a class without points gets weight 1.

    The recipe's power 0.6 (measured, docs/recipe.md): full inverse frequency (power 1) on a tile whose
    classes overlap made the model predict the minority class wherever it was plausible (real
    tile: accuracy below always predicting the majority class); 0.5 cost the rare class of a
    small training set (the whole-tile test's buildings) too much."""
    counts = np.asarray(class_counts, dtype=np.float64)
    if counts.ndim != 1 or counts.size == 0 or np.any(counts < 0):
        raise ValueError(f"class_counts must be a non-empty list of counts >= 0, got {class_counts!r}")
    if counts.sum() == 0:
        raise ValueError("class_counts must count at least one trained point, got none")
    weights = np.where(counts > 0, counts.sum() / (counts.size * np.maximum(counts, 1)), 1.0)
    return (weights ** require_positive("power", power)).tolist()


def compile_for_recipe(model: keras.Model, class_counts: list[int] | np.ndarray, total_steps: int,
                       learning_rate: float) -> dict[str, Any]:
    """Compile ``model`` with the recipe's loss (inverse-frequency class weights ** 0.6; ignored points
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


def coordinate_unit_metres(path: str | os.PathLike) -> float | None:
    """Metres per coordinate unit of a LAS/LAZ file from its CRS: the GeoTIFF linear-units key
    (metre, foot, US survey foot), else the first linear ``UNIT``/``LENGTHUNIT`` of its WKT;
    None for other formats and files without a CRS (read from the header only)."""
    if os.path.splitext(os.fspath(path))[1].lower() not in LAS_SUFFIXES:
        return None
    try:
        with laspy.open(os.fspath(path)) as reader:
            records = list(reader.header.vlrs) + list(getattr(reader.header, "evlrs", None) or [])
    except (laspy.LaspyException, OSError, ValueError) as error:
        raise PointCloudFileError(f"point-cloud file {os.fspath(path)!r} cannot be read ({error})") from None
    for record in records:
        for key in getattr(record, "geo_keys", []):
            if key.id == PROJ_LINEAR_UNITS_KEY and key.value_offset in LINEAR_UNITS:
                return LINEAR_UNITS[key.value_offset]
    for record in records:
        wkt = getattr(record, "string", None)
        for name, factor in re.findall(r'(?:LENGTH)?UNIT\["([^"]*)"\s*,\s*([0-9.eE+-]+)', wkt or ""):
            if not any(word in name.lower() for word in ANGULAR_UNIT_WORDS):
                return float(factor)
    return None


def stated_unit_metres(paths: Sequence[str]) -> float | None:
    """The one coordinate unit (metres per unit) the files' CRS state; None where none states
    one. ValueError when files state different units."""
    units = {path: coordinate_unit_metres(path) for path in paths}
    stated = {round(unit, 9) for unit in units.values() if unit is not None}
    if len(stated) > 1:
        raise ValueError(f"offline_pcloud files must share one coordinate unit, got metres per unit {units}")
    return stated.pop() if stated else None


def files_unit_metres(paths: Sequence[str]) -> float:
    """`stated_unit_metres`, 1 (metres) where no file states one."""
    unit = stated_unit_metres(paths)
    return 1.0 if unit is None else unit


def intensity_bit_depth(paths: Sequence[str]) -> int:
    """The smallest of 8, 12, 16 bits that holds every intensity of the files (16 when none has one):
    8-bit sensors often write into the 16-bit LAS field, where / 65535 leaves values below 0.004."""
    largest = 0
    for path in paths:  # a LAS/LAZ file: its intensity only, a chunk at a time
        cloud = (read_las_columns(path, ["intensity"]) if os.path.splitext(path)[1].lower() in LAS_SUFFIXES
                 else read_point_cloud(path, label=None))
        intensity = cloud.attributes.get("intensity")
        if intensity is not None and np.size(intensity):
            largest = max(largest, int(np.max(intensity)))
    return next((bits for bits in INTENSITY_BIT_DEPTHS if largest < 2 ** bits), INTENSITY_BIT_DEPTHS[-1])


def sampler_spec(unit_metres: float = 1.0) -> dict:
    """The recipe's covering sampler for files whose coordinates are in units of ``unit_metres`` metres."""
    radius = FIELD_RADIUS / require_positive("unit_metres", unit_metres)
    return {**SAMPLER, "neighborhood": {**SAMPLER["neighborhood"], "radius": radius}}


def features_spec(bit_depth: int = 16, unit_metres: float = 1.0, geometric: bool = True) -> list:
    """The recipe's features with intensity divided by ``2 ** bit_depth - 1`` and, with
    ``geometric``, the mined geometric features at sizes in metres over ``unit_metres``."""
    scale = 1.0 / (2 ** require_int("bit_depth", bit_depth, 1) - 1)
    unit = require_positive("unit_metres", unit_metres)
    features = [{"name": "intensity", "normalisation": {"scale": scale, "offset": 0.0}}, *FEATURES[1:]]
    if geometric:
        features += [{"name": name, "radius": radius / unit} for radius in GEOMETRY_RADII for name in EIGEN_FEATURES]
        features += [{"name": name, "cell_size": cell / unit, "normalisation": {"scale": HEIGHT_SCALE * unit,
                                                                                "offset": 0.0}}
                     for name, cell in HEIGHT_CELLS]
    return features


def with_recipe_defaults(sequencer: dict, model: dict) -> dict:
    """The sequencer spec with the recipe's sampler, features and classes where ``offline_pcloud``
    names none, the model type's encoder where it names none, and the recipe's augmentation
    where the backbone names none: sizes in metres over the files' coordinate unit, intensity
    over the files' bit depth."""
    pcloud = sequencer.get("offline_pcloud")
    if not isinstance(pcloud, dict):
        return sequencer
    paths = pcloud.get("paths")  # the existing files (the source reports the others)
    paths = [p for p in (paths if isinstance(paths, list) else [paths]) if isinstance(p, str) and os.path.isfile(p)]
    defaults: dict[str, Any] = {"classes": CLASSES, "seed": sequencer.get("seed", SEED)}
    unit = files_unit_metres(paths)
    if "sampler" not in pcloud or ("encoder" not in pcloud and "grid" not in pcloud):
        defaults["sampler"] = sampler_spec(unit)
        defaults["encoder"] = model_type(model).encoder(model, unit)
    if "features" not in pcloud:
        defaults["features"] = features_spec(intensity_bit_depth(paths), unit)
    if "grid" in pcloud:
        defaults.pop("encoder", None)
    backbone = sequencer.get("backbone", {})
    if model_type(model).augmented and isinstance(backbone, dict) and "augmentor" not in backbone:
        sequencer = {**sequencer, "backbone": {**backbone, "augmentor": AUGMENTATION}}
    return {**sequencer, "offline_pcloud": {**defaults, **pcloud}}
