"""Classification metrics against hand-computed values."""

import json

import numpy as np
import pytest

from pointseq.pointclouds.metrics import classification_metrics, confusion_matrix

# reference / prediction of 10 points, 3 classes; class 2 is ignored
REFERENCE = np.array([0, 0, 0, 0, 1, 1, 1, 2, 2, 0])
PREDICTION = np.array([0, 0, 1, 0, 1, 1, 0, 0, 1, 2])


def test_confusion_matrix_drops_ignored_references():
    assert confusion_matrix(REFERENCE, PREDICTION, 3, ignored=[2]).tolist() == [[3, 1, 1], [1, 2, 0], [0, 0, 0]]
    assert confusion_matrix(REFERENCE, PREDICTION, 3)[2].tolist() == [1, 1, 0]


def test_figures_match_hand_computation():
    metrics = classification_metrics(REFERENCE, PREDICTION, 3, ignored=[2], class_names=["ground", "tree", "noise"])
    # class 0: tp 3, predicted 4, actual 5; class 1: tp 2, predicted 3, actual 3
    assert metrics.overall_accuracy == pytest.approx(5 / 8)
    np.testing.assert_allclose(metrics.precision[:2], [3 / 4, 2 / 3])
    np.testing.assert_allclose(metrics.recall[:2], [3 / 5, 2 / 3])
    np.testing.assert_allclose(metrics.f1[:2], [6 / 9, 4 / 6])
    np.testing.assert_allclose(metrics.iou[:2], [3 / 6, 2 / 4])
    assert np.isnan(metrics.iou[2])
    assert metrics.mean_iou == pytest.approx((0.5 + 0.5) / 2)
    table = metrics.format_table()
    assert "ground" in table and "(ignored)" in table and "mean IoU 0.5000" in table
    report = json.loads(json.dumps(metrics.to_dict()))
    assert report["per_class"]["noise"]["iou"] is None and report["per_class"]["ground"]["support"] == 5


def test_absent_classes_leave_the_means_and_bad_input_is_refused():
    metrics = classification_metrics(np.array([0, 0, 1]), np.array([0, 1, 1]), 4)
    assert np.isnan(metrics.iou[3]) and metrics.mean_iou == pytest.approx((1 / 2 + 1 / 2) / 2)
    with pytest.raises(ValueError, match=r"prediction class ids must lie in \[0, 2\)"):
        confusion_matrix(np.array([0, 1]), np.array([0, 5]), 2)
    with pytest.raises(ValueError, match="same shape"):
        confusion_matrix(np.array([0, 1]), np.array([0]), 2)
    with pytest.raises(TypeError, match="integer class ids"):
        confusion_matrix(np.array([0.0, 1.0]), np.array([0, 1]), 2)
