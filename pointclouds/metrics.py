"""Classification metrics of per-point predictions: confusion matrix, OA, P/R/F1/IoU, mIoU.

Points whose reference class is ignored are left out; ignored classes get no per-class
figures and do not enter the means. A class with no reference and no predicted point has
undefined (NaN) figures and is left out of the means too.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from pointseq.arguments import require_int


def confusion_matrix(reference: np.ndarray, prediction: np.ndarray, num_classes: int,
                     ignored: Sequence[int] = ()) -> np.ndarray:
    """Counts (C, C) int64: row = reference class, column = predicted class; ignored references dropped."""
    num_classes = require_int("num_classes", num_classes, 1)
    reference, prediction = np.asarray(reference), np.asarray(prediction)
    for name, values in (("reference", reference), ("prediction", prediction)):
        if not np.issubdtype(values.dtype, np.integer):
            raise TypeError(f"{name} must hold integer class ids, got dtype {values.dtype}")
        if values.size and (values.min() < 0 or values.max() >= num_classes):
            raise ValueError(f"{name} class ids must lie in [0, {num_classes}), got [{values.min()}, {values.max()}]")
    if reference.shape != prediction.shape:
        raise ValueError(f"reference {reference.shape} and prediction {prediction.shape} must have the same shape")
    keep = ~np.isin(reference, np.asarray(list(ignored), dtype=np.int64))
    flat = reference[keep].astype(np.int64) * num_classes + prediction[keep]
    return np.bincount(flat, minlength=num_classes * num_classes).reshape(num_classes, num_classes)


@dataclass(frozen=True)
class ClassificationMetrics:
    """Figures from one confusion matrix; per-class arrays are NaN for ignored or absent classes."""

    confusion: np.ndarray
    overall_accuracy: float
    precision: np.ndarray
    recall: np.ndarray
    f1: np.ndarray
    iou: np.ndarray
    mean_iou: float
    mean_f1: float
    class_names: tuple[str, ...]
    ignored: tuple[int, ...]

    @classmethod
    def from_confusion(cls, confusion: np.ndarray, ignored: Sequence[int] = (),
                       class_names: Sequence[str] | None = None) -> "ClassificationMetrics":
        confusion = np.asarray(confusion, dtype=np.int64)
        count = confusion.shape[0]
        names = tuple(class_names) if class_names is not None else tuple(str(c) for c in range(count))
        if len(names) != count:
            raise ValueError(f"class_names has {len(names)} names for {count} classes")
        hits = np.diag(confusion).astype(np.float64)
        actual, predicted = confusion.sum(axis=1), confusion.sum(axis=0)
        with np.errstate(divide="ignore", invalid="ignore"):
            precision = hits / predicted
            recall = hits / actual
            f1 = 2 * hits / (actual + predicted)
            iou = hits / (actual + predicted - hits)
        scored = np.ones(count, dtype=bool)
        scored[list(ignored)] = False
        for values in (precision, recall, f1, iou):
            values[~scored] = np.nan
        total = confusion.sum()
        accuracy = float(hits.sum() / total) if total else float("nan")
        defined = scored & (actual + predicted > 0)
        mean_iou = float(np.mean(iou[defined])) if defined.any() else float("nan")
        mean_f1 = float(np.mean(f1[defined])) if defined.any() else float("nan")
        return cls(confusion, accuracy, precision, recall, f1, iou, mean_iou, mean_f1, names,
                   tuple(int(c) for c in ignored))

    def to_dict(self) -> dict:
        """JSON-ready figures (NaN written as None)."""
        def clean(values):
            return [None if np.isnan(v) else float(v) for v in values]
        per_class = {name: {"precision": p, "recall": r, "f1": f, "iou": i, "support": int(s)}
                     for name, p, r, f, i, s in zip(self.class_names, clean(self.precision), clean(self.recall),
                                                    clean(self.f1), clean(self.iou), self.confusion.sum(axis=1))}
        return {"overall_accuracy": clean([self.overall_accuracy])[0], "mean_iou": clean([self.mean_iou])[0],
                "mean_f1": clean([self.mean_f1])[0], "per_class": per_class,
                "confusion_matrix": self.confusion.tolist(), "class_names": list(self.class_names),
                "ignored": list(self.ignored)}

    def format_table(self) -> str:
        """A plain-text table: one row per class, then OA, mean IoU and mean F1."""
        width = max(8, *(len(name) for name in self.class_names))
        lines = [f"{'class':<{width}} {'precision':>9} {'recall':>9} {'f1':>9} {'iou':>9} {'support':>9}"]
        for c, name in enumerate(self.class_names):
            figures = " ".join(f"{v:>9.4f}" if not np.isnan(v) else f"{'-':>9}"
                               for v in (self.precision[c], self.recall[c], self.f1[c], self.iou[c]))
            note = " (ignored)" if c in self.ignored else ""
            lines.append(f"{name:<{width}} {figures} {int(self.confusion[c].sum()):>9}{note}")
        lines.append(f"overall accuracy {self.overall_accuracy:.4f}   mean IoU {self.mean_iou:.4f}   "
                     f"mean F1 {self.mean_f1:.4f}")
        return "\n".join(lines)


def classification_metrics(reference: np.ndarray, prediction: np.ndarray, num_classes: int,
                           ignored: Sequence[int] = (), class_names: Sequence[str] | None = None) -> ClassificationMetrics:
    """All figures for per-point class ids ``reference`` and ``prediction`` (same shape)."""
    confusion = confusion_matrix(reference, prediction, num_classes, ignored)
    return ClassificationMetrics.from_confusion(confusion, ignored, class_names)
