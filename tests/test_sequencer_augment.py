"""Augmentation wired into Sequencer: keyed by (seed, epoch, idx), training mode only."""

import numpy as np
import pytest

from pointseq.augment import Augmentor, Constant, Jitter, Rotation, Scale, Uniform
from pointseq.sequencers import Sequencer, build_sequencer

SPEC = {
    "transformations": [
        {"type": "Rotation", "axis": "random", "angle_distribution": {"type": "uniform", "start": -3.14, "end": 3.14}},
        {"type": "Scale", "scale_distribution": {"type": "uniform", "start": 0.8, "end": 1.2}},
        {"type": "Jitter", "noise_distribution": {"type": "normal", "mean": 0, "stdev": 0.01}},
    ]
}


@pytest.fixture
def points_and_normals():
    rng = np.random.default_rng(0)
    pts = rng.normal(size=(12, 16, 3)).astype("float32")
    normals = rng.normal(size=(12, 16, 3)).astype("float32")
    normals /= np.linalg.norm(normals, axis=-1, keepdims=True)
    feats = rng.normal(size=(12, 16, 2)).astype("float32")
    return pts, normals, feats, np.arange(12)


def test_training_batches_are_augmented_and_keyed(points_and_normals):
    pts, _, _, y = points_and_normals
    seq = Sequencer(pts, y, batch_size=4, seed=1, augmentor=SPEC)
    x0, y0 = seq[0]
    ids = seq.batch_indices(0)
    assert x0.dtype == np.float32 and x0.shape == (4, 16, 3)
    assert not np.allclose(x0, pts[ids])
    np.testing.assert_array_equal(y0, y[ids])
    np.testing.assert_array_equal(seq[0][0], x0)  # same (seed, epoch, idx): same numbers
    other = Sequencer(pts, y, batch_size=4, seed=1, augmentor=Augmentor.from_spec(SPEC))
    np.testing.assert_array_equal(other[0][0], x0)
    # Another epoch draws other transforms, even for a batch of the same samples.
    same_samples = Sequencer(pts, y, batch_size=4, seed=1, augmentor=SPEC, shuffle=False)
    first = same_samples[0][0]
    same_samples.set_epoch(1)
    assert not np.allclose(same_samples[0][0], first)


def test_predict_mode_never_augments(points_and_normals):
    pts, _, _, y = points_and_normals
    seq = Sequencer(pts, y, batch_size=5, seed=1, augmentor=SPEC, training=False)
    np.testing.assert_array_equal(np.concatenate([seq[i][0] for i in range(len(seq))]), pts)


def test_coordinates_and_normals_share_one_rotation_and_inputs_stay(points_and_normals):
    pts, normals, feats, y = points_and_normals
    before = [a.copy() for a in (pts, normals, feats)]
    augmentor = Augmentor([Rotation(axis="random", angle=Uniform(-3, 3)), Scale(factor=Constant(2.0))])
    seq = Sequencer({"pts": pts, "normals": normals, "feats": feats}, y, batch_size=4, seed=2,
                    augmentor=augmentor, augment_inputs=["pts"], vector_inputs=["normals"])
    x, _ = seq[1]
    ids = seq.batch_indices(1)
    for k, i in enumerate(ids):
        # Solve for the linear map on the points, check the normals got its rotation.
        m, *_ = np.linalg.lstsq(pts[i], x["pts"][k], rcond=None)
        rot = m / 2.0
        np.testing.assert_allclose(rot.T @ rot, np.eye(3), atol=1e-4)
        np.testing.assert_allclose(normals[i] @ rot, x["normals"][k], atol=1e-4)
    np.testing.assert_array_equal(x["feats"], feats[ids])  # not a coordinate input
    for a, b in zip((pts, normals, feats), before):
        np.testing.assert_array_equal(a, b)


def test_jitter_only_on_coordinates(points_and_normals):
    pts, normals, _, y = points_and_normals
    seq = Sequencer([pts, normals], y, batch_size=4, seed=3,
                    augmentor=Augmentor([Jitter(clip=0.02)]), vector_inputs=[1])
    (x_pts, x_normals), _ = seq[0]
    ids = seq.batch_indices(0)
    delta = x_pts - pts[ids]
    assert 0 < np.abs(delta).max() <= 0.02 + 1e-7
    np.testing.assert_array_equal(x_normals, normals[ids])


def test_augmentor_from_a_spec_through_build_sequencer(points_and_normals):
    pts, _, _, y = points_and_normals
    seq = build_sequencer({"type": "DLSequencer", "batch_size": 4, "seed": 5, "augmentor": SPEC}, pts, y)
    assert isinstance(seq.augmentor, Augmentor)
    assert seq.get_config()["augmentor"] == seq.augmentor.get_config()


def test_bad_augmentor_argument(points_and_normals):
    pts, _, _, y = points_and_normals
    with pytest.raises(TypeError, match="augmentor must be a pointseq.augment.Augmentor, its spec dict or None, got .* \(str\)"):
        Sequencer(pts, y, augmentor="rotate")
    with pytest.raises(ValueError, match=r"augment_inputs and vector_inputs"):
        Sequencer([pts, pts], y, augmentor=SPEC, augment_inputs=[0], vector_inputs=[0])


def test_shards_augment_like_the_unsharded_stream(points_and_normals):
    pts, _, _, y = points_and_normals
    same = np.repeat(pts[:1], 12, axis=0)  # identical samples: only the transforms differ
    seq = Sequencer(same, y, batch_size=2, seed=4, augmentor=SPEC)
    shards = [seq.shard(2, i) for i in range(2)]
    assert not np.array_equal(shards[0][0][0], shards[1][0][0])
    whole = Sequencer(same, y, batch_size=2, seed=4, augmentor=SPEC, epoch_size=2 * len(shards[0]))
    for j in range(len(shards[0])):
        for i, shard in enumerate(shards):
            np.testing.assert_array_equal(shard[j][0], whole[j * 2 + i][0])
