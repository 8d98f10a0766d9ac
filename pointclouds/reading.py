"""Read point-cloud files into points, optional per-point features and optional labels."""

from __future__ import annotations

import os
from dataclasses import dataclass

import numpy as np

TEXT_SUFFIXES = (".xyz", ".txt", ".csv")
SUFFIXES = (".npy", ".npz", *TEXT_SUFFIXES, ".las", ".laz")


@dataclass(frozen=True)
class PointCloud:
    """``points`` (N, 3) float32, ``features`` (N, F) float32 or None, ``labels`` (N,) int64 or None."""

    points: np.ndarray
    features: np.ndarray | None = None
    labels: np.ndarray | None = None

    def __post_init__(self) -> None:
        n = self.points.shape[0]
        if self.points.ndim != 2 or self.points.shape[1] != 3:
            raise ValueError(f"points must have shape (N, 3), got {self.points.shape}")
        for name in ("features", "labels"):
            value = getattr(self, name)
            if value is not None and value.shape[0] != n:
                raise ValueError(f"{name} must have {n} rows like points, got shape {value.shape}")


def _from_columns(table: np.ndarray, path: str, label_column: int | None) -> PointCloud:
    table = np.asarray(table)
    if table.ndim != 2 or table.shape[1] < 3:
        raise ValueError(f"point-cloud file {path!r} must hold a table of >= 3 columns (x, y, z, ...), "
                         f"got shape {table.shape}")
    columns = list(range(table.shape[1]))
    labels = None
    if label_column is not None:
        if not -table.shape[1] <= label_column < table.shape[1] or columns[label_column] < 3:
            raise ValueError(f"label_column must index a column after x, y, z of {path!r} "
                             f"({table.shape[1]} columns), got {label_column}")
        label_column = columns[label_column]
        labels = table[:, label_column].astype(np.int64)
        columns.remove(label_column)
    feature_columns = columns[3:]
    features = table[:, feature_columns].astype(np.float32) if feature_columns else None
    return PointCloud(table[:, :3].astype(np.float32), features, labels)


def _read_text(path: str) -> np.ndarray:
    delimiter = "," if path.lower().endswith(".csv") else None
    with open(path, encoding="utf-8") as f:
        first = f.readline()
    try:
        [float(v) for v in first.replace(",", " ").split()]
        skip = 0
    except ValueError:  # a header line
        skip = 1
    return np.loadtxt(path, delimiter=delimiter, comments="#", skiprows=skip, ndmin=2)


def _read_las(path: str) -> PointCloud:
    try:
        import laspy
    except ImportError:
        raise ImportError(f"reading {path!r} needs laspy: pip install pointseq[las]") from None
    las = laspy.read(path)
    points = np.asarray(las.xyz, dtype=np.float32)
    names = set(las.point_format.dimension_names)
    features = [np.asarray(las.intensity, dtype=np.float32)[:, None]]
    if {"red", "green", "blue"} <= names:
        features.append(np.stack([las.red, las.green, las.blue], axis=1).astype(np.float32))
    labels = np.asarray(las.classification, dtype=np.int64)
    return PointCloud(points, np.concatenate(features, axis=1), labels)


def read_point_cloud(path: str, *, label_column: int | None = None) -> PointCloud:
    """Read ``.npy``/``.npz``/``.xyz``/``.txt``/``.csv``/``.las``/``.laz``.

    Tables (npy, text) hold x, y, z in the first three columns; ``label_column`` names the
    integer label column and the other columns become features. ``.npz`` holds ``points``
    and optionally ``features`` and ``labels``. LAS gives intensity (and RGB) as features
    and the classification as labels.
    """
    path = os.fspath(path)
    suffix = os.path.splitext(path)[1].lower()
    if suffix not in SUFFIXES:
        raise ValueError(f"point-cloud file {path!r} has an unsupported suffix; expected one of {SUFFIXES}")
    if not os.path.exists(path):
        raise FileNotFoundError(f"point-cloud file {path!r} does not exist")
    if suffix == ".npy":
        return _from_columns(np.load(path), path, label_column)
    if suffix == ".npz":
        with np.load(path) as data:
            if "points" not in data:
                raise ValueError(f"{path!r} must hold a 'points' array, got keys {sorted(data.files)}")
            features = data["features"].astype(np.float32) if "features" in data else None
            labels = data["labels"].astype(np.int64) if "labels" in data else None
            return PointCloud(data["points"].astype(np.float32), features, labels)
    if suffix in TEXT_SUFFIXES:
        return _from_columns(_read_text(path), path, label_column)
    return _read_las(path)
