"""The workflow as a library: `pointseq.Segmenter` alone, the same results as the command, and a
model type registered in one place."""

import json
import os

import keras
import numpy as np
import pytest

import pointseq
from pointseq.pointclouds import read_point_cloud
from pointseq.pointclouds.field_encoders import FieldEncoder, register_encoder
from pointseq.pointclouds.field_inputs import DenseFieldEncoder
from pointseq.tiles import MODEL_TYPES, ModelType, register_model_type
from pointseq.tiles.synthetic import make_tiles, write_tiles

laspy = pytest.importorskip("laspy")


@pytest.fixture(scope="module")
def tiles(tmp_path_factory):
    folder = tmp_path_factory.mktemp("tiles")
    return write_tiles(str(folder), make_tiles(3, seed=3, size=30.0, density=3.0))


def test_fit_save_load_predict_through_the_segmenter_alone(tiles, tmp_path):
    seg = pointseq.Segmenter("pointnet", epochs=1, seed=0).fit(tiles[:2], output=str(tmp_path / "run"), verbose=0)
    proba = seg.predict(tiles[2])
    assert proba.shape == (len(read_point_cloud(tiles[2], label=None)), 3) and proba.dtype == np.float32
    np.testing.assert_allclose(proba.sum(axis=1), 1.0, atol=1e-4)
    again = pointseq.Segmenter.load(tmp_path / "run")
    np.testing.assert_allclose(again.predict(tiles[2]), proba, atol=1e-6)
    target = again.predict_file(tiles[2], tmp_path / "out" / "t.laz", probabilities=True, preview=True)
    with open(tmp_path / "out" / "t_preview.png", "rb") as f:
        assert f.read(8) == b"\x89PNG\r\n\x1a\n"
    written = laspy.read(target)
    assert set(np.unique(written.prediction)) <= {2, 5, 6} and len(written.points) == len(proba)
    metrics = again.evaluate(tiles[2])
    assert 0 < metrics.overall_accuracy <= 1 and metrics.confusion.sum() > 0
    with pytest.raises(ValueError, match="has no trained model: call fit"):
        pointseq.Segmenter().predict(tiles[2])
    with pytest.raises(ValueError, match=r"model has unknown keys \['depth'\] for type 'pointnet'"):
        pointseq.Segmenter({"type": "pointnet", "depth": 3})


def test_the_command_gives_what_the_api_gives(tiles, tmp_path):
    from pointseq.cli.main import main

    seg = pointseq.Segmenter("pointnet", epochs=1, seed=4)
    spec = seg.train_spec(tiles[:2], output=str(tmp_path / "cli_run"))
    with open(tmp_path / "spec.json", "w") as f:
        json.dump(spec, f)
    assert main(["train", str(tmp_path / "spec.json"), "--quiet"]) == 0
    assert main(["predict", str(tmp_path / "cli_run"), tiles[2], "--output", str(tmp_path / "pred"), "--quiet"]) == 0
    assert main(["evaluate", str(tmp_path / "pred" / os.path.basename(tiles[2])), "--classes",
                 str(tmp_path / "cli_run"), "--output", str(tmp_path / "eval")]) == 0
    seg.fit(tiles[:2], output=str(tmp_path / "api_run"), verbose=0)
    api = seg.class_map.to_codes(seg.predict(tiles[2]).argmax(axis=1))
    cli = laspy.read(tmp_path / "pred" / os.path.basename(tiles[2])).prediction
    np.testing.assert_array_equal(api, cli)
    with open(tmp_path / "eval" / "evaluation.json") as f:
        figures = json.load(f)
    assert figures["mean_iou"] == pytest.approx(seg.evaluate(tiles[2]).mean_iou)


class HeightOnlyEncoder(FieldEncoder):
    """A toy: each kept point's height above the field's lowest point, nothing else."""

    type_name = "height_only"

    def __init__(self):
        self.dense = DenseFieldEncoder()

    def get_config(self):
        return {"type": self.type_name}

    def bind(self, sampler):
        self.dense.bind(sampler)

    def encode(self, points, fields, features, first=0, stop=None):
        samples = self.dense.encode(points, fields, None, first, stop)
        return {**samples, "x": samples["x"][..., 3:4]}

    inputs = DenseFieldEncoder.inputs
    targets = DenseFieldEncoder.targets
    to_points = DenseFieldEncoder.to_points


def _toy_model(settings, x, num_classes):
    inputs = keras.Input(x.shape[1:])
    hidden = keras.layers.Dense(settings["width"], activation="relu")(inputs)
    return keras.Model(inputs, keras.layers.Dense(num_classes, activation="softmax")(hidden))


def test_a_model_type_registered_in_one_place_trains_and_predicts_through_the_api_and_the_command(tiles, tmp_path):
    from pointseq.cli.main import main

    register_encoder("height_only", lambda spec: HeightOnlyEncoder())
    register_model_type(ModelType("toy", encoder=lambda settings, unit: {"type": "height_only"},
                                  backbone=lambda settings: {"type": "Sequencer"}, build=_toy_model,
                                  defaults={"width": 4, "epochs": 1, "learning_rate": 1e-2}))
    try:
        seg = pointseq.Segmenter("toy").fit(tiles[:2], output=str(tmp_path / "toy"), verbose=0)
        assert seg.model.input_shape[-1] == 1 and seg.predict(tiles[2]).shape[1] == 3
        spec = seg.train_spec(tiles[:2], output=str(tmp_path / "toy_cli"))
        with open(tmp_path / "toy.json", "w") as f:
            json.dump(spec, f)
        assert main(["train", str(tmp_path / "toy.json"), "--quiet"]) == 0
        assert main(["predict", str(tmp_path / "toy_cli"), tiles[2], "--output", str(tmp_path / "p"), "--quiet"]) == 0
        with open(tmp_path / "toy_cli" / "pipeline.json") as f:
            assert json.load(f)["encoder"] == {"type": "height_only"}
    finally:
        MODEL_TYPES.pop("toy")


@pytest.mark.parametrize("model", ["kpconv", pytest.param("sparse_unet", marks=pytest.mark.slow)])
def test_the_convolution_model_types_run_the_whole_flow(model, tiles, tmp_path):
    """Segmenter and the command, with a model type on hierarchical fields or sparse grids: every
    point classified, the saved run reloads to the same probabilities, the command agrees."""
    from pointseq.cli.main import main

    seg = pointseq.Segmenter({"type": model, "width": 8}, updates=4, seed=1)
    seg.fit(tiles[:2], output=str(tmp_path / "run"), verbose=0)
    proba = seg.predict(tiles[2])
    assert proba.shape == (len(read_point_cloud(tiles[2], label=None)), 3)
    np.testing.assert_allclose(pointseq.Segmenter.load(tmp_path / "run").predict(tiles[2]), proba, atol=1e-5)
    reference = np.asarray(laspy.read(tiles[2]).classification)
    assert seg.evaluate(tiles[2]).confusion.sum() == np.isin(reference, [2, 5, 6]).sum()  # noise (7) ignored
    assert main(["predict", str(tmp_path / "run"), tiles[2], "--output", str(tmp_path / "pred"), "--quiet"]) == 0
    written = laspy.read(tmp_path / "pred" / os.path.basename(tiles[2])).prediction
    np.testing.assert_array_equal(written, seg.class_map.to_codes(proba.argmax(axis=1)))
    with open(tmp_path / "run" / "pipeline.json") as f:
        assert json.load(f)["model"]["type"] == model
