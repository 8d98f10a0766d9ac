"""Whole tiles from the command line: train on LAZ files, predict a held-out tile, evaluate it."""

import json
import os

import numpy as np
import pytest

from pointseq.cli.main import main
from pointseq.tiles.synthetic import make_tiles, write_tiles

laspy = pytest.importorskip("laspy")

MARGIN = 0.3  # held-out mean IoU over the majority-class baseline's


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    folder = tmp_path_factory.mktemp("tiles")
    paths = write_tiles(str(folder / "tiles"), make_tiles(3, seed=0, size=30.0, density=4.0))
    spec = {"sequencer": {"type": "OfflineSequencer", "offline_storage": "cache.h5", "chunk_randomization": True,
                          "batch_randomization": True, "backbone": {"type": "Sequencer", "batch_size": 8},
                          "offline_pcloud": {"paths": paths[:2], "sampler": {
                              "type": "CoveringFieldSampler", "num_points": 128, "subsampling": "random",
                              "neighborhood": {"type": "rectangular2d", "radius": 7.5, "separation_factor": 0.5}}}},
            "validation": {"paths": paths[2:]}, "model": {"width": 32}, "epochs": 8, "output": "out"}
    (folder / "spec.json").write_text(json.dumps(spec))
    assert main(["train", str(folder / "spec.json"), "--quiet"]) == 0
    return folder, paths


def test_train_predict_evaluate_from_the_cli(trained, capsys):
    folder, paths = trained
    out = folder / "out"
    assert {"model.keras", "pipeline.json", "train_spec.json", "report.json", "curves.png"} <= set(os.listdir(out))
    assert json.loads((out / "pipeline.json").read_text())["unit_metres"] is None  # the tiles state no CRS
    report = json.loads((out / "report.json").read_text())["validation"]
    assert report["mean_iou"] > report["majority_baseline"]["mean_iou"] + MARGIN
    assert main(["predict", str(out), paths[2], "--output", str(folder / "pred"), "--probabilities",
                 "--write-classification", "--preview", "--quiet"]) == 0
    assert (folder / "pred" / "tile_2_preview.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    source, result = laspy.read(paths[2]), laspy.read(folder / "pred" / "tile_2.laz")
    for name in source.point_format.dimension_names:  # every point, in order, every dimension kept
        if name != "classification":
            np.testing.assert_array_equal(result[name], source[name], err_msg=name)
    assert set(np.unique(result["prediction"])) <= {2, 5, 6}  # source codes, never ids
    np.testing.assert_array_equal(result.classification, result["prediction"])
    probabilities = np.stack([result[f"prob_{c}"] for c in ("2", "5", "6")], axis=1)
    np.testing.assert_allclose(probabilities.sum(axis=1), 1.0, atol=1e-4)
    # evaluate the predictions against the original reference codes
    evaluated = folder / "eval_input.laz"
    source.add_extra_dims([laspy.ExtraBytesParams(name="prediction", type=np.uint8)])
    source["prediction"] = result["prediction"]
    source.write(evaluated)
    capsys.readouterr()
    assert main(["evaluate", str(evaluated), "--classes", str(out), "--output", str(folder / "eval")]) == 0
    printed = capsys.readouterr().out
    assert "overall accuracy" in printed and "mean IoU" in printed
    figures = json.loads((folder / "eval" / "evaluation.json").read_text())
    assert figures["mean_iou"] == pytest.approx(report["mean_iou"], abs=1e-6)  # the same per-point figures
    confusion = np.array(figures["confusion_matrix"])  # the trained classes; no "other": nothing fell there
    np.testing.assert_array_equal(confusion, report["confusion_matrix"])
    assert figures["class_names"] == ["2", "5", "6"] and figures["prediction_only_columns"] == []
    for picture in ("confusion_matrix.png", "eval_input_errors.png"):
        assert (folder / "eval" / picture).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_refusals_exit_2_with_one_line(trained, tmp_path, capsys):
    folder, paths = trained
    out = str(folder / "out")
    cases = [
        (["predict", str(tmp_path), paths[2], "--output", str(tmp_path / "p")], "lacks ['model.keras', 'pipeline.json']"),
        (["predict", out, str(tmp_path / "none.laz"), "--output", str(tmp_path / "p")], "inputs do not exist"),
        (["predict", out, paths[2], "--output", paths[0]], "is a file, expected a folder"),
        (["predict", out, paths[2], "--output", os.path.dirname(paths[2])], "would overwrite the inputs"),
        (["evaluate", paths[2], "--output", str(tmp_path / "e")], "has no prediction dimension 'prediction'"),
        (["evaluate", paths[2], "--classes", str(tmp_path), "--prediction-dimension", "intensity"], "lacks pipeline.json"),
    ]
    (tmp_path / "garbage.laz").write_bytes(b"not a LAS file")
    cases.append((["predict", out, str(tmp_path / "garbage.laz"), "--output", str(tmp_path / "p")], "input "))
    for argv, message in cases:
        assert main(argv) == 2, argv
        err = capsys.readouterr().err
        assert message in err and err.count("\n") == 1, (argv, err)
    assert not (tmp_path / "p").exists()  # no half-written output, no empty folder


def test_blocked_prediction_equals_the_whole_tile(trained, tmp_path, capsys):
    from pointseq.tiles.pipeline import load_training_output, predict_cloud
    from pointseq.pointclouds import read_point_cloud

    folder, paths = trained
    model, pipeline = load_training_output(str(folder / "out"))
    pipeline["sampler"]["subsampling"] = "fps"  # deterministic fields: blocks cut exactly the tile's
    cloud = read_point_cloud(paths[2], label=None)
    whole = predict_cloud(model, pipeline, cloud)
    blocks = predict_cloud(model, pipeline, cloud, block_points=len(cloud) // 6)
    np.testing.assert_allclose(blocks, whole, atol=1e-5)
    assert np.array_equal(blocks.argmax(axis=1), whole.argmax(axis=1))
    # from the command line (the trained random subsampling): every point predicted, bad values refused
    out = str(folder / "out")
    assert main(["predict", out, paths[2], "--output", str(tmp_path / "p"), "--block-points", "700", "--quiet"]) == 0
    result = laspy.read(tmp_path / "p" / "tile_2.laz")
    assert len(result.points) == len(cloud) and set(np.unique(result["prediction"])) <= {2, 5, 6}
    capsys.readouterr()
    assert main(["predict", out, paths[2], "--output", str(tmp_path / "q"), "--block-points", "0"]) == 2
    assert "--block-points must be >= 1 (points per spatial block), got 0" in capsys.readouterr().err
