"""Covering receptive fields: every point covered, neighbourhoods exact, subsampling and labels right."""

import numpy as np
import pytest
from scipy.spatial import cKDTree

from pointseq.pointclouds.field_inputs import field_scale
from pointseq.pointclouds.neighborhoods import COVERING_SEPARATION, Neighborhood, membership_pairs
from pointseq.pointclouds.receptive_fields import CoveringFieldSampler, majority, reduce_labels, sampler_from_spec
from pointseq.pointclouds.subsampling import farthest_point_positions

HOODS = [
    {"type": "sphere", "radius": 3.0, "separation_factor": 0.8},
    {"type": "Cylinder", "radius": 3.0, "separation_factor": 1.0},
    {"type": "rectangular2d", "radius": [3.0, 2.0], "separation_factor": 1.5},
    {"type": "RECTANGULAR3D", "radius": [3.0, 2.5, 2.0], "separation_factor": 0.8},
]


def rough_tile(n=6000, seed=0, offset=(5e6, 4e6, 300.0)):
    """Uneven density (a dense patch), a hole, a steep slope and a cliff, far from the origin."""
    rng = np.random.default_rng(seed)
    xy = rng.random((n, 2)) * [60.0, 40.0]
    xy = np.concatenate([xy, rng.normal([45.0, 10.0], 1.0, (n // 2, 2))])  # dense patch
    xy = xy[np.hypot(xy[:, 0] - 20, xy[:, 1] - 20) > 6]  # a hole
    z = 1.5 * xy[:, 0] + 40.0 * (xy[:, 1] > 30) + rng.normal(0, 0.3, xy.shape[0])  # slope and cliff
    stray = np.array([[-30.0, -30.0, 500.0], [90.0, 70.0, -80.0]])  # isolated points
    return np.concatenate([np.column_stack([xy, z]), stray]) + np.asarray(offset)


def inside(hood, relative):
    """Brute-force membership from the shape's definition."""
    radius = np.resize(np.asarray(hood.radius), 3)
    if hood.type == "sphere":
        return np.sum(relative ** 2, axis=-1) <= radius[0] ** 2
    if hood.type == "cylinder":
        return np.sum(relative[..., :2] ** 2, axis=-1) <= radius[0] ** 2
    return np.all(np.abs(relative[..., : hood.dims]) <= radius[: hood.dims], axis=-1)


@pytest.mark.parametrize("spec", HOODS + [dict(HOODS[0], separation_factor=2.5), dict(HOODS[1], separation_factor=3.0)])
def test_every_point_is_covered_and_neighbourhoods_are_exact(spec):
    points = rough_tile(3000)
    fields = CoveringFieldSampler(32, spec)(points)
    hood = Neighborhood.from_spec(spec)
    assert np.all(np.bincount(fields.member_indices, minlength=len(points)) >= 1)
    assert np.all(np.diff(fields.member_offsets) >= 1)  # empty neighbourhoods dropped
    checked = np.random.default_rng(0).choice(len(fields), min(len(fields), 300), replace=False)
    expected = inside(hood, points[None, :, :] - fields.centres[checked, None, :])
    got = np.zeros((len(fields), len(points)), dtype=bool)
    got[fields.member_fields(), fields.member_indices] = True
    assert np.array_equal(got[checked], expected)
    # kept points are members of their field; coordinates relative to the centre in float32
    assert np.all(got[np.arange(len(fields))[:, None], fields.indices])
    assert fields.points.dtype == np.float32
    np.testing.assert_allclose(fields.points, points[fields.indices] - fields.centres[:, None, :], atol=1e-4)


@pytest.mark.parametrize("spec", HOODS)
def test_membership_pairs_match_brute_force_for_supports_anywhere(spec):
    rng = np.random.default_rng(7)
    hood = Neighborhood.from_spec(spec)
    local = np.concatenate([rng.random((800, 3)) * [30.0, 20.0, 10.0], [[5e4, 3e4, 2e3]]])  # one far outlier
    supports = np.concatenate([rng.random((60, hood.dims)) * 40 - 5, local[-1:, : hood.dims] + 1.0])
    support, point = membership_pairs(local, supports, hood)
    centres = np.pad(supports, ((0, 0), (0, 3 - hood.dims)))  # 2d shapes ignore z
    expected_support, expected_point = np.nonzero(inside(hood, local[None, :, :] - centres[:, None, :]))
    assert np.array_equal(support, expected_support) and np.array_equal(point, expected_point)
    assert support[-1] == len(supports) - 1 and point[-1] == len(local) - 1  # the outlier's own support


def test_grid_alone_covers_below_the_limit_and_coverage_pass_above():
    points = rough_tile(3000)
    for kind, limit in COVERING_SEPARATION.items():
        spec = {"type": kind, "radius": 2.0, "separation_factor": limit * 0.99}
        fields = CoveringFieldSampler(16, spec)(points)
        hood = Neighborhood.from_spec(spec)
        on_grid = (fields.centres[:, : hood.dims] - fields.centres[0, : hood.dims]) / hood.spacing
        assert np.allclose(on_grid, np.round(on_grid), atol=1e-6)  # no extra supports were needed
    far = CoveringFieldSampler(16, {"type": "sphere", "radius": 2.0, "separation_factor": 4.0})(points)
    assert np.all(np.bincount(far.member_indices, minlength=len(points)) >= 1)


def test_sparse_neighbourhoods_repeat_their_points_and_dense_ones_use_fps():
    points = np.array([[0.0, 0, 0], [0.5, 0, 0], [0.0, 0.5, 0], [100, 100, 100]])
    fields = CoveringFieldSampler(5, {"type": "sphere", "radius": 1.0, "separation_factor": 0.5})(points)
    lonely = fields.indices[np.all(fields.indices == 3, axis=1)]
    assert lonely.shape[0] >= 1 and lonely.shape[1] == 5
    for row in fields.indices:
        distinct = np.unique(row)
        assert np.array_equal(row, np.resize(row[: distinct.size], 5))  # cyclic repetition, nothing invented


def reference_fps(coords, num):
    chosen, nearest = [0], np.full(len(coords), np.inf)
    for _ in range(num - 1):
        nearest = np.minimum(nearest, np.sum((coords - coords[chosen[-1]]) ** 2, axis=1))
        chosen.append(int(np.argmax(nearest)))
    return chosen


def test_batched_fps_matches_a_plain_implementation_with_padding():
    rng = np.random.default_rng(3)
    sets = [rng.normal(size=(n, 3)).astype(np.float32) for n in (50, 80, 64)]
    padded = np.zeros((3, 80, 3), dtype=np.float32)
    valid = np.zeros((3, 80), dtype=bool)
    for i, s in enumerate(sets):
        padded[i, : len(s)], valid[i, : len(s)] = s, True
    chosen = farthest_point_positions(padded, valid, 20)
    for i, s in enumerate(sets):
        assert chosen[i].tolist() == reference_fps(s, 20)


@pytest.mark.parametrize("subsampling", ["grid", "random"])
def test_grid_and_random_subsampling_keep_distinct_members_and_are_keyed(subsampling):
    points = rough_tile(3000)
    sampler = CoveringFieldSampler(24, HOODS[0], subsampling=subsampling, cell_size=0.3)
    one = sampler(points, np.random.default_rng(5))
    again = sampler(points, np.random.default_rng(5))
    other = sampler(points, np.random.default_rng(6))
    assert np.array_equal(one.indices, again.indices) and not np.array_equal(one.indices, other.indices)
    counts = np.diff(one.member_offsets)
    big = counts >= 200
    assert all(len(np.unique(row)) == 24 for row in one.indices[big][:20] if subsampling == "random")
    if subsampling == "grid":  # at most one point per cell of side 0.3 * radius
        cells = np.floor((points[one.indices[big]] - one.centres[big, None]) / 0.9).astype(int)
        for row_cells, row in zip(cells[:20], one.indices[big][:20]):
            distinct = np.unique(row)
            assert len(np.unique(row_cells[np.unique(row, return_index=True)[1]], axis=0)) == len(distinct)
    with pytest.raises(TypeError, match="rng must be a numpy Generator"):
        sampler(points)


@pytest.mark.parametrize("subsampling,num_points", [("fps", 24), ("random", 24), ("grid", 24), ("random", 300)])
def test_member_slots_are_each_members_k_nearest_kept_points(subsampling, num_points):
    points = rough_tile(3000)
    sampler = CoveringFieldSampler(num_points, HOODS[0], subsampling=subsampling, num_encoding_neighbors=3)
    fields = sampler(points, np.random.default_rng(1))  # 300 kept points: the KD-tree search, else tracked/brute force
    assert fields.member_slots.shape == (fields.member_indices.size, 3)
    for f in range(0, len(fields), 5):
        rows = slice(fields.member_offsets[f], fields.member_offsets[f + 1])
        members = points[fields.member_indices[rows]]
        distance = np.linalg.norm(members[:, None, :] - points[fields.indices[f]][None, :, :], axis=2)
        got = np.take_along_axis(distance, fields.member_slots[rows].astype(np.int64), axis=1)
        np.testing.assert_allclose(got, np.sort(distance, axis=1)[:, :3], atol=1e-5)  # nearest first


def test_to_unit_sphere_scales_each_field_to_norm_one():
    points = rough_tile(2000)
    fields = CoveringFieldSampler(16, HOODS[3], to_unit_sphere=True)(points)
    norms = np.linalg.norm(fields.points, axis=2).max(axis=1)
    unscaled = np.linalg.norm(points[fields.indices] - fields.centres[:, None], axis=2).max(axis=1)
    np.testing.assert_allclose(norms, 1.0, rtol=1e-5)
    np.testing.assert_allclose(fields.scales, unscaled, rtol=1e-9)


def test_labels_are_the_majority_of_the_k_nearest_members():
    rng = np.random.default_rng(1)
    points = rng.random((3000, 3)) * 20
    labels = rng.integers(0, 3, 3000)
    fields = CoveringFieldSampler(8, {"type": "sphere", "radius": 4.0}, num_encoding_neighbors=5)(points, labels=labels)
    for f in range(0, len(fields), max(1, len(fields) // 10)):
        members = fields.member_indices[fields.member_offsets[f]:fields.member_offsets[f + 1]]
        for slot in range(8):
            d = np.linalg.norm(points[members] - points[fields.indices[f, slot]], axis=1)
            votes = np.bincount(labels[members[np.argsort(d)[:5]]], minlength=3)
            assert fields.labels[f, slot] == np.argmax(votes)
    own = reduce_labels(fields, points, labels, 1)
    assert np.array_equal(own, labels[fields.indices])
    assert majority(np.array([[2, 1, 1, 2, 0], [3, 3, 3, 0, 0], [-1, -1, 2, -1, 1]])).tolist() == [1, 3, 1]


def test_class_balanced_centres_draw_the_requested_counts():
    rng = np.random.default_rng(0)
    points = rng.random((5000, 3)) * 50
    labels = np.where(rng.random(5000) < 0.02, 1, 0)
    sampler = CoveringFieldSampler(8, {"type": "sphere", "radius": 2.0}, training_class_distribution=[10, 30])
    fields = sampler(points, np.random.default_rng(4), labels)
    assert len(fields) == 40
    distance, centre_rows = cKDTree(points).query(fields.centres)
    assert np.all(distance < 1e-9)  # the centres are points of the cloud
    assert np.bincount(labels[centre_rows], minlength=2).tolist() == [10, 30]
    again = sampler(points, np.random.default_rng(4), labels)
    assert np.array_equal(fields.centres, again.centres)
    assert len(sampler(points)) > 40  # without labels (prediction): the covering grid


def test_original_specs_are_accepted_and_bad_ones_refused():
    fps = sampler_from_spec({"type": "furthestpointsubsamplingpreprocessor", "num_points": 128,
                             "num_encoding_neighbors": 1, "_comment": "ignored",
                             "neighborhood": {"type": "Rectangular3D", "radius": 5.0, "separation_factor": 0.8}})
    assert (fps.num_points, fps.subsampling, fps.neighborhood.radius) == (128, "fps", (5.0, 5.0, 5.0))
    grid = sampler_from_spec({"type": "GridSubsamplingPreProcessor", "sphere_radius": 0.2, "cell_size": 0.1,
                              "interpolate": False})
    assert (grid.num_points, grid.subsampling, grid.neighborhood.radius) == (8000, "grid", (0.2, 0.2, 0.2))
    assert sampler_from_spec(fps.get_config()).get_config() == fps.get_config()
    with pytest.raises(TypeError, match=r"unknown key\(s\) \['nthread'\]"):
        sampler_from_spec({"type": "FurthestPointSubsamplingPreProcessor", "nthread": 4,
                           "neighborhood": {"type": "sphere", "radius": 1.0}})
    with pytest.raises(ValueError, match="neighborhood type must be one of"):
        CoveringFieldSampler(8, {"type": "cone", "radius": 1.0})
    with pytest.raises(ValueError, match="per-axis radius needs a rectangular type"):
        CoveringFieldSampler(8, {"type": "sphere", "radius": [1.0, 2.0, 3.0]})
    with pytest.raises(ValueError, match="receptive field type must be"):
        sampler_from_spec({"type": "HierarchicalFPSPreProcessor"})
    with pytest.raises(ValueError, match="points must have shape"):
        CoveringFieldSampler(8, {"type": "sphere", "radius": 1.0})(np.zeros((4, 2)))


@pytest.mark.parametrize("kind", ["sphere", "cylinder", "rectangular2d"])
def test_radius_zero_is_one_field_holding_the_whole_cloud(kind):
    points = rough_tile(800)
    spec = {"type": "FurthestPointSubsamplingPreProcessor", "num_points": 64, "num_encoding_neighbors": 1,
            "neighborhood": {"type": kind, "radius": 0, "separation_factor": 0.8}}
    sampler = sampler_from_spec(spec)
    assert sampler.neighborhood.whole_cloud and sampler.get_config()["neighborhood"]["radius"] == 0
    fields = sampler(points)
    assert len(fields) == 1 and np.array_equal(fields.member_indices, np.arange(len(points)))  # 100% coverage
    np.testing.assert_allclose(fields.centres[0], points.mean(axis=0), rtol=0, atol=1e-6)  # centred on the mean
    assert len(np.unique(fields.indices[0])) == 64 and fields.indices[0, 0] == 0  # FPS from the first point
    np.testing.assert_allclose(fields.points[0], points[fields.indices[0]] - fields.centres[0], atol=1e-3)
    with pytest.raises(ValueError, match="has no radius to scale field inputs by: set to_unit_sphere: true"):
        field_scale(sampler)
    assert field_scale(sampler_from_spec(dict(spec, to_unit_sphere=True))) == 1.0
    with pytest.raises(ValueError, match=r"radius must be a positive finite number, or 0 for one neighbourhood "
                                         r"holding the whole cloud, got -1"):
        CoveringFieldSampler(8, {"type": kind, "radius": -1})


@pytest.mark.parametrize("spec", [HOODS[0], HOODS[1], dict(HOODS[3], separation_factor=2.5)])
def test_center_on_pcloud_moves_nodes_onto_their_nearest_point_within_the_radius(spec):
    from pointseq.pointclouds.neighborhoods import grid_supports

    points = rough_tile(1500)
    sampler = sampler_from_spec({"type": "FurthestPointSubsamplingPreProcessor", "num_points": 16,
                                 "neighborhood": spec, "center_on_pcloud": True})
    hood = sampler.neighborhood
    fields = sampler(points)
    assert np.all(np.bincount(fields.member_indices, minlength=len(points)) >= 1)  # still covers every point
    local = points - points.min(axis=0)
    coords = local[:, : hood.dims]
    nodes = grid_supports(local, hood, hood.spacing)  # brute force: nearest point of each node within min(radius)
    distance = np.sqrt(((nodes[:, None, :] - coords[None, :, :]) ** 2).sum(axis=2))
    close = distance.min(axis=1) <= min(hood.radius)
    expected = {tuple(np.round(c, 6)) for c in coords[distance[close].argmin(axis=1)]}
    centres = [tuple(np.round(c, 6)) for c in fields.centres[:, : hood.dims] - points.min(axis=0)[: hood.dims]]
    assert len(set(centres)) == len(centres)  # nodes landing on one point are kept once
    assert expected <= set(centres)  # every snapped node ...
    if hood.separation_factor < 1:
        assert len(expected) < close.sum()  # ... with the nodes that landed on one point merged
    cover = np.asarray(hood.radius) * COVERING_SEPARATION[hood.type] * 0.9
    rest = np.array([c for c in centres if c not in expected]).reshape(-1, hood.dims)
    np.testing.assert_allclose(rest / cover, np.round(rest / cover), atol=1e-6)  # the rest: coverage-pass nodes
    if hood.separation_factor > COVERING_SEPARATION[hood.type]:
        assert rest.shape[0] > 0
    plain = CoveringFieldSampler(16, spec)(points)
    assert not np.array_equal(plain.centres, fields.centres)
    with pytest.raises(TypeError, match="center_on_pcloud must be True or False"):
        CoveringFieldSampler(8, spec, center_on_pcloud="yes")
