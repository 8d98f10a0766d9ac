"""The original system's FurthestPointSubsamplingPreProcessor keys: each one does what its documentation says."""

import warnings

import numpy as np
import pytest
from test_receptive_fields import HOODS, reference_fps, rough_tile

from pointseq.pointclouds.receptive_fields import REPORT_KEYS, CoveringFieldSampler, sampler_from_spec

# The original's documented example (its "FPS receptive field" page), every key it documents, scaled to a small tile.
DOCUMENTED = {
    "pre_processor": "furthest_point_subsampling",
    "to_unit_sphere": False,
    "support_strategy": "grid",
    "support_chunk_size": 2000,
    "support_strategy_fast": False,
    "support_strategy_num_points": 1000,
    "training_class_distribution": [40, 25],
    "center_on_pcloud": True,
    "num_points": 16,
    "num_encoding_neighbors": 1,
    "fast": False,
    "neighborhood": {"type": "rectangular3D", "radius": 3.0, "separation_factor": 0.5},
    "nthreads": 12,
    **{key: f"training_eval/{key}.out" for key in REPORT_KEYS},
}


def built(spec):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        sampler = sampler_from_spec(spec)
    return sampler, [str(w.message) for w in caught]


def test_a_documented_vl3d_configuration_builds_the_fields_its_documentation_says():
    points = rough_tile(3000)
    labels = (points[:, 0] > np.median(points[:, 0])).astype(np.int64)
    sampler, messages = built(DOCUMENTED)
    assert len(messages) == 1 and all(key in messages[0] for key in REPORT_KEYS)  # one warning naming every path
    assert (sampler.subsampling, sampler.num_points, sampler.nthreads, sampler.support_chunk_size) == ("fps", 16, 12, 2000)
    # training: "as many points per class as specified", each the centre of one neighbourhood
    fields = sampler(points, np.random.default_rng(0), labels=labels)
    assert len(fields) == 40 + 25
    rows = [np.flatnonzero(np.all(points == c, axis=1))[0] for c in fields.centres]
    assert np.bincount(labels[rows], minlength=2).tolist() == [40, 25]
    # support_strategy "fps": support_strategy_num_points supports by FPS over the cloud (here they cover it all)
    fps, _ = built(dict(DOCUMENTED, support_strategy="fps", support_strategy_num_points=30,
                        neighborhood={"type": "rectangular3D", "radius": 200.0, "separation_factor": 0.5}))
    fields = fps(points)
    local = points - points.min(axis=0)
    expected = local[np.sort(reference_fps(local.astype(np.float32), 30))]
    assert len(fields) == 30
    np.testing.assert_array_equal(fields.centres - points.min(axis=0), expected)


def test_fast_true_is_uniform_downsampling_before_fps_and_fast_2_a_random_subset():
    points = rough_tile(3000)
    spec = {"type": "FurthestPointSubsamplingPreProcessor", "num_points": 16, "neighborhood": HOODS[0]}
    assert sampler_from_spec(dict(spec, fast=True)).subsampling == "uniform_fps"
    assert sampler_from_spec(dict(spec, fast=2)).subsampling == "random"
    fields = sampler_from_spec(dict(spec, fast=True))(points)
    local = points - points.min(axis=0)
    counts = np.diff(fields.member_offsets)
    for f in np.flatnonzero(counts >= 48)[:20]:  # every n // 16-th member (in index order), then FPS from the first
        members = fields.member_indices[fields.member_offsets[f]:fields.member_offsets[f + 1]]
        strided = members[:: members.size // 16]
        relative = (local[strided] - (fields.centres[f] - points.min(axis=0))).astype(np.float32)
        expected = strided[reference_fps(relative, 16)]
        if strided.size == 16:  # a group of num_points rows keeps them all, in index order
            expected = np.sort(expected)
        assert fields.indices[f].tolist() == expected.tolist()
    with pytest.raises(ValueError, match=r"fast must be false \(exact FPS\), true .* or 2 \(random subset\), got 3"):
        sampler_from_spec(dict(spec, fast=3))


def test_chunks_and_threads_change_nothing_and_bad_values_are_refused():
    points = rough_tile(3000)
    reference = CoveringFieldSampler(16, HOODS[3])(points)
    for options in ({"support_chunk_size": 7}, {"nthreads": 2}, {"nthreads": -1}, {"support_chunk_size": 1, "nthreads": 3}):
        fields = CoveringFieldSampler(16, HOODS[3], **options)(points)
        assert np.array_equal(fields.indices, reference.indices)
        assert np.array_equal(fields.member_indices, reference.member_indices)
        assert np.array_equal(fields.member_slots, reference.member_slots)
    assert "nthreads" not in CoveringFieldSampler(16, HOODS[3], nthreads=2).get_config()
    with pytest.raises(ValueError, match="nthreads must be an int >= 1, got 0"):
        CoveringFieldSampler(16, HOODS[3], nthreads=0)
    with pytest.raises(ValueError, match="support_chunk_size must be an int >= 0, got -1"):
        CoveringFieldSampler(16, HOODS[3], support_chunk_size=-1)
    with pytest.raises(ValueError, match=r"support_strategy must be one of \['grid', 'fps'\], got 'random'"):
        sampler_from_spec({"type": "FurthestPointSubsamplingPreProcessor", "neighborhood": HOODS[0],
                           "support_strategy": "random"})


@pytest.mark.parametrize("fast", [False, True, 2])
def test_fps_supports_cover_every_point_and_round_trip(fast):
    points = rough_tile(3000)
    sampler = CoveringFieldSampler(16, HOODS[1], support_strategy="fps", support_strategy_num_points=25,
                                   support_strategy_fast=fast)
    fields = sampler(points, np.random.default_rng(1))
    assert np.all(np.bincount(fields.member_indices, minlength=len(points)) >= 1)  # the coverage pass fills gaps
    on_cloud = (np.abs(points[None, :, :2] - fields.centres[:, None, :2]).sum(axis=2) == 0).any(axis=1)
    assert on_cloud[:25].all() and len(fields) >= 25  # 25 supports are points of the cloud, then the coverage pass
    again = sampler_from_spec(sampler.get_config())
    assert again.get_config() == sampler.get_config() and again.support_strategy_fast == fast
    if fast == 2:
        with pytest.raises(TypeError, match="rng must be a numpy Generator for this sampler"):
            sampler(points)
