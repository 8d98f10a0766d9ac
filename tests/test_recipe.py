"""The training recipe's pieces: class mapping, field features, class weights, weighted loss."""

import keras
import numpy as np
import pytest

from pointseq.cli.recipe import (
    IGNORE_LABEL, compile_for_recipe, field_features, inverse_frequency_weights, labels_from_codes,
)
from pointseq.sequencers.models.losses import WeightedSparseCrossEntropy


def test_codes_map_to_classes_and_the_rest_is_ignored():
    np.testing.assert_array_equal(labels_from_codes(np.array([2, 5, 6, 7, 1, 9], np.uint8)),
                                  [0, 1, 2, IGNORE_LABEL, IGNORE_LABEL, IGNORE_LABEL])


def test_field_features_are_centred_scaled_and_normalised():
    rng = np.random.default_rng(0)
    xyz = np.column_stack([5e5 + rng.uniform(-7.5, 7.5, 200), 5.4e6 + rng.uniform(-7.5, 7.5, 200),
                           300 + rng.uniform(0, 15, 200)])
    xyz[0, 2] = 200.0  # one noise point far below must not set the height reference
    feats = field_features(xyz, np.full(200, 65535, np.uint16), np.full(200, 1, np.uint8),
                           np.full(200, 2, np.uint8), np.array([5e5, 5.4e6]), radius=7.5)
    assert feats.dtype == np.float32 and feats.shape == (200, 6)
    assert np.abs(feats[:, :2]).max() <= 1.0
    assert np.median(feats[1:, 2]) == pytest.approx(1.0, abs=0.15)  # half of 15 m above the floor, / 7.5
    assert feats[0, 2] < -10
    np.testing.assert_allclose(feats[:, 3:], np.tile([1.0, 0.5, 0.4], (200, 1)), rtol=1e-6)
    batched = field_features(np.stack([xyz, xyz]), np.full((2, 200), 0), np.ones((2, 200)),
                             np.ones((2, 200)), np.array([[5e5, 5.4e6], [5e5 + 1, 5.4e6]]))
    np.testing.assert_allclose(batched[0, :, :3], feats[:, :3], atol=1e-6)
    np.testing.assert_allclose(batched[1, :, 0], feats[:, 0] - 1 / 7.5, atol=1e-5)


def test_inverse_frequency_weights_ignore_the_ignored_label():
    labels = np.array([0] * 6 + [1] * 3 + [2] * 1 + [IGNORE_LABEL] * 50)
    np.testing.assert_allclose(inverse_frequency_weights(labels, 3), [10 / 18, 10 / 9, 10 / 3])
    assert inverse_frequency_weights(np.array([0, 0, 1]), 3)[2] == 1.0
    with pytest.raises(ValueError, match="at least one non-ignored label"):
        inverse_frequency_weights(np.array([IGNORE_LABEL]), 3)


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
    settings = compile_for_recipe(model, np.array([0, 0, 0, 1, 2, IGNORE_LABEL]), total_steps=10)
    assert settings["class_weights"] == pytest.approx([5 / 9, 5 / 3, 5 / 3])
    assert settings["final_learning_rate"] == pytest.approx(3e-3 * 0.05)
    history = model.fit(np.zeros((4, 8, 6), np.float32), np.full((4, 8), IGNORE_LABEL), verbose=0)
    assert history.history["loss"][0] == 0.0  # only ignored points: nothing to learn
