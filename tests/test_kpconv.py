"""KPConv layers and the KPConv U-Net: numpy references, locality, batch invariance, serialisation.

Marked ``backends``: run under KERAS_BACKEND=tensorflow, jax and torch.
"""

import os

import keras
import numpy as np
import pytest

from pointseq.sequencers.models.kpconv import (
    KPConv,
    NeighbourMaxPool,
    NeighbourUpsample,
    gather_neighbours,
    kernel_points,
)
from pointseq.sequencers.models.kpconv_model import build_kpconv_model, kpconv_input_names

pytestmark = pytest.mark.backends

POINTS, PWISE, DOWN, UP = [32, 8, 4], [6, 4, 2], [1, 4, 3], [1, 2, 1]


def random_maps(batch=3, seed=0, points=POINTS):
    """Inputs of a depth-3 model: random coordinates and valid local index maps."""
    rng = np.random.default_rng(seed)
    x = {f"X_{t}": rng.uniform(-1, 1, (batch, r, 3)).astype(np.float32) for t, r in enumerate(points, 1)}
    x["F"] = rng.normal(size=(batch, points[0], 2)).astype(np.float32)
    for t, r in enumerate(points, 1):
        x[f"N_{t}"] = rng.integers(0, r, (batch, r, PWISE[t - 1])).astype(np.int32)
        if t > 1:
            x[f"ND_{t}"] = rng.integers(0, points[t - 2], (batch, r, DOWN[t - 1])).astype(np.int32)
            x[f"NU_{t}"] = rng.integers(0, r, (batch, points[t - 2], UP[t - 1])).astype(np.int32)
    return x


def reference_kpconv(query, support, features, index, kernel, points, sigma):
    """KPConv of one element in plain numpy: sum over neighbours and kernel points."""
    out = np.zeros((len(query), kernel.shape[-1]))
    for i, q in enumerate(query):
        for j in index[i]:
            influence = np.maximum(0.0, 1.0 - np.linalg.norm(support[j] - q - points, axis=1) / sigma)
            out[i] += np.einsum("k,c,kco->o", influence, features[j], kernel)
    return out / index.shape[1]


def test_kernel_points_centre_and_shell():
    pts = kernel_points(15, 2.0)
    assert pts.shape == (15, 3)
    np.testing.assert_allclose(pts[0], 0.0)
    np.testing.assert_allclose(np.linalg.norm(pts[1:], axis=1), 0.66 * 2.0, rtol=1e-5)
    assert abs(pts[1:].mean(axis=0)).max() < 0.1  # spread evenly
    with pytest.raises(ValueError, match="radius"):
        kernel_points(15, 0.0)


def test_kpconv_matches_numpy_and_stays_in_its_element():
    x = random_maps()
    layer = KPConv(5, kernel_radius=0.8)
    args = [x["X_2"], x["X_1"], x["F"], x["ND_2"]]  # strided: depth 1 onto depth 2
    out = keras.ops.convert_to_numpy(layer(args))
    assert out.shape == (3, 8, 5)
    kernel = keras.ops.convert_to_numpy(layer.kernel).reshape(15, 2, 5)
    for b in range(3):
        expected = reference_kpconv(x["X_2"][b], x["X_1"][b], x["F"][b], x["ND_2"][b], kernel,
                                    kernel_points(15, 0.8), layer.sigma)
        np.testing.assert_allclose(out[b], expected, rtol=1e-4, atol=1e-5)
    alone = keras.ops.convert_to_numpy(layer([a[2:3] for a in args]))
    np.testing.assert_allclose(alone[0], out[2], rtol=1e-5, atol=1e-6)


def test_gather_pool_and_upsample_match_numpy():
    x = random_maps()
    gathered = keras.ops.convert_to_numpy(gather_neighbours(x["F"], x["ND_2"]))
    expected = np.stack([x["F"][b][x["ND_2"][b]] for b in range(3)])
    np.testing.assert_allclose(gathered, expected)
    pooled = keras.ops.convert_to_numpy(NeighbourMaxPool()([x["F"], x["ND_2"]]))
    np.testing.assert_allclose(pooled, expected.max(axis=2))
    coarse = x["F"][:, :8]
    nearest = keras.ops.convert_to_numpy(NeighbourUpsample("nearest")([x["X_1"], x["X_2"], coarse, x["NU_2"]]))
    np.testing.assert_allclose(nearest, np.stack([coarse[b][x["NU_2"][b][:, 0]] for b in range(3)]))
    smooth = keras.ops.convert_to_numpy(
        NeighbourUpsample("inverse_distance")([x["X_1"], x["X_2"], coarse, x["NU_2"]]))
    b, i = 1, 5
    d = np.linalg.norm(x["X_2"][b][x["NU_2"][b, i]] - x["X_1"][b, i], axis=1)
    w = 1 / (d + 1e-6)
    np.testing.assert_allclose(smooth[b, i], (w[:, None] * coarse[b][x["NU_2"][b, i]]).sum(0) / w.sum(), rtol=1e-4)
    with pytest.raises(ValueError, match="mode must be one of"):
        NeighbourUpsample("cubic")


def small_model(depth=3):
    return build_kpconv_model(2, 3, POINTS[:depth], PWISE[:depth], DOWN[:depth], UP[:depth], width=8)


def test_model_output_and_batch_invariance():
    keras.utils.set_random_seed(0)
    model = small_model()
    a, b = random_maps(2, seed=1), random_maps(2, seed=2)
    mixed = {k: np.concatenate([a[k][:1], b[k]]) for k in a}
    first = model.predict_on_batch({k: v for k, v in a.items()})
    second = model.predict_on_batch(mixed)
    first, second = keras.ops.convert_to_numpy(first), keras.ops.convert_to_numpy(second)
    assert first.shape == (2, 32, 3)
    np.testing.assert_allclose(first.sum(axis=-1), 1.0, rtol=1e-5)
    np.testing.assert_allclose(first[0], second[0], rtol=1e-4, atol=1e-6)  # whichever elements share its batch


def test_model_trains_and_round_trips(tmp_path):
    keras.utils.set_random_seed(0)
    model = small_model(depth=2)
    model.compile(keras.optimizers.Adam(1e-2), "sparse_categorical_crossentropy")
    x = {k: v for k, v in random_maps(4, seed=3).items() if k in kpconv_input_names(2)}
    y = (x["X_1"][..., 2] > 0).astype(np.int32)
    losses = [float(model.train_on_batch(x, y)) for _ in range(6)]
    assert np.isfinite(losses).all() and losses[-1] < losses[0]
    path = os.path.join(tmp_path, "kpconv.keras")
    model.save(path)
    again = keras.models.load_model(path)
    np.testing.assert_allclose(keras.ops.convert_to_numpy(again.predict_on_batch(x)),
                               keras.ops.convert_to_numpy(model.predict_on_batch(x)), rtol=1e-5, atol=1e-6)


def test_builder_checks_its_arguments():
    assert kpconv_input_names(2) == ["X_1", "X_2", "F", "N_1", "N_2", "ND_2", "NU_2"]
    with pytest.raises(ValueError, match="num_pwise_neighbors must hold one value per depth"):
        build_kpconv_model(2, 3, POINTS, [6, 4], DOWN, UP)
    with pytest.raises(ValueError, match="width"):
        build_kpconv_model(2, 3, POINTS, PWISE, DOWN, UP, width=2)
