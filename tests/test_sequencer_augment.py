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


def field_inputs(n=10, points=32, features=3, seed=7):
    """Field inputs like `field_inputs`: x, y, z, height, then features; float32."""
    rng = np.random.default_rng(seed)
    xyz = rng.uniform(-1, 1, size=(n, points, 3))
    height = xyz[..., 2:3] - xyz[..., 2:3].min(axis=1, keepdims=True)
    return np.concatenate([xyz, height, rng.uniform(size=(n, points, features))], axis=-1).astype("float32")


def test_field_inputs_rotate_about_z_keeping_heights_and_features():
    fine, coarse = field_inputs(), field_inputs(points=8, seed=8)
    before = (fine.copy(), coarse.copy())
    y = np.arange(len(fine))
    seq = Sequencer((fine, coarse), y, batch_size=4, seed=3, augmentor=Augmentor([Rotation(angle=Uniform(0.5, 2.5))]),
                    augment_inputs=[0, 1], coordinate_columns=3, height_columns=[3])
    (x_fine, x_coarse), _ = seq[1]
    ids = seq.batch_indices(1)
    assert x_fine.dtype == np.float32 and x_fine.shape == (4, 32, 7)
    for out, source in ((x_fine, fine), (x_coarse, coarse)):
        np.testing.assert_array_equal(out[..., 2:], source[ids][..., 2:])  # z, height, features
        assert not np.allclose(out[..., :2], source[ids][..., :2])
    for k, i in enumerate(ids):  # one rotation about z per sample, shared by both depths
        angles = [np.angle(complex(*out[k, 0, :2])) - np.angle(complex(*src[i, 0, :2]))
                  for out, src in ((x_fine, fine), (x_coarse, coarse))]
        turn = np.array([[np.cos(angles[0]), -np.sin(angles[0])], [np.sin(angles[0]), np.cos(angles[0])]])
        np.testing.assert_allclose(fine[i, :, :2] @ turn.T, x_fine[k, :, :2], atol=1e-5)
        np.testing.assert_allclose(coarse[i, :, :2] @ turn.T, x_coarse[k, :, :2], atol=1e-5)
    for array, copy in zip((fine, coarse), before):
        np.testing.assert_array_equal(array, copy)  # the caller's arrays are untouched
    again = Sequencer((fine, coarse), y, batch_size=4, seed=3, augmentor=seq.augmentor, augment_inputs=[0, 1],
                      coordinate_columns=3, height_columns=[3])
    for a, b in zip(again[1][0], seq[1][0]):
        np.testing.assert_array_equal(a, b)  # same (seed, epoch, idx): same batch


def test_field_inputs_scale_heights_with_z_and_jitter_only_coordinates():
    x = field_inputs()
    seq = Sequencer(x, np.arange(len(x)), batch_size=5, seed=1, coordinate_columns=3, height_columns=[3],
                    augmentor=Augmentor([Rotation(), Scale(factor=Constant(2.0)), Jitter(clip=0.01)]))
    out, _ = seq[0]
    ids = seq.batch_indices(0)
    np.testing.assert_allclose(out[..., 3], 2.0 * x[ids][..., 3], rtol=1e-6)  # a height is a z difference
    np.testing.assert_allclose(out[..., 2], 2.0 * x[ids][..., 2], atol=0.0101)  # jittered z
    np.testing.assert_array_equal(out[..., 4:], x[ids][..., 4:])
    plain = Sequencer(x, np.arange(len(x)), batch_size=5, seed=1, coordinate_columns=3,
                      augmentor=Augmentor([Scale(factor=Constant(2.0))]))
    np.testing.assert_array_equal(plain[0][0][..., 3:], x[plain.batch_indices(0)][..., 3:])
    spec = build_sequencer(seq.get_config(), x, np.arange(len(x)))
    assert spec.get_config()["coordinate_columns"] == 3 and spec.get_config()["height_columns"] == [3]
    np.testing.assert_array_equal(spec[0][0], out)


@pytest.mark.parametrize("kwargs, error, message", [
    ({"coordinate_columns": 4}, ValueError, r"coordinate_columns must be None or 3 \(x, y, z lead the last axis\), "
                                            r"got 4"),
    ({"coordinate_columns": "3"}, TypeError, r"coordinate_columns must be None or 3 .*got '3' \(str\)"),
    ({"height_columns": [3]}, ValueError, r"height_columns=\[3\] needs coordinate_columns=3"),
    ({"coordinate_columns": 3, "height_columns": [2]}, ValueError, r"height_columns must be column indices >= 3"),
    ({"coordinate_columns": 3, "height_columns": [9]}, ValueError, r"coordinate input X\[0\] must have shape "
                                                                   r"\(num_samples, num_points, C\) .* C >= 10"),
])
def test_bad_coordinate_columns(kwargs, error, message):
    x = field_inputs()
    with pytest.raises(error, match=message):
        Sequencer(x, np.arange(len(x)), augmentor=SPEC, **kwargs)


def test_field_inputs_without_coordinate_columns_are_refused():
    x = field_inputs()
    with pytest.raises(ValueError, match=r"coordinate input X\[0\] must have shape \(num_samples, num_points, 3\)"):
        Sequencer(x, np.arange(len(x)), augmentor=SPEC)
