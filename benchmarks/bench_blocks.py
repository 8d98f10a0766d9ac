"""Spatial blocks: peak memory and time of cutting fields and propagating 'predictions' back,
whole tile vs. blocks, and whether the blocked result equals the whole tile's.

Workload: the synthetic terrain tile of ``bench_fields.py`` (default 1M points), cylinder
neighbourhoods of radius 10 m, separation 0.8, ``num_points`` 128, k = 3, FPS; predictions are
the one-hot of a synthetic per-point class (height bands), C = 8. Peak memory is Python heap
allocations (tracemalloc: numpy arrays included) beyond the tile's xyz, measured per run.
With ``--file`` a real LAS/LAZ tile (its classification as the class) is checked the same way.

Prints one JSON object. Run: ``python benchmarks/bench_blocks.py [--points N] [--block-points N] [--file PATH]``.
"""

from __future__ import annotations

import os

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ[_var] = "1"  # before numpy is imported: measure one core

import argparse  # noqa: E402
import json  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
import tracemalloc  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_fields import terrain  # noqa: E402

from pointseq.pointclouds import CoveringFieldSampler, PropagationAccumulator  # noqa: E402
from pointseq.pointclouds.blocks import TileAccumulator, tile_blocks  # noqa: E402

CLASSES = 8


def run(points: np.ndarray, labels: np.ndarray, sampler: CoveringFieldSampler, block_points: int) -> dict:
    """Per-point probabilities, peak traced memory (MB), seconds, blocks and fields."""
    one_hot = np.eye(CLASSES, dtype=np.float32)
    tracemalloc.start()
    start = time.perf_counter()
    tile, blocks, fields = TileAccumulator(len(points), CLASSES), 0, 0
    for block in tile_blocks(sampler, points, block_points):
        accumulator = PropagationAccumulator(block.fields, CLASSES)
        block_labels = labels if block.indices is None else labels[block.indices]
        for first in range(0, len(block.fields), 256):  # predictions a batch of fields at a time, as predict does
            accumulator.add(first, one_hot[block_labels[block.fields.indices[first:first + 256]]])
        tile.add(block, accumulator)
        blocks, fields = blocks + 1, fields + len(block.fields)
        del accumulator, block
    result = tile.result()
    seconds = time.perf_counter() - start
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    return {"result": result, "peak_mb": round(peak / 2 ** 20, 1), "seconds": round(seconds, 2),
            "blocks": blocks, "fields": fields}


def compare(points: np.ndarray, labels: np.ndarray, sampler: CoveringFieldSampler, block_points: int) -> dict:
    whole = run(points, labels, sampler, len(points))
    blocked = run(points, labels, sampler, block_points)
    a, b = whole.pop("result"), blocked.pop("result")
    return {"points": len(points), "whole": whole, "blocked": dict(blocked, block_points=block_points),
            "max_abs_difference": float(np.abs(a - b).max()),
            "classes_equal": bool(np.array_equal(a.argmax(axis=1), b.argmax(axis=1))),
            **class_differences(a, b),
            "memory_ratio_whole_over_blocked": round(whole["peak_mb"] / blocked["peak_mb"], 2),
            "time_ratio_blocked_over_whole": round(blocked["seconds"] / whole["seconds"], 2)}


def class_differences(a: np.ndarray, b: np.ndarray) -> dict:
    """Points whose class differs, and how many of them are exact ties (two classes equal to
    float32 rounding in the whole-tile result), where the rounding of the sums decides."""
    differ = a.argmax(axis=1) != b.argmax(axis=1)
    top2 = np.sort(a[differ], axis=1)[:, -2:]
    ties = int(np.sum(top2[:, 1] - top2[:, 0] <= 1e-6))
    return {"points_with_other_class": int(differ.sum()), "of_which_ties": ties}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--points", type=int, default=1_000_000)
    parser.add_argument("--block-points", type=int, default=125_000)
    parser.add_argument("--file", default=None, help="also check a real LAS/LAZ tile")
    args = parser.parse_args()
    sampler = CoveringFieldSampler(128, {"type": "cylinder", "radius": 10.0, "separation_factor": 0.8},
                                   num_encoding_neighbors=3)
    points = terrain(args.points, np.random.default_rng(0))
    labels = np.clip(((points[:, 2] - points[:, 2].min()) / 30).astype(np.int64), 0, CLASSES - 1)
    report = {"synthetic": compare(points, labels, sampler, args.block_points)}
    if args.file:
        import laspy

        las = laspy.read(args.file)
        points = np.column_stack([las.x, las.y, las.z]).astype(np.float64)
        codes, labels = np.unique(np.asarray(las.classification), return_inverse=True)
        real = CoveringFieldSampler(128, {"type": "cylinder", "radius": 20.0, "separation_factor": 0.8},
                                    num_encoding_neighbors=3)
        report["file"] = dict(compare(points, labels.astype(np.int64), real, len(points) // 8), path=args.file)
    print(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
