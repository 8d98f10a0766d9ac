"""``pointseq demo``: the whole path on embedded synthetic scenes, no download.

Builds an offline cache of dense scenes (with a progress bar), trains a PointNet-style model
through ``model.fit`` with augmentation read from the cache, trains the sparse-grid model
through the shadow sequencer, predicts both in predict mode and reports per-class accuracy
and throughput. Everything it writes goes under the output folder.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from typing import Any

import keras
import numpy as np

from pointseq.offline.sequencer import OfflineSequencer
from pointseq.pointclouds import build_sparse_grid
from pointseq.cli.synthetic_scenes import CLASS_NAMES, make_scenes
from pointseq.cli.usage_error import UsageError
from pointseq.sequencers import (
    EpochSync,
    Sequencer,
    SparseShadowSequencer,
    build_shadow_segmentation_model,
)
from pointseq.sequencers.callbacks import DataWaitProfiler
from pointseq.sequencers.models.pointnet_model import build_pointnet_segmentation_model

AUGMENTATION = {
    "transformations": [
        {"type": "Rotation", "axis": [0, 0, 1], "angle_distribution": {"type": "uniform", "start": -3.1416, "end": 3.1416}},
        {"type": "Scale", "scale_distribution": {"type": "uniform", "start": 0.9, "end": 1.1}},
        {"type": "Jitter", "noise_distribution": {"type": "normal", "mean": 0.0, "stdev": 0.01}, "clip": 0.03},
    ]
}


def per_class_accuracy(pred: np.ndarray, truth: np.ndarray, num_classes: int) -> dict[str, float | None]:
    """Recall of each class (None where the class is absent from ``truth``)."""
    result = {}
    for c in range(num_classes):
        sel = truth == c
        result[CLASS_NAMES[c]] = float((pred[sel] == c).mean()) if sel.any() else None
    return result


def _report(name: str, pred: np.ndarray, truth: np.ndarray, batches: int, seconds: float,
            history: keras.callbacks.History, profiler: DataWaitProfiler) -> dict[str, Any]:
    majority = np.bincount(truth.ravel(), minlength=len(CLASS_NAMES)).max() / truth.size
    return {
        "model": name,
        "accuracy": float((pred == truth).mean()),
        "majority_class_baseline": float(majority),
        "per_class_accuracy": per_class_accuracy(pred, truth, len(CLASS_NAMES)),
        "train_batches_per_s": batches / seconds,
        "final_loss": float(history.history["loss"][-1]),
        "first_loss": float(history.history["loss"][0]),
        "data_wait_fraction": profiler.records[-1]["data_wait_fraction"] if profiler.records else None,
        "mean_batch_load_ms": profiler.summary().get("mean_batch_load_ms"),
    }


def _centre_xy(points: np.ndarray) -> np.ndarray:
    """Move every scene's ground footprint to the origin (rotations then spin in place)."""
    shift = points.mean(axis=1, keepdims=True)
    shift[..., 2] = 0.0
    return (points - shift).astype(np.float32)


def _fit(model: keras.Model, seq: Any, epochs: int, verbose: int
         ) -> tuple[keras.callbacks.History, float, DataWaitProfiler]:
    """``model.fit`` on a sequencer, timed and profiled."""
    profiler = DataWaitProfiler(seq)
    start = time.perf_counter()
    history = model.fit(seq, epochs=epochs, shuffle=False, verbose=2 if verbose else 0,
                        callbacks=[EpochSync(seq), profiler])
    return history, time.perf_counter() - start, profiler


def run_demo(output_dir: str, *, num_scenes: int = 64, num_points: int = 1024, epochs: int = 20,
             batch_size: int = 8, seed: int = 0, verbose: int = 1) -> dict[str, Any]:
    """Run the demo; returns (and writes to ``output_dir/report.json``) the figures."""
    if num_scenes < 5:
        raise ValueError(f"num_scenes must be >= 5 (4 for training, 1 held out), got {num_scenes}")
    if epochs < 1:
        raise ValueError(f"epochs must be >= 1, got {epochs}")
    os.makedirs(output_dir, exist_ok=True)
    keras.utils.set_random_seed(seed)
    points, labels = make_scenes(num_scenes, num_points, seed=seed)
    points = _centre_xy(points)
    n_val = max(1, num_scenes // 5)
    train_x, train_y, val_x, val_y = points[n_val:], labels[n_val:], points[:n_val], labels[:n_val]
    say = print if verbose else (lambda *a, **k: None)
    say(f"{num_scenes} synthetic scenes of {num_points} points ({len(train_x)} train, {n_val} held out); "
        f"classes: {', '.join(CLASS_NAMES)}")

    # Dense path: an offline cache of the backbone's batches, augmented at read time.
    backbone = Sequencer(train_x, train_y, batch_size=batch_size, seed=seed, augmentor=AUGMENTATION)
    cache_path = os.path.join(output_dir, "demo_cache.h5")
    say(f"building the offline cache {cache_path}")
    train = OfflineSequencer(backbone, cache_path, chunk_size=4, chunk_randomization=True,
                             batch_randomization=True, seed=seed, progress=bool(verbose))
    model = build_pointnet_segmentation_model(num_points, len(CLASS_NAMES))
    model.compile(keras.optimizers.Adam(3e-3), "sparse_categorical_crossentropy", metrics=["accuracy"])
    say("training the dense model from the cache")
    history, seconds, profiler = _fit(model, train, epochs, verbose)
    val = Sequencer(val_x, val_y, batch_size=batch_size, training=False)
    pred = model.predict(val, verbose=0).argmax(axis=-1)
    dense = _report("dense PointNet via OfflineSequencer", pred, val_y, epochs * len(train), seconds, history, profiler)
    model.save(os.path.join(output_dir, "dense_model.keras"))

    sparse = _train_sparse(points, labels, n_val, batch_size, seed, epochs, verbose)
    report = {"num_scenes": num_scenes, "num_points": num_points, "epochs": epochs,
              "backend": keras.backend.backend(), "dense": dense, "sparse": sparse}
    tmp = os.path.join(output_dir, "report.json.tmp")
    with open(tmp, "w", encoding="utf-8") as f:
        json.dump(report, f, indent=2)
    os.replace(tmp, os.path.join(output_dir, "report.json"))
    _print_report(report, output_dir, say)
    return report


def _train_sparse(points: np.ndarray, labels: np.ndarray, n_val: int, batch_size: int, seed: int,
                  epochs: int, verbose: int) -> dict[str, Any]:
    """The sparse path: voxel grids padded into shadow batches, the first ``n_val`` held out."""
    val_y = labels[:n_val]
    grids = [build_sparse_grid(p, labels=lab, cell_size=0.25, depth=3) for p, lab in zip(points, labels)]
    max_rows = [max(g.num_cells(t) for g in grids) for t in range(3)]  # one shape for both
    shadow_train = SparseShadowSequencer(grids[n_val:], batch_size=batch_size, seed=seed, max_rows=max_rows)
    shadow_val = SparseShadowSequencer(grids[:n_val], batch_size=batch_size, training=False, max_rows=max_rows)
    shadow_model = build_shadow_segmentation_model(
        num_features=shadow_train.num_features, num_classes=len(CLASS_NAMES), depth=3,
        max_rows=shadow_train.max_rows)
    shadow_model.compile(keras.optimizers.Adam(3e-3), "sparse_categorical_crossentropy",
                         weighted_metrics=["accuracy"])
    if verbose:
        print("training the sparse shadow model")
    history_s, seconds_s, profiler_s = _fit(shadow_model, shadow_train, epochs, verbose)
    cell_probs = shadow_model.predict(shadow_val, verbose=0)
    point_pred = shadow_val.post_process_output(cell_probs, to_points=True)
    pred_s = np.stack([p.argmax(axis=-1) for p in point_pred])
    return _report("sparse shadow U-Net via SparseShadowSequencer", pred_s, val_y, epochs * len(shadow_train),
                   seconds_s, history_s, profiler_s)


def _print_report(report: dict[str, Any], output_dir: str, say: Any) -> None:
    for part in (report["dense"], report["sparse"]):
        say(f"\n{part['model']}: held-out point accuracy {part['accuracy']:.3f} "
            f"(majority-class baseline {part['majority_class_baseline']:.3f}), "
            f"{part['train_batches_per_s']:.1f} train batches/s")
        for name, acc in part["per_class_accuracy"].items():
            say(f"  {name:9s} {'absent' if acc is None else f'{acc:.3f}'}")
    say(f"\nwrote {os.path.join(output_dir, 'report.json')}")


def run(args: argparse.Namespace) -> int:
    for name, value, minimum in (("--scenes", args.scenes, 5), ("--points", args.points, 64),
                                 ("--epochs", args.epochs, 1)):
        if value < minimum:
            raise UsageError(f"{name} must be >= {minimum}, got {value}")
    report = run_demo(args.output, num_scenes=args.scenes, num_points=args.points, epochs=args.epochs,
                      seed=args.seed, verbose=0 if args.quiet else 1)
    if args.quiet:
        for part in (report["dense"], report["sparse"]):
            print(f"{part['model']}: accuracy {part['accuracy']:.3f} "
                  f"(baseline {part['majority_class_baseline']:.3f})")
    return 0
