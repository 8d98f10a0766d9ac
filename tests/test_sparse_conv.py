"""Sparse convolution layers and the sparse U-Net: numpy references, masking, batch invariance."""

import keras
import numpy as np
import pytest

from pointseq.pointclouds.shadow_batch import assemble_shadow_batch
from pointseq.pointclouds.sparse_grid import build_sparse_grid
from pointseq.sequencers.models.sparse_conv import (
    MaskedBatchNormalization,
    SparseConv3D,
    SparseDownConv3D,
    SparseUpConv3D,
)
from pointseq.sequencers.models.sparse_unet import build_sparse_unet

to_numpy = keras.ops.convert_to_numpy


def grids(count, seed=0, depth=3):
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(count):
        n = int(rng.integers(30, 200))
        pts = rng.uniform(0, 2.0, size=(n, 3)) + 5e6
        out.append(build_sparse_grid(pts, rng.normal(size=(n, 2)), (pts[:, 2] > 5e6 + 1).astype(int),
                                     cell_size=0.25, depth=depth))
    return out


def batch(gs, extra_rows=3):
    rows = [max(g.num_cells(t) for g in gs) + extra_rows for t in range(gs[0].depth)]
    return assemble_shadow_batch(gs, rows)


def cell_values(gs, t, channels, seed=5):
    """Random per-cell values at depth t, padded like the batch (padding: garbage 7.0)."""
    rng = np.random.default_rng(seed)
    rows = max(g.num_cells(t) for g in gs) + 3
    x = np.full((len(gs), rows, channels), 7.0, dtype=np.float32)
    for k, g in enumerate(gs):
        x[k, :g.num_cells(t)] = rng.normal(size=(g.num_cells(t), channels))
    return x


@pytest.mark.backends
def test_sparse_conv3d_equals_a_per_element_numpy_convolution():
    gs = grids(4, seed=1)
    x = batch(gs)
    values = cell_values(gs, 1, 3)
    layer = SparseConv3D(5)
    out = to_numpy(layer([values, x["neighbors_1"], x["mask_1"]]))
    weights = to_numpy(layer.kernel).reshape(27, 3, 5)
    bias = to_numpy(layer.bias)
    offsets = np.stack(np.meshgrid(*[np.arange(-1, 2)] * 3, indexing="ij"), -1).reshape(-1, 3)
    for k, g in enumerate(gs):
        coords = g.cell_coords[1]
        table = {tuple(c): row for row, c in enumerate(coords.tolist())}
        for row, c in enumerate(coords):
            expected = bias.copy()
            for o, off in enumerate(offsets):
                other = table.get(tuple((c + off).tolist()))
                if other is not None:
                    expected += values[k, other] @ weights[o]
            np.testing.assert_allclose(out[k, row], expected, rtol=1e-4, atol=1e-4)
        assert not out[k, g.num_cells(1):].any()  # padded rows stay zero


@pytest.mark.backends
def test_strided_and_transposed_convolutions_equal_numpy_references():
    gs = grids(3, seed=2)
    x = batch(gs)
    child = cell_values(gs, 0, 3, seed=6)
    down = SparseDownConv3D(4)
    out = to_numpy(down([child, x["children_0"], x["mask_1"]]))
    w, b = to_numpy(down.kernel).reshape(8, 3, 4), to_numpy(down.bias)
    parent = cell_values(gs, 1, 4, seed=7)
    up = SparseUpConv3D(2)
    back = to_numpy(up([parent, x["parent_0"], x["position_0"], x["mask_0"]]))
    wu, bu = to_numpy(up.kernel).reshape(4, 8, 2), to_numpy(up.bias)
    for k, g in enumerate(gs):
        pos = (g.cell_coords[0] & 1) @ [4, 2, 1]
        expected = np.tile(b, (g.num_cells(1), 1))
        for row in range(g.num_cells(0)):
            expected[g.parent[0][row]] += child[k, row] @ w[pos[row]]
        np.testing.assert_allclose(out[k, :g.num_cells(1)], expected, rtol=1e-4, atol=1e-4)
        assert not out[k, g.num_cells(1):].any()
        expected = np.stack([parent[k, g.parent[0][row]] @ wu[:, pos[row]] + bu for row in range(g.num_cells(0))])
        np.testing.assert_allclose(back[k, :g.num_cells(0)], expected, rtol=1e-4, atol=1e-4)
        assert not back[k, g.num_cells(0):].any()


@pytest.mark.backends
def test_masked_batch_norm_statistics_ignore_padding_and_padding_stays_zero():
    rng = np.random.default_rng(3)
    x = rng.normal(2.0, 3.0, size=(3, 6, 4)).astype(np.float32)
    mask = np.array([[1, 1, 1, 0, 0, 0], [1, 1, 1, 1, 1, 0], [1, 0, 0, 0, 0, 0]], dtype=np.float32)
    garbage = np.where(mask[..., None] > 0, x, 1e3).astype(np.float32)
    outs, stats = [], []
    for values in (x, garbage):
        layer = MaskedBatchNormalization(momentum=0.5, epsilon=1e-6)
        outs.append(to_numpy(layer([values, mask], training=True)))
        stats.append((to_numpy(layer.moving_mean), to_numpy(layer.moving_variance)))
    np.testing.assert_allclose(outs[0], outs[1], rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(stats[0][0], stats[1][0], rtol=1e-5)
    np.testing.assert_allclose(stats[0][1], stats[1][1], rtol=1e-5)
    real = x[mask > 0]
    np.testing.assert_allclose(stats[0][0], 0.5 * real.mean(axis=0), rtol=1e-5)
    np.testing.assert_allclose(stats[0][1], 0.5 + 0.5 * real.var(axis=0), rtol=1e-4)
    np.testing.assert_allclose(outs[0][mask > 0], (real - real.mean(0)) / real.std(0), rtol=1e-3, atol=1e-3)
    assert not outs[1][mask == 0].any()


@pytest.mark.backends
def test_sparse_unet_output_of_an_element_ignores_its_batch_and_position_and_padding():
    keras.utils.set_random_seed(0)
    gs = grids(5, seed=4)
    model = build_sparse_unet(2, 3, 3, width=8, blocks=1)
    # A few training steps move the batch-norm statistics off their initial values.
    x = batch(gs)
    y = np.zeros(x["mask_0"].shape, dtype=np.int32)
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy")
    model.fit(x, y, sample_weight=x["mask_0"], epochs=2, verbose=0)
    together = model.predict(x, verbose=0)
    alone = model.predict(batch([gs[2]], extra_rows=0), verbose=0)
    mixed = model.predict(batch([gs[4], gs[0], gs[2]], extra_rows=20), verbose=0)
    n = gs[2].num_cells(0)
    np.testing.assert_allclose(alone[0, :n], together[2, :n], atol=1e-5)
    np.testing.assert_allclose(mixed[2, :n], together[2, :n], atol=1e-5)
    np.testing.assert_allclose(together[2, :n].sum(axis=-1), 1.0, atol=1e-5)


def test_layers_reject_bad_arguments():
    with pytest.raises(ValueError, match="filters"):
        SparseConv3D(0)
    with pytest.raises(ValueError, match="kernel_size must be odd"):
        SparseConv3D(4, kernel_size=2)
    with pytest.raises(ValueError, match="momentum"):
        MaskedBatchNormalization(momentum=1.5)
    layer = SparseConv3D(4, kernel_size=5)
    with pytest.raises(ValueError, match="neighbors must hold 125 offsets"):
        layer([np.zeros((1, 3, 2), "float32"), np.zeros((1, 3, 27), "int32"), np.ones((1, 3), "float32")])
    with pytest.raises(ValueError, match="num_classes"):
        build_sparse_unet(2, 1, 3)


def test_sparse_unet_saves_and_loads(tmp_path):
    gs = grids(2, seed=8, depth=2)
    model = build_sparse_unet(2, 2, 2, width=4)
    x = batch(gs)
    path = tmp_path / "m.keras"
    model.save(path)
    again = keras.models.load_model(path)
    np.testing.assert_allclose(again.predict(x, verbose=0), model.predict(x, verbose=0), atol=1e-6)
