"""`pointseq demo` end to end with tiny settings, through the installed console script."""

import json
import os
import shutil
import subprocess
import sys

import numpy as np
import pytest

from pointseq.cli.synthetic_scenes import CLASS_NAMES, make_scenes


def pointseq_command():
    script = os.path.join(os.path.dirname(sys.executable), "pointseq")
    if os.path.exists(script):
        return [script]
    if shutil.which("pointseq"):
        return ["pointseq"]
    return [sys.executable, "-m", "pointseq.cli.main"]


def test_demo_writes_its_files_and_beats_chance(tmp_path):
    out = tmp_path / "demo"
    result = subprocess.run(
        pointseq_command() + ["demo", "--output", str(out), "--scenes", "24", "--epochs", "6"],
        capture_output=True, text=True, timeout=600,
        env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"},
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert sorted(os.listdir(out)) == ["demo_cache.h5", "demo_cache.h5.lock", "dense_model.keras", "report.json"]
    report = json.loads((out / "report.json").read_text())
    chance = 1 / len(CLASS_NAMES)
    for part in ("dense", "sparse"):
        assert report[part]["accuracy"] > chance + 0.05
        assert report[part]["final_loss"] < report[part]["first_loss"]
        assert set(report[part]["per_class_accuracy"]) == set(CLASS_NAMES)
        assert report[part]["train_batches_per_s"] > 0
    assert "held-out point accuracy" in result.stdout
    assert "Building offline cache" in result.stdout or "demo_cache.h5" in result.stdout


def test_demo_rejects_bad_settings(tmp_path):
    result = subprocess.run(pointseq_command() + ["demo", "--output", str(tmp_path), "--scenes", "2"],
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 2
    assert "--scenes must be >= 5, got 2" in result.stderr


def test_scenes_are_reproducible_and_labelled():
    a_pts, a_lab = make_scenes(3, 256, seed=7)
    b_pts, b_lab = make_scenes(3, 256, seed=7)
    np.testing.assert_array_equal(a_pts, b_pts)
    assert a_pts.shape == (3, 256, 3) and a_pts.dtype == np.float32
    assert a_lab.shape == (3, 256) and set(np.unique(a_lab)) <= set(range(len(CLASS_NAMES)))
    ground = a_lab == 0
    assert np.abs(a_pts[ground][:, 2]).max() < 0.1  # ground lies at z=0 up to noise
    assert (a_pts[~ground][:, 2] > -0.1).all()
    with pytest.raises(ValueError, match="num_scenes must be a positive int, got 0"):
        make_scenes(0)
