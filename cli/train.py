"""``pointseq train SPEC.json``: the demo's flow on your own data, driven by a JSON spec.

A train spec file::

    {
      "sequencer": {"type": "OfflineSequencer", "offline_storage": "train.h5",
                    "chunk_randomization": true, "batch_randomization": true,
                    "backbone": {"type": "Sequencer", "batch_size": 16},
                    "offline_pcloud": {"paths": ["tile1.laz", "tile2.laz"]}},
      "validation": {"paths": ["tile3.laz"]},
      "model": {"type": "pointnet", "width": 64},
      "epochs": 6,
      "learning_rate": 0.003,
      "output": "train_output"
    }

With ``offline_pcloud`` files the recipe (`pointseq.cli.recipe`) fills what the spec leaves
out: the covering ``sampler`` (fields of 7.5 m half side in the files' CRS unit), the
``features`` (intensity over the files' bit depth), the ``classes`` (ASPRS noise ignored); the
loss weights each class by its inverse frequency to the power 0.6 (ignored points weigh 0)
and the learning rate (per model type) decays along a cosine. ``validation`` is then point-cloud files, cut into covering fields
the same way and scored per point after propagation. The output folder holds everything
``pointseq predict`` needs (``model.keras``, ``pipeline.json``, ``train_spec.json``) and
``report.json`` with the validation metrics.

Any dense sequencer spec works too (a plain ``Sequencer`` with ``"data": {"X": "x.npy",
"y": "y.npy"}`` and ``"validation": {"X": ..., "y": ...}``). Batches must be single arrays
``(B, N, F)`` with per-point integer labels ``(B, N)``. ``model.keras`` is saved after every
epoch and the sequencer state (``sequencer_state.json``) too, so a rerun resumes where it stopped.
"""

from __future__ import annotations

import argparse
import json
import os
from typing import Any

import keras
import numpy as np

from pointseq.cli import recipe
from pointseq.cli.models import model_type
from pointseq.cli.spec_file import load_data, read_spec_file, resolve_path, resolve_sequencer_paths
from pointseq.cli.tile_pipeline import MODEL_FILE, PIPELINE_FILE, make_pipeline, predict_cloud
from pointseq.sequencers.callbacks.sequencer_checkpoint import write_json_atomic
from pointseq.cli.usage_error import UsageError, inputs_as_usage_errors
from pointseq.offline.errors import OfflineStorageError
from pointseq.pointclouds import ClassMap, classification_metrics, read_point_cloud
from pointseq.sequencers import DataWaitProfiler, Sequencer, SequencerCheckpoint

SPEC_KEYS = {"sequencer", "data", "validation", "model", "epochs", "learning_rate", "output"}


def _positive(spec: dict, key: str, default: Any, kind: type) -> Any:
    value = spec.get(key, default)
    if isinstance(value, bool) or not isinstance(value, (int, float) if kind is float else int) or value <= 0:
        raise UsageError(f"{key} must be a positive {kind.__name__}, got {value!r}")
    return value


def with_recipe_defaults(sequencer: dict, model: dict | None = None) -> tuple[dict, dict]:
    """The sequencer spec with the recipe's sampler, features and classes where ``offline_pcloud``
    names none, and the model spec with the shadow cell size where it names none: sizes in
    metres over the files' coordinate unit, intensity over the files' bit depth."""
    model = {"type": "pointnet"} if model is None else model
    pcloud = sequencer.get("offline_pcloud")
    if not isinstance(pcloud, dict):
        return sequencer, model
    paths = pcloud.get("paths")  # the existing files (the source reports the others)
    paths = [p for p in (paths if isinstance(paths, list) else [paths]) if isinstance(p, str) and os.path.isfile(p)]
    shadow = recipe.is_shadow(model)
    defaults: dict[str, Any] = {"classes": recipe.CLASSES}
    with inputs_as_usage_errors("sequencer.offline_pcloud"):
        if "sampler" not in pcloud or (shadow and "cell_size" not in model):
            unit = recipe.files_unit_metres(paths)
            defaults["sampler"] = recipe.sampler_spec(unit)
            if shadow and "cell_size" not in model:
                model = {**model, "cell_size": recipe.SHADOW["cell_size"] / unit}
        if "features" not in pcloud:
            defaults["features"] = recipe.features_spec(recipe.intensity_bit_depth(paths))
    return {**sequencer, "offline_pcloud": {**defaults, **pcloud}}, model


def _validation(spec: dict, base: str) -> Any:
    """Validation arrays ``(X, y)``, ``{"paths": [...]}`` of point-cloud files, or None."""
    val = spec.get("validation")
    if val is None:
        return None
    if isinstance(val, dict) and "paths" in val:
        paths = val["paths"] if isinstance(val["paths"], list) else [val["paths"]]
        if set(val) != {"paths"} or not paths:
            raise UsageError(f"validation must be {{'paths': [point-cloud files]}} or {{'X': ..., 'y': ...}}, got {val!r}")
        if not isinstance(spec["sequencer"].get("offline_pcloud"), dict):
            raise UsageError("validation paths need a sequencer with offline_pcloud files (the same fields and features)")
        return {"paths": [resolve_path(base, p, "validation.paths") for p in paths]}
    return load_data(val, base, "validation")


def load_train_spec(path: str) -> dict:
    """The validated spec with its data loaded and its paths resolved."""
    spec, base = read_spec_file(
        path, SPEC_KEYS, "{'sequencer': {'type': 'Sequencer', ...}, 'data': {'X': 'x.npy', 'y': 'y.npy'}}")
    model = spec.get("model", {"type": "pointnet"})
    if not isinstance(model, dict):
        raise UsageError(f"model must be an object like {{'type': 'pointnet'}}, got {model!r}")
    with inputs_as_usage_errors("model"):
        entry = model_type(model)
    unknown = set(model) - set(entry.spec_keys)
    if unknown:
        raise UsageError(f"model has unknown keys {sorted(unknown)}; valid: {', '.join(entry.spec_keys)}")
    X, y = load_data(spec.get("data"), base)
    sequencer, model = with_recipe_defaults(resolve_sequencer_paths(spec["sequencer"], base), model)
    return {
        "sequencer": sequencer,
        "X": X, "y": y, "validation": _validation(spec, base), "model": model, "file": os.path.abspath(path),
        "epochs": _positive(spec, "epochs", recipe.default_epochs(model), int),
        "learning_rate": float(_positive(spec, "learning_rate", recipe.default_learning_rate(model), float)),
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


def _training_sequencer(spec: dict) -> Any:
    try:
        with inputs_as_usage_errors("sequencer"):
            return model_type(spec["model"]).training_sequencer(spec["sequencer"], spec["X"], spec["y"],
                                                                spec["model"])
    except OfflineStorageError as exc:  # a missing or foreign cache the spec names
        raise UsageError(f"sequencer: {exc}") from None


def _num_classes(spec: dict, train: Any, class_map: ClassMap | None) -> int:
    num_classes = spec["model"].get("num_classes")
    if num_classes is None and class_map is not None:
        num_classes = class_map.num_classes
    if num_classes is None:
        if spec["y"] is None:
            raise UsageError("model.num_classes is required when the labels come from offline_pcloud files")
        num_classes = int(np.max(spec["y"])) + 1
    if class_map is None:  # a class map gives the ids and the count itself
        _check_num_classes(num_classes, spec["y"], train[0][1])
    return num_classes


def _model(spec: dict, train: Any, num_classes: int, pcloud: dict | None, verbose: int) -> tuple[keras.Model, int, dict]:
    """The model (resumed from the output folder, or new and compiled), its first epoch and the compile settings."""
    model_path = os.path.join(spec["output"], MODEL_FILE)
    state = SequencerCheckpoint(train, os.path.join(spec["output"], "sequencer_state.json"))
    if state.restore() and os.path.exists(model_path):
        # A rerun resumes: the model of the last finished epoch, the sequencer's next epoch.
        if verbose:
            print(f"resuming from {model_path} at epoch {min(train.epoch, spec['epochs'])}")
        return keras.saving.load_model(model_path), min(train.epoch, spec["epochs"]), {"resumed": True}
    model = model_type(spec["model"]).build(spec["model"], train, num_classes)
    if pcloud is not None and pcloud.get("class_counts"):  # the recipe: class weights, cosine decay
        settings = recipe.compile_for_recipe(model, pcloud["class_counts"], spec["epochs"] * len(train),
                                             spec["learning_rate"])
    else:
        model.compile(keras.optimizers.Adam(spec["learning_rate"]), "sparse_categorical_crossentropy",
                      metrics=["accuracy"])
        settings = {"learning_rate": spec["learning_rate"], "schedule": "constant"}
    return model, 0, settings


def run_train(spec: dict, *, verbose: int = 1) -> dict:
    """Train and (with validation data) evaluate; returns the report written to the output."""
    out = _output_folder(spec["output"])
    train = _training_sequencer(spec)
    pcloud = getattr(train, "pcloud_config", None)  # point-cloud files: their class map, counts, features
    class_map = getattr(train, "class_map", None)
    num_classes = _num_classes(spec, train, class_map)
    os.makedirs(out, exist_ok=True)
    model, initial_epoch, settings = _model(spec, train, num_classes, pcloud, verbose)
    state = SequencerCheckpoint(train, os.path.join(out, "sequencer_state.json"))
    profiler = DataWaitProfiler(train)
    history = model.fit(
        train, epochs=spec["epochs"], initial_epoch=initial_epoch, shuffle=False, verbose=2 if verbose else 0,
        callbacks=[state, keras.callbacks.ModelCheckpoint(os.path.join(out, MODEL_FILE)), profiler])
    report: dict[str, Any] = {"epochs": spec["epochs"], "num_classes": num_classes, "compile": settings,
                              "class_map": None if class_map is None else class_map.get_config(),
                              "history": {k: [float(v) for v in vals] for k, vals in history.history.items()},
                              "profiler": profiler.summary() if profiler.records else None}
    if pcloud is not None and class_map is not None:
        pipeline = make_pipeline(spec["model"], pcloud,
                                 model_type(spec["model"]).prediction_settings(spec["model"], train))
        write_json_atomic(os.path.join(out, PIPELINE_FILE), pipeline)
        with open(spec["file"], encoding="utf-8") as f:
            write_json_atomic(os.path.join(out, "train_spec.json"), json.load(f))
    if isinstance(spec["validation"], dict):
        report["validation"] = validate_on_files(model, pipeline, spec["validation"]["paths"], train.batch_size,
                                                 verbose)
    elif spec["validation"] is not None:
        report.update(_validate_on_arrays(model, spec["validation"], train.batch_size, num_classes))
    write_json_atomic(os.path.join(out, "report.json"), report)
    return report


def _validate_on_arrays(model: keras.Model, validation: tuple, batch_size: int, num_classes: int) -> dict:
    val_x, val_y = validation
    pred = model.predict(Sequencer(val_x, val_y, batch_size=batch_size, training=False), verbose=0).argmax(axis=-1)
    return {"validation_accuracy": float((pred == val_y).mean()),
            "validation_per_class_accuracy": {
                str(c): float((pred[val_y == c] == c).mean()) for c in range(num_classes) if (val_y == c).any()}}


def validate_on_files(model: keras.Model, pipeline: dict, paths: list[str], batch_size: int, verbose: int) -> dict:
    """Per-point metrics on whole validation tiles (covering fields, propagated back), and those
    of always predicting the validation points' majority class (the best constant answer)."""
    class_map = ClassMap.from_config(pipeline["class_map"])
    references, predictions = [], []
    for path in paths:
        with inputs_as_usage_errors(f"validation file {path!r}"):
            cloud = read_point_cloud(path, label=pipeline["label"])
            ids, weights = class_map.to_ids(cloud.labels, source=f"validation file {path!r}")
        probabilities = predict_cloud(model, pipeline, cloud, batch_size=batch_size)
        references.append(ids[weights > 0])
        predictions.append(probabilities.argmax(axis=1)[weights > 0])
    reference, prediction = np.concatenate(references), np.concatenate(predictions)
    metrics = classification_metrics(reference, prediction, class_map.num_classes, class_names=class_map.names)
    majority = np.full_like(reference, int(np.argmax(np.bincount(reference, minlength=class_map.num_classes))))
    baseline = classification_metrics(reference, majority, class_map.num_classes, class_names=class_map.names)
    if verbose:
        print(metrics.format_table())
        print(f"majority-class baseline: overall accuracy {baseline.overall_accuracy:.4f}, "
              f"mean IoU {baseline.mean_iou:.4f}")
    return {**metrics.to_dict(), "majority_baseline": {"overall_accuracy": baseline.overall_accuracy,
                                                       "mean_iou": baseline.mean_iou}}


def run(args: argparse.Namespace) -> int:
    spec = load_train_spec(args.spec)
    run_train(spec, verbose=0 if args.quiet else 1)
    print(f"wrote {os.path.join(spec['output'], 'report.json')}")
    return 0
