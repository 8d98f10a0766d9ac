"""`pointseq train SPEC.json` on files, with resume and spec errors."""

import json

import numpy as np
import pytest

from pointseq.cli.main import main
from pointseq.tiles.synthetic_scenes import make_scenes


@pytest.fixture
def spec_dir(tmp_path):
    points, labels = make_scenes(12, 256, seed=3)
    np.save(tmp_path / "x.npy", points[:10])
    np.save(tmp_path / "y.npy", labels[:10])
    np.save(tmp_path / "vx.npy", points[10:])
    np.save(tmp_path / "vy.npy", labels[10:])
    spec = {
        "sequencer": {"type": "DLOfflineSequencer", "offline_storage": "cache.h5", "chunk_size": 2,
                      "chunk_randomization": True, "seed": 1,
                      "backbone": {"type": "Sequencer", "batch_size": 4,
                                   "augmentor": {"transformations": [{"type": "Rotation", "axis": [0, 0, 1]}]}}},
        "data": {"X": "x.npy", "y": "y.npy"},
        "validation": {"X": "vx.npy", "y": "vy.npy"},
        "model": {"type": "pointnet", "num_classes": 4, "width": 16},
        "epochs": 2,
        "output": "out",
    }
    (tmp_path / "spec.json").write_text(json.dumps(spec))
    return tmp_path


def test_train_writes_model_state_and_report_then_resumes(spec_dir, capsys):
    assert main(["train", str(spec_dir / "spec.json"), "--quiet"]) == 0
    out = spec_dir / "out"
    report = json.loads((out / "report.json").read_text())
    assert len(report["history"]["loss"]) == 2 and report["num_classes"] == 4
    assert 0.0 <= report["validation_accuracy"] <= 1.0
    assert json.loads((out / "sequencer_state.json").read_text()) == {"epoch": 2, "seed": 1}
    assert (out / "model.keras").exists() and (spec_dir / "cache.h5").exists()
    # Asking for more epochs resumes from the saved model and sequencer state.
    spec = json.loads((spec_dir / "spec.json").read_text())
    spec["epochs"] = 3
    (spec_dir / "spec.json").write_text(json.dumps(spec))
    assert main(["train", str(spec_dir / "spec.json")]) == 0
    assert "resuming from" in capsys.readouterr().out
    report = json.loads((out / "report.json").read_text())
    assert len(report["history"]["loss"]) == 3  # epoch 3 ran, after the first run's two
    assert report["compile"]["schedule"] == "constant"  # the first run's settings are kept
    assert json.loads((out / "sequencer_state.json").read_text())["epoch"] == 3


@pytest.mark.parametrize("change, message", [
    ({"model": {"type": "resnet"}}, "model type must be one of ['kpconv', 'pointnet', 'shadow', 'sparse_unet'], got 'resnet'"),
    ({"epochs": 0}, "epochs must be a positive int, got 0"),
    ({"optimizer": "sgd"}, "unknown keys ['optimizer']"),
    ({"data": {"X": "missing.npy"}}, "data.X file"),
])
def test_train_spec_errors(spec_dir, capsys, change, message):
    spec = json.loads((spec_dir / "spec.json").read_text())
    spec.update(change)
    (spec_dir / "bad.json").write_text(json.dumps(spec))
    assert main(["train", str(spec_dir / "bad.json")]) == 2
    assert message in capsys.readouterr().err


def _foreign_cache(spec_dir):
    from pointseq.offline.writer import write_cache

    write_cache(str(spec_dir / "cache.h5"), [np.zeros((4, 3), np.float32)], batch_size=4, fingerprint="other")


def _output_file(spec_dir):
    (spec_dir / "out").write_text("not a folder")


@pytest.mark.parametrize("change, prepare, message", [
    ({"sequencer": {"type": "OfflineSequencer", "offline_storage": "missing.h5",
                    "disable_offline_storage_writing": True, "backbone": {"type": "Sequencer"}}},
     None, "missing.h5': the file does not exist and disable_offline_storage_writing=True"),
    ({}, _foreign_cache, "built from another config or other data"),
    ({}, _output_file, "is a file, expected a folder"),
    ({"model": {"type": "pointnet", "num_classes": 2}}, None,
     "model.num_classes=2 is too small: the labels go up to 3, so it must be at least 4"),
])
def test_train_usage_errors_are_one_line_with_status_2(spec_dir, capsys, change, prepare, message):
    spec = json.loads((spec_dir / "spec.json").read_text())
    spec.update(change)
    (spec_dir / "bad.json").write_text(json.dumps(spec))
    if prepare is not None:
        prepare(spec_dir)
    assert main(["train", str(spec_dir / "bad.json"), "--quiet"]) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err and len(err.strip().splitlines()) == 1
