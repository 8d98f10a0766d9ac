"""Augmentation throughput: the vectorised Augmentor vs. a per-sample loop, on one core.

Workload: float32 batches of 16 clouds x 16384 points, random-axis rotation + isotropic
scale + clipped Gaussian jitter. The loop reference does what a per-cloud implementation
does: draw an axis and an angle, build the matrix with scipy, ``points @ R.T``, multiply by
the scale, add ``np.random.normal`` noise clipped to the same bound. The augmentor is timed
twice: writing into fresh arrays, and into memory kept between batches (what a sequencer
passes as ``empty``). All functions take turns, best of ``--repeats`` each.

Prints one JSON object. Run: ``python benchmarks/bench_augment.py [--repeats N]``.
"""

from __future__ import annotations

import os

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ[_var] = "1"  # before numpy is imported: measure one core

import argparse  # noqa: E402
import json  # noqa: E402
import math  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402
from scipy.spatial.transform import Rotation as ScipyRotation  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from pointseq.augment import Augmentor, Jitter, Normal, Rotation, Scale, Uniform  # noqa: E402
from pointseq.augment.gaussian import normal_float32  # noqa: E402

BATCH, POINTS = 16, 16384
STDEV, CLIP = 0.01, 0.05
SCALE_RANGE = (0.8, 1.25)


def loop_reference(batch: np.ndarray) -> np.ndarray:
    """Per-cloud augmentation with the global numpy generator."""
    out = np.empty_like(batch)
    for i, cloud in enumerate(batch):
        axis = np.random.normal(size=3)
        axis /= np.linalg.norm(axis)
        angle = np.random.uniform(-math.pi, math.pi)
        rotation = ScipyRotation.from_rotvec(axis * angle).as_matrix()
        points = cloud @ rotation.T
        points *= np.random.uniform(*SCALE_RANGE)
        points += np.clip(np.random.normal(0.0, STDEV, points.shape), -CLIP, CLIP)
        out[i] = points
    return out


def best_seconds(functions: dict, repeats: int) -> dict:
    """The fastest of ``repeats`` calls of each function after one warm-up call each.

    The functions take turns, so a slow spell of a shared machine slows all of them alike.
    """
    times: dict = {name: [] for name in functions}
    for fn in functions.values():
        fn()
    for _ in range(repeats):
        for name, fn in functions.items():
            start = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - start)
    return {name: min(values) for name, values in times.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repeats", type=int, default=60)
    args = parser.parse_args()

    data = np.random.default_rng(0).standard_normal((BATCH, POINTS, 3), dtype=np.float32)
    augmentor = Augmentor([
        Rotation(axis="random", angle=Uniform(-math.pi, math.pi)),
        Scale(factor=Uniform(*SCALE_RANGE)),
        Jitter(noise=Normal(0.0, STDEV), clip=CLIP),
    ])
    rng = np.random.default_rng(1)
    np.random.seed(1)

    reused: dict = {}

    def reused_empty(shape, dtype):  # what a sequencer passes as ``empty``: memory kept between batches
        return reused.setdefault((shape, np.dtype(dtype)), np.empty(shape, dtype))

    values = BATCH * POINTS * 3
    seconds = best_seconds({
        "augmentor": lambda: augmentor(data, rng),
        "augmentor_reused": lambda: augmentor(data, rng, empty=reused_empty),
        "loop": lambda: loop_reference(data),
        "table_noise": lambda: normal_float32(rng, values, STDEV),
        "ziggurat": lambda: rng.standard_normal(values, dtype=np.float32),
    }, args.repeats)
    vectorised_s, loop_s = seconds["augmentor"], seconds["loop"]
    table_noise_s, ziggurat_s = seconds["table_noise"], seconds["ziggurat"]
    points = BATCH * POINTS
    result = {
        "benchmark": "augment",
        "workload": f"float32 {BATCH}x{POINTS}x3, random-axis rotation + scale + clipped jitter",
        "threads": "single core (OMP/OPENBLAS/MKL_NUM_THREADS=1)",
        "repeats": args.repeats,
        "augmentor_ms_per_batch": round(vectorised_s * 1e3, 3),
        "loop_ms_per_batch": round(loop_s * 1e3, 3),
        "augmentor_mpoints_per_s": round(points / vectorised_s / 1e6, 1),
        "augmentor_reused_buffers_ms_per_batch": round(seconds["augmentor_reused"] * 1e3, 3),
        "augmentor_reused_buffers_mpoints_per_s": round(points / seconds["augmentor_reused"] / 1e6, 1),
        "loop_mpoints_per_s": round(points / loop_s / 1e6, 1),
        "speedup_vs_loop": round(loop_s / vectorised_s, 2),
        "noise_ms_quantile_table_float32": round(table_noise_s * 1e3, 3),
        "noise_ms_generator_standard_normal_float32": round(ziggurat_s * 1e3, 3),
        "target_speedup": 4.0,
        "target_mpoints_per_s": 100.0,
    }
    result["meets_targets"] = (
        result["speedup_vs_loop"] >= 4.0 and result["augmentor_mpoints_per_s"] >= 100.0
    )
    print(json.dumps(result))


if __name__ == "__main__":
    main()
