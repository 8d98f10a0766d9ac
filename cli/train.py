"""``pointseq train SPEC.json``: the demo's flow on your own data, driven by a JSON spec.

A train spec file::

    {
      "sequencer": {"type": "OfflineSequencer", "offline_storage": "train.h5",
                    "chunk_randomization": true, "batch_randomization": true,
                    "backbone": {"type": "Sequencer", "batch_size": 16, "augmentor": {...}},
                    "offline_pcloud": {"paths": ["tile1.las"], "sampler": {...}}},
      "data": {"X": "x.npy", "y": "y.npy"},
      "validation": {"X": "val_x.npy", "y": "val_y.npy"},
      "model": {"type": "pointnet", "num_classes": 6, "width": 64},
      "epochs": 20,
      "learning_rate": 0.003,
      "output": "train_output"
    }

Any dense sequencer spec works (a plain ``Sequencer`` too); ``data`` may be left out when
``offline_pcloud`` supplies the samples. Batches must be single arrays ``(B, N, F)`` with
per-point integer labels ``(B, N)``. The output folder receives the model
(``model.keras``, saved after every epoch), the sequencer state (``sequencer_state.json``,
so a rerun resumes where it stopped) and ``report.json``.
"""

from __future__ import annotations

import argparse
import json
import os
from typing import Any

import keras
import numpy as np

from pointseq.cli.spec_file import load_data, read_spec_file, resolve_sequencer_paths
from pointseq.cli.usage_error import UsageError, inputs_as_usage_errors
from pointseq.offline.errors import OfflineStorageError
from pointseq.sequencers import DataWaitProfiler, Sequencer, SequencerCheckpoint, build_sequencer
from pointseq.sequencers.models.pointnet_model import build_pointnet_segmentation_model

SPEC_KEYS = {"sequencer", "data", "validation", "model", "epochs", "learning_rate", "output"}
MODEL_TYPES = ("pointnet",)


def _positive(spec: dict, key: str, default: Any, kind: type) -> Any:
    value = spec.get(key, default)
    if isinstance(value, bool) or not isinstance(value, (int, float) if kind is float else int) or value <= 0:
        raise UsageError(f"{key} must be a positive {kind.__name__}, got {value!r}")
    return value


def load_train_spec(path: str) -> dict:
    """The validated spec with its data loaded and its paths resolved."""
    spec, base = read_spec_file(
        path, SPEC_KEYS, "{'sequencer': {'type': 'Sequencer', ...}, 'data': {'X': 'x.npy', 'y': 'y.npy'}}")
    model = spec.get("model", {"type": "pointnet"})
    if not isinstance(model, dict) or str(model.get("type", "pointnet")).lower() not in MODEL_TYPES:
        raise UsageError(f"model.type must be one of {list(MODEL_TYPES)}, got {model!r}")
    unknown = set(model) - {"type", "num_classes", "width"}
    if unknown:
        raise UsageError(f"model has unknown keys {sorted(unknown)}; valid: type, num_classes, width")
    X, y = load_data(spec.get("data"), base)
    val = load_data(spec["validation"], base, "validation") if "validation" in spec else None
    return {
        "sequencer": resolve_sequencer_paths(spec["sequencer"], base),
        "X": X, "y": y, "validation": val, "model": model,
        "epochs": _positive(spec, "epochs", 10, int),
        "learning_rate": float(_positive(spec, "learning_rate", 3e-3, float)),
        "output": resolve_path_or_default(spec.get("output", "train_output"), base),
    }


def resolve_path_or_default(path: Any, base: str) -> str:
    if not isinstance(path, str):
        raise UsageError(f"output must be a folder path string, got {path!r}")
    return path if os.path.isabs(path) else os.path.join(base, path)


def _check_num_classes(num_classes: Any, labels: Any, first_batch_labels: np.ndarray) -> None:
    """num_classes must be an int above every label (those of the data, or of the first batch)."""
    if isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 1:
        raise UsageError(f"model.num_classes must be an int >= 1, got {num_classes!r}")
    labels = first_batch_labels if labels is None else labels
    highest = int(np.max(labels)) if np.size(labels) else -1
    if highest >= num_classes:
        raise UsageError(f"model.num_classes={num_classes} is too small: the labels go up to {highest}, "
                         f"so it must be at least {highest + 1}")


def _output_folder(out: str) -> str:
    if os.path.exists(out) and not os.path.isdir(out):
        raise UsageError(f"output {out!r} is a file, expected a folder (or a path that does not exist yet)")
    return out


def run_train(spec: dict, *, verbose: int = 1) -> dict:
    """Train and (with validation data) evaluate; returns the report written to the output."""
    out = _output_folder(spec["output"])
    try:
        with inputs_as_usage_errors("sequencer"):
            train = build_sequencer(spec["sequencer"], spec["X"], spec["y"])
    except OfflineStorageError as exc:  # a missing or foreign cache the spec names
        raise UsageError(f"sequencer: {exc}") from None
    x, y = train[0][:2]
    if not isinstance(x, np.ndarray) or x.ndim != 3 or y is None or y.shape != x.shape[:2]:
        raise UsageError(
            "the pointnet model takes batches of one array (B, N, F) with labels (B, N); got x "
            f"{getattr(x, 'shape', type(x).__name__)} and y {getattr(y, 'shape', None)}")
    num_classes = spec["model"].get("num_classes")
    class_map = getattr(train, "class_map", None)  # point-cloud files: their codes, mapped
    if num_classes is None and class_map is not None:
        num_classes = class_map.num_classes
    if num_classes is None:
        if spec["y"] is None:
            raise UsageError("model.num_classes is required when the labels come from offline_pcloud files")
        num_classes = int(np.max(spec["y"])) + 1
    _check_num_classes(num_classes, spec["y"], y)
    os.makedirs(out, exist_ok=True)
    model_path = os.path.join(out, "model.keras")
    state = SequencerCheckpoint(train, os.path.join(out, "sequencer_state.json"))
    if state.restore() and os.path.exists(model_path):
        # A rerun resumes: the model of the last finished epoch, the sequencer's next epoch.
        model = keras.saving.load_model(model_path)
        initial_epoch = min(train.epoch, spec["epochs"])
        if verbose:
            print(f"resuming from {model_path} at epoch {initial_epoch}")
    else:
        model = build_pointnet_segmentation_model(x.shape[1], num_classes, num_features=x.shape[2],
                                                  width=int(spec["model"].get("width", 64)))
        model.compile(keras.optimizers.Adam(spec["learning_rate"]), "sparse_categorical_crossentropy",
                      metrics=["accuracy"])
        initial_epoch = 0
    profiler = DataWaitProfiler(train)
    history = model.fit(
        train, epochs=spec["epochs"], initial_epoch=initial_epoch, shuffle=False, verbose=2 if verbose else 0,
        callbacks=[state, keras.callbacks.ModelCheckpoint(model_path), profiler])
    report: dict[str, Any] = {"epochs": spec["epochs"], "num_classes": num_classes,
                              "class_map": None if class_map is None else class_map.get_config(),
                              "history": {k: [float(v) for v in vals] for k, vals in history.history.items()},
                              "profiler": profiler.summary() if profiler.records else None}
    if spec["validation"] is not None:
        val_x, val_y = spec["validation"]
        val = Sequencer(val_x, val_y, batch_size=train.batch_size, training=False)
        pred = model.predict(val, verbose=0).argmax(axis=-1)
        report["validation_accuracy"] = float((pred == val_y).mean())
        report["validation_per_class_accuracy"] = {
            str(c): float((pred[val_y == c] == c).mean()) for c in range(num_classes) if (val_y == c).any()}
    tmp = os.path.join(out, "report.json.tmp")
    with open(tmp, "w", encoding="utf-8") as f:
        json.dump(report, f, indent=2)
    os.replace(tmp, os.path.join(out, "report.json"))
    if verbose and "validation_accuracy" in report:
        print(f"validation point accuracy {report['validation_accuracy']:.3f}")
    return report


def run(args: argparse.Namespace) -> int:
    spec = load_train_spec(args.spec)
    run_train(spec, verbose=0 if args.quiet else 1)
    print(f"wrote {os.path.join(spec['output'], 'report.json')}")
    return 0
