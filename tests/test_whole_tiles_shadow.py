"""The shadow (sparse-grid) model from the command line: train on LAZ files, predict every
point of a held-out tile through grids, evaluate it."""

import json
import os

import numpy as np
import pytest

from pointseq.cli.main import main
from pointseq.tiles.synthetic import make_tiles, write_tiles

laspy = pytest.importorskip("laspy")

MARGIN = 0.25  # held-out mean IoU over the majority-class baseline's


def test_shadow_train_predict_evaluate_from_the_cli(tmp_path, capsys):
    paths = write_tiles(str(tmp_path / "tiles"), make_tiles(3, seed=0, size=30.0, density=4.0))
    spec = {"sequencer": {"type": "OfflineSequencer", "offline_storage": "cache.h5", "chunk_randomization": True,
                          "backbone": {"type": "Sequencer", "batch_size": 8},
                          "offline_pcloud": {"paths": paths[:2], "sampler": {
                              "type": "CoveringFieldSampler", "num_points": 128, "subsampling": "random",
                              "neighborhood": {"type": "rectangular2d", "radius": 7.5, "separation_factor": 0.5}}}},
            "validation": {"paths": paths[2:]}, "model": {"type": "shadow", "width": 16, "cell_size": 1.0, "depth": 3},
            "epochs": 8, "learning_rate": 0.01, "output": "out"}
    (tmp_path / "spec.json").write_text(json.dumps(spec))
    assert main(["train", str(tmp_path / "spec.json"), "--quiet"]) == 0
    out = tmp_path / "out"
    pipeline = json.loads((out / "pipeline.json").read_text())
    assert pipeline["model"]["type"] == "shadow" and len(pipeline["encoder"]["max_rows"]) == 3
    report = json.loads((out / "report.json").read_text())["validation"]
    assert report["mean_iou"] > report["majority_baseline"]["mean_iou"] + MARGIN

    assert main(["predict", str(out), paths[2], "--output", str(tmp_path / "pred"), "--quiet"]) == 0
    source, result = laspy.read(paths[2]), laspy.read(tmp_path / "pred" / "tile_2.laz")
    assert len(result.points) == len(source.points)  # every point of the tile gets a prediction
    np.testing.assert_array_equal(result.x, source.x)
    assert set(np.unique(result["prediction"])) <= {2, 5, 6}
    trained = np.isin(source.classification, (2, 5, 6))
    accuracy = float((result["prediction"][trained] == source.classification[trained]).mean())
    assert accuracy == pytest.approx(report["overall_accuracy"], abs=1e-6)  # predict = validation's per-point path
    assert os.path.getsize(tmp_path / "pred" / "tile_2.laz") > 0

    # spatial blocks: with FPS fields the blocked prediction is the whole tile's
    from pointseq.tiles.pipeline import load_training_output, predict_cloud
    from pointseq.pointclouds import read_point_cloud

    model, pipeline = load_training_output(str(out))
    pipeline["sampler"].update(subsampling="fps", num_points=64)  # FPS spreads points: fewer, to fit max_rows
    cloud = read_point_cloud(paths[2], label=None)
    whole = predict_cloud(model, pipeline, cloud)
    blocks = predict_cloud(model, pipeline, cloud, block_points=len(cloud) // 5)
    np.testing.assert_allclose(blocks, whole, atol=1e-5)
    assert np.array_equal(blocks.argmax(axis=1), whole.argmax(axis=1))
