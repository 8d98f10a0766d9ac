"""``pointseq demo``: the workflow of ``pointseq train``, ``predict`` and ``evaluate`` on synthetic tiles.

It writes synthetic LiDAR tiles as LAZ at a UTM-like offset with ASPRS codes (ground 2, high
vegetation 5, building 6, noise 7 to ignore) into ``OUTPUT/tiles/``, then for each model type:
writes a train spec (``OUTPUT/train_<folder>.json``: the last tile held out, everything else
the recipe's defaults), builds the cache from the files and trains with `tiles.train`, predicts
the held-out tile with ``pointseq predict`` and evaluates it with ``pointseq evaluate`` (the
commands' own ``run`` on their parsed arguments). ``OUTPUT/report.json`` sums it up.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import time
from typing import Any

import keras
import numpy as np

from pointseq.cli import evaluate, predict
from pointseq.cli.parser import build_parser
from pointseq.cli.train import load_train_spec
from pointseq.cli.usage_error import UsageError
from pointseq.pointclouds import ClassificationMetrics
from pointseq.pointclouds.writing import write_json_atomic
from pointseq.tiles import recipe
from pointseq.tiles.model_types import MODEL_TYPES
from pointseq.tiles.prediction import output_path
from pointseq.tiles.synthetic import CLASS_CODES, make_tiles, write_tiles
from pointseq.tiles.training import CURVES_FILE, train

MODEL_FOLDERS = {"pointnet": "dense", "shadow": "shadow"}  # model type -> its folder under OUTPUT
TILE_SIZE = 45.0  # metres: 100 fields a tile, 25 batches an epoch on 4 tiles
TILE_DENSITY = 10.0  # ground points per m^2


def write_demo_tiles(folder: str, num_tiles: int, seed: int, *, size: float = TILE_SIZE,
                     density: float = TILE_DENSITY) -> list[str]:
    """``folder/tile_<i>.laz`` for ``num_tiles`` synthetic tiles of ``seed``; returns the paths."""
    return write_tiles(folder, make_tiles(num_tiles, seed=seed, size=size, density=density))


def demo_train_spec(model_type: str, train_tiles: list[str], epochs: int | None, seed: int, progress: bool) -> dict:
    """The train spec a user would write for ``train_tiles`` (paths relative to the spec file):
    the recipe fills the sampler, features, classes, class weights and learning-rate schedule;
    ``seed`` fixes the batch order (and `run_model` the initial weights), so a rerun repeats the figures."""
    folder = MODEL_FOLDERS[model_type]
    return {
        "sequencer": {"type": "OfflineSequencer", "offline_storage": f"{folder}/cache.h5",
                      "chunk_randomization": True, "batch_randomization": True, "seed": seed, "progress": progress,
                      "backbone": {"batch_size": recipe.BATCH_SIZE},
                      "offline_pcloud": {"paths": train_tiles}},
        "model": {"type": model_type},
        **({} if epochs is None else {"epochs": epochs}),
        "output": folder,
    }


def _command(argv: list[str], verbose: bool) -> None:
    """Run ``pointseq <argv>`` through the command's own ``run`` (its output hidden when quiet)."""
    args = build_parser().parse_args(argv)
    command = {"predict": predict.run, "evaluate": evaluate.run}[args.command]
    if verbose:
        command(args)
        return
    with open(os.devnull, "w") as devnull, contextlib.redirect_stdout(devnull):
        command(args)


def majority_baseline(evaluation: dict) -> dict:
    """OA and mean IoU of always predicting the commonest reference class, from the
    evaluation's confusion matrix (same classes, same ignored points)."""
    confusion = np.asarray(evaluation["confusion_matrix"])
    counts = confusion.sum(axis=1)
    ignored = [evaluation["class_names"].index(name) for name in evaluation["prediction_only_columns"]]
    counts[ignored] = 0
    constant = np.zeros_like(confusion)
    constant[:, int(np.argmax(counts))] = counts
    metrics = ClassificationMetrics.from_confusion(constant, ignored, evaluation["class_names"])
    return {"overall_accuracy": metrics.overall_accuracy, "mean_iou": metrics.mean_iou}


def run_model(output: str, model_type: str, tiles: list[str], epochs: int | None, seed: int, verbose: bool) -> dict:
    """Train ``model_type`` on all tiles but the last, predict and evaluate the last; returns its figures."""
    folder = os.path.join(output, MODEL_FOLDERS[model_type])
    shutil.rmtree(folder, ignore_errors=True)  # a fresh run: no resuming from an earlier demo
    os.makedirs(folder)
    spec_path = os.path.join(output, f"train_{MODEL_FOLDERS[model_type]}.json")
    relative = [os.path.relpath(p, output) for p in tiles[:-1]]
    write_json_atomic(spec_path, demo_train_spec(model_type, relative, epochs, seed, verbose))
    say = print if verbose else (lambda *a: None)
    say(f"\n== {model_type}: pointseq train {spec_path}")
    keras.utils.set_random_seed(seed)  # the model's initial weights
    start = time.perf_counter()
    spec, X, y = load_train_spec(spec_path)
    report = train(spec, X=X, y=y, verbose=int(verbose))
    trained = time.perf_counter()
    predictions = os.path.join(folder, "predictions")
    say(f"== {model_type}: pointseq predict {folder} {tiles[-1]} --output {predictions}")
    _command(["predict", folder, tiles[-1], "--output", predictions, "--preview"] + ([] if verbose else ["--quiet"]),
             verbose)
    predicted = output_path(predictions, tiles[-1])
    say(f"== {model_type}: pointseq evaluate {predicted} --classes {folder} --output {folder}")
    _command(["evaluate", predicted, "--classes", folder, "--output", folder], verbose)
    with open(os.path.join(folder, "evaluation.json"), encoding="utf-8") as f:
        evaluation = json.load(f)
    names = evaluation["class_names"]
    return {
        "model": model_type, "epochs": report["epochs"], "updates": report["updates"], "train_seconds": trained - start,
        "predict_evaluate_seconds": time.perf_counter() - trained,
        "iou": {_class_name(names[c]): evaluation["per_class"][names[c]]["iou"]
                for c in range(len(names)) if names[c] not in evaluation["prediction_only_columns"]},
        "mean_iou": evaluation["mean_iou"], "overall_accuracy": evaluation["overall_accuracy"],
        "majority_baseline": majority_baseline(evaluation),
        "files": {"train_spec": spec_path, "model": os.path.join(folder, "model.keras"), "prediction": predicted,
                  "evaluation": os.path.join(folder, "evaluation.json"),
                  "confusion_matrix": os.path.join(folder, "confusion_matrix.png"),
                  "preview": os.path.splitext(predicted)[0] + "_preview.png",
                  "error_map": os.path.join(folder, os.path.splitext(os.path.basename(predicted))[0] + "_errors.png"),
                  "training_curves": os.path.join(folder, CURVES_FILE)},
    }


def _class_name(code: str) -> str:
    """``ground (2)`` for a class map name that is an ASPRS code of the synthetic tiles."""
    return f"{CLASS_CODES[int(code)]} ({code})" if code.isdigit() and int(code) in CLASS_CODES else code


def run_demo(output: str, *, num_tiles: int = 5, epochs: int | None = None, seed: int = 0,
             models: tuple[str, ...] = ("pointnet", "shadow"), verbose: bool = True,
             tile_size: float = TILE_SIZE, tile_density: float = TILE_DENSITY) -> dict:
    """Tiles, then train/predict/evaluate per model type; returns (and writes to ``output/report.json``)
    the figures. A model type this installation lacks is skipped with a printed line."""
    start = time.perf_counter()
    os.makedirs(output, exist_ok=True)
    tiles = write_demo_tiles(os.path.join(output, "tiles"), num_tiles, seed, size=tile_size, density=tile_density)
    if verbose:
        print(f"wrote {num_tiles} synthetic tiles ({tile_size:g} m, {tile_density:g} points/m^2) into "
              f"{os.path.join(output, 'tiles')}: {num_tiles - 1} to train on, {os.path.basename(tiles[-1])} held out")
    results: dict[str, Any] = {}
    for model_type in models:
        if model_type not in MODEL_TYPES:
            print(f"skipping the {model_type} model: this installation's pointseq train has no "
                  f"model type {model_type!r} (it has {', '.join(sorted(MODEL_TYPES))})")
            results[model_type] = {"model": model_type, "skipped": "model type not available"}
            continue
        results[model_type] = run_model(output, model_type, tiles, epochs, seed, verbose)
    report = {"tiles": tiles, "held_out": tiles[-1], "seed": seed, "models": results,
              "seconds": time.perf_counter() - start}
    write_json_atomic(os.path.join(output, "report.json"), report)
    _print_summary(report, os.path.join(output, "report.json"))
    return report


def _print_summary(report: dict, path: str) -> None:
    print(f"\nheld-out tile {report['held_out']}")
    for result in report["models"].values():
        if "skipped" in result:
            print(f"{result['model']}: skipped ({result['skipped']})")
            continue
        classes = ", ".join(f"{name} {iou:.3f}" for name, iou in result["iou"].items())
        print(f"{result['model']} ({result['updates']} updates, trained in {result['train_seconds']:.0f} s): "
              f"IoU {classes}; mean IoU {result['mean_iou']:.3f} (majority baseline "
              f"{result['majority_baseline']['mean_iou']:.3f}), OA {result['overall_accuracy']:.3f}")
        for what, file in result["files"].items():
            print(f"  {what:17s} {file}")
    print(f"wrote {path}; {report['seconds']:.0f} s in all")


def run(args: argparse.Namespace) -> int:
    if args.tiles < 2:
        raise UsageError(f"--tiles must be >= 2 (at least one to train on, the last held out), got {args.tiles}")
    if args.epochs is not None and args.epochs < 1:
        raise UsageError(f"--epochs must be >= 1, got {args.epochs}")
    models = tuple(m.strip().lower() for m in args.models.split(",") if m.strip())
    unknown = [m for m in models if m not in MODEL_FOLDERS]
    if not models or unknown:
        raise UsageError(f"--models must name some of {', '.join(MODEL_FOLDERS)} (comma-separated), "
                         f"got {args.models!r}")
    run_demo(args.output, num_tiles=args.tiles, epochs=args.epochs, seed=args.seed, models=models,
             verbose=not args.quiet)
    return 0
