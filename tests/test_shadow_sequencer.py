"""SparseShadowSequencer: padded layout, index maps, stable shapes, outputs, errors."""

import numpy as np
import pytest

from pointseq.sequencers.registry import build_sequencer
from pointseq.sequencers.shadow_sequencer import SparseShadowSequencer, assemble_shadow_batch
from pointseq.pointclouds.sparse_grid import build_sparse_grid

POINTS_A = np.array(
    [[0.0, 0.0, 0.0], [0.5, 0.2, 0.9], [1.2, 0.1, 0.3], [3.9, 3.9, 3.9], [3.1, 3.5, 3.0]]
)
FEATURES_A = np.array([[1.0, 10.0], [3.0, 20.0], [5.0, 30.0], [7.0, 40.0], [9.0, 50.0]])
LABELS_A = np.array([4, 2, 1, 0, 0])
POINTS_B = np.array([[0.0, 0.0, 0.0], [0.5, 0.5, 0.5]])


def hand_grids():
    a = build_sparse_grid(POINTS_A, FEATURES_A, LABELS_A, cell_size=1.0, depth=2)
    b = build_sparse_grid(POINTS_B, [[2.0, 2.0], [4.0, 4.0]], [1, 1], cell_size=1.0, depth=2)
    return [a, b]


def random_grids(count, seed=0, depth=3, labels=True):
    rng = np.random.default_rng(seed)
    grids = []
    for _ in range(count):
        pts = rng.uniform(0, 1, size=(int(rng.integers(20, 120)), 3))
        lab = (pts[:, 2] > 0.5).astype(int) if labels else None
        grids.append(build_sparse_grid(pts, pts[:, :1], lab, cell_size=0.2, depth=depth))
    return grids


def test_hand_checked_batch():
    seq = SparseShadowSequencer(hand_grids(), batch_size=2, shuffle=False)
    assert seq.max_rows == (3, 2) and seq.depth == 2 and seq.num_features == 2
    x, y, sw = seq[0]
    assert set(x) == {"features", "coords_0", "coords_1", "mask_0", "mask_1",
                      "lengths_0", "lengths_1", "parent_0",
                      "neighbors_0", "neighbors_1", "position_0", "children_0"}
    # Neighbour maps: offset index 9 * (di + 1) + 3 * (dj + 1) + (dk + 1), centre 13; missing
    # neighbours and padded rows point at the zero row R_t.
    expected = np.full((2, 3, 27), 3)
    expected[0, 0, [13, 22]] = [0, 1]  # cell (0,0,0): itself and (1,0,0)
    expected[0, 1, [4, 13]] = [0, 1]  # cell (1,0,0): (0,0,0) and itself
    expected[0, 2, 13] = 2  # cell (3,3,3) is alone
    expected[1, 0, 13] = 0
    np.testing.assert_array_equal(x["neighbors_0"], expected)
    expected = np.full((2, 2, 27), 2)
    expected[0, 0, [13, 26]] = [0, 1]  # parents (0,0,0) and (1,1,1) touch at a corner
    expected[0, 1, [0, 13]] = [0, 1]
    expected[1, 0, 13] = 0
    np.testing.assert_array_equal(x["neighbors_1"], expected)
    np.testing.assert_array_equal(x["position_0"], [[0, 4, 7], [0, 0, 0]])
    np.testing.assert_array_equal(x["children_0"], [[[0, 3, 3, 3, 1, 3, 3, 3], [3, 3, 3, 3, 3, 3, 3, 2]],
                                                    [[0, 3, 3, 3, 3, 3, 3, 3], [3] * 8]])
    np.testing.assert_array_equal(x["lengths_0"], [3, 1])
    np.testing.assert_array_equal(x["lengths_1"], [2, 1])
    np.testing.assert_array_equal(x["mask_0"], [[1, 1, 1], [1, 0, 0]])
    np.testing.assert_array_equal(x["mask_1"], [[1, 1], [1, 0]])
    # Local parent rows; padded children point at row R_1 = 2 (the layers' zero row).
    np.testing.assert_array_equal(x["parent_0"], [[0, 0, 1], [0, 2, 2]])
    np.testing.assert_allclose(
        x["coords_0"],
        [[[0.5, 0.5, 0.5], [1.5, 0.5, 0.5], [3.5, 3.5, 3.5]],
         [[0.5, 0.5, 0.5], [0, 0, 0], [0, 0, 0]]],
    )
    np.testing.assert_allclose(x["coords_1"], [[[1, 1, 1], [3, 3, 3]], [[1, 1, 1], [0, 0, 0]]])
    np.testing.assert_allclose(
        x["features"], [[[2, 15], [5, 30], [8, 45]], [[3, 3], [0, 0], [0, 0]]]
    )
    np.testing.assert_array_equal(y, [[2, 1, 0], [1, 0, 0]])
    np.testing.assert_array_equal(sw, x["mask_0"])
    assert x["coords_0"].dtype == np.float32 and x["features"].dtype == np.float32
    assert x["mask_0"].dtype == np.float32 and sw.dtype == np.float32
    assert x["parent_0"].dtype == np.int32 and x["lengths_0"].dtype == np.int32
    assert y.dtype == np.int32


def test_element_arrays_do_not_depend_on_batch_position():
    seq = SparseShadowSequencer(random_grids(5), batch_size=5, shuffle=False)
    fwd = seq.extract_input_batch(np.array([0, 1, 2, 3, 4]))
    rev = seq.extract_input_batch(np.array([4, 3, 2, 1, 0]))
    alone = seq.extract_input_batch(np.array([2]))
    for key in fwd:
        np.testing.assert_array_equal(fwd[key][::-1], rev[key])
        np.testing.assert_array_equal(fwd[key][2:3], alone[key])


def test_assembly_matches_a_per_element_reference():
    grids = random_grids(7, seed=4)
    rows = [max(g.num_cells(t) for g in grids) for t in range(3)]
    x = assemble_shadow_batch(grids, rows)
    for k, g in enumerate(grids):
        for t in range(3):
            n = g.num_cells(t)
            np.testing.assert_array_equal(x[f"coords_{t}"][k, :n], g.centres[t])
            assert not x[f"coords_{t}"][k, n:].any()
            if t < 2:
                np.testing.assert_array_equal(x[f"parent_{t}"][k, :n], g.parent[t])
                assert np.all(x[f"parent_{t}"][k, n:] == rows[t + 1])
        np.testing.assert_array_equal(x["features"][k, : g.num_cells(0)], g.features)


def test_assembly_rejects_bad_arguments():
    grids = random_grids(2)
    with pytest.raises(ValueError, match=r"grids must hold at least one SparseGrid, got 0"):
        assemble_shadow_batch([], [1, 1, 1])
    with pytest.raises(ValueError, match=r"max_rows must hold 3 row counts"):
        assemble_shadow_batch(grids, [500, 500])
    with pytest.raises(ValueError, match=r"grid at batch position \d has \d+ cells at depth 0"):
        assemble_shadow_batch(grids, [2, 500, 500])


def test_every_batch_of_an_epoch_has_the_same_non_batch_shapes():
    seq = SparseShadowSequencer(random_grids(11, seed=1), batch_size=4, seed=3)
    assert len(seq) == 3
    shapes = None
    for i in range(len(seq)):
        x, y, sw = seq[i]
        batch = len(y)
        assert all(v.shape[0] == batch for v in x.values()) and sw.shape == y.shape
        current = {k: v.shape[1:] for k, v in x.items()} | {"y": y.shape[1:]}
        shapes = shapes or current
        assert current == shapes
    assert batch == 3  # the last batch is partial, with the same non-batch shapes


def test_training_batches_are_shuffled_and_reproducible():
    grids = random_grids(8, seed=2)
    a = SparseShadowSequencer(grids, batch_size=4, seed=11)
    b = SparseShadowSequencer(grids, batch_size=4, seed=11)
    for key, value in a[1][0].items():
        np.testing.assert_array_equal(value, b[1][0][key])
    order = np.concatenate([a.batch_indices(i) for i in range(len(a))])
    assert sorted(order.tolist()) == list(range(8))


def test_predict_mode_covers_every_element_once_in_order():
    grids = random_grids(7, seed=5)
    seq = SparseShadowSequencer(grids, batch_size=3, seed=0, training=False)
    assert len(seq) == 3
    seen = []
    for i in range(len(seq)):
        batch = seq[i]
        assert isinstance(batch, tuple) and len(batch) == 1
        x = batch[0]
        for k in range(len(x["lengths_0"])):
            seen.append(x["coords_0"][k, : x["lengths_0"][k]])
    assert len(seen) == 7
    for g, coords in zip(grids, seen):
        np.testing.assert_array_equal(coords, g.centres[0])


def test_post_process_output_removes_padding_and_maps_to_points():
    grids = random_grids(5, seed=6)
    seq = SparseShadowSequencer(grids, batch_size=2, training=False)
    # A fake "model output": each cell's row number and the element id, per depth 0 row.
    outputs = []
    for i in range(len(seq)):
        x = seq[i][0]
        z = np.stack([x["coords_0"][..., 0], x["mask_0"]], axis=-1)
        per_element = seq.post_process_output(z, i)
        ids = seq.predict_indices(i)
        assert len(per_element) == len(ids)
        for z_k, gid in zip(per_element, ids):
            g = grids[gid]
            assert z_k.shape == (g.num_cells(0), 2)
            np.testing.assert_array_equal(z_k[:, 0], g.centres[0][:, 0])
            assert np.all(z_k[:, 1] == 1)
        points = seq.post_process_output(z, i, to_points=True)
        for z_k, gid in zip(points, ids):
            g = grids[gid]
            np.testing.assert_array_equal(z_k[:, 0], g.centres[0][g.point_to_cell, 0])
        outputs.append(z)
    whole = seq.post_process_output(np.concatenate(outputs), None)
    assert [len(w) for w in whole] == [g.num_cells(0) for g in grids]


def test_post_process_output_at_a_deeper_depth_maps_points_through_parents():
    grids = random_grids(3, seed=7)
    seq = SparseShadowSequencer(grids, batch_size=3, training=False)
    x = seq[0][0]
    z = x["coords_2"]
    cells = seq.post_process_output(z, 0, depth=2)
    points = seq.post_process_output(z, 0, depth=2, to_points=True)
    for g, c, p in zip(grids, cells, points):
        np.testing.assert_array_equal(c, g.centres[2])
        deep_cell = g.parent[1][g.parent[0][g.point_to_cell]]
        np.testing.assert_array_equal(p, g.centres[2][deep_cell])


def test_max_rows_fixes_shapes_across_datasets():
    train = SparseShadowSequencer(random_grids(6, seed=8), batch_size=2)
    small = SparseShadowSequencer(random_grids(2, seed=9), batch_size=2, max_rows=train.max_rows)
    x = small[0][0]
    assert x["coords_0"].shape[1:] == (train.max_rows[0], 3)
    assert x["mask_2"].shape[1:] == (train.max_rows[2],)


def test_grids_without_labels_or_features():
    grids = random_grids(3, labels=False)
    grids = [build_sparse_grid(g.centres[0], cell_size=0.2, depth=3) for g in grids]
    seq = SparseShadowSequencer(grids, batch_size=3, shuffle=False)
    batch = seq[0]
    assert len(batch) == 1 and not seq.has_labels
    np.testing.assert_array_equal(batch[0]["features"][..., 0], batch[0]["mask_0"])


def test_registry_builds_it_by_original_name():
    grids = random_grids(4)
    seq = build_sequencer({"type": "dlSparseShadowSequencer", "batch_size": 2, "seed": 5}, X=grids)
    assert isinstance(seq, SparseShadowSequencer) and len(seq) == 2
    config = seq.get_config()
    assert config["max_rows"] == list(seq.max_rows) and config["augmentor"] is None
    rebuilt = build_sequencer(config, X=grids)
    assert rebuilt.max_rows == seq.max_rows and rebuilt.seed == 5
    np.testing.assert_array_equal(rebuilt[1][1], seq[1][1])


def test_identity_augment_without_augmentor():
    seq = SparseShadowSequencer(random_grids(4), batch_size=2, seed=1)
    x = seq.load_batch(seq.batch_indices(0))[0]
    assert seq.augment(x, seq.make_rng(0)) is x


@pytest.mark.parametrize(
    "kwargs, error, match",
    [
        ({"grids": []}, ValueError, r"grids must be a non-empty list of SparseGrid"),
        ({"grids": [np.zeros((3, 3))]}, TypeError, r"grids\[0\] must be a SparseGrid, got ndarray"),
        ({"y": np.zeros(2)}, ValueError, r"y must be None for SparseShadowSequencer"),
        ({"batch_size": 0}, ValueError, r"batch_size must be an int >= 1, got 0"),
        ({"max_rows": (1, 1, 1)}, ValueError, r"max_rows\[0\]=1 is smaller than the \d+ cells"),
        ({"max_rows": (500, 500)}, ValueError, r"max_rows must hold 3 ints"),
        ({"bogus": 1}, TypeError, r"unknown keyword argument\(s\): bogus.*max_rows"),
        ({"augmentor": 3}, TypeError, r"augmentor must be a pointseq.augment.Augmentor"),
    ],
)
def test_bad_construction_is_rejected(kwargs, error, match):
    args = {"grids": random_grids(2), "batch_size": 2, **kwargs}
    with pytest.raises(error, match=match):
        SparseShadowSequencer(**args)


def test_mixed_grids_are_rejected():
    deep = random_grids(1, depth=3)[0]
    shallow = random_grids(1, depth=2)[0]
    with pytest.raises(ValueError, match=r"grids\[1\] has depth 2, expected 3"):
        SparseShadowSequencer([deep, shallow])
    plain = build_sparse_grid(deep.centres[0], labels=np.zeros(deep.num_cells(0), int),
                              cell_size=0.2, depth=3)
    with pytest.raises(ValueError, match=r"grids\[1\] has 0 features per cell, expected 1"):
        SparseShadowSequencer([deep, plain])
    unlabeled = random_grids(1, depth=3, labels=False)[0]
    with pytest.raises(ValueError, match=r"grids\[1\] lacks labels unlike grids\[0\]"):
        SparseShadowSequencer([deep, unlabeled])


def test_post_process_output_checks_the_shape():
    seq = SparseShadowSequencer(random_grids(4), batch_size=2, training=False)
    with pytest.raises(ValueError, match=r"z must have shape \(2, \d+, \.\.\.\) for batch 0"):
        seq.post_process_output(np.zeros((3, seq.max_rows[0])), 0)
    with pytest.raises(ValueError, match=r"depth must be an int in \[0, 3\), got 3"):
        seq.post_process_output(np.zeros((2, seq.max_rows[0])), 0, depth=3)


def test_augmentor_applies_one_rotation_per_element_to_every_depth():
    from pointseq.augment import Augmentor

    grids = random_grids(6, seed=10)
    spec = {"transformations": [{"type": "Rotation", "axis": [0, 0, 1]},
                                {"type": "Scale", "scale_distribution":
                                 {"type": "uniform", "start": 0.5, "end": 2.0}}]}
    seq = SparseShadowSequencer(grids, batch_size=3, seed=2, augmentor=spec)
    assert isinstance(seq.augmentor, Augmentor)
    assert seq.get_config()["augmentor"] == Augmentor.from_spec(spec).get_config()
    plain = seq.load_batch(seq.batch_indices(1))[0]
    x = seq[1][0]
    again = seq[1][0]
    for key in x:
        np.testing.assert_array_equal(x[key], again[key])  # keyed randomness
    for k in range(3):
        # Solve the element's linear map from depth 0, then check it on the other depths.
        n0 = plain["lengths_0"][k]
        m, *_ = np.linalg.lstsq(plain["coords_0"][k, :n0], x["coords_0"][k, :n0], rcond=None)
        assert abs(np.linalg.det(m)) > 0.1 and abs(m[0, 0] - 1) + abs(m[0, 1]) > 1e-4
        for t in (1, 2):
            n = plain[f"lengths_{t}"][k]
            np.testing.assert_allclose(x[f"coords_{t}"][k, :n], plain[f"coords_{t}"][k, :n] @ m,
                                       rtol=1e-4, atol=1e-4)
            assert not x[f"coords_{t}"][k, n:].any()
        assert x["coords_0"].dtype == np.float32
    for key in ("features", "parent_0", "mask_1"):
        np.testing.assert_array_equal(x[key], plain[key])
    seq.enable_predict_mode()
    pred = seq[0][0]
    unaugmented = seq.extract_input_batch(np.arange(3))
    np.testing.assert_array_equal(pred["coords_0"], unaugmented["coords_0"])


def test_jitter_leaves_padding_at_zero():
    spec = {"transformations": [{"type": "Jitter", "noise_distribution":
                                 {"type": "normal", "mean": 0.0, "stdev": 0.01}}]}
    seq = SparseShadowSequencer(random_grids(4, seed=11), batch_size=4, seed=0, augmentor=spec)
    plain = seq.load_batch(seq.batch_indices(0))[0]
    x = seq[0][0]
    for t in range(3):
        valid = x[f"mask_{t}"] > 0
        assert not x[f"coords_{t}"][~valid].any()
        moved = np.abs(x[f"coords_{t}"][valid] - plain[f"coords_{t}"][valid])
        assert 0 < moved.max() <= 0.05 + 1e-6


def test_pickled_sequencer_serves_the_same_batches():
    import pickle

    seq = SparseShadowSequencer(random_grids(5, seed=12), batch_size=2, seed=9)
    clone = pickle.loads(pickle.dumps(seq))
    for (key, value), other in zip(seq[2][0].items(), clone[2][0].values()):
        np.testing.assert_array_equal(value, other, err_msg=key)
