"""Per-field hierarchical sparse grids from a 1M-point cloud: vectorised vs. a per-element loop, one core.

Workload: a synthetic 1M-point tile (316 m x 316 m at 10 points/m2, terrain plus noise) at an
offset of (5e5, 5e6, 300), cut into non-overlapping 15 m blocks (rectangular2d, radius 7.5,
separation 2) of 1024 points each (random subsampling), then grids of 0.5 m cells, depth 4
(the recipe's shadow settings): `SparseGridPreProcessor` over all fields at once.

The baseline builds the same grids the way a per-element implementation does: per field,
per point, a dict insertion of the point's integer cell (tuple key) and its feature sum;
then per depth, per cell, a dict insertion into its parent cell. It runs on a random sample
of fields and its time is scaled to all fields (the JSON says how many were timed). Both
produce the same depth-0 cell counts (checked on the sample).

Prints one JSON object. Run: ``python benchmarks/bench_grids.py [--points N] [--sample N]``.
"""

from __future__ import annotations

import os

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ[_var] = "1"  # before numpy is imported: measure one core

import argparse  # noqa: E402
import json  # noqa: E402
import time  # noqa: E402

import numpy as np  # noqa: E402

from pointseq.pointclouds import CoveringFieldSampler  # noqa: E402
from pointseq.pointclouds.field_grids import HEIGHT_PERCENTILE, SparseGridPreProcessor  # noqa: E402

CELL, DEPTH, POINTS_PER_FIELD = 0.5, 4, 1024


def make_cloud(n: int, rng: np.random.Generator) -> np.ndarray:
    side = np.sqrt(n / 10.0)
    xy = rng.uniform(0, side, (n, 2))
    z = 2 * np.sin(xy[:, 0] / 40) + np.cos(xy[:, 1] / 30) + rng.exponential(0.5, n) * (rng.random(n) < 0.3) * 20
    return np.column_stack([xy, z]) + np.array([5e5, 5e6, 300.0])


def loop_grid(relative: np.ndarray, features: np.ndarray) -> list[dict]:
    """One field's grid levels, element by element: dicts of cell -> [count, feature sum]."""
    origin = relative.min(axis=0)
    level: dict = {}
    for p, f in zip(relative.tolist(), features.tolist()):
        key = tuple(int(np.floor((p[a] - origin[a]) / CELL)) for a in range(3))
        entry = level.get(key)
        if entry is None:
            level[key] = [1, f]
        else:
            entry[0] += 1
            entry[1] = entry[1] + f
    levels = [level]
    for _ in range(1, DEPTH):
        parents: dict = {}
        for key, (count, _) in levels[-1].items():
            parent = (key[0] >> 1, key[1] >> 1, key[2] >> 1)
            entry = parents.setdefault(parent, [0, None])
            entry[0] += count
        levels.append(parents)
    return levels


def loop_grids(points: np.ndarray, fields, chosen: np.ndarray) -> list[list[dict]]:
    out = []
    for f in chosen:
        relative = points[fields.indices[f]] - fields.centres[f]
        height = relative[:, 2] - np.percentile(relative[:, 2], HEIGHT_PERCENTILE)
        out.append(loop_grid(relative, height))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--points", type=int, default=1_000_000)
    parser.add_argument("--sample", type=int, default=40, help="fields the loop baseline builds")
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    points = make_cloud(args.points, rng)
    sampler = CoveringFieldSampler(POINTS_PER_FIELD, {"type": "rectangular2d", "radius": 7.5, "separation_factor": 2.0},
                                   subsampling="random")
    start = time.perf_counter()
    fields = sampler(points, rng)
    cut_s = time.perf_counter() - start
    pre = SparseGridPreProcessor(CELL, DEPTH)
    start = time.perf_counter()
    grids = pre(points, fields)
    vector_s = time.perf_counter() - start
    chosen = np.sort(rng.choice(len(fields), size=min(args.sample, len(fields)), replace=False))
    start = time.perf_counter()
    loops = loop_grids(points, fields, chosen)
    loop_s = (time.perf_counter() - start) * len(fields) / len(chosen)
    for f, levels in zip(chosen, loops):
        assert all(len(levels[t]) == grids[f].num_cells(t) for t in range(DEPTH))
    grid_points = len(fields) * POINTS_PER_FIELD
    print(json.dumps({
        "benchmark": "grids", "cloud_points": args.points, "fields": len(fields), "points_per_field": POINTS_PER_FIELD,
        "cell_size": CELL, "depth": DEPTH, "field_cutting_s": round(cut_s, 3),
        "vectorised": {"seconds": round(vector_s, 3), "grid_points_per_s": round(grid_points / vector_s),
                       "cloud_points_per_s": round(args.points / vector_s)},
        "loop_baseline": {"seconds_scaled": round(loop_s, 3), "fields_timed": int(len(chosen)),
                          "grid_points_per_s": round(grid_points / loop_s),
                          "cloud_points_per_s": round(args.points / loop_s)},
        "speedup": round(loop_s / vector_s, 1),
        "mean_cells_per_depth": [round(float(np.mean([g.num_cells(t) for g in grids])), 1) for t in range(DEPTH)],
    }, indent=1))


if __name__ == "__main__":
    main()
