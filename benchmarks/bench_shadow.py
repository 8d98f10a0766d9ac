"""Shadow batches and the sparse U-Net on the CPU (or a GPU where one is lent).

1. Assembly: vectorised scatter vs a per-element np.pad loop. Both build the same training
   batch (inputs, labels, sample weights; without the neighbour maps) from the same grids in
   the same run. The reference pads every element's arrays one by one with ``np.pad``, adds
   the per-element offsets to the parent maps and stacks the results, as the original did.
2. Neighbour maps (``neighbors_t``, ``position_t``, ``children_t``): one sorted search per depth
   over the batch (`assemble_neighbor_maps`) vs a per-cell loop of dictionary lookups, the
   original's hash-table semantics on the CPU; same maps checked equal.
3. Training throughput of the sparse U-Net (`build_sparse_unet`, the recipe's shape: fields
   15 m across, 512 points, 1 m cells, 4 depths, width 32): grids per second through ``fit``.
4. Whole-tile prediction throughput: a synthetic 100 m tile through `tiles.pipeline.predict_cloud`
   (fields, sparse grids, prediction batches, the U-Net, propagation back to every point):
   points per second. The model is untrained (throughput does not depend on its weights).

Prints one JSON object. Run: ``python benchmarks/bench_shadow.py`` (``--quick``: parts 1-2).
"""

from __future__ import annotations

import dataclasses
import json
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")  # the sequencers package imports keras

import numpy as np  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from pointseq.pointclouds.shadow_batch import (  # noqa: E402
    assemble_neighbor_maps,
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
    x = assemble_shadow_batch(grids, rows, neighbors=False)
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
    return best_rate(fn, [grids[i:i + BATCH] for i in range(0, len(grids), BATCH)], rows, ROUNDS)


def reference_neighbor_maps(grids, rows):
    """Per element a dict from cell coordinates to row; per cell 27 lookups; per child one store."""
    b, depth = len(grids), grids[0].depth
    offsets = [(i, j, k) for i in (-1, 0, 1) for j in (-1, 0, 1) for k in (-1, 0, 1)]
    x = {f"neighbors_{t}": np.full((b, rows[t], 27), rows[t], np.int32) for t in range(depth)}
    for t in range(depth - 1):
        x[f"position_{t}"] = np.zeros((b, rows[t]), np.int32)
        x[f"children_{t}"] = np.full((b, rows[t + 1], 8), rows[t], np.int32)
    for e, g in enumerate(grids):
        for t in range(depth):
            coords = g.cell_coords[t].tolist()
            table = {tuple(c): row for row, c in enumerate(coords)}
            out = x[f"neighbors_{t}"][e]
            for row, (i, j, k) in enumerate(coords):
                for o, (a, c, d) in enumerate(offsets):
                    found = table.get((i + a, j + c, k + d))
                    if found is not None:
                        out[row, o] = found
            if t < depth - 1:
                parents = g.parent[t].tolist()
                for row, (i, j, k) in enumerate(coords):
                    pos = 4 * (i & 1) + 2 * (j & 1) + (k & 1)
                    x[f"position_{t}"][e, row] = pos
                    x[f"children_{t}"][e, parents[row], pos] = row
    return x


def best_rate(fn, batches, rows, rounds):
    best = float("inf")
    for _ in range(rounds):
        start = time.perf_counter()
        for batch in batches:
            fn(batch, rows)
        best = min(best, time.perf_counter() - start)
    return len(batches) / best


def neighbor_maps_report(grids, rows) -> dict:
    batch = grids[:BATCH]
    vec, ref = assemble_neighbor_maps(batch, rows), reference_neighbor_maps(batch, rows)
    assert vec.keys() == ref.keys()
    for key in vec:
        np.testing.assert_array_equal(vec[key], ref[key], err_msg=key)
    batches = [grids[i:i + BATCH] for i in range(0, len(grids), BATCH)]
    vec_bps, ref_bps = 0.0, 0.0
    for _ in range(2):  # interleaved, best of each
        vec_bps = max(vec_bps, best_rate(assemble_neighbor_maps, batches, rows, 3))
        ref_bps = max(ref_bps, best_rate(reference_neighbor_maps, batches, rows, 1))
    cells = sum(g.num_cells(t) for g in grids for t in range(DEPTH))
    return {"neighbor_maps_vectorised_batches_per_s": round(vec_bps, 2),
            "neighbor_maps_reference_dict_loop_batches_per_s": round(ref_bps, 3),
            "neighbor_maps_speedup": round(vec_bps / ref_bps, 1), "neighbor_maps_target_speedup": 20.0,
            "neighbor_maps_cells_per_s": round(vec_bps * cells / len(batches))}


def field_grids(count: int, seed: int = 0):
    """Grids of synthetic-tile fields cut like the recipe's (15 m, 512 points), 1 m cells, 4 depths."""
    from pointseq.pointclouds import sampler_from_spec
    from pointseq.pointclouds.field_grids import SparseGridPreProcessor
    from pointseq.tiles import recipe
    from pointseq.tiles.synthetic import make_tiles

    tile = make_tiles(1, seed=seed, size=100.0)[0]
    fields = sampler_from_spec(recipe.SAMPLER)(tile["xyz"], np.random.default_rng(seed))
    grids = SparseGridPreProcessor(1.0, 4)(tile["xyz"], fields, None, 0, min(count, len(fields)))
    return grids, tile


def training_report(updates: int = 30) -> dict:
    import keras

    from pointseq.sequencers.models.sparse_unet import build_sparse_unet
    from pointseq.sequencers.shadow_sequencer import SparseShadowSequencer

    grids, _ = field_grids(BATCH * 8)
    labelled = [dataclasses.replace(g, labels=(g.features[:, 0] > 2.0).astype(np.int64)) for g in grids]
    seq = SparseShadowSequencer(labelled, batch_size=BATCH, seed=0)
    model = build_sparse_unet(seq.num_features, 2, seq.depth, width=32)
    model.compile(optimizer=keras.optimizers.Adam(1e-3), loss="sparse_categorical_crossentropy")
    model.fit(seq, epochs=1, verbose=0)  # warm-up: tracing and compilation
    start = time.perf_counter()
    epochs = max(1, updates // len(seq))
    model.fit(seq, epochs=epochs, verbose=0)
    seconds = time.perf_counter() - start
    return {"backend": keras.backend.backend(), "train_grids_per_s": round(epochs * len(seq) * BATCH / seconds, 1),
            "train_max_rows": list(seq.max_rows), "train_params": model.count_params()}


def prediction_report() -> dict:
    from pointseq.pointclouds import ClassMap, FeatureSpec, PointCloud
    from pointseq.pointclouds.field_grids import largest_cells, padded_rows
    from pointseq.sequencers.models.sparse_unet import build_sparse_unet
    from pointseq.tiles import recipe
    from pointseq.tiles.pipeline import predict_cloud

    grids, tile = field_grids(10**6)
    cloud = PointCloud(tile["xyz"], {k: v for k, v in tile.items() if k != "xyz"},
                       tile["classification"].astype(np.int64), None)
    features = FeatureSpec.from_spec(recipe.FEATURES)
    class_map = ClassMap.from_spec(recipe.CLASSES, np.unique(cloud.labels))
    rows = padded_rows(largest_cells(grids), recipe.NUM_POINTS)
    pipeline = {"model": {"type": "shadow"}, "sampler": recipe.SAMPLER, "features": features.get_config()["features"],
                "encoder": {"type": "sparse_grid", "cell_size": 1.0, "depth": DEPTH, "max_rows": list(rows)},
                "class_map": class_map.get_config(), "seed": 0}
    model = build_sparse_unet(1 + len(features), class_map.num_classes, DEPTH, width=32)
    predict_cloud(model, pipeline, cloud, batch_size=BATCH)  # warm-up
    start = time.perf_counter()
    proba = predict_cloud(model, pipeline, cloud, batch_size=BATCH)
    seconds = time.perf_counter() - start
    assert proba.shape == (len(cloud), class_map.num_classes)
    return {"predict_tile_points": len(cloud), "predict_fields": len(grids), "predict_tile_s": round(seconds, 2),
            "predict_points_per_s": round(len(cloud) / seconds)}


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
    report = {
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
    }
    report.update(neighbor_maps_report(grids, rows))
    if "--quick" not in sys.argv:
        report.update(training_report())
        report.update(prediction_report())
    print(json.dumps(report))


if __name__ == "__main__":
    main()
