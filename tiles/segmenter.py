"""`Segmenter`: the whole-tile workflow from Python, in the style of scikit-learn estimators.

    seg = pointseq.Segmenter(model="pointnet", seed=0)
    seg.fit(["a.laz", "b.laz"], validation=["c.laz"], output="run1")  # cache, train, save; resumable
    proba = seg.predict("new.laz")                                     # (N, C) float32, every point
    seg.predict_file("new.laz", "out/new.laz", probabilities=True)     # a classified LAS/LAZ
    report = seg.evaluate("labelled.laz")                              # ClassificationMetrics
    seg = pointseq.Segmenter.load("run1")

`fit` builds the train spec `Segmenter.train_spec` returns (the JSON ``pointseq train`` reads)
and runs `training.train` on it; everything else reads the training output folder.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

import keras
import numpy as np

from pointseq.pointclouds import ClassificationMetrics, ClassMap, PointCloud, read_point_cloud
from pointseq.pointclouds.blocks import DEFAULT_BLOCK_POINTS
from pointseq.tiles import recipe
from pointseq.tiles.evaluation import check_reference, evaluate_codes
from pointseq.tiles.model_types import model_type
from pointseq.tiles.pipeline import load_training_output, predict_cloud
from pointseq.tiles.prediction import check_tile_unit, predict_file
from pointseq.tiles.training import train

PathList = str | os.PathLike | Sequence[str | os.PathLike]


def _paths(paths: PathList, what: str) -> list[str]:
    if isinstance(paths, (str, os.PathLike)):
        paths = [paths]
    paths = [os.fspath(p) for p in paths]
    if not paths:
        raise ValueError(f"{what} must name at least one point-cloud file, got []")
    missing = [p for p in paths if not os.path.isfile(p)]
    if missing:
        raise FileNotFoundError(f"{what}: files do not exist: {missing}")
    return paths


class Segmenter:
    """Train a point-cloud segmentation model on classified tiles and classify new ones.

    Args:
        model: a model type name (``"pointnet"``, ``"shadow"``, ...) or a model spec dict
            (``{"type": "pointnet", "width": 64}``); the recipe fills the rest.
        classes: the class map spec (default: every code found, ASPRS noise 7 and 18 ignored).
        features: point features (default: intensity, return ratio, number of returns).
        sampler: the covering-field sampler spec (default: 15 m square fields).
        updates: training length in optimiser updates (default: the model type's), whatever
            the tiles' size.
        epochs: training length in passes over the training fields instead (not with ``updates``).
        learning_rate: the initial rate (default: the model type's).
        batch_size: fields per batch.
        seed: fixes fields, batch order, augmentation and initial weights.
        label: the reference dimension of the training files (default ``classification``).
        cache: the cache file (default ``<output>/train_cache.h5``).
    """

    def __init__(self, model: str | dict = "pointnet", *, classes: dict | None = None, features: list | None = None,
                 sampler: dict | None = None, updates: int | None = None, epochs: int | None = None,
                 learning_rate: float | None = None,
                 batch_size: int = recipe.BATCH_SIZE, seed: int = recipe.SEED, label: str | None = None,
                 cache: str | None = None) -> None:
        self.model_spec = {"type": model} if isinstance(model, str) else dict(model)
        model_type(self.model_spec).settings(self.model_spec)  # checks the spec now
        self.classes, self.features, self.sampler, self.label = classes, features, sampler, label
        if updates is not None and epochs is not None:
            raise ValueError(f"give updates or epochs, not both; got updates={updates!r}, epochs={epochs!r}")
        self.updates, self.epochs = updates, epochs
        self.learning_rate, self.batch_size, self.seed = learning_rate, batch_size, seed
        self.cache = cache
        self.model: keras.Model | None = None
        self.pipeline: dict | None = None
        self.output: str | None = None
        self.report: dict | None = None

    def train_spec(self, paths: PathList, validation: PathList | None = None, output: str = "pointseq_run") -> dict:
        """The train spec `fit` runs: what ``pointseq train`` takes as JSON."""
        files: dict[str, Any] = {"paths": _paths(paths, "paths")}
        for key, value in (("classes", self.classes), ("features", self.features), ("sampler", self.sampler),
                           ("label", self.label)):
            if value is not None:
                files[key] = value
        spec: dict[str, Any] = {
            "sequencer": {"type": "OfflineSequencer", "chunk_randomization": True, "batch_randomization": True,
                          "offline_storage": self.cache or os.path.join(output, "train_cache.h5"),
                          "backbone": {"batch_size": self.batch_size}, "offline_pcloud": files},
            "model": self.model_spec, "seed": self.seed, "output": os.fspath(output)}
        if validation is not None:
            spec["validation"] = {"paths": _paths(validation, "validation")}
        if self.epochs is not None:
            spec["epochs"] = self.epochs
        if self.updates is not None:
            spec["updates"] = self.updates
        if self.learning_rate is not None:
            spec["learning_rate"] = self.learning_rate
        return spec

    def fit(self, paths: PathList, validation: PathList | None = None, output: str = "pointseq_run", *,
            verbose: int = 1, restart: bool = False) -> "Segmenter":
        """Build the cache of ``paths``, train, save to ``output`` (a rerun of the same spec
        resumes; ``restart`` starts afresh) and load the result; returns self."""
        self.report = train(self.train_spec(paths, validation, output), verbose=verbose, restart=restart)
        self.model, self.pipeline = load_training_output(output)
        self.output = os.fspath(output)
        return self

    @classmethod
    def load(cls, folder: str | os.PathLike) -> "Segmenter":
        """A segmenter ready to predict from a training output folder."""
        model, pipeline = load_training_output(os.fspath(folder))
        seg = cls(pipeline["model"], seed=int(pipeline.get("seed", recipe.SEED)))
        seg.model, seg.pipeline, seg.output = model, pipeline, os.fspath(folder)
        return seg

    def _trained(self) -> tuple[keras.Model, dict]:
        if self.model is None or self.pipeline is None:
            raise ValueError("this Segmenter has no trained model: call fit(...) or Segmenter.load(folder) first")
        return self.model, self.pipeline

    @property
    def class_map(self) -> ClassMap:
        return ClassMap.from_config(self._trained()[1]["class_map"])

    def predict(self, cloud: str | os.PathLike | PointCloud, *, batch_size: int | None = None,
                block_points: int = DEFAULT_BLOCK_POINTS, progress: bool = False,
                allow_unit_mismatch: bool = False) -> np.ndarray:
        """Class probabilities ``(N, C)`` float32 of every point of a file or `PointCloud`
        (columns in the order of `class_map`). A file in another coordinate unit than the
        training files is refused unless ``allow_unit_mismatch`` (`check_tile_unit`)."""
        model, pipeline = self._trained()
        if not isinstance(cloud, PointCloud):
            check_tile_unit(pipeline, os.fspath(cloud), allow_unit_mismatch)
            cloud = read_point_cloud(os.fspath(cloud), label=None)
        return predict_cloud(model, pipeline, cloud, batch_size=batch_size or self.batch_size, progress=progress,
                             block_points=block_points)

    def predict_file(self, path: str | os.PathLike, target: str | os.PathLike, *, probabilities: bool = False,
                     write_classification: bool = False, batch_size: int | None = None,
                     block_points: int = DEFAULT_BLOCK_POINTS, progress: bool = False,
                     allow_unit_mismatch: bool = False, preview: bool = False) -> str:
        """Write ``target``: ``path`` with a ``prediction`` dimension (source class codes) and,
        optionally, ``prob_<class>`` dimensions and the codes in ``classification``; with
        ``preview``, also ``<target without suffix>_preview.png``, the result seen from above."""
        model, pipeline = self._trained()
        return predict_file(model, pipeline, os.fspath(path), os.fspath(target), probabilities=probabilities,
                            write_classification=write_classification, batch_size=batch_size or self.batch_size,
                            block_points=block_points, progress=progress,
                            allow_unit_mismatch=allow_unit_mismatch, preview=preview)[0]

    def evaluate(self, path: str | os.PathLike, *, reference: str | None = None,
                 ignore: Sequence[int] = (), allow_unit_mismatch: bool = False) -> ClassificationMetrics:
        """Predict a labelled file and score it against its ``reference`` dimension (default:
        the training label); the class map's ignored codes and ``ignore`` are left out.
        ValueError when that dimension holds pointseq's own predictions (``--write-classification``)."""
        model, pipeline = self._trained()
        check_tile_unit(pipeline, os.fspath(path), allow_unit_mismatch)
        check_reference(os.fspath(path), reference or pipeline["label"])
        cloud = read_point_cloud(os.fspath(path), label=reference or pipeline["label"])
        if cloud.labels is None:
            raise ValueError(f"file {os.fspath(path)!r} has no reference dimension {reference or pipeline['label']!r}")
        proba = predict_cloud(model, pipeline, cloud, batch_size=self.batch_size)
        codes = self.class_map.to_codes(proba.argmax(axis=1))
        return evaluate_codes(cloud.labels, codes, self.class_map, ignore)[0]
