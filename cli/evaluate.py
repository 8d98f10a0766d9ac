"""``pointseq evaluate FILE...``: per-point metrics of predicted against reference classes.

Reads the reference (``--reference-dimension``, default ``classification``) and the
prediction (``--prediction-dimension``, default ``prediction``) of every file, maps source
codes to classes (the training output's class map with ``--classes``, else every reference
code found), leaves out ``--ignore`` codes and the class map's ignored codes, and reports
overall accuracy, per-class precision, recall, F1 and IoU, mean IoU and the confusion matrix:
printed as a table, saved as ``evaluation.json`` and ``confusion_matrix.png`` in ``--output``.
A predicted code outside the class map counts as a miss, in an extra ``other`` column.
"""

from __future__ import annotations

import argparse
import json
import os

import numpy as np

from pointseq.cli.tile_pipeline import PIPELINE_FILE
from pointseq.sequencers.callbacks.sequencer_checkpoint import write_json_atomic
from pointseq.cli.usage_error import UsageError, inputs_as_usage_errors
from pointseq.pointclouds import ClassificationMetrics, ClassMap, classification_metrics, read_point_cloud


def _read(paths: list[str], reference: str, prediction: str) -> tuple[np.ndarray, np.ndarray]:
    refs, preds = [], []
    for path in paths:
        with inputs_as_usage_errors(f"file {path!r}"):
            cloud = read_point_cloud(path, label=reference)
        if prediction not in cloud.attributes:
            raise UsageError(f"file {path!r} has no prediction dimension {prediction!r}; its dimensions are "
                             f"{sorted(cloud.attributes)}")
        refs.append(cloud.labels.astype(np.int64))
        preds.append(np.asarray(cloud.attributes[prediction]).astype(np.int64))
    return np.concatenate(refs), np.concatenate(preds)


def _class_map(classes: str | None, ignore: list[int], reference: np.ndarray) -> ClassMap:
    if classes is None:
        return ClassMap.from_spec({"ignore": ignore}, np.unique(reference))
    path = os.path.join(classes, PIPELINE_FILE)
    if not os.path.isfile(path):
        raise UsageError(f"--classes {classes!r} lacks {PIPELINE_FILE}: give a pointseq train output folder")
    with open(path, encoding="utf-8") as f:
        config = json.load(f)["class_map"]
    config = {**config, "ignore": sorted(set(config["ignore"]) | set(ignore)), "unknown": "ignore"}
    return ClassMap.from_spec(config)


def evaluate(reference: np.ndarray, prediction: np.ndarray, class_map: ClassMap) -> ClassificationMetrics:
    """Metrics over the points whose reference is a trained code; other predicted codes -> ``other``."""
    ref_ids, ref_weights = class_map.to_ids(reference, source="the reference")
    lenient = ClassMap.from_spec({**class_map.get_config(), "unknown": "ignore"})
    pred_ids, pred_weights = lenient.to_ids(prediction)
    keep = ref_weights > 0
    other = class_map.num_classes
    pred_ids = np.where(pred_weights > 0, pred_ids, other)[keep]
    return classification_metrics(ref_ids[keep], pred_ids, other + 1, ignored=[other],
                                  class_names=[*class_map.names, "other"])


def save_confusion_png(metrics: ClassificationMetrics, path: str) -> None:
    """The confusion matrix as a heat map with counts (rows: reference, columns: prediction)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    confusion = metrics.confusion
    rows = confusion / np.maximum(confusion.sum(axis=1, keepdims=True), 1)
    fig, ax = plt.subplots(figsize=(1.2 * len(rows) + 2, 1.2 * len(rows) + 1.5))
    ax.imshow(rows, cmap="Blues", vmin=0, vmax=1)
    names = list(metrics.class_names)
    ax.set_xticks(range(len(names)), names, rotation=45, ha="right")
    ax.set_yticks(range(len(names)), names)
    for (i, j), count in np.ndenumerate(confusion):
        ax.text(j, i, f"{count}", ha="center", va="center", color="white" if rows[i, j] > 0.5 else "black")
    ax.set_xlabel("predicted")
    ax.set_ylabel("reference")
    ax.set_title(f"OA {metrics.overall_accuracy:.3f}, mean IoU {metrics.mean_iou:.3f}")
    fig.tight_layout()
    tmp = f"{path}.tmp{os.getpid()}.png"
    fig.savefig(tmp, dpi=100)
    plt.close(fig)
    os.replace(tmp, path)


def run(args: argparse.Namespace) -> int:
    missing = [p for p in args.files if not os.path.isfile(p)]
    if missing:
        raise UsageError(f"files do not exist: {missing}")
    if os.path.exists(args.output) and not os.path.isdir(args.output):
        raise UsageError(f"--output {args.output!r} is a file, expected a folder")
    reference, prediction = _read(args.files, args.reference_dimension, args.prediction_dimension)
    with inputs_as_usage_errors("classes"):
        metrics = evaluate(reference, prediction, _class_map(args.classes, args.ignore, reference))
    os.makedirs(args.output, exist_ok=True)
    print(metrics.format_table())
    write_json_atomic(os.path.join(args.output, "evaluation.json"), {"files": args.files, **metrics.to_dict()})
    save_confusion_png(metrics, os.path.join(args.output, "confusion_matrix.png"))
    print(f"wrote {os.path.join(args.output, 'evaluation.json')} and "
          f"{os.path.join(args.output, 'confusion_matrix.png')}")
    return 0
