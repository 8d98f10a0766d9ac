"""`pointseq demo` reduced (small tiles, few epochs, the dense model): the train, predict and
evaluate commands' outputs on a held-out tile, and learning above the majority baseline."""

import json
import os

import numpy as np
import pytest

from pointseq.cli.demo import run_demo
from pointseq.cli.main import main

laspy = pytest.importorskip("laspy")

MARGIN = 0.25  # held-out mean IoU over the majority-class baseline's


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    out = tmp_path_factory.mktemp("demo")
    report = run_demo(str(out), num_tiles=4, epochs=4, seed=1, models=("pointnet", "no-such-type"),
                      verbose=False, tile_size=30.0, tile_density=4.0)
    return out, report


def test_demo_writes_every_output_of_the_workflow(demo):
    out, report = demo
    assert sorted(os.listdir(out / "tiles")) == [f"tile_{i}.laz" for i in range(4)]
    spec = json.loads((out / "train_dense.json").read_text())
    assert spec["model"] == {"type": "pointnet"} and spec["output"] == "dense"
    assert spec["sequencer"]["offline_pcloud"]["paths"] == [f"tiles/tile_{i}.laz" for i in range(3)]
    assert {"model.keras", "pipeline.json", "cache.h5", "report.json", "evaluation.json",
            "confusion_matrix.png"} <= set(os.listdir(out / "dense"))
    predicted = laspy.read(out / "dense" / "predictions" / "tile_3.laz")
    source = laspy.read(out / "tiles" / "tile_3.laz")
    assert len(predicted.points) == len(source.points)
    assert set(np.unique(predicted["prediction"])) <= {2, 5, 6}
    pictures = {k: v for k, v in report["models"]["pointnet"]["files"].items() if v.endswith(".png")}
    assert sorted(pictures) == ["confusion_matrix", "error_map", "preview", "training_curves"]
    for picture in pictures.values():  # the files the demo prints exist
        with open(picture, "rb") as f:
            assert f.read(8) == b"\x89PNG\r\n\x1a\n", picture
    assert json.loads((out / "report.json").read_text()) == json.loads(json.dumps(report))
    assert report["models"]["no-such-type"] == {"model": "no-such-type", "skipped": "model type not available"}


def test_demo_dense_model_learns_above_the_majority_baseline(demo):
    _, report = demo
    dense = report["models"]["pointnet"]
    assert dense["epochs"] == 4
    assert set(dense["iou"]) == {"ground (2)", "vegetation (5)", "building (6)"}
    evaluation = json.loads(open(dense["files"]["evaluation"]).read())
    assert dense["mean_iou"] == pytest.approx(evaluation["mean_iou"])
    support = [evaluation["per_class"][c]["support"] for c in ("2", "5", "6")]
    baseline = dense["majority_baseline"]
    assert baseline["overall_accuracy"] == pytest.approx(max(support) / sum(support))
    assert baseline["mean_iou"] == pytest.approx(max(support) / sum(support) / 3)
    assert dense["mean_iou"] > baseline["mean_iou"] + MARGIN


@pytest.mark.parametrize("argv, message", [
    (["--tiles", "1"], "--tiles must be >= 2 (at least one to train on, the last held out), got 1"),
    (["--epochs", "0"], "--epochs must be >= 1, got 0"),
    (["--models", "pointnet,unet"], "--models must name some of pointnet, shadow (comma-separated), got 'pointnet,unet'"),
])
def test_demo_refuses_bad_options_with_exit_2(tmp_path, capsys, argv, message):
    assert main(["demo", "--output", str(tmp_path / "out")] + argv) == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "out").exists()
