"""Covering receptive fields and propagation back: pointseq vs. the original system and vs. a per-field loop.

Cases (``num_points`` 128, k = 3 encoding neighbours, separation 0.8):
- ``autzen_cylinder``: laspy's ``autzen_trim.laz`` (110k points, US feet), cylinder r = 25 ft;
- ``autzen_rect3d``: the same tile, rectangular3d r = 25 ft;
- ``terrain_cylinder``: a synthetic 1M-point terrain tile (1 km x 1 km at 1 point/m2, a slope,
  noise, a dense patch) at an offset of (5e5, 5e6, 200), cylinder r = 10 m.

Baselines, each measured side by side with pointseq:
- ``original``: with ``--original PATH`` (a checkout of the original system, VL3D, run unmodified
  in its own environment: ``--original-python``, default ``PATH/.venv/bin/python``), its own
  ``FurthestPointSubsamplingPreProcessor`` (open3d FPS, KD-tree neighbourhoods; nthreads 1) and
  ``FurthestPointSubsamplingPostProcessor`` on the same points. Every run is a fresh process for
  either system (pointseq and the original alternate, ``--repeats`` times); the times are of the
  calls alone (after a small warm-up call, which loads compiled kernels), the ratio is of medians.
  Peak memory: tracemalloc's peak during the call (numpy buffers in both; open3d's own C++
  allocations, a copy of one neighbourhood at a time, are not seen).
- ``loop``: a per-field Python loop with the same kernels (per node a KD-tree ball query, the
  neighbourhood, FPS on that one field, cyclic padding, the k nearest kept points from a KD-tree
  of the kept points), timed on a random sample of nodes and scaled to all of them.

Prints one JSON object. Run: ``python benchmarks/bench_fields.py [--original PATH] [--cases ...]``.
The worker modes (``--worker``) are what the side-by-side runs start; they import the system
they measure only.
"""

from __future__ import annotations

import os

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")  # before numpy is imported: measure one core

import argparse  # noqa: E402
import json  # noqa: E402
import statistics  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
import tracemalloc  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
AUTZEN = Path("/work/data/laspy-2.7.0/tests/data/autzen_trim.laz")
NUM_POINTS, SEPARATION, K, CLASSES = 128, 0.8, 3, 8
CASES = {"autzen_cylinder": ("autzen", "cylinder", 25.0), "autzen_rect3d": ("autzen", "rectangular3d", 25.0),
         "terrain_cylinder": ("terrain", "cylinder", 10.0)}


def terrain(count: int, rng: np.random.Generator) -> np.ndarray:
    side = 1000.0 * np.sqrt(count / 1e6)
    xy = rng.random((count, 2)) * side
    dense = rng.random(count) < 0.1
    xy[dense] = rng.normal(side * 0.7, side * 0.02, (int(dense.sum()), 2))
    z = 0.2 * xy[:, 0] + 5 * np.sin(xy[:, 1] / 50) + rng.normal(0, 0.5, count)
    return np.column_stack([xy, z]) + [5e5, 5e6, 200.0]


def case_points(case: str, args: argparse.Namespace) -> np.ndarray:
    source = CASES[case][0]
    if source == "terrain":
        return terrain(args.points, np.random.default_rng(0))
    import laspy  # noqa: PLC0415 (the worker's environment has it; the module imports numpy only)

    las = laspy.read(args.autzen)
    return np.column_stack([las.x, las.y, las.z]).astype(np.float64)


def hood(case: str) -> dict:
    _, kind, radius = CASES[case]
    return {"type": kind, "radius": radius, "separation_factor": SEPARATION}


def measured(call, trace: bool = False):
    """(seconds, CPU seconds, tracemalloc peak MB or None, value) of one call. Tracing slows the
    original's many small Python allocations, so memory runs are separate from timed runs."""
    if trace:
        tracemalloc.start()
    start, cpu = time.perf_counter(), time.process_time()
    value = call()
    seconds, cpu = time.perf_counter() - start, time.process_time() - cpu
    peak = tracemalloc.get_traced_memory()[1] / 2 ** 20 if trace else None
    if trace:
        tracemalloc.stop()
    return seconds, cpu, peak, value


def pointseq_worker(case: str, args: argparse.Namespace) -> dict:
    sys.path.insert(0, str(ROOT))
    from pointseq.pointclouds import CoveringFieldSampler, propagate  # noqa: PLC0415
    from pointseq.pointclouds import field_kernels  # noqa: PLC0415

    points = case_points(case, args)
    sampler = CoveringFieldSampler(NUM_POINTS, hood(case), num_encoding_neighbors=K, nthreads=args.nthreads)
    sampler(points[:5000])  # warm-up: loads the compiled kernels
    seconds, cpu, peak, fields = measured(lambda: sampler(points), args.trace)
    probabilities = np.random.default_rng(2).random((len(fields), NUM_POINTS, CLASSES)).astype(np.float32)
    propagation_s = measured(lambda: propagate(fields, probabilities))[0]
    covered = float(np.mean(np.bincount(fields.member_indices, minlength=len(points)) > 0))
    return {"fields_s": seconds, "fields_cpu_s": cpu, "peak_mb": peak, "fields": len(fields), "coverage": covered,
            "propagation_s": propagation_s, "compiled": field_kernels.AVAILABLE}


def original_worker(case: str, args: argparse.Namespace) -> dict:
    sys.path.insert(0, str(args.original))
    import src.main.main_logger as logger  # noqa: PLC0415
    from src.main.main_config import main_config_init  # noqa: PLC0415

    logger.main_logger_init(str(args.original))
    main_config_init(str(args.original))
    logger.LOGGER.setLevel("WARNING")
    from src.model.deeplearn.dlrun.furthest_point_subsampling_post_processor import (  # noqa: PLC0415
        FurthestPointSubsamplingPostProcessor)
    from src.model.deeplearn.dlrun.furthest_point_subsampling_pre_processor import (  # noqa: PLC0415
        FurthestPointSubsamplingPreProcessor)

    points = case_points(case, args)
    local = points - points.min(axis=0)  # the original receives coordinates as given; local ones are fairer to it

    def pre():
        return FurthestPointSubsamplingPreProcessor(num_points=NUM_POINTS, num_encoding_neighbors=K,
                                                    neighborhood=hood(case), nthreads=1)
    pre()({"X": local[:5000], "plots_and_reports": False})  # warm-up
    processor = pre()
    seconds, cpu, peak, fields = measured(lambda: processor({"X": local, "plots_and_reports": False}), args.trace)
    probabilities = np.random.default_rng(2).random((len(fields), NUM_POINTS, CLASSES)).astype(np.float32)
    post = FurthestPointSubsamplingPostProcessor(processor)
    propagation_s = measured(lambda: post({"X": local, "z": probabilities}))[0]
    covered = np.zeros(len(points), dtype=bool)
    for neighbourhood in processor.last_call_neighborhoods:
        covered[neighbourhood] = True
    return {"fields_s": seconds, "fields_cpu_s": cpu, "peak_mb": peak, "fields": len(fields),
            "coverage": float(covered.mean()), "propagation_s": propagation_s}


def run_worker(system: str, case: str, args: argparse.Namespace, trace: bool = False) -> dict:
    python = sys.executable if system == "pointseq" else str(args.original_python)
    command = [python, __file__, "--worker", system, "--cases", case, "--points", str(args.points),
               "--autzen", str(args.autzen), "--nthreads", str(args.nthreads)] + (["--trace"] if trace else [])
    if args.original:
        command += ["--original", str(args.original)]
    done = subprocess.run(command, capture_output=True, text=True, check=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


def loop_fields(points: np.ndarray, case: str, sample: int) -> float:
    """Seconds of a per-field loop over all grid nodes, timed on ``sample`` of them."""
    sys.path.insert(0, str(ROOT))
    from scipy.spatial import cKDTree  # noqa: PLC0415

    from pointseq.pointclouds import Neighborhood  # noqa: PLC0415
    from pointseq.pointclouds.neighborhoods import grid_supports  # noqa: PLC0415
    from pointseq.pointclouds.subsampling import farthest_point_positions  # noqa: PLC0415

    shape = Neighborhood.from_spec(hood(case))
    local = points - points.min(axis=0)
    nodes = grid_supports(local, shape, shape.spacing)
    picked = nodes[np.random.default_rng(1).choice(len(nodes), min(sample, len(nodes)), replace=False)]
    coords = local[:, : shape.dims]
    tree = cKDTree(coords)
    reach = float(np.linalg.norm(shape.radius)) if shape.norm == np.inf else shape.radius[0]
    start = time.perf_counter()
    for node in picked:
        members = np.sort(np.asarray(tree.query_ball_point(node, reach), dtype=np.int64))
        if shape.norm == np.inf:
            members = members[np.all(np.abs(coords[members] - node) <= shape.radius, axis=1)]
        if members.size == 0:
            continue
        centre = np.append(node, local[members, 2].mean())[:3]
        relative = local[members] - centre
        if members.size <= NUM_POINTS:
            kept = np.arange(NUM_POINTS) % members.size
        else:
            kept = farthest_point_positions(relative[None].astype(np.float32), np.ones((1, members.size), bool),
                                            NUM_POINTS)[0]
        _, slots = cKDTree(relative[kept]).query(relative, k=K)
        _ = (members[kept], relative[kept].astype(np.float32), slots)
    return (time.perf_counter() - start) * len(nodes) / len(picked)


def compare(case: str, args: argparse.Namespace) -> dict:
    runs = {"pointseq": [], "original": []}
    for _ in range(args.repeats):  # interleaved: either system in a fresh process each time
        runs["pointseq"].append(run_worker("pointseq", case, args))
        if args.original:
            runs["original"].append(run_worker("original", case, args))
    result = {"case": case, "neighborhood": hood(case), "runs": args.repeats}
    for system, values in runs.items():
        if values:
            result[system] = {key: round(statistics.median(v[key] for v in values), 3)
                              for key in ("fields_s", "fields_cpu_s", "propagation_s")}
            result[system].update(fields=values[0]["fields"], coverage=round(values[0]["coverage"], 4))
            if case in args.memory_cases:
                result[system]["peak_mb"] = round(run_worker(system, case, args, trace=True)["peak_mb"], 1)
    if runs["original"]:
        result["fields_speedup_vs_original"] = round(result["original"]["fields_s"] / result["pointseq"]["fields_s"], 1)
        result["propagation_speedup_vs_original"] = round(
            result["original"]["propagation_s"] / result["pointseq"]["propagation_s"], 1)
    loop_s = loop_fields(case_points(case, args), case, args.sample)
    result["loop_s_scaled"] = round(loop_s, 2)
    result["fields_speedup_vs_loop"] = round(loop_s / result["pointseq"]["fields_s"], 1)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cases", nargs="+", default=list(CASES), choices=list(CASES))
    parser.add_argument("--points", type=int, default=1_000_000, help="points of the synthetic terrain tile")
    parser.add_argument("--autzen", type=Path, default=AUTZEN)
    parser.add_argument("--original", type=Path, default=None, help="checkout of the original system (VL3D)")
    parser.add_argument("--original-python", type=Path, default=None)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--sample", type=int, default=1500, help="nodes timed in the per-field loop")
    parser.add_argument("--nthreads", type=int, default=1, help="pointseq's threads (the original runs nthreads 1)")
    parser.add_argument("--memory-cases", nargs="*", default=["autzen_rect3d"], help="cases whose peak memory is measured")
    parser.add_argument("--worker", choices=["pointseq", "original"], help=argparse.SUPPRESS)
    parser.add_argument("--trace", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        worker = pointseq_worker if args.worker == "pointseq" else original_worker
        print(json.dumps(worker(args.cases[0], args)))
        return
    if args.original and args.original_python is None:
        args.original_python = args.original / ".venv" / "bin" / "python"
    result = {"benchmark": "fields", "pointseq_threads": args.nthreads, "num_points": NUM_POINTS, "k": K,
              "cases": [compare(case, args) for case in args.cases],
              "targets": {"fields_speedup_vs_original": 10.0, "fields_speedup_vs_loop": 20.0}}
    print(json.dumps(result))


if __name__ == "__main__":
    main()
