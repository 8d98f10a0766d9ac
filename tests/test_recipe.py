"""The training recipe's pieces: class map, field inputs, class weights, weighted loss."""

import keras
import numpy as np
import pytest

from pointseq.tiles.recipe import (CLASSES, FEATURES, SAMPLER, compile_for_recipe, coordinate_unit_metres,
                                 features_spec, files_unit_metres, intensity_bit_depth, inverse_frequency_weights,
                                 sampler_spec)
from pointseq.tiles.model_types import model_type
from pointseq.tiles.recipe import with_recipe_defaults
from pointseq.pointclouds import ClassMap, CoveringFieldSampler, FeatureSpec, PointCloud, sampler_from_spec
from pointseq.pointclouds.field_inputs import field_inputs, field_scale
from pointseq.sequencers.models.losses import WeightedSparseCrossEntropy


def test_recipe_classes_ignore_asprs_noise():
    cmap = ClassMap.from_spec(CLASSES, [2, 5, 6, 7])
    ids, weights = cmap.to_ids(np.array([2, 5, 6, 7, 18]))
    np.testing.assert_array_equal(ids[:3], [0, 1, 2])
    np.testing.assert_array_equal(weights, [1, 1, 1, 0, 0])


def test_recipe_field_inputs_are_centred_scaled_and_normalised():
    rng = np.random.default_rng(0)
    xyz = np.column_stack([5e5 + rng.uniform(-7.5, 7.5, 200), 5.4e6 + rng.uniform(-7.5, 7.5, 200),
                           300 + rng.uniform(0, 15, 200)])
    xyz[0, 2] = 200.0  # one noise point far below must not set the height reference
    cloud = PointCloud(xyz, {"intensity": np.full(200, 65535, np.uint16), "return_number": np.full(200, 1, np.uint8),
                             "number_of_returns": np.full(200, 2, np.uint8)})
    sampler = sampler_from_spec({**SAMPLER, "num_points": 64})
    assert isinstance(sampler, CoveringFieldSampler) and field_scale(sampler) == 7.5
    fields = sampler(xyz, np.random.default_rng(1))
    x = field_inputs(fields, FeatureSpec(FEATURES)(cloud), field_scale(sampler))
    assert x.dtype == np.float32 and x.shape == (len(fields), 64, 7)
    assert np.abs(x[..., :2]).max() <= 1.0 + 1e-6
    clean = ~(fields.indices == 0).any(axis=1)  # fields without the noise point: heights from their floor
    assert np.median(x[clean][..., 3]) == pytest.approx(1.0, abs=0.2)  # half of 15 m above the floor, / 7.5
    np.testing.assert_allclose(x[..., 4:], np.broadcast_to([1.0, 0.5, 0.4], x[..., 4:].shape), rtol=1e-6)


def test_recipe_epochs_and_learning_rate_per_model_type():
    defaults = model_type({}).settings({})
    assert (defaults["epochs"], defaults["learning_rate"]) == (6, 3e-3)
    shadow = model_type({"type": "Shadow"}).settings({"type": "Shadow"})
    assert (shadow["type"], shadow["epochs"], shadow["learning_rate"]) == ("shadow", 6, 3e-2)
    with pytest.raises(ValueError, match=r"model has unknown keys \['widht'\] for type 'pointnet'; valid: type"):
        model_type({}).settings({"widht": 3})


def test_inverse_frequency_weights_from_class_counts():
    np.testing.assert_allclose(inverse_frequency_weights([6, 3, 1]), np.power([10 / 18, 10 / 9, 10 / 3], 0.6))
    np.testing.assert_allclose(inverse_frequency_weights([6, 3, 1], power=1.0), [10 / 18, 10 / 9, 10 / 3])
    assert inverse_frequency_weights([2, 1, 0])[2] == 1.0
    with pytest.raises(ValueError, match="at least one trained point"):
        inverse_frequency_weights([0, 0, 0])


def test_weighted_loss_weights_classes_and_ignores_the_ignored_label():
    probs = np.array([[[0.5, 0.25, 0.25], [0.5, 0.25, 0.25], [0.5, 0.25, 0.25]]], np.float32)
    loss = WeightedSparseCrossEntropy([1.0, 2.0, 0.0], ignore_label=3, reduction=None)
    values = keras.ops.convert_to_numpy(loss(np.array([[0, 1, 3]]), probs))
    np.testing.assert_allclose(values, [[np.log(2), 2 * np.log(4), 0.0]], rtol=1e-5)
    again = WeightedSparseCrossEntropy.from_config(loss.get_config())
    assert again.class_weights == [1.0, 2.0, 0.0] and again.ignore_label == 3
    with pytest.raises(ValueError, match="ignore_label must be an int >= 3, got 1"):
        WeightedSparseCrossEntropy([1.0, 1.0, 1.0], ignore_label=1)
    with pytest.raises(ValueError, match="class_weights must be a non-empty list of weights >= 0"):
        WeightedSparseCrossEntropy([1.0, -1.0])


def test_compile_for_recipe_reports_its_settings():
    points = keras.Input((8, 6))
    model = keras.Model(points, keras.layers.Dense(3, activation="softmax")(points))
    settings = compile_for_recipe(model, [3, 1, 1], total_steps=10, learning_rate=3e-3)
    assert settings["class_weights"] == pytest.approx(np.power([5 / 9, 5 / 3, 5 / 3], 0.6))
    assert settings["final_learning_rate"] == pytest.approx(3e-3 * 0.05)
    history = model.fit(np.zeros((4, 8, 6), np.float32), np.zeros((4, 8)), sample_weight=np.zeros((4, 8)), verbose=0)
    assert history.history["loss"][0] == 0.0  # only ignored points (weight 0): nothing to learn
    with pytest.raises(ValueError, match="one count per model class"):
        compile_for_recipe(model, [3, 1], total_steps=10, learning_rate=3e-3)


def _las(path, *, crs=None, intensity_max=255):
    laspy = pytest.importorskip("laspy")
    from laspy.vlrs.known import GeoKeyDirectoryVlr, GeoKeyEntryStruct, WktCoordinateSystemVlr
    header = laspy.LasHeader(point_format=3, version="1.2")
    if crs == "wkt-foot":
        header.vlrs.append(WktCoordinateSystemVlr(
            'PROJCS["p",GEOGCS["g",UNIT["degree",0.0174532925199433]],UNIT["foot",0.3048]]'))
    elif crs == "geokey-us-foot":
        keys = GeoKeyDirectoryVlr()
        key = GeoKeyEntryStruct()
        key.id, key.tiff_tag_location, key.count, key.value_offset = 3076, 0, 1, 9003  # ProjLinearUnits: US foot
        keys.geo_keys, keys.geo_keys_header.number_of_keys = [key], 1
        header.vlrs.append(keys)
    data = laspy.LasData(header)
    data.x, data.y, data.z = np.arange(4.0), np.arange(4.0), np.zeros(4)
    data.intensity = np.linspace(0, intensity_max, 4).astype(np.uint16)
    data.write(path)
    return str(path)


def test_coordinate_unit_from_the_crs_of_a_las_file(tmp_path):
    assert coordinate_unit_metres(_las(tmp_path / "a.las", crs="wkt-foot")) == pytest.approx(0.3048)
    assert coordinate_unit_metres(_las(tmp_path / "b.las", crs="geokey-us-foot")) == pytest.approx(1200 / 3937)
    assert coordinate_unit_metres(_las(tmp_path / "c.las")) is None
    assert coordinate_unit_metres(tmp_path / "d.npy") is None
    assert files_unit_metres([str(tmp_path / "c.las")]) == 1.0
    with pytest.raises(ValueError, match="must share one coordinate unit"):
        files_unit_metres([str(tmp_path / "a.las"), str(tmp_path / "b.las")])
    (tmp_path / "bad.las").write_bytes(b"not a las file")
    with pytest.raises(ValueError, match="bad.las' cannot be read"):
        coordinate_unit_metres(tmp_path / "bad.las")


def test_intensity_bit_depth_is_the_smallest_that_holds_the_files(tmp_path):
    depths = [intensity_bit_depth([_las(tmp_path / f"{m}.las", intensity_max=m)]) for m in (255, 256, 4096)]
    assert depths == [8, 12, 16]
    assert features_spec(8)[0] == {"name": "intensity", "normalisation": {"scale": 1 / 255, "offset": 0.0}}
    assert features_spec(8, geometric=False)[1:] == FEATURES[1:]
    geometric = features_spec(8, unit_metres=0.3048)[3:]
    assert {"name": "planarity", "radius": pytest.approx(2.5 / 0.3048)} in geometric
    assert {"name": "height_above_min", "cell_size": pytest.approx(20 / 0.3048),
            "normalisation": {"scale": pytest.approx(0.1 * 0.3048), "offset": 0.0}} in geometric
    assert sampler_spec(0.3048)["neighborhood"]["radius"] == pytest.approx(7.5 / 0.3048)


def test_train_defaults_are_metres_and_the_files_bit_depth(tmp_path):
    path = _las(tmp_path / "feet.las", crs="wkt-foot", intensity_max=200)
    shadow = model_type("shadow").settings({"type": "shadow"})
    sequencer = with_recipe_defaults({"offline_pcloud": {"paths": [path]}}, shadow)
    pcloud = sequencer["offline_pcloud"]
    assert pcloud["sampler"]["neighborhood"]["radius"] == pytest.approx(7.5 / 0.3048)
    assert pcloud["features"] == features_spec(8, 0.3048) and pcloud["classes"] == CLASSES and pcloud["seed"] == 0
    assert sequencer["backbone"]["augmentor"]["transformations"][0]["axis"] == [0, 0, 1]
    assert pcloud["encoder"]["type"] == "sparse_grid"
    assert pcloud["encoder"]["cell_size"] == pytest.approx(0.5 / 0.3048)
    given = {"offline_pcloud": {"paths": [path], "sampler": SAMPLER, "features": ["intensity"],
                                "encoder": {"type": "dense"}}}
    assert with_recipe_defaults({**given, "backbone": {"augmentor": None}}, shadow) == (
        {"backbone": {"augmentor": None}, "offline_pcloud": {**given["offline_pcloud"], "classes": CLASSES, "seed": 0}})


def test_a_tile_in_another_unit_than_the_training_files_is_refused_unless_allowed(tmp_path):
    from pointseq.tiles.prediction import check_tile_unit

    feet = _las(tmp_path / "feet.las", crs="wkt-foot")
    with pytest.raises(ValueError, match=r"units of 0.3048 m \(its CRS\) but the model was trained on files in "
                                         r"units of 1 m.*--allow-unit-mismatch"):
        check_tile_unit({"unit_metres": 1.0}, feet)
    with pytest.warns(UserWarning, match="3.28 times too large"):
        check_tile_unit({"unit_metres": 1.0}, feet, allow_unit_mismatch=True)
    check_tile_unit({"unit_metres": 0.3048}, _las(tmp_path / "us.las", crs="geokey-us-foot"))  # one unit for fields


def test_a_unit_stated_on_one_side_only_warns(tmp_path, recwarn):
    from pointseq.tiles.prediction import check_tile_unit

    feet, plain = _las(tmp_path / "feet.las", crs="wkt-foot"), _las(tmp_path / "plain.las")
    with pytest.warns(UserWarning, match=r"states a coordinate unit of 0.3048 m and the other side none"):
        check_tile_unit({"unit_metres": None}, feet)
    with pytest.warns(UserWarning, match=r"the training files state a coordinate unit of 0.3048 m"):
        check_tile_unit({"unit_metres": 0.3048}, plain)
    check_tile_unit({"unit_metres": None}, plain)
    check_tile_unit({"unit_metres": 1.0}, plain)
    assert len(recwarn) == 0
