"""Whole-tile prediction throughput on CPU: points of a tile classified per second.

Workload: one synthetic georeferenced tile (`pointseq.tiles.synthetic`, 100 m x 100 m)
predicted by `pointseq predict`'s own path (`tiles.pipeline.predict_cloud`): the recipe's
covering fields, inputs built per block of fields, a PointNet of the recipe's width through
a predict-mode `Sequencer`, probabilities propagated back to every point. The model is
untrained (throughput does not depend on its weights). The phases are timed separately:
cutting the fields, and predicting + propagating. With ``--block-points N`` the tile is also
predicted in spatial blocks: time and peak traced memory of both. Prints one JSON object.
"""

from __future__ import annotations

import argparse
import json
import os
import time
import tracemalloc

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import numpy as np  # noqa: E402

from pointseq.tiles import recipe  # noqa: E402
from pointseq.tiles.synthetic import make_tiles  # noqa: E402
from pointseq.tiles.pipeline import predict_cloud  # noqa: E402
from pointseq.pointclouds import ClassMap, FeatureSpec, PointCloud, sampler_from_spec  # noqa: E402
from pointseq.sequencers.models.pointnet_model import build_pointnet_segmentation_model  # noqa: E402
from pointseq.sequencers.seeding import field_rng  # noqa: E402


def tile_cloud(size: float, seed: int) -> PointCloud:
    tile = make_tiles(1, seed=seed, size=size)[0]
    attributes = {k: v for k, v in tile.items() if k != "xyz"}
    return PointCloud(tile["xyz"], attributes, tile["classification"].astype(np.int64), None)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size", type=float, default=100.0, help="tile side in metres")
    parser.add_argument("--block-points", type=int, default=None,
                        help="also predict in spatial blocks of about N points: time and traced peak memory")
    args = parser.parse_args()
    cloud = tile_cloud(args.size, seed=0)
    features = FeatureSpec.from_spec(recipe.FEATURES)
    pipeline = {"model": {"type": "pointnet"}, "sampler": recipe.SAMPLER,
                "features": features.get_config()["features"],
                "class_map": ClassMap.from_spec(recipe.CLASSES, np.unique(cloud.labels)).get_config(), "seed": 0}
    num_classes = ClassMap.from_config(pipeline["class_map"]).num_classes
    model = build_pointnet_segmentation_model(recipe.NUM_POINTS, num_classes, num_features=4 + len(features),
                                              width=64)
    start = time.perf_counter()
    fields = sampler_from_spec(recipe.SAMPLER)(cloud.points, field_rng(0, 0))
    cut_s = time.perf_counter() - start
    predict_cloud(model, pipeline, cloud, batch_size=16)  # warm-up: the model's first trace
    probabilities, total_s, whole_mb = measured(predict_cloud, model, pipeline, cloud, batch_size=16)
    assert probabilities.shape == (len(cloud), num_classes)
    report = {
        "benchmark": "predict_throughput",
        "points": len(cloud), "fields": len(fields), "num_points_per_field": recipe.NUM_POINTS,
        "cut_fields_s": round(cut_s, 3), "predict_tile_s": round(total_s, 3),
        "points_per_s": round(len(cloud) / total_s), "field_points_per_s": round(len(fields) * recipe.NUM_POINTS / total_s),
    }
    if args.block_points:  # the same tile in spatial blocks (random subsampling: each block draws its own subsets)
        blocked, blocked_s, blocked_mb = measured(predict_cloud, model, pipeline, cloud, batch_size=16,
                                                  block_points=args.block_points)
        report.update(block_points=args.block_points, whole_peak_mb=whole_mb, blocked_peak_mb=blocked_mb,
                      blocked_predict_tile_s=round(blocked_s, 3), time_ratio_blocked_over_whole=round(blocked_s / total_s, 2),
                      classes_agree=round(float(np.mean(blocked.argmax(axis=1) == probabilities.argmax(axis=1))), 4))
    print(json.dumps(report))


def measured(function, *args, **kwargs):
    """``(result, seconds, peak MB of numpy/Python allocations traced by tracemalloc)``."""
    tracemalloc.start()
    start = time.perf_counter()
    result = function(*args, **kwargs)
    seconds = time.perf_counter() - start
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    return result, seconds, round(peak / 2 ** 20, 1)


if __name__ == "__main__":
    main()
