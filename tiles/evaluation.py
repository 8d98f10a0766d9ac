"""Per-point evaluation of predicted against reference class codes, and its pictures.

Every reference point counts unless its code is ignored (the class map's ignored codes, e.g.
ASPRS noise, and any given): a reference code the class map does not know is scored as a class
of its own (``code N (not trained)``), which the model can only miss, so a model evaluated on a
tile with classes it never saw is not flattered. A predicted code outside the class map
counts as a miss, in an ``other`` column shown only when a point fell there. The report says how
many points each rule left out.

A file classified by ``pointseq predict`` records the dimensions the prediction wrote in a VLR
(`prediction_record`); evaluating against one of them (``--write-classification`` puts the
predicted codes in ``classification``) would score the prediction against itself, so it is
refused (`check_reference`) rather than reported as a perfect score.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from typing import Any

import numpy as np

from pointseq.pointclouds import ClassificationMetrics, ClassMap, classification_metrics
from pointseq.pointclouds.reading import LAS_SUFFIXES, laspy_module, open_las
from pointseq.pointclouds.writing import atomic_output

PREDICTION_VLR_ID = ("pointseq", 1)  # (user id, record id) of the VLR pointseq predict writes


def predicted_dimensions(path: str) -> list[str]:
    """The dimensions of a LAS/LAZ file that ``pointseq predict`` wrote (from its VLR); [] for
    other files and files it did not write."""
    if os.path.splitext(path)[1].lower() not in LAS_SUFFIXES:
        return []
    with open_las(path) as reader:
        for vlr in reader.header.vlrs:
            if (vlr.user_id, vlr.record_id) == PREDICTION_VLR_ID:
                return list(json.loads(bytes(vlr.record_data).decode("utf-8")).get("dimensions", []))
    return []


def prediction_record(dimensions: Sequence[str], source: str) -> Any:
    """The VLR a predicted file carries: the ``dimensions`` this prediction wrote, with those
    an earlier prediction wrote into ``source`` (they still hold predictions)."""
    names = list(dict.fromkeys([*predicted_dimensions(source), *dimensions]))
    data = json.dumps({"dimensions": names, "written_by": "pointseq predict"}).encode("utf-8")
    return laspy_module(source).VLR(PREDICTION_VLR_ID[0], PREDICTION_VLR_ID[1], "dimensions pointseq predicted", data)


def check_reference(path: str, reference: str) -> None:
    """ValueError when ``reference`` of ``path`` holds pointseq's own predictions."""
    if reference in predicted_dimensions(path):
        raise ValueError(
            f"file {path!r}: its {reference!r} dimension was written by pointseq predict (--write-classification), "
            "so scoring against it would score the prediction against itself; evaluate a file whose "
            f"{reference!r} holds the reference codes (e.g. the labelled input with a prediction dimension added), "
            "or name the dimension that holds them (--reference-dimension, Segmenter.evaluate(reference=...))")


def evaluate_codes(reference: np.ndarray, prediction: np.ndarray, class_map: ClassMap,
                   ignore: Sequence[int] = ()) -> tuple[ClassificationMetrics, dict]:
    """``(metrics, left_out)`` of per-point source codes; ``left_out`` counts the points each
    rule removed (``{"ignored_codes": {code: points}}``)."""
    reference = np.asarray(reference, dtype=np.int64)
    prediction = np.asarray(prediction, dtype=np.int64)
    if reference.shape != prediction.shape:
        raise ValueError(f"reference {reference.shape} and prediction {prediction.shape} must have one code per point")
    ignored_codes = sorted(set(class_map.ignore) | {int(c) for c in ignore})
    dropped = np.isin(reference, ignored_codes)
    codes, counts = np.unique(reference[dropped], return_counts=True)
    left_out = {"ignored_codes": {int(c): int(n) for c, n in zip(codes, counts)}}
    reference, prediction = reference[~dropped], prediction[~dropped]
    lenient = ClassMap.from_spec({**class_map.get_config(), "unknown": "ignore"})
    ref_ids, ref_known = lenient.to_ids(reference)
    unknown_codes = np.unique(reference[ref_known == 0])
    names = list(class_map.names) + [f"code {c} (not trained)" for c in unknown_codes]
    ref_ids = np.where(ref_known > 0, ref_ids,
                       class_map.num_classes + np.searchsorted(unknown_codes, reference))
    pred_ids, pred_known = lenient.to_ids(prediction)
    other = len(names)
    pred_ids = np.where(pred_known > 0, pred_ids, other)
    if (pred_known == 0).any():
        names.append("other")
        metrics = classification_metrics(ref_ids, pred_ids, other + 1, ignored=[other], class_names=names)
    else:
        metrics = classification_metrics(ref_ids, pred_ids, other, class_names=names)
    left_out["not_trained_codes"] = {int(c): int((reference == c).sum()) for c in unknown_codes}
    return metrics, left_out


def evaluation_report(metrics: ClassificationMetrics, left_out: dict, files: Sequence[str]) -> dict:
    """The JSON report: the metrics, with ``other`` named as a prediction-only column rather
    than by its row index, and what each rule left out."""
    figures = metrics.to_dict()
    figures.pop("ignored")
    figures["prediction_only_columns"] = [metrics.class_names[c] for c in metrics.ignored]
    return {"files": list(files), **figures, "left_out": left_out,
            "points_scored": int(metrics.confusion.sum())}


def save_confusion_png(metrics: ClassificationMetrics, path: str) -> None:
    """The confusion matrix as a row-normalised heat map with counts and a colour bar (rows:
    reference, columns: prediction), class names on both axes."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    confusion = metrics.confusion
    rows = confusion / np.maximum(confusion.sum(axis=1, keepdims=True), 1)
    size = 1.0 * len(rows) + 3
    fig, ax = plt.subplots(figsize=(size + 1, size))
    image = ax.imshow(rows, cmap="Blues", vmin=0, vmax=1)
    fig.colorbar(image, ax=ax, label="share of the reference class")
    names = list(metrics.class_names)
    ax.set_xticks(range(len(names)), names, rotation=45, ha="right")
    ax.set_yticks(range(len(names)), names)
    for (i, j), count in np.ndenumerate(confusion):
        ax.text(j, i, f"{count}", ha="center", va="center", color="white" if rows[i, j] > 0.5 else "black")
    ax.set_xlabel("predicted")
    ax.set_ylabel("reference")
    ax.set_title(f"OA {metrics.overall_accuracy:.3f}, mean IoU {metrics.mean_iou:.3f}")
    fig.tight_layout()
    with atomic_output(path) as temp:
        fig.savefig(temp, dpi=100, format="png")
    plt.close(fig)


def save_top_view_png(points: np.ndarray, colours: np.ndarray, path: str, *, title: str = "",
                      legend: Sequence[tuple[str, Sequence[float]]] = ()) -> None:
    """A top-down picture of ``points`` (N, 3) coloured per point (``colours`` (N, 3) in [0, 1]),
    highest points drawn last; ``legend`` pairs of (label, colour)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.patches import Patch

    points = np.asarray(points, dtype=np.float64)
    order = np.argsort(points[:, 2], kind="stable")
    xy = points[order, :2] - points[:, :2].min(axis=0)
    extent = np.maximum(np.ptp(xy, axis=0), 1e-9)
    width = 7.0
    fig, ax = plt.subplots(figsize=(width + 2.5, max(3.0, width * extent[1] / extent[0])))
    marker = max(0.2, min(4.0, 4e4 / max(len(points), 1)))
    ax.scatter(xy[:, 0], xy[:, 1], c=np.asarray(colours)[order], s=marker, marker="s", linewidths=0)
    ax.set_aspect("equal")
    ax.set_xlabel("x (from the west edge)")
    ax.set_ylabel("y (from the south edge)")
    ax.set_title(title)
    if legend:
        ax.legend(handles=[Patch(color=c, label=label) for label, c in legend], loc="upper left",
                  bbox_to_anchor=(1.01, 1.0), frameon=False)
    fig.tight_layout()
    with atomic_output(path) as temp:
        fig.savefig(temp, dpi=100, format="png")
    plt.close(fig)


CLASS_COLOURS = {1: (0.6, 0.6, 0.6), 2: (0.55, 0.38, 0.2), 3: (0.6, 0.85, 0.4), 4: (0.3, 0.7, 0.25),
                 5: (0.1, 0.45, 0.1), 6: (0.85, 0.2, 0.15), 7: (1.0, 0.0, 1.0), 9: (0.2, 0.4, 0.9),
                 17: (0.9, 0.7, 0.1), 18: (1.0, 0.0, 1.0)}


def class_colours(codes: Sequence[int]) -> dict[int, tuple[float, float, float]]:
    """A colour per class code: the ASPRS convention where it has one, a distinct one otherwise."""
    import matplotlib

    spare = matplotlib.colormaps["tab20"]
    out = {}
    for k, code in enumerate(sorted({int(c) for c in codes})):
        out[code] = CLASS_COLOURS.get(code, tuple(spare(k % 20)[:3]))
    return out
