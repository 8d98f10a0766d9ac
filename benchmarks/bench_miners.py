"""Feature miners' throughput, and their values against jakteristics where it is installed.

Workload: a synthetic georeferenced tile (``--points`` points, default 1M, at an offset of
5e6 m: a sloped, rough terrain at about 20 points/m2 with trees as vertical scatter), or a
LAS/LAZ file (``--file``). Timed: eigenvalue features at ``--radius`` (every eigen feature of
one neighbourhood at once), at the 16 nearest points, density at the radius, heights by cell
and by xy radius, HSV. With jakteristics installed, its ``compute_features`` runs on the same
points and radius side by side (its threads: every core), and the largest absolute
difference per shared feature is reported (it uses the raw eigenvalues of the covariance, so
omnivariance and eigenentropy are compared through its eigenvalues normalised by their sum).
Prints one JSON object.
"""

from __future__ import annotations

import argparse
import json
import os
import time

import numpy as np

from pointseq.pointclouds import miners, read_point_cloud

SHARED = ("linearity", "planarity", "sphericity", "anisotropy", "surface_variation", "verticality")


def synthetic_tile(count: int, seed: int = 0) -> np.ndarray:
    """``count`` points: rough sloped ground (80 %) and tree-like vertical scatter, at 5e6 m."""
    rng = np.random.default_rng(seed)
    side = np.sqrt(count / 20.0)
    ground = int(count * 0.8)
    xy = rng.uniform(0, side, (count, 2))
    z = 0.05 * xy[:, 0] + 0.3 * np.sin(xy[:, 1] / 7.0) + rng.normal(0, 0.03, count)
    trees = rng.uniform(0, side, (max(count // 400, 1), 2))
    which = rng.integers(0, len(trees), count - ground)
    xy[ground:] = trees[which] + rng.normal(0, 1.2, (count - ground, 2))
    z[ground:] += rng.uniform(0, 12, count - ground)
    return np.column_stack([xy, z]) + np.array([5e6, 5e6, 100.0])


def timed(function, *args, **kwargs):
    start = time.perf_counter()
    result = function(*args, **kwargs)
    return result, round(time.perf_counter() - start, 3)


def against_jakteristics(points: np.ndarray, radius: float, ours: dict, seconds: float) -> dict:
    try:
        import jakteristics
    except ImportError:
        return {"installed": False}
    names = [*SHARED, "eigenvalue1", "eigenvalue2", "eigenvalue3", "number_of_neighbors"]
    theirs, their_seconds = timed(jakteristics.compute_features, np.ascontiguousarray(points), radius,
                                  feature_names=names)
    theirs = theirs.astype(np.float64)
    values = theirs[:, 6:9] / np.maximum(theirs[:, 6:9].sum(axis=1, keepdims=True), 1e-300)
    derived = miners.eigen_features(values, 1.0 - theirs[:, 5])
    # A normal is only defined where the two smallest eigenvalues differ (else any vector in
    # their plane is one): verticality is compared where the gap is clear.
    stable = (theirs[:, 7] - theirs[:, 8] > 1e-3 * theirs[:, 6]) & (theirs[:, 9] >= 4)
    difference = {name: float(np.nanmax(np.abs(ours[name][stable if name == "verticality" else slice(None)]
                                                - theirs[stable if name == "verticality" else slice(None), i])))
                  for i, name in enumerate(SHARED)}
    for name in ("omnivariance", "eigenentropy"):
        difference[name] = float(np.nanmax(np.abs(ours[name] - derived[name])))
    worst = max(difference.values())
    return {"installed": True, "version": getattr(jakteristics, "__version__", None), "seconds": their_seconds,
            "ours_over_theirs_time": round(seconds / their_seconds, 2), "max_abs_difference": difference,
            "within_1e-4": bool(worst <= 1e-4)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--points", type=int, default=1_000_000)
    parser.add_argument("--file", help="a LAS/LAZ/PLY file instead of the synthetic tile")
    parser.add_argument("--radius", type=float, default=1.0, help="neighbourhood radius in the file's units")
    args = parser.parse_args()
    points = read_point_cloud(args.file).points if args.file else synthetic_tile(args.points)
    (eigen, normal_z), seconds = timed(miners.neighbourhood_eigen, points, radius=args.radius)
    features = miners.eigen_features(eigen, normal_z)
    _, knn_seconds = timed(miners.neighbourhood_eigen, points, k=16)
    density, density_seconds = timed(miners.point_density, points, args.radius)
    _, cell_seconds = timed(miners.local_z_extremes, points, cell_size=5.0)
    _, cylinder_seconds = timed(miners.local_z_extremes, points, radius=2.0)
    rng = np.random.default_rng(0)
    _, hsv_seconds = timed(miners.rgb_to_hsv, *rng.integers(0, 65536, (3, len(points))).astype(np.uint16))
    n = len(points)
    report = {
        "benchmark": "miners", "points": n, "source": args.file or "synthetic", "radius": args.radius,
        "cpu_count": os.cpu_count(),
        "mean_neighbours": round(float(density.mean() * 4 / 3 * np.pi * args.radius ** 3), 1),
        "seconds": {"eigen_radius": seconds, "eigen_k16": knn_seconds, "density": density_seconds,
                    "heights_cell_5": cell_seconds, "heights_xy_radius_2": cylinder_seconds, "hsv": hsv_seconds},
        "points_per_second": {"eigen_radius": round(n / seconds), "eigen_k16": round(n / knn_seconds)},
        "jakteristics": against_jakteristics(points, args.radius, features, seconds),
    }
    print(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
