"""Hierarchical FPS fields: maps against a per-field brute force, locality, specs, augmentation."""

import numpy as np
import pytest
from scipy.spatial import cKDTree

from pointseq.augment import Augmentor
from pointseq.pointclouds import field_kernels
from pointseq.pointclouds.field_encoders import encoder_from_spec
from pointseq.pointclouds.hierarchical_fields import (
    HierarchicalFPSEncoder,
    depth_positions,
    hierarchical_sampler_from_spec,
    nearest_in_fields,
)
from pointseq.pointclouds.receptive_fields import CoveringFieldSampler
from pointseq.sequencers import Sequencer

OFFSET = np.array([5e6, 5e6, 300.0])
SPEC = {"type": "hierarchical_fps", "num_points_per_depth": [64, 16, 4], "num_pwise_neighbors": [8, 6, 3],
        "num_downsampling_neighbors": [1, 5, 4], "num_upsampling_neighbors": [1, 3, 2]}


def georeferenced_tile(n=3000, seed=0):
    """Terrain with a box on it, at a 5e6 offset; labels: above 1 m or not."""
    rng = np.random.default_rng(seed)
    xy = rng.uniform(0, 30, (n, 2))
    z = 0.3 * np.sin(xy[:, 0] / 4) + rng.normal(0, 0.05, n)
    box = (np.abs(xy - 15) < 5).all(axis=1)
    z[box] += 3.0
    return np.column_stack([xy, z]) + OFFSET, box.astype(np.int64)


@pytest.fixture(scope="module")
def encoded():
    points, labels = georeferenced_tile()
    sampler = CoveringFieldSampler(64, {"type": "sphere", "radius": 4.0, "separation_factor": 1.0})
    fields = sampler(points, labels=labels)
    encoder = encoder_from_spec({**SPEC, "_comment": "ignored"})
    encoder.bind(sampler)
    features = np.random.default_rng(1).random((len(points), 2)).astype(np.float32)
    return points, fields, encoder, encoder.encode(points, fields, features), features


def reference_fps(coords, num):
    """Plain per-set furthest-point sampling from position 0."""
    chosen = [0]
    nearest = np.sum((coords - coords[0]) ** 2, axis=1)
    for _ in range(num - 1):
        chosen.append(int(nearest.argmax()))
        nearest = np.minimum(nearest, np.sum((coords - coords[chosen[-1]]) ** 2, axis=1))
    return np.array(chosen)


def assert_same_neighbours(found, reference, query, k):
    """Same k nearest as a per-field KD-tree, ties aside: the sorted distances agree."""
    ours = np.sort(np.linalg.norm(reference[found] - query[:, None, :], axis=2), axis=1)
    theirs = cKDTree(reference).query(query, k=k)[0].reshape(len(query), k)
    np.testing.assert_allclose(ours, theirs, atol=1e-5)


def test_maps_match_a_per_field_brute_force(encoded):
    points, fields, encoder, samples, _ = encoded
    for f in range(0, len(fields), 7):
        depth1 = (points[fields.indices[f]] - fields.centres[f]) / encoder.scale
        np.testing.assert_allclose(samples["X_1"][f], depth1, atol=1e-6)
        coords = [depth1]
        for t in (2, 3):
            coords.append(coords[-1][reference_fps(coords[-1].astype(np.float32), encoder.num_points_per_depth[t - 1])])
            np.testing.assert_allclose(samples[f"X_{t}"][f], coords[-1], atol=1e-6)
        for t in (1, 2, 3):
            xyz = coords[t - 1]
            assert_same_neighbours(samples[f"N_{t}"][f], xyz, xyz, encoder.num_pwise_neighbors[t - 1])
            if t > 1:
                assert_same_neighbours(samples[f"ND_{t}"][f], coords[t - 2], xyz, encoder.num_downsampling_neighbors[t - 1])
                assert_same_neighbours(samples[f"NU_{t}"][f], xyz, coords[t - 2], encoder.num_upsampling_neighbors[t - 1])


def test_every_index_is_in_range_and_local(encoded):
    _, fields, encoder, samples, _ = encoded
    sizes = dict(zip((1, 2, 3), encoder.num_points_per_depth))
    for t in (1, 2, 3):
        assert samples[f"N_{t}"].shape == (len(fields), sizes[t], encoder.num_pwise_neighbors[t - 1])
        assert samples[f"N_{t}"].min() >= 0 and samples[f"N_{t}"].max() < sizes[t]
        nearest = np.take_along_axis(samples[f"X_{t}"], samples[f"N_{t}"][..., :1].astype(np.int64), axis=1)
        np.testing.assert_array_equal(nearest, samples[f"X_{t}"])  # itself (or its repeat) first
    for t in (2, 3):
        assert samples[f"ND_{t}"].shape[1] == sizes[t] and samples[f"NU_{t}"].shape[1] == sizes[t - 1]
        assert 0 <= samples[f"ND_{t}"].min() and samples[f"ND_{t}"].max() < sizes[t - 1]
        assert 0 <= samples[f"NU_{t}"].min() and samples[f"NU_{t}"].max() < sizes[t]
    assert all(samples[k].dtype == np.int32 for k in samples if k.startswith("N"))


def test_features_labels_and_protocol(encoded):
    points, fields, encoder, samples, features = encoded
    height = samples["X_1"][..., 2] - np.percentile(samples["X_1"][..., 2], 1.0, axis=1)[:, None]
    np.testing.assert_allclose(samples["F"][..., 0], height, atol=1e-5)
    np.testing.assert_array_equal(samples["F"][..., 1:], features[fields.indices])
    np.testing.assert_array_equal(samples["labels"], fields.labels)
    assert sorted(encoder.inputs(samples)) == sorted(k for k in samples if k != "labels")
    assert encoder.num_input_features(2) == 3
    rebuilt = encoder_from_spec(encoder.get_config())
    np.testing.assert_array_equal(rebuilt.encode(points, fields, features, 2, 5)["N_2"], samples["N_2"][2:5])
    y, weight = encoder.targets({"labels": np.array([[0, 2, 1]])}, 2)
    np.testing.assert_array_equal(y, [[0, 0, 1]])
    np.testing.assert_array_equal(weight, [[1, 0, 1]])


def test_augmentation_keeps_every_depth_aligned(encoded):
    _, _, encoder, samples, _ = encoded
    inputs = encoder.inputs(samples)
    augmentor = Augmentor.from_spec({"transformations": [
        {"type": "Rotation", "axis": [0, 0, 1], "angle": {"type": "uniform", "start": -3.1, "end": 3.1}},
        {"type": "Scale", "factor": {"type": "uniform", "start": 0.8, "end": 1.2}}]})
    seq = Sequencer(inputs, samples["labels"], 8, augmentor=augmentor, augment_inputs=encoder.coordinate_names(),
                    shuffle=False, seed=3)
    batch, _ = seq[0]
    assert not np.allclose(batch["X_1"], inputs["X_1"][:8])  # rotated
    for t in (2, 3):  # a depth-t point's nearest depth t-1 point is itself: it moved with it
        same = np.take_along_axis(batch[f"X_{t - 1}"], batch[f"ND_{t}"][..., :1].astype(np.int64), axis=1)
        np.testing.assert_allclose(same, batch[f"X_{t}"], atol=1e-5)
    for key in inputs:
        if not key.startswith("X"):
            np.testing.assert_array_equal(batch[key], inputs[key][:8])
    norms = np.linalg.norm(batch["X_1"], axis=2) / np.maximum(np.linalg.norm(inputs["X_1"][:8], axis=2), 1e-9)
    assert np.allclose(norms, norms[:, :1], atol=1e-4)  # one scale per field, the same for all its points


def test_fast_flags_keep_points_of_the_previous_depth():
    rng = np.random.default_rng(2)
    coords = rng.normal(size=(5, 40, 3))
    for flag in (1, 2):
        chosen = depth_positions(coords, 10, flag, np.random.default_rng(0))
        assert chosen.shape == (5, 10) and chosen.min() >= 0 and chosen.max() < 40
        assert all(len(set(row)) == 10 for row in chosen)
    with pytest.raises(TypeError, match="rng"):
        depth_positions(coords, 10, 2, None)


@pytest.mark.parametrize("compiled", [True, False])
@pytest.mark.parametrize("shape", [(6, 200, 150, 4), (4, 64, 64, 16), (3, 30, 120, 1), (2, 8, 5, 8)])
def test_every_nearest_path_agrees_with_a_kd_tree(monkeypatch, compiled, shape):
    """The compiled grid search, the KD-tree over all fields and the brute force (small fields)."""
    monkeypatch.setattr(field_kernels, "AVAILABLE", compiled and field_kernels.AVAILABLE)
    count, width, queries, k = shape
    rng = np.random.default_rng(4)
    reference, query = rng.normal(size=(count, width, 3)), rng.normal(size=(count, queries, 3))
    reference[..., 2] *= 0.05  # flat fields, as on terrain
    reference[0, 1] = reference[0, 0]  # a duplicate point: a tie
    found = nearest_in_fields(reference, query, k)
    assert found.shape == (count, queries, k) and found.dtype == np.int32 and 0 <= found.min() and found.max() < width
    for f in range(count):
        assert_same_neighbours(found[f], reference[f], query[f], k)
        assert all(len(set(row)) == k for row in found[f])


def test_compiled_nearest_breaks_ties_by_position_and_threads_agree():
    if not field_kernels.AVAILABLE:
        pytest.skip("numba is not installed")
    grid = np.stack(np.meshgrid(np.arange(4.0), np.arange(4.0), [0.0]), axis=-1).reshape(1, 16, 3)
    found = field_kernels.nearest_in_groups(grid, grid, 5)
    order = np.lexsort((np.broadcast_to(np.arange(16), (16, 16)),
                        np.round(((grid[0][:, None] - grid[0][None]) ** 2).sum(-1), 9)), axis=1)
    np.testing.assert_array_equal(found[0], order[:, :5])  # equal distances: the lower position first
    fields = np.random.default_rng(5).normal(size=(40, 96, 3))
    np.testing.assert_array_equal(field_kernels.nearest_in_groups(fields, fields, 8, nthreads=2),
                                  field_kernels.nearest_in_groups(fields, fields, 8))


def test_original_spec_builds_sampler_and_encoder():
    sampler, encoder = hierarchical_sampler_from_spec({
        "type": "HierarchicalFPSPreProcessor", "_note": "comment", "num_points_per_depth": [32, 8],
        "fast_flag_per_depth": [False, True], "num_downsampling_neighbors": [2, 4], "num_pwise_neighbors": [8, 4],
        "num_upsampling_neighbors": [1, 2], "neighborhood": {"type": "sphere", "radius": 3.0, "separation_factor": 1.0}})
    assert sampler.num_points == 32 and sampler.num_encoding_neighbors == 2 and encoder.scale == 3.0
    points, _ = georeferenced_tile(800)
    samples = encoder.encode(points, sampler(points), None)
    assert samples["X_2"].shape[1:] == (8, 3) and samples["F"].shape[2] == 1


def test_original_spec_passes_support_keys_and_threads_to_the_sampler():
    sampler, encoder = hierarchical_sampler_from_spec({
        "num_points_per_depth": [32, 8], "support_strategy": "fps", "support_strategy_num_points": 40,
        "support_chunk_size": 16, "nthreads": 2, "neighborhood": {"type": "sphere", "radius": 3.0}})
    assert sampler.support_strategy == "fps" and sampler.nthreads == 2 and encoder.nthreads == 2
    points, _ = georeferenced_tile(800)
    fields = sampler(points)
    assert len(fields) >= 40
    one = hierarchical_sampler_from_spec({"num_points_per_depth": [32, 8], "support_strategy": "fps",
                                          "support_strategy_num_points": 40,
                                          "neighborhood": {"type": "sphere", "radius": 3.0}})[1]
    ours, theirs = encoder.encode(points, fields, None), one.encode(points, fields, None)
    for name in ours:
        np.testing.assert_array_equal(ours[name], theirs[name])  # threads never change the fields


@pytest.mark.parametrize("spec, error, match", [
    ({"num_points_per_depth": [64, 16], "num_pwise_neighbors": [8]}, ValueError, "one value per depth"),
    ({"num_points_per_depth": [16, 64]}, ValueError, "must not grow"),
    ({"num_points_per_depth": [64, 16], "num_pwise_neighbors": [8, 32]}, ValueError, "exceeds the 16 points"),
    ({"num_points_per_depth": [64, 16], "fast_flag_per_depth": [0, 3]}, ValueError, "false, true or 2"),
    ({"num_points_per_depth": 64}, TypeError, "list of ints"),
    ({"num_points_per_depth": [64], "radius": 2}, TypeError, "unknown key"),
])
def test_bad_specs_are_refused(spec, error, match):
    with pytest.raises(error, match=match):
        encoder_from_spec({"type": "hierarchical_fps", **spec})


def test_bind_checks_the_sampler():
    sampler = CoveringFieldSampler(64, {"type": "sphere", "radius": 4.0, "separation_factor": 1.0})
    with pytest.raises(ValueError, match="num_points_per_depth\\[0\\]"):
        HierarchicalFPSEncoder([32, 8]).bind(sampler)
    with pytest.raises(ValueError, match="differs"):
        HierarchicalFPSEncoder([64, 8], neighborhood={"type": "sphere", "radius": 2.0}).bind(sampler)
    with pytest.raises(ValueError, match="bind"):
        HierarchicalFPSEncoder([64, 8]).encode(np.zeros((1, 3)), None, None)
