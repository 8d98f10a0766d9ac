"""``pointseq evaluate FILE...``: per-point metrics of predicted against reference classes.

Reads the reference (``--reference-dimension``, default ``classification``) and the
prediction (``--prediction-dimension``, default ``prediction``) of every file, maps codes to
classes (the training output's class map with ``--classes``, else every reference code found)
and scores them with `pointseq.tiles.evaluation.evaluate_codes`: ``--ignore`` codes and the
class map's ignored codes are left out (and counted), reference codes the class map does not
know count as misses under their own code. Printed as a table, saved as ``evaluation.json``
and ``confusion_matrix.png`` in ``--output``, with ``<name>_errors.png`` per file (right and
wrong points from above, `pointseq.tiles.save_error_map`). A reference dimension that ``pointseq predict``
wrote (``--write-classification``) is refused: it would score the prediction against itself.
"""

from __future__ import annotations

import argparse
import json
import os

import numpy as np

from pointseq.cli.usage_error import UsageError, inputs_as_usage_errors


def _read(paths: list[str], reference: str, prediction: str) -> tuple[np.ndarray, np.ndarray, list[np.ndarray]]:
    """Reference and prediction codes of all files, and each file's coordinates."""
    from pointseq.pointclouds import read_point_cloud
    from pointseq.tiles.evaluation import check_reference

    refs, preds, points = [], [], []
    for path in paths:
        with inputs_as_usage_errors(f"file {path!r}"):
            cloud = read_point_cloud(path, label=reference)
        check_reference(path, reference)  # ValueError: exit 2 with its one line
        if prediction not in cloud.attributes:
            raise UsageError(f"file {path!r} has no prediction dimension {prediction!r}; its dimensions are "
                             f"{sorted(cloud.attributes)}")
        refs.append(cloud.labels.astype(np.int64))
        preds.append(np.asarray(cloud.attributes[prediction]).astype(np.int64))
        points.append(cloud.points)
    return np.concatenate(refs), np.concatenate(preds), points


def _error_maps(paths: list[str], points: list[np.ndarray], reference: np.ndarray, prediction: np.ndarray,
                ignored: list[int], folder: str) -> list[str]:
    """``<name>_errors.png`` per file in ``folder``: right and wrong points from above."""
    from pointseq.tiles.pictures import save_error_map

    written, start = [], 0
    for path, xyz in zip(paths, points):
        ref, pred = reference[start:start + len(xyz)], prediction[start:start + len(xyz)]
        start += len(xyz)
        if len(xyz) == 0:
            continue
        stem = os.path.splitext(os.path.basename(path))[0]
        written.append(save_error_map(xyz, np.where(np.isin(ref, ignored), -1, ref), pred,
                                      os.path.join(folder, f"{stem}_errors.png")))
    return written


def _class_map(classes: str | None, ignore: list[int], reference: np.ndarray):
    from pointseq.pointclouds import ClassMap
    from pointseq.tiles.pipeline import PIPELINE_FILE

    if classes is None:
        return ClassMap.from_spec({"ignore": ignore}, np.unique(reference))
    path = os.path.join(classes, PIPELINE_FILE)
    if not os.path.isfile(path):
        raise UsageError(f"--classes {classes!r} lacks {PIPELINE_FILE}: give a pointseq train output folder")
    with open(path, encoding="utf-8") as f:
        return ClassMap.from_config(json.load(f)["class_map"])


def run(args: argparse.Namespace) -> int:
    missing = [p for p in args.files if not os.path.isfile(p)]
    if missing:
        raise UsageError(f"files do not exist: {missing}")
    if os.path.exists(args.output) and not os.path.isdir(args.output):
        raise UsageError(f"--output {args.output!r} is a file, expected a folder")
    from pointseq.pointclouds.writing import write_json_atomic
    from pointseq.tiles.evaluation import evaluate_codes, evaluation_report, save_confusion_png

    reference, prediction, points = _read(args.files, args.reference_dimension, args.prediction_dimension)
    class_map = _class_map(args.classes, args.ignore, reference)
    with inputs_as_usage_errors("classes"):
        metrics, left_out = evaluate_codes(reference, prediction, class_map, args.ignore)
    os.makedirs(args.output, exist_ok=True)
    print(metrics.format_table())
    for code, count in left_out["ignored_codes"].items():
        print(f"left out: {count} points of ignored code {code}")
    for code, count in left_out["not_trained_codes"].items():
        print(f"scored as misses: {count} points of code {code}, which the class map does not train")
    write_json_atomic(os.path.join(args.output, "evaluation.json"), evaluation_report(metrics, left_out, args.files))
    save_confusion_png(metrics, os.path.join(args.output, "confusion_matrix.png"))
    maps = _error_maps(args.files, points, reference, prediction, sorted(set(class_map.ignore) | set(args.ignore)),
                       args.output)
    print(f"wrote {os.path.join(args.output, 'evaluation.json')}, {os.path.join(args.output, 'confusion_matrix.png')}"
          f" and the error maps {maps}")
    return 0
