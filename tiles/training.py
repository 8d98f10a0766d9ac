"""Training from a train spec: the one implementation behind `Segmenter.fit` and ``pointseq train``.

A train spec is a dict (the JSON of ``pointseq train SPEC.json``)::

    {"sequencer": {"type": "OfflineSequencer", "offline_storage": "train.h5",
                   "chunk_randomization": true, "batch_randomization": true,
                   "backbone": {"batch_size": 16},
                   "offline_pcloud": {"paths": ["tile1.laz", "tile2.laz"]}},
     "validation": {"paths": ["tile3.laz"]},
     "model": {"type": "pointnet", "width": 64},
     "epochs": 6, "learning_rate": 0.003, "seed": 0, "output": "train_output"}

With ``offline_pcloud`` files the recipe (`recipe`) fills what the spec leaves out: the
covering ``sampler`` (fields of 7.5 m half side in the files' CRS unit), the model type's
field ``encoder``, the ``features`` (intensity over the files' bit depth), the ``classes``
(ASPRS noise ignored), the seed (0); the backbone's type is the model type's. The loss
weights each class by its inverse frequency to the power 0.6 (ignored points weigh 0) and the
learning rate (per model type) decays along a cosine. ``validation`` files are checked with
the training files, before the cache is built, and scored per point after propagation.

The output folder holds everything prediction needs (``model.keras``, ``pipeline.json``,
``train_spec.json``) and ``report.json`` (history, compile settings, the data-wait profiler's
figures per epoch, validation metrics). ``model.keras``, the sequencer state and the report are
saved after every epoch, so a rerun resumes where it stopped with its history and settings; a
rerun whose spec differs from the stored one is refused naming what changed (``restart=True``
starts afresh). A spec without ``seed`` uses `recipe.SEED`, recorded in the report.

Any dense sequencer spec works too (a plain ``Sequencer`` over arrays given as ``X``/``y``).
"""

from __future__ import annotations

import json
import os
import shutil
import warnings
from typing import Any, Callable

import keras
import numpy as np

from pointseq.offline.pointcloud_source import PointCloudSource, print_progress
from pointseq.pointclouds import ClassMap, classification_metrics, read_point_cloud
from pointseq.pointclouds.reading import PointCloudFileError
from pointseq.pointclouds.writing import write_json_atomic
from pointseq.sequencers import DataWaitProfiler, Sequencer, SequencerCheckpoint, build_sequencer
from pointseq.tiles import recipe
from pointseq.tiles.model_types import model_type
from pointseq.tiles.pictures import save_training_curves
from pointseq.tiles.pipeline import MODEL_FILE, PIPELINE_FILE, make_pipeline, predict_cloud
from pointseq.tiles.train_spec import (DEFAULT_OUTPUT, check_train_spec, positive, spec_changes, stored_spec,
                                      validation_paths)

SPEC_FILE = "train_spec.json"
STATE_FILE = "sequencer_state.json"
REPORT_FILE = "report.json"
CURVES_FILE = "curves.png"  # the loss per epoch (`save_training_curves`), redrawn after every epoch


def resolve_train_spec(spec: dict, X: Any = None, y: Any = None) -> dict:
    """The spec checked, with the recipe's defaults and the model type's settings filled in.

    ``X``/``y``: arrays for a plain sequencer spec (no ``offline_pcloud``)."""
    check_train_spec(spec)
    sequencer = spec["sequencer"]
    model = spec.get("model", {"type": "pointnet"})
    entry = model_type(model)
    settings = entry.settings(model)
    seed = spec.get("seed", sequencer.get("seed", recipe.SEED))
    pcloud = sequencer.get("offline_pcloud")
    if isinstance(pcloud, dict):
        backbone = {**entry.backbone(settings), **{k: v for k, v in sequencer.get("backbone", {}).items()
                                                   if k != "type"}}
        backbone.setdefault("batch_size", recipe.BATCH_SIZE)
        backbone.setdefault("seed", seed)
        sequencer = {**sequencer, "type": sequencer.get("type", "OfflineSequencer"), "backbone": backbone,
                     "seed": sequencer.get("seed", seed)}
        sequencer = recipe.with_recipe_defaults(sequencer, settings)
    output = spec.get("output", DEFAULT_OUTPUT)
    # Files train for a number of optimiser updates (a small tile still trains, a huge one does
    # not explode); arrays, or a spec that says so, for a number of epochs.
    updates = spec.get("updates", settings.get("updates") if isinstance(pcloud, dict) and "epochs" not in spec else None)
    # Updates left to the model type grow with the training fields: `recipe.PASSES` passes over
    # them, at least the type's updates and at most `recipe.MAX_UPDATES` (`training_plan`).
    passes = recipe.PASSES if updates is not None and "updates" not in spec else None
    return {"sequencer": sequencer, "X": X, "y": y, "validation": validation_paths(spec.get("validation"), pcloud),
            "model": settings, "seed": seed,
            "updates": None if updates is None else positive(updates, "updates", int), "passes": passes,
            "epochs": None if updates is not None else positive(spec.get("epochs", settings["epochs"]), "epochs", int),
            "learning_rate": float(positive(spec.get("learning_rate", settings["learning_rate"]),
                                             "learning_rate", float)),
            "output": os.fspath(output)}


def _check_resume(spec: dict, out: str, restart: bool) -> bool:
    """Whether the run resumes; ValueError when the output holds a run of another spec."""
    stored_path = os.path.join(out, SPEC_FILE)
    started = os.path.exists(os.path.join(out, STATE_FILE)) or os.path.exists(os.path.join(out, MODEL_FILE))
    if restart:
        for name in (STATE_FILE, MODEL_FILE, REPORT_FILE, PIPELINE_FILE, SPEC_FILE):
            if os.path.exists(os.path.join(out, name)):
                os.remove(os.path.join(out, name))
        return False
    if not started:
        return False
    if os.path.isfile(stored_path):
        with open(stored_path, encoding="utf-8") as f:
            stored = json.load(f)
        # A longer run of the same spec continues it (the learning-rate schedule stays the first run's).
        length = ("epochs", "updates", "passes")
        changes = spec_changes({k: v for k, v in stored.items() if k not in length},
                               {k: v for k, v in stored_spec(spec).items() if k not in length})
        if changes:
            raise ValueError(f"output {out!r} holds a run of another spec ({'; '.join(changes)}): use another "
                             "output folder, or restart it (restart=True, pointseq train --restart)")
    return True


def _num_classes(spec: dict, train: Any, class_map: ClassMap | None) -> int:
    num_classes = spec["model"].get("num_classes")
    if class_map is not None:
        return class_map.num_classes if num_classes is None else int(num_classes)
    if num_classes is None:
        if spec["y"] is None:
            raise ValueError("model.num_classes is required when the labels come from elsewhere than arrays")
        num_classes = int(np.max(spec["y"])) + 1
    if isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 1:
        raise ValueError(f"model.num_classes must be an int >= 1, got {num_classes!r}")
    labels = train[0][1] if spec["y"] is None else spec["y"]
    highest = int(np.max(labels)) if np.size(labels) else -1
    if highest >= num_classes:
        raise ValueError(f"model.num_classes={num_classes} is too small: the labels go up to {highest}, "
                         f"so it must be at least {highest + 1}")
    return num_classes


def _training_sequencer(spec: dict, progress: Callable[[str], None] | None) -> Any:
    """The training sequencer; with files, they and the validation files are checked first."""
    sequencer = spec["sequencer"]
    pcloud = sequencer.get("offline_pcloud")
    if not isinstance(pcloud, dict):
        return build_sequencer(sequencer, spec["X"], spec["y"])
    source = PointCloudSource.from_spec(pcloud)
    source.check_files(progress)
    if isinstance(spec["validation"], dict):
        check_validation_files(source, spec["validation"]["paths"], progress)
    sequencer = {**sequencer, "offline_pcloud": source, "progress": progress is not None}
    train_seq = build_sequencer(sequencer)
    if spec["updates"] is None:
        return train_seq
    plan = training_plan(len(train_seq), spec["updates"], spec.get("passes"))
    spec["epochs"] = plan["epochs"]  # the stored spec keeps the updates asked for
    _warn_about_data(source, train_seq.batch_size, plan)
    if progress is not None:
        progress(f"training on {source.num_samples()} fields ({plan['batches_per_pass']} batches of "
                 f"{train_seq.batch_size} per pass): {plan['updates']} updates, {plan['epochs']} epochs of "
                 f"{plan['epoch_size']} batches")
    return build_sequencer({**sequencer, "epoch_size": plan["epoch_size"]})


MIN_EPOCH_BATCHES = 20  # an epoch (a checkpoint, a validation point) every 20 updates at least


def training_plan(batches_per_pass: int, updates: int, passes: int | None = None) -> dict:
    """Epochs of ``epoch_size`` batches that make ``updates`` optimiser updates: a pass over
    the data per epoch, but at least `MIN_EPOCH_BATCHES` batches (the order continues across
    the end of a small data set) and at most ``updates`` (a huge data set trains on part).

    With ``passes``, ``updates`` is a minimum: the run makes ``passes`` passes over the data
    when that is more, up to `recipe.MAX_UPDATES` updates."""
    if passes is not None:
        updates = max(updates, min(passes * batches_per_pass, recipe.MAX_UPDATES))
    epoch_size = min(max(batches_per_pass, MIN_EPOCH_BATCHES), updates)
    epochs = -(-updates // epoch_size)
    return {"batches_per_pass": batches_per_pass, "epoch_size": epoch_size, "epochs": epochs,
            "updates": epochs * epoch_size}


def _warn_about_data(source: PointCloudSource, batch_size: int, plan: dict) -> None:
    """Warn when the files are too small or too sparse for the fields the recipe cuts."""
    fields = source.num_samples()
    seen = plan["updates"] * batch_size / max(fields, 1)
    if fields < 4 * batch_size:
        warnings.warn(f"the training files give only {fields} fields: each is seen about {seen:.0f} times "
                      "(augmented); more or larger tiles would train a model that generalises better",
                      UserWarning, stacklevel=3)
    if source.mean_field_points is not None and source.mean_field_points < source.sampler.num_points / 4:
        warnings.warn(f"the training files are sparse for the fields: {source.mean_field_points:.0f} points in a "
                      f"field's neighbourhood on average for {source.sampler.num_points} points per field; check "
                      "the files' unit or use larger fields (sampler)", UserWarning, stacklevel=3)


def check_validation_files(source: PointCloudSource, paths: list[str],
                           progress: Callable[[str], None] | None = None) -> None:
    """Every validation file readable, with the features and only class codes the training knows."""
    for path in paths:
        cloud = read_point_cloud(path, label=source.label)
        if len(cloud) == 0:
            raise PointCloudFileError(f"validation file {path!r} holds no points")
        source.features.check(cloud)
        if source.class_map is not None:
            if cloud.labels is None:
                raise PointCloudFileError(f"validation file {path!r} has no label dimension {source.label!r}")
            source.class_map.to_ids(np.unique(cloud.labels), source=f"validation file {path!r}")
        if progress is not None:
            progress(f"checked validation file {path} ({len(cloud)} points)")


def _model(spec: dict, train: Any, num_classes: int, pcloud: dict | None, resume: bool,
           verbose: int) -> tuple[keras.Model, int, dict | None]:
    """The model (resumed from the output folder, or new and compiled), its first epoch and the compile settings."""
    out = spec["output"]
    state = SequencerCheckpoint(train, os.path.join(out, STATE_FILE))
    model_path = os.path.join(out, MODEL_FILE)
    if resume and state.restore() and os.path.exists(model_path):
        epoch = min(train.epoch, spec["epochs"])
        if verbose:
            print(f"resuming from {model_path} at epoch {epoch}")
        return keras.saving.load_model(model_path), epoch, None
    entry = model_type(spec["model"])
    keras.utils.set_random_seed(spec["seed"])  # the initial weights: a rerun of the spec repeats its results
    model = entry.build(spec["model"], train[0][0], num_classes)
    if pcloud is not None and pcloud.get("class_counts"):  # the recipe: class weights, cosine decay
        settings = recipe.compile_for_recipe(model, pcloud["class_counts"], spec["epochs"] * len(train),
                                             spec["learning_rate"])
    else:
        model.compile(keras.optimizers.Adam(spec["learning_rate"]), "sparse_categorical_crossentropy",
                      metrics=["accuracy"])
        settings = {"learning_rate": spec["learning_rate"], "schedule": "constant"}
    return model, 0, settings


def _previous_report(out: str) -> dict:
    path = os.path.join(out, REPORT_FILE)
    if not os.path.isfile(path):
        return {}
    with open(path, encoding="utf-8") as f:
        return json.load(f)


class EpochReport(keras.callbacks.Callback):
    """Writes ``report.json`` at the end of every epoch (after the model and the sequencer state
    are saved): the history so far, the previous runs' epochs first, and the profiler's figures
    per epoch, so an interrupted run keeps what it trained and a resumed one continues it."""

    def __init__(self, path: str, report: dict, profiler: DataWaitProfiler) -> None:
        super().__init__()
        self.path, self.report, self.profiler = path, report, profiler
        self._past_epochs = list((report.get("profiler") or {}).get("per_epoch", []))

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        for key, value in (logs or {}).items():
            self.report["history"].setdefault(key, []).append(float(value))
        self.report["epochs_done"] = epoch + 1
        self.report["profiler"] = {**self.profiler.summary(), "per_epoch": self._past_epochs + self.profiler.records}
        write_json_atomic(self.path, self.report)
        if self.report["history"].get("loss"):
            save_training_curves(self.report["history"], os.path.join(os.path.dirname(self.path), CURVES_FILE),
                                 title=f"{self.report.get('model_type', 'model')}: loss per epoch")


def train(spec: dict, *, X: Any = None, y: Any = None, verbose: int = 1, restart: bool = False,
          callbacks: list | None = None, profile: bool = False) -> dict:
    """Train (resuming a stopped run of the same spec) and, with validation data, evaluate;
    returns the report written to the output folder. ``callbacks`` run after each epoch's
    checkpoints; ``profile`` prints the data-wait profiler's figures on every epoch line (they
    are in the report either way)."""
    spec = resolve_train_spec(spec, X, y) if "X" not in spec else spec
    out = spec["output"]
    resume = _check_resume(spec, out, restart)
    stored = stored_spec(spec)  # as asked: updates, not the epochs they become
    train_seq = _training_sequencer(spec, print_progress if verbose else None)
    pcloud = getattr(train_seq, "pcloud_config", None)  # point-cloud files: their class map, counts, features
    class_map = getattr(train_seq, "class_map", None)
    num_classes = _num_classes(spec, train_seq, class_map)
    os.makedirs(out, exist_ok=True)
    write_json_atomic(os.path.join(out, SPEC_FILE), stored)
    if pcloud is not None and class_map is not None:  # before training: an interrupted run's model predicts too
        paths = spec["sequencer"]["offline_pcloud"]["paths"]
        unit = recipe.stated_unit_metres([os.fspath(p) for p in (paths if isinstance(paths, list) else [paths])])
        write_json_atomic(os.path.join(out, PIPELINE_FILE), make_pipeline(spec["model"], pcloud, unit))
    model, initial_epoch, settings = _model(spec, train_seq, num_classes, pcloud, resume, verbose)
    previous = _previous_report(out) if initial_epoch else {}
    report: dict[str, Any] = {
        "epochs": spec["epochs"], "updates": spec["epochs"] * len(train_seq), "num_classes": num_classes,
        "model_type": spec["model"].get("type", "pointnet"),
        "compile": previous.get("compile") if settings is None else settings,
        "class_map": None if class_map is None else class_map.get_config(), "seed": spec["seed"],
        "history": {k: list(v) for k, v in previous.get("history", {}).items()}, "epochs_done": initial_epoch,
        "profiler": previous.get("profiler")}
    profiler = DataWaitProfiler(train_seq, in_logs=profile)
    model.fit(train_seq, epochs=spec["epochs"], initial_epoch=initial_epoch, shuffle=False, verbose=2 if verbose else 0,
              callbacks=[SequencerCheckpoint(train_seq, os.path.join(out, STATE_FILE)),
                         keras.callbacks.ModelCheckpoint(os.path.join(out, MODEL_FILE)), profiler,
                         EpochReport(os.path.join(out, REPORT_FILE), report, profiler), *(callbacks or [])])
    if isinstance(spec["validation"], dict):
        with open(os.path.join(out, PIPELINE_FILE), encoding="utf-8") as f:
            pipeline = json.load(f)
        report["validation"] = validate_on_files(model, pipeline, spec["validation"]["paths"], train_seq.batch_size,
                                                 verbose)
    elif spec["validation"] is not None:
        report.update(_validate_on_arrays(model, spec["validation"], train_seq.batch_size, num_classes))
    write_json_atomic(os.path.join(out, REPORT_FILE), report)
    return report


def saved_epochs(folder: str) -> tuple[int, int] | None:
    """``(finished epochs, epochs)`` of the run saved in a training output folder, None when
    no epoch has finished there (what an interrupted ``pointseq train`` says it leaves)."""
    report = _previous_report(folder) if os.path.isdir(folder) else {}
    if not report.get("epochs_done") or not os.path.isfile(os.path.join(folder, MODEL_FILE)):
        return None
    return int(report["epochs_done"]), int(report["epochs"])


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


def clear_output(folder: str) -> None:
    """Remove a training output folder (the demo starts its model folders afresh)."""
    shutil.rmtree(folder, ignore_errors=True)
