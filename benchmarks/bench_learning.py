"""Learning on real tiles, split spatially: each method's mean and per-class IoU on held-out parts.

Tiles: laspy's sample files (`autzen_trim.laz`: 2 classes, US feet; the six-class
`file_with_both_wkt_and_geotiff_vlrs.las`; the sparse `append-bug.laz`), read from ``--data``
or, without it, from laspy's source distribution fetched with pip into a temporary folder.
Splits are spatial, never random: the tile cut at the median x (train west, test east) and at
the median y (train south, test north). ASPRS noise (codes 7, 18) is ignored. Features are
computed once per tile on the whole tile (as prediction would): the miners' eigenvalue features
at radii 1, 2, 4 m (converted by the file's CRS unit) and at the 16 nearest points, densities,
heights above the cell minimum / below the cell maximum at 2.5 to 40 m cells, plus the intensity,
return and colour dimensions a file has.

Methods are columns: a function per method takes the train and test `TilePart` and returns
class ids for the test points (`METHODS`); add a model type by adding one. Prints one JSON
object: per tile and split, each method's mean IoU over the classes present in the held-out
part, its per-class IoU and its times, and the feature computation time per tile.
Needs the ``bench`` extra (scikit-learn).
"""

from __future__ import annotations

import argparse
import glob
import json
import os
import subprocess
import sys
import tarfile
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import numpy as np  # noqa: E402

from pointseq.tiles.recipe import CLASSES, coordinate_unit_metres  # noqa: E402
from pointseq.pointclouds import ClassMap, FeatureSpec, PointCloud, read_point_cloud  # noqa: E402
from pointseq.pointclouds.metrics import classification_metrics  # noqa: E402

TILES = {"autzen": "autzen_trim.laz", "six_class": "file_with_both_wkt_and_geotiff_vlrs.las",
         "append_bug": "append-bug.laz"}
RADII_METRES = (1.0, 2.0, 4.0)
CELLS_METRES = (2.5, 5.0, 10.0, 20.0, 40.0)
NEIGHBOURS = 16
EIGEN = ("linearity", "planarity", "sphericity", "omnivariance", "anisotropy", "eigenentropy",
         "surface_variation", "verticality")
STORED = ("intensity", "return_number", "number_of_returns", "return_ratio", "hue", "saturation", "value")


@dataclass
class TilePart:
    """The points of one side of a split: the cloud (coordinates and stored dimensions), class
    ids (``num_classes`` for ignored points), the tile's features of these points (computed on
    the whole tile) with their names, the class map and the file's unit."""

    path: str
    cloud: PointCloud
    ids: np.ndarray
    features: np.ndarray
    feature_names: list[str]
    class_map: ClassMap
    unit_metres: float
    rows: np.ndarray

    @property
    def labelled(self) -> np.ndarray:
        return self.ids < self.class_map.num_classes


def feature_entries(cloud: PointCloud, unit_metres: float) -> list:
    """The classical pipeline's features for a tile in units of ``unit_metres`` metres."""
    entries: list = [{"name": n, "radius": r / unit_metres} for r in RADII_METRES for n in (*EIGEN, "normal_z")]
    entries += [{"name": n, "k": NEIGHBOURS} for n in (*EIGEN, "normal_z")]
    entries += [{"name": "density", "radius": r / unit_metres} for r in RADII_METRES]
    entries += [{"name": n, "cell_size": c / unit_metres} for c in CELLS_METRES
                for n in ("height_above_min", "height_below_max")]
    present = set(cloud.attributes)
    wanted = [n for n in STORED if n in present or FeatureSpec([n]).missing(present) == []]
    return entries + wanted


def load_tile(path: str) -> tuple[PointCloud, np.ndarray, ClassMap, float, FeatureSpec, np.ndarray, float]:
    """The cloud, its class ids, class map, unit, feature spec, features and the seconds they took."""
    cloud = read_point_cloud(path)
    class_map = ClassMap.from_spec(CLASSES, observed_codes=np.unique(cloud.labels))
    ids, weights = class_map.to_ids(cloud.labels, source=path)
    ids = np.where(weights > 0, ids, class_map.num_classes)
    unit = coordinate_unit_metres(path) or 1.0
    spec = FeatureSpec(feature_entries(cloud, unit))
    start = time.perf_counter()
    features = spec(cloud)
    return cloud, ids, class_map, unit, spec, features, time.perf_counter() - start


def spatial_splits(points: np.ndarray) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Train and test point indices per split: the tile halved at the median x, and at the median y."""
    splits = {}
    for name, axis in (("x_half", 0), ("y_half", 1)):
        west = points[:, axis] < np.median(points[:, axis])
        splits[name] = (np.flatnonzero(west), np.flatnonzero(~west))
    return splits


def tile_part(path, cloud, ids, class_map, unit, names, features, rows) -> TilePart:
    part = PointCloud(cloud.points[rows], {k: v[rows] for k, v in cloud.attributes.items()},
                      cloud.labels[rows], path)
    return TilePart(path, part, ids[rows], features[rows], names, class_map, unit, rows)


# ---------------------------------------------------------------- methods
def majority(train: TilePart, test: TilePart) -> np.ndarray:
    """Every test point gets the most frequent trained class of the training part."""
    counts = np.bincount(train.ids[train.labelled], minlength=train.class_map.num_classes)
    return np.full(len(test.ids), int(np.argmax(counts)))


def gradient_boosting(train: TilePart, test: TilePart, columns: list[int] | None = None) -> np.ndarray:
    """scikit-learn's HistGradientBoostingClassifier on the features (``columns`` of them), every
    class weighted by its inverse frequency (what a mean IoU rewards); stops when 10 % of the
    training points held out for it stop improving (the test part is never seen)."""
    from sklearn.ensemble import HistGradientBoostingClassifier

    columns = list(range(train.features.shape[1])) if columns is None else columns
    model = HistGradientBoostingClassifier(max_iter=300, learning_rate=0.1, class_weight="balanced",
                                           early_stopping=True, random_state=0)
    model.fit(train.features[train.labelled][:, columns], train.ids[train.labelled])
    return model.predict(test.features[:, columns]).astype(np.int64)


def geometric_gradient_boosting(train: TilePart, test: TilePart) -> np.ndarray:
    """`gradient_boosting` on the mined geometric features only (no intensity, returns, colour)."""
    columns = [i for i, name in enumerate(train.feature_names) if name not in STORED]
    return gradient_boosting(train, test, columns)


def write_part(part: TilePart, folder: str, name: str) -> str:
    """The part's points of its source file, every dimension kept, as a LAS file in ``folder``."""
    import laspy

    las = laspy.read(part.path)
    out = laspy.LasData(las.header)
    out.points = las.points[part.rows]
    path = os.path.join(folder, name + ".las")
    out.write(path)
    return path


def segmenter(model: str, **options) -> Callable[[TilePart, TilePart], np.ndarray]:
    """A method that trains `pointseq.Segmenter` with the recipe's defaults (plus ``options``) on
    the training part's file and predicts every point of the test part's file."""
    def method(train: TilePart, test: TilePart) -> np.ndarray:
        import pointseq

        with tempfile.TemporaryDirectory() as folder:
            seg = pointseq.Segmenter(model, **options)
            seg.fit(write_part(train, folder, "train"), output=os.path.join(folder, "run"), verbose=0)
            proba = seg.predict(write_part(test, folder, "test"))
        codes = seg.class_map.to_codes(proba.argmax(axis=1))
        lenient = ClassMap.from_spec({**test.class_map.get_config(), "unknown": "ignore"})
        ids, known = lenient.to_ids(codes)
        return np.where(known > 0, ids, test.class_map.num_classes - 1).astype(np.int64)

    method.__doc__ = f"pointseq.Segmenter({model!r}) with the recipe's defaults"
    return method


METHODS: dict[str, Callable[[TilePart, TilePart], np.ndarray]] = {
    "majority": majority, "gbm": gradient_boosting, "gbm_geometric": geometric_gradient_boosting,
    "pointnet": segmenter("pointnet"), "kpconv": segmenter("kpconv"), "sparse_unet": segmenter("sparse_unet")}


def scores(test: TilePart, predicted: np.ndarray) -> dict:
    """Mean IoU over the classes present in the held-out part, and per-class IoU."""
    num_classes = test.class_map.num_classes
    keep = test.labelled
    metrics = classification_metrics(test.ids[keep], predicted[keep], num_classes,
                                      class_names=test.class_map.names)
    present = np.bincount(test.ids[keep], minlength=num_classes) > 0
    iou = {name: round(float(metrics.iou[c]), 4) for c, name in enumerate(test.class_map.names) if present[c]}
    return {"mean_iou": round(float(np.mean(list(iou.values()))), 4) if iou else None, "per_class_iou": iou,
            "overall_accuracy": round(float(metrics.overall_accuracy), 4)}


def run_tile(path: str, methods: dict) -> dict:
    cloud, ids, class_map, unit, spec, features, seconds = load_tile(path)
    result = {"points": len(cloud), "unit_metres": unit, "classes": class_map.names,
              "ignored_points": int((ids == class_map.num_classes).sum()), "features": len(spec),
              "feature_seconds": round(seconds, 2), "splits": {}}
    for split, (train_rows, test_rows) in spatial_splits(cloud.points).items():
        train = tile_part(path, cloud, ids, class_map, unit, spec.names, features, train_rows)
        test = tile_part(path, cloud, ids, class_map, unit, spec.names, features, test_rows)
        row = {"train_points": int(train.labelled.sum()), "test_points": int(test.labelled.sum())}
        for name, method in methods.items():
            start = time.perf_counter()
            predicted = method(train, test)
            row[name] = {**scores(test, predicted), "seconds": round(time.perf_counter() - start, 2)}
        result["splits"][split] = row
        print(f"{os.path.basename(path)} {split}: " + ", ".join(
            f"{name} {row[name]['mean_iou']}" for name in methods), file=sys.stderr, flush=True)
    return result


def fetch_sample_data(folder: str) -> str:
    """laspy's sample tiles: its source distribution downloaded with pip into ``folder``, unpacked."""
    subprocess.run([sys.executable, "-m", "pip", "download", "--no-binary", ":all:", "--no-deps", "--quiet",
                    "laspy", "-d", folder], check=True)
    archive = glob.glob(os.path.join(folder, "laspy-*.tar.gz"))[0]
    with tarfile.open(archive) as tar:
        members = [m for m in tar.getmembers() if m.isfile() and os.path.basename(m.name) in TILES.values()
                   and "/tests/data/" in m.name]
        tar.extractall(folder, members=members, filter="data")
    return os.path.dirname(os.path.join(folder, members[0].name))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", help="folder holding laspy's sample tiles (default: fetch laspy's sdist with pip)")
    parser.add_argument("--tiles", nargs="+", choices=sorted(TILES), default=list(TILES))
    parser.add_argument("--methods", nargs="+", choices=sorted(METHODS), default=list(METHODS))
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as scratch:
        folder = args.data or fetch_sample_data(scratch)
        methods = {name: METHODS[name] for name in args.methods}
        report = {"benchmark": "learning", "radii_metres": list(RADII_METRES), "cells_metres": list(CELLS_METRES),
                  "neighbours": NEIGHBOURS,
                  "tiles": {tile: run_tile(os.path.join(folder, TILES[tile]), methods) for tile in args.tiles}}
    print(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
