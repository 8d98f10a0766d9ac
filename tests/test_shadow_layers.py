"""Shadow-batch layers and the reference model: values, batch invariance, end-to-end fit."""

import keras
import numpy as np
import pytest

from pointseq.sequencers.models.shadow_layers import ElementMax, MaskedDense, PoolToParent, UnpoolToChild
from pointseq.sequencers.models.shadow_model import build_shadow_segmentation_model
from pointseq.sequencers.shadow_sequencer import SparseShadowSequencer
from pointseq.pointclouds.sparse_grid import build_sparse_grid

# Two elements, 4 child rows and 3 parent rows each (R_c = 4, R_p = 3).
# Element 0: 4 children -> parents [0, 1, 0, 1], 2 real parents.
# Element 1: 2 children -> parent 0, 1 real parent; padded children point at row R_p = 3.
X = np.array(
    [
        [[1.0, -1.0], [2.0, -2.0], [3.0, -3.0], [4.0, -4.0]],
        [[5.0, -5.0], [7.0, -7.0], [99.0, 99.0], [99.0, 99.0]],
    ],
    dtype=np.float32,
)
PARENT = np.array([[0, 1, 0, 1], [0, 0, 3, 3]], dtype=np.int32)
CHILD_MASK = np.array([[1, 1, 1, 1], [1, 1, 0, 0]], dtype=np.float32)
PARENT_MASK = np.array([[1, 1, 0], [1, 0, 0]], dtype=np.float32)


def pool(reduction):
    out = PoolToParent(reduction)([X, PARENT, CHILD_MASK, PARENT_MASK])
    return keras.ops.convert_to_numpy(out)


def test_pool_to_parent_mean_max_sum():
    np.testing.assert_allclose(
        pool("mean"), [[[2, -2], [3, -3], [0, 0]], [[6, -6], [0, 0], [0, 0]]]
    )
    np.testing.assert_allclose(
        pool("max"), [[[3, -1], [4, -2], [0, 0]], [[7, -5], [0, 0], [0, 0]]]
    )
    np.testing.assert_allclose(
        pool("sum"), [[[4, -4], [6, -6], [0, 0]], [[12, -12], [0, 0], [0, 0]]]
    )


def test_unpool_to_child_copies_parents_and_zeroes_padding():
    parents = np.arange(2 * 3 * 2, dtype=np.float32).reshape(2, 3, 2) + 1
    out = keras.ops.convert_to_numpy(UnpoolToChild()([parents, PARENT]))
    np.testing.assert_allclose(out[0], parents[0][[0, 1, 0, 1]])
    np.testing.assert_allclose(out[1], [parents[1][0], parents[1][0], [0, 0], [0, 0]])


def test_masked_dense_zeroes_padded_rows():
    layer = MaskedDense(3)
    out = keras.ops.convert_to_numpy(layer([X, CHILD_MASK]))
    assert out.shape == (2, 4, 3)
    assert not out[1, 2:].any()
    assert np.abs(out[0]).sum() > 0


def test_element_max_spreads_each_elements_own_max_and_zeroes_padding():
    out = keras.ops.convert_to_numpy(ElementMax()([X, CHILD_MASK]))
    np.testing.assert_allclose(out[0], np.broadcast_to([4.0, -1.0], (4, 2)))
    np.testing.assert_allclose(out[1], [[7.0, -5.0], [7.0, -5.0], [0.0, 0.0], [0.0, 0.0]])  # padding 99 ignored


def test_layer_configs_round_trip():
    for layer in (PoolToParent("max"), UnpoolToChild(), MaskedDense(5, activation="relu")):
        clone = type(layer).from_config(layer.get_config())
        assert clone.get_config() == layer.get_config()


@pytest.mark.parametrize(
    "make, match",
    [
        (lambda: PoolToParent("median"), r"reduction must be one of .*got 'median'"),
        (lambda: MaskedDense(0), r"units must be an int >= 1, got 0"),
        (lambda: build_shadow_segmentation_model(1, 2, 2, [10]), r"max_rows must hold 2"),
        (
            lambda: build_shadow_segmentation_model(1, 1, 2, [10, 5]),
            r"num_classes must be an int >= 2",
        ),
    ],
)
def test_bad_layer_arguments(make, match):
    with pytest.raises(ValueError, match=match):
        make()


def z_clouds(count, seed):
    """Tiny clouds whose points are labelled by height: z above the cloud's median."""
    rng = np.random.default_rng(seed)
    grids = []
    for _ in range(count):
        n = int(rng.integers(60, 160))
        pts = rng.uniform(0.0, 1.0, size=(n, 3)) * [1.0, 1.0, rng.uniform(0.6, 1.4)]
        labels = (pts[:, 2] > np.median(pts[:, 2])).astype(int)
        grids.append(build_sparse_grid(pts, pts[:, 2:], labels, cell_size=0.125, depth=3))
    return grids


def test_model_output_for_an_element_ignores_its_batch_neighbours():
    keras.utils.set_random_seed(0)
    grids = z_clouds(6, seed=1)
    seq = SparseShadowSequencer(grids, batch_size=6, shuffle=False)
    model = build_shadow_segmentation_model(seq.num_features, 3, seq.depth, seq.max_rows, width=8)

    def run(indices):
        x = seq.extract_input_batch(np.asarray(indices))
        return keras.ops.convert_to_numpy(model(x, training=False))

    together = run([0, 1, 2, 3, 4, 5])
    reordered = run([5, 3, 1, 0, 4, 2])
    for k in range(6):
        n = grids[k].num_cells(0)
        alone = run([k])[0]
        np.testing.assert_allclose(alone[:n], together[k, :n], atol=1e-5)
        position = [5, 3, 1, 0, 4, 2].index(k)
        np.testing.assert_allclose(reordered[position, :n], together[k, :n], atol=1e-5)


def test_reference_model_learns_a_geometric_labelling_with_fit():
    keras.utils.set_random_seed(1)
    grids = z_clouds(32, seed=2)
    seq = SparseShadowSequencer(grids, batch_size=8, seed=4)
    model = build_shadow_segmentation_model(seq.num_features, 2, seq.depth, seq.max_rows, width=16)
    model.compile(
        optimizer=keras.optimizers.Adam(1e-2),
        loss="sparse_categorical_crossentropy",
        weighted_metrics=["accuracy"],
    )
    history = model.fit(seq, epochs=10, verbose=0)
    losses = history.history["loss"]
    assert losses[-1] < 0.6 * losses[0]

    seq.enable_predict_mode()
    probs = model.predict(seq, verbose=0)
    assert probs.shape == (32, seq.max_rows[0], 2)
    per_cell = seq.post_process_output(probs)
    correct = sum(int((p.argmax(-1) == g.labels).sum()) for p, g in zip(per_cell, grids))
    total = sum(g.num_cells(0) for g in grids)
    assert correct / total > 0.8  # chance is about 0.5
    per_point = seq.post_process_output(probs, to_points=True)
    assert [len(p) for p in per_point] == [g.num_points for g in grids]
