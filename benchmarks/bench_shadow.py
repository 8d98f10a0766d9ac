"""Shadow batch assembly: vectorised scatter vs a per-element np.pad loop.

Both build the same training batch (inputs, labels, sample weights) from the same grids in
the same run. The reference pads every element's arrays one by one with ``np.pad``, adds the
per-element offsets to the parent maps and stacks the results, as the original library did.
Prints one JSON object. Run: ``python benchmarks/bench_shadow.py``.
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")  # the sequencers package imports keras

import numpy as np  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from pointseq.sequencers.shadow_sequencer import (  # noqa: E402
    assemble_shadow_batch,
    assemble_shadow_labels,
)
from pointseq.pointclouds.sparse_grid import build_sparse_grid  # noqa: E402

NUM_GRIDS = 64
BATCH = 16
DEPTH = 4
ROUNDS = 7


def make_grids(seed: int = 0):
    rng = np.random.default_rng(seed)
    grids = []
    for _ in range(NUM_GRIDS):
        n = int(rng.integers(3000, 7000))
        pts = rng.uniform(0.0, 1.0, size=(n, 3))
        feats = rng.normal(size=(n, 4))
        labels = rng.integers(0, 8, size=n)
        grids.append(build_sparse_grid(pts, feats, labels, cell_size=0.05, depth=DEPTH))
    return grids


def vectorised_batch(grids, rows):
    x = assemble_shadow_batch(grids, rows)
    y, sw = assemble_shadow_labels(grids, rows)
    return x, y, sw


def reference_batch(grids, rows):
    """Per element: np.pad every array, shift parent rows by the element's offset, stack."""
    b = len(grids)
    cols = {}
    labels, weights = [], []
    for k, g in enumerate(grids):
        for t in range(DEPTH):
            n = g.num_cells(t)
            pad = rows[t] - n
            cols.setdefault(f"coords_{t}", []).append(
                np.pad(g.centres[t], ((0, pad), (0, 0))).astype(np.float32)
            )
            cols.setdefault(f"mask_{t}", []).append(
                np.pad(np.ones(n, np.float32), (0, pad))
            )
            cols.setdefault(f"lengths_{t}", []).append(n)
            if t < DEPTH - 1:
                offset = k * rows[t + 1]
                cols.setdefault(f"parent_{t}", []).append(
                    np.pad(g.parent[t] + offset, (0, pad), constant_values=b * rows[t + 1])
                    .astype(np.int32)
                )
        n0 = g.num_cells(0)
        cols.setdefault("features", []).append(
            np.pad(g.features, ((0, rows[0] - n0), (0, 0))).astype(np.float32)
        )
        labels.append(np.pad(g.labels, (0, rows[0] - n0)).astype(np.int32))
        weights.append(np.pad(np.ones(n0, np.float32), (0, rows[0] - n0)))
    x = {}
    for key, parts in cols.items():
        if key.startswith("lengths"):
            x[key] = np.asarray(parts, dtype=np.int32)
        else:
            x[key] = np.stack(parts)
    return x, np.stack(labels), np.stack(weights)


def check_same(vec, ref, rows):
    xv, yv, sv = vec
    xr, yr, sr = ref
    np.testing.assert_array_equal(yv, yr)
    np.testing.assert_array_equal(sv, sr)
    b = len(yv)
    for key, value in xv.items():
        other = xr[key]
        if key.startswith("parent_"):
            t = int(key.split("_")[1])
            r = rows[t + 1]
            local = other - (np.arange(b)[:, None] * r)
            other = np.where(other == b * r, r, local)
        np.testing.assert_array_equal(value, other, err_msg=key)


def time_epoch(fn, grids, rows):
    batches = [grids[i:i + BATCH] for i in range(0, len(grids), BATCH)]
    best = float("inf")
    for _ in range(ROUNDS):
        start = time.perf_counter()
        for batch in batches:
            fn(batch, rows)
        best = min(best, time.perf_counter() - start)
    return len(batches) / best


def main() -> None:
    grids = make_grids()
    rows = [max(g.num_cells(t) for g in grids) for t in range(DEPTH)]
    check_same(vectorised_batch(grids[:BATCH], rows), reference_batch(grids[:BATCH], rows), rows)
    # Interleave to share machine noise.
    vec, ref = [], []
    for _ in range(3):
        vec.append(time_epoch(vectorised_batch, grids, rows))
        ref.append(time_epoch(reference_batch, grids, rows))
    vec_bps, ref_bps = max(vec), max(ref)
    cells = [g.num_cells(0) for g in grids]
    print(json.dumps({
        "benchmark": "shadow_batch_assembly",
        "grids": NUM_GRIDS,
        "batch_size": BATCH,
        "depth": DEPTH,
        "cells_depth0_min_mean_max": [min(cells), round(float(np.mean(cells))), max(cells)],
        "max_rows": rows,
        "vectorised_batches_per_s": round(vec_bps, 1),
        "reference_np_pad_loop_batches_per_s": round(ref_bps, 1),
        "speedup": round(vec_bps / ref_bps, 2),
        "target_speedup": 5.0,
    }))


if __name__ == "__main__":
    main()
