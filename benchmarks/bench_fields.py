"""Covering receptive fields and propagation back: vectorised vs. a per-field Python loop, one core.

Workload: a synthetic 1M-point terrain tile (1 km x 1 km at 1 point/m2, a slope, noise, a
dense patch) at an offset of (5e5, 5e6, 200), cylinder neighbourhoods of radius 10 m,
separation 0.8, ``num_points`` 128, k = 3 encoding neighbours.

Loop references do what a per-field implementation does, with the same kernels, so the
ratio measures the vectorisation, not a different algorithm:
- fields: per grid node, a KD-tree ball query, the node's neighbourhood (skipped if empty),
  the subsampling (the same FPS kernel on that one field, or a random subset), cyclic padding,
  and the k nearest kept points of each member from a KD-tree of the kept points.
- propagation: per field, the mean of its k nearest kept points' predictions for each member,
  added to the per-point sums (members are distinct within a field, so a fancy-index add).
  A second reference keeps the original system's structure (VL3D's ``propagate_values`` and
  ``pwise_reduce``): per field, a Python loop over its points takes each point's mean, then
  the field's values are added to the per-point sums. It is timed on a tenth of the sample.
The vectorised path gets each member's k nearest kept points from the FPS pass itself (FPS) or
by brute force over the kept points (random); the loop keeps the per-field KD-tree, the faster
way for one field at a time. The loops run on a random sample of fields and their time is
scaled to all fields (the JSON says how many were timed), so the benchmark stays within minutes.

Prints one JSON object. Run: ``python benchmarks/bench_fields.py [--points N] [--sample N]``.
"""

from __future__ import annotations

import os

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ[_var] = "1"  # before numpy is imported: measure one core

import argparse  # noqa: E402
import json  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402
from scipy.spatial import cKDTree  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from pointseq.pointclouds import CoveringFieldSampler, propagate  # noqa: E402
from pointseq.pointclouds.neighborhoods import grid_supports  # noqa: E402
from pointseq.pointclouds.subsampling import farthest_point_positions  # noqa: E402

NUM_POINTS, RADIUS, SEPARATION, K, CLASSES = 128, 10.0, 0.8, 3, 8


def terrain(count: int, rng: np.random.Generator) -> np.ndarray:
    side = 1000.0 * np.sqrt(count / 1e6)
    xy = rng.random((count, 2)) * side
    dense = rng.random(count) < 0.1
    xy[dense] = rng.normal(side * 0.7, side * 0.02, (int(dense.sum()), 2))
    z = 0.2 * xy[:, 0] + 5 * np.sin(xy[:, 1] / 50) + rng.normal(0, 0.5, count)
    return np.column_stack([xy, z]) + [5e5, 5e6, 200.0]


def loop_fields(points: np.ndarray, nodes: np.ndarray, subsampling: str, rng: np.random.Generator) -> int:
    """Fields one node at a time; returns how many were non-empty."""
    local = points - points.min(axis=0)
    tree = cKDTree(local[:, :2])
    made = 0
    for node in nodes:
        members = np.sort(np.asarray(tree.query_ball_point(node, RADIUS), dtype=np.int64))
        if members.size == 0:
            continue
        centre = np.array([node[0], node[1], local[members, 2].mean()])
        relative = local[members] - centre
        if members.size <= NUM_POINTS:
            kept = np.arange(NUM_POINTS) % members.size
        elif subsampling == "fps":
            kept = farthest_point_positions(relative[None].astype(np.float32), np.ones((1, members.size), bool),
                                            NUM_POINTS)[0]
        else:
            kept = rng.permutation(members.size)[:NUM_POINTS]
        _, slots = cKDTree(relative[kept]).query(relative, k=K)
        _ = (members[kept], relative[kept].astype(np.float32), slots)
        made += 1
    return made


def loop_propagate(fields, probabilities: np.ndarray, chosen: np.ndarray) -> np.ndarray:
    sums = np.zeros((fields.num_source_points, probabilities.shape[2]))
    counts = np.zeros(fields.num_source_points)
    for f in chosen:
        rows = slice(fields.member_offsets[f], fields.member_offsets[f + 1])
        members = fields.member_indices[rows]
        sums[members] += probabilities[f][fields.member_slots[rows]].mean(axis=1)
        counts[members] += 1
    return sums


def loop_propagate_per_point(fields, probabilities: np.ndarray, chosen: np.ndarray) -> np.ndarray:
    """The original system's structure: per field, a Python loop over its points, then a per-field add."""
    sums = np.zeros((fields.num_source_points, probabilities.shape[2]))
    counts = np.zeros(fields.num_source_points)
    for f in chosen:
        rows = slice(fields.member_offsets[f], fields.member_offsets[f + 1])
        members, slots, values = fields.member_indices[rows], fields.member_slots[rows], probabilities[f]
        propagated = np.zeros((members.size, values.shape[1]), dtype=values.dtype)
        for i, nearest in enumerate(slots):
            propagated[i] = np.mean(values[nearest], axis=0)
        sums[members] += propagated
        counts[members] += 1
    return sums


def timed(fn):
    start = time.perf_counter()
    value = fn()
    return time.perf_counter() - start, value


def measure(points: np.ndarray, subsampling: str, sample: int) -> dict:
    hood = {"type": "cylinder", "radius": RADIUS, "separation_factor": SEPARATION}
    sampler = CoveringFieldSampler(NUM_POINTS, hood, subsampling=subsampling, num_encoding_neighbors=K)
    vector_s, fields = timed(lambda: sampler(points, np.random.default_rng(0)))
    coverage = float(np.mean(np.bincount(fields.member_indices, minlength=len(points)) > 0))
    nodes = grid_supports(points - points.min(axis=0), sampler.neighborhood, sampler.neighborhood.spacing)
    picked = np.random.default_rng(1).choice(len(nodes), min(sample, len(nodes)), replace=False)
    loop_s, _ = timed(lambda: loop_fields(points, nodes[picked], subsampling, np.random.default_rng(0)))
    loop_s *= len(nodes) / len(picked)
    return {"subsampling": subsampling, "fields": len(fields), "grid_nodes": len(nodes),
            "members": int(fields.member_indices.size), "coverage": coverage,
            "vectorised_s": round(vector_s, 2), "loop_s_scaled": round(loop_s, 2),
            "loop_nodes_timed": len(picked), "speedup": round(loop_s / vector_s, 1)}, fields


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--points", type=int, default=1_000_000)
    parser.add_argument("--sample", type=int, default=1500, help="fields timed in the loop references")
    args = parser.parse_args()
    points = terrain(args.points, np.random.default_rng(0))
    result = {"benchmark": "fields", "points": args.points, "threads": "single core",
              "workload": f"cylinder r={RADIUS} sep={SEPARATION} num_points={NUM_POINTS} k={K}"}
    runs = []
    for subsampling in ("fps", "random"):
        figures, fields = measure(points, subsampling, args.sample)
        runs.append(figures)
    result["fields"] = runs
    probabilities = np.random.default_rng(2).random((len(fields), NUM_POINTS, CLASSES)).astype(np.float32)
    vector_s, _ = timed(lambda: propagate(fields, probabilities))
    chosen = np.random.default_rng(3).choice(len(fields), min(args.sample * 4, len(fields)), replace=False)
    loop_s, _ = timed(lambda: loop_propagate(fields, probabilities, chosen))
    loop_s *= len(fields) / len(chosen)
    few = chosen[: max(1, args.sample // 10)]
    per_point_s, _ = timed(lambda: loop_propagate_per_point(fields, probabilities, few))
    per_point_s *= len(fields) / len(few)
    result["propagation"] = {"classes": CLASSES, "vectorised_s": round(vector_s, 3), "loop_s_scaled": round(loop_s, 3),
                             "loop_fields_timed": len(chosen), "speedup": round(loop_s / vector_s, 1),
                             "per_point_loop_s_scaled": round(per_point_s, 1), "per_point_loop_fields_timed": len(few),
                             "speedup_vs_per_point_loop": round(per_point_s / vector_s, 1)}
    result["targets"] = {"fields_speedup": 20.0, "propagation_speedup": 50.0}
    print(json.dumps(result))


if __name__ == "__main__":
    main()
