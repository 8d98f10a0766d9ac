"""Propagation of field predictions back to every point, checked against a brute-force loop."""

import numpy as np
import pytest

from pointseq.pointclouds.propagation import PropagationAccumulator, propagate
from pointseq.pointclouds.receptive_fields import CoveringFieldSampler


def layered_tile(n=5000, seed=0):
    rng = np.random.default_rng(seed)
    xy = rng.random((n, 2)) * [40.0, 30.0]
    z = 0.5 * xy[:, 0] + rng.normal(0, 1.0, n)
    points = np.column_stack([xy, z]) + [2e6, 5e6, 100.0]
    labels = ((xy[:, 0] > 12) & (xy[:, 0] < 24 + 2 * np.sin(xy[:, 1]))).astype(np.int64)  # a wavy band
    labels[np.hypot(xy[:, 0] - 32, xy[:, 1] - 15) < 5] = 2  # a disc
    return points, labels


def brute_force(fields, points, probabilities, k):
    """For each field and each point within it: mean of its k nearest kept points' predictions."""
    sums = np.zeros((len(points), probabilities.shape[2]))
    counts = np.zeros(len(points))
    for f in range(len(fields)):
        members = fields.member_indices[fields.member_offsets[f]:fields.member_offsets[f + 1]]
        distance = np.linalg.norm(points[members, None, :] - points[fields.indices[f]][None, :, :], axis=2)
        nearest = np.argsort(distance, axis=1, kind="stable")[:, :k]
        sums[members] += probabilities[f][nearest].mean(axis=1)
        counts[members] += 1
    return sums / counts[:, None]


@pytest.mark.parametrize("k", [1, 3])
def test_one_hot_field_labels_give_back_the_point_labels_except_in_conflicting_neighbourhoods(k):
    points, labels = layered_tile()
    sampler = CoveringFieldSampler(48, {"type": "sphere", "radius": 3.0, "separation_factor": 0.8},
                                   num_encoding_neighbors=k)
    fields = sampler(points, labels=labels)
    one_hot = np.eye(3, dtype=np.float32)[fields.labels]
    result = propagate(fields, one_hot)
    expected = brute_force(fields, points, one_hot, k)
    np.testing.assert_allclose(result, expected, atol=1e-6)  # ties between equidistant points aside
    wrong = np.round(result, 5).argmax(axis=1) != labels  # rounding: ties resolve alike in both
    # a point can only go wrong when one of its neighbourhoods held another label
    group = fields.member_fields()
    lowest = np.minimum.reduceat(labels[fields.member_indices], fields.member_offsets[:-1])
    highest = np.maximum.reduceat(labels[fields.member_indices], fields.member_offsets[:-1])
    conflicting = np.zeros(len(points), dtype=bool)
    conflicting[fields.member_indices[(lowest != highest)[group]]] = True
    assert not np.any(wrong & ~conflicting)
    assert wrong.sum() == np.sum(np.round(expected, 5).argmax(axis=1) != labels)
    assert 0 < wrong.sum() < 0.05 * len(points) and conflicting.sum() < 0.8 * len(points)
    print(f"k={k}: {wrong.sum()} of {len(points)} points differ, {conflicting.sum()} in conflicting neighbourhoods")


def test_streaming_batches_equal_one_pass_and_every_field_counts_once():
    points, labels = layered_tile(3000)
    fields = CoveringFieldSampler(32, {"type": "cylinder", "radius": 3.0}, num_encoding_neighbors=2)(points)
    probabilities = np.random.default_rng(2).random((len(fields), 32, 4)).astype(np.float32)
    accumulator = PropagationAccumulator(fields, 4)
    order = np.arange(0, len(fields), 7)
    for first in order[::-1]:  # any order of batches
        accumulator.add(int(first), probabilities[first:first + 7])
    np.testing.assert_allclose(accumulator.result(), propagate(fields, probabilities), rtol=1e-6)
    one_by_one = PropagationAccumulator(fields, 4)  # single fields: the path that touches only their points
    for first in range(len(fields)):
        one_by_one.add(first, probabilities[first:first + 1])
    np.testing.assert_allclose(one_by_one.result(), propagate(fields, probabilities), rtol=1e-6)
    with pytest.raises(ValueError, match="were already added"):
        accumulator.add(0, probabilities[:1])
    partial = PropagationAccumulator(fields, 4)
    partial.add(0, probabilities[:3])
    with pytest.raises(ValueError, match=f"{len(fields) - 3} fields were never added"):
        partial.result()
    with pytest.raises(ValueError, match=r"probabilities must be an array \(B, 32, 4\)"):
        partial.add(3, probabilities[3:5, :, :2])
    with pytest.raises(ValueError, match="field_probabilities has 2 fields"):
        propagate(fields, probabilities[:2])


def test_constant_predictions_come_back_unchanged():
    points, _ = layered_tile(2000)
    fields = CoveringFieldSampler(16, {"type": "rectangular3d", "radius": [4.0, 3.0, 2.0]})(points)
    probabilities = np.broadcast_to(np.array([0.2, 0.5, 0.3], dtype=np.float32), (len(fields), 16, 3)).copy()
    np.testing.assert_allclose(propagate(fields, probabilities), np.tile([0.2, 0.5, 0.3], (len(points), 1)), rtol=1e-6)
