"""The training recipe's pieces: class map, field inputs, class weights, weighted loss."""

import keras
import numpy as np
import pytest

from pointseq.cli.recipe import CLASSES, FEATURES, SAMPLER, compile_for_recipe, inverse_frequency_weights
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


def test_inverse_frequency_weights_from_class_counts():
    np.testing.assert_allclose(inverse_frequency_weights([6, 3, 1]), [10 / 18, 10 / 9, 10 / 3])
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
    settings = compile_for_recipe(model, [3, 1, 1], total_steps=10)
    assert settings["class_weights"] == pytest.approx([5 / 9, 5 / 3, 5 / 3])
    assert settings["final_learning_rate"] == pytest.approx(3e-3 * 0.05)
    history = model.fit(np.zeros((4, 8, 6), np.float32), np.zeros((4, 8)), sample_weight=np.zeros((4, 8)), verbose=0)
    assert history.history["loss"][0] == 0.0  # only ignored points (weight 0): nothing to learn
    with pytest.raises(ValueError, match="one count per model class"):
        compile_for_recipe(model, [3, 1], total_steps=10)
