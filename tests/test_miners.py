"""Feature miners against straightforward float64 references (explicit neighbour lists, one
np.linalg.eigh per point), and their place in FeatureSpec."""

import colorsys
import math

import numpy as np
import pytest

from pointseq.pointclouds import FeatureSpec, PointCloud, miners

TOLERANCE = 1e-4


def scene(offset=(0.0, 0.0, 0.0), n=240, seed=0):
    """A small mixed scene: a tilted plane, a vertical pole, a blob and one lone point."""
    rng = np.random.default_rng(seed)
    plane = np.column_stack([rng.uniform(0, 6, n), rng.uniform(0, 6, n), np.zeros(n)])
    plane[:, 2] = 0.2 * plane[:, 0] + rng.normal(0, 0.02, n)
    pole = np.column_stack([3 + rng.normal(0, 0.03, 40), 3 + rng.normal(0, 0.03, 40), rng.uniform(0, 4, 40)])
    blob = rng.normal([1.5, 4.5, 2.5], 0.4, (60, 3))
    lone = np.array([[20.0, 20.0, 20.0]])
    return np.concatenate([plane, pole, blob, lone]) + np.asarray(offset)


def reference_neighbours(points, radius=None, k=None, columns=3):
    """Explicit neighbour lists by brute-force distances (a point is its own neighbour)."""
    diff = points[:, None, :columns] - points[None, :, :columns]
    dist = np.sqrt((diff ** 2).sum(axis=-1))
    if k is not None:
        return [np.argsort(row, kind="stable")[:k] for row in dist]
    return [np.flatnonzero(row <= radius) for row in dist]


def reference_eigen(points, neighbours):
    """Per point: features from np.linalg.eigh of its neighbourhood, centred in float64."""
    rows = []
    for members in neighbours:
        local = points[members] - points[members].mean(axis=0)
        values, vectors = np.linalg.eigh(local.T @ local / len(members))
        l3, l2, l1 = np.maximum(values, 0.0)
        total = l1 + l2 + l3
        if l1 <= 0:
            rows.append(dict.fromkeys(miners.EIGEN_FEATURES, 0.0))
            continue
        shares = np.array([l1, l2, l3]) / total
        nz = abs(vectors[2, 0])
        rows.append({"linearity": (l1 - l2) / l1, "planarity": (l2 - l3) / l1, "sphericity": l3 / l1,
                     "scattering": l3 / l1, "anisotropy": (l1 - l3) / l1, "surface_variation": l3 / total,
                     "omnivariance": float(np.prod(shares)) ** (1 / 3),
                     "eigenentropy": -sum(s * math.log(s) for s in shares if s > 0),
                     "normal_z": nz, "verticality": 1 - nz})
    return {name: np.array([r[name] for r in rows]) for name in miners.EIGEN_FEATURES}, neighbours


def well_defined_normals(points, neighbours):
    """Points whose smallest eigenvalue is clearly apart from the middle one (a stable normal)."""
    keep = []
    for members in neighbours:
        local = points[members] - points[members].mean(axis=0)
        values = np.linalg.eigvalsh(local.T @ local / len(members))
        keep.append(len(members) >= 4 and values[1] - values[0] > 1e-3 * max(values[2], 1e-300))
    return np.array(keep)


@pytest.mark.parametrize("offset", [(0.0, 0.0, 0.0), (5e6, 5e6, 300.0)])
@pytest.mark.parametrize("neighbourhood", [{"radius": 0.8}, {"k": 12}])
def test_eigen_features_match_the_reference(offset, neighbourhood):
    points = scene(offset)
    values, normal_z = miners.neighbourhood_eigen(points, **neighbourhood)
    got = miners.eigen_features(values, normal_z)
    want, neighbours = reference_eigen(points, reference_neighbours(points, **neighbourhood))
    stable = well_defined_normals(points, neighbours)
    assert stable.mean() > 0.8
    for name in miners.EIGEN_FEATURES:
        rows = stable if name in ("normal_z", "verticality") else slice(None)
        np.testing.assert_allclose(got[name][rows], want[name][rows], atol=TOLERANCE, err_msg=name)
    if "radius" in neighbourhood:  # the lone point: every feature 0
        assert all(got[name][-1] == 0.0 for name in miners.EIGEN_FEATURES)
    # The scene's parts read as they should: a flat plane, a linear pole, a scattered blob.
    assert got["sphericity"][:240].mean() < 0.05 and got["linearity"][240:280].mean() > 0.75
    assert got["sphericity"][280:340].mean() > 0.25 and got["verticality"][:240].mean() < 0.05


@pytest.mark.parametrize("dense, block_pairs", [(False, 40), (True, 3000), (True, 40000)])
def test_radius_blocks_give_the_result_of_one_block(dense, block_pairs):
    """Blocks wider than the radius (pairs within 3 x 3 blocks) and narrower (rings of blocks)."""
    rng = np.random.default_rng(5)
    points = rng.uniform(0, 2, (500, 3)) * [1, 1, 0.1] + [1e5, 2e5, 10.0] if dense else scene((1e5, 2e5, 10.0))
    whole = miners.neighbourhood_eigen(points, radius=0.8, block_pairs=1 << 30)
    cut = miners.neighbourhood_eigen(points, radius=0.8, block_pairs=block_pairs)
    np.testing.assert_allclose(cut[0], whole[0], rtol=1e-9, atol=1e-12)
    blocks = list(miners.radius_pairs(points - points.min(axis=0), 0.8, block_pairs=block_pairs))
    assert len(blocks) > 2
    covered = np.concatenate([members[:core] for members, core, _ in blocks])
    np.testing.assert_array_equal(np.sort(covered), np.arange(len(points)))
    counts = np.zeros(len(points))
    for members, core, pairs in blocks:  # each core point's neighbours, each once
        for end in (0, 1):
            np.add.at(counts, members[pairs[:, end]][pairs[:, end] < core], 1)
    want = [len(m) - 1 for m in reference_neighbours(points, radius=0.8)]
    np.testing.assert_array_equal(counts, want)


def test_heights_density_and_hsv_match_the_reference():
    points = scene((5e6, 5e6, 300.0))
    cells = np.floor((points[:, :2] - points[:, :2].min(axis=0)) / 2.0)
    low, high = miners.local_z_extremes(points, cell_size=2.0)
    for i in range(0, len(points), 7):
        same = np.all(cells == cells[i], axis=1)
        assert low[i] == points[same, 2].min() and high[i] == points[same, 2].max()
    near = reference_neighbours(points, radius=1.5, columns=2)
    low, high = miners.local_z_extremes(points, radius=1.5, block_pairs=60)
    np.testing.assert_array_equal(low, [points[m, 2].min() for m in near])
    np.testing.assert_array_equal(high, [points[m, 2].max() for m in near])
    counts = np.array([len(m) for m in reference_neighbours(points, radius=0.8)])
    np.testing.assert_allclose(miners.point_density(points, 0.8), counts / (4 / 3 * math.pi * 0.8 ** 3))
    rng = np.random.default_rng(3)
    rgb = rng.integers(0, 65536, size=(3, 200)).astype(np.uint16)
    rgb[:, :3] = [[0, 500, 7], [0, 500, 7], [0, 500, 9]]  # black, grey, a blue tint
    hsv = miners.rgb_to_hsv(*rgb)
    want = np.array([colorsys.rgb_to_hsv(*(rgb[:, i] / 65535.0)) for i in range(200)])
    for column, name in enumerate(miners.COLOUR_FEATURES):
        np.testing.assert_allclose(hsv[name], want[:, column], atol=1e-12, err_msg=name)


def test_against_jakteristics_when_installed():
    jakteristics = pytest.importorskip("jakteristics")
    points = scene((5e6, 5e6, 300.0))[:-1]
    names = ["linearity", "planarity", "sphericity", "anisotropy", "surface_variation", "verticality"]
    theirs = jakteristics.compute_features(np.ascontiguousarray(points), 0.8, feature_names=names, num_threads=1)
    ours = miners.eigen_features(*miners.neighbourhood_eigen(points, radius=0.8))
    stable = well_defined_normals(points, reference_neighbours(points, radius=0.8))
    for column, name in enumerate(names):
        rows = stable if name == "verticality" else slice(None)
        np.testing.assert_allclose(ours[name][rows], theirs[rows, column], atol=TOLERANCE, err_msg=name)


def cloud_with_colours(n=300):
    points = scene((5e6, 5e6, 300.0))[:n]
    rng = np.random.default_rng(1)
    colours = {c: rng.integers(0, 65536, len(points)).astype(np.uint16) for c in ("red", "green", "blue")}
    return PointCloud(points, {**colours, "intensity": rng.integers(0, 65536, len(points)).astype(np.uint16)})


def test_feature_spec_mines_named_features():
    spec = FeatureSpec(["intensity", {"name": "planarity", "radius": 0.8}, {"name": "linearity", "k": 12},
                        {"name": "eigenentropy", "radius": 0.8}, {"name": "height_above_min", "cell_size": 2.0},
                        {"name": "height_below_max", "radius": 1.5}, {"name": "density", "radius": 0.8}, "hue"])
    assert spec.names == ["intensity", "planarity_r0.8", "linearity_k12", "eigenentropy_r0.8",
                          "height_above_min_c2", "height_below_max_r1.5", "density_r0.8", "hue"]
    assert spec.dimensions == ["intensity", "red", "green", "blue"]
    cloud = cloud_with_colours()
    f = spec(cloud)
    assert f.dtype == np.float32 and f.shape == (len(cloud), 8)
    eigen = miners.eigen_features(*miners.neighbourhood_eigen(cloud.points, radius=0.8))
    np.testing.assert_allclose(f[:, 1], eigen["planarity"], atol=1e-6)
    np.testing.assert_allclose(f[:, 3], eigen["eigenentropy"] / math.log(3), atol=1e-6)
    low, _ = miners.local_z_extremes(cloud.points, cell_size=2.0)
    np.testing.assert_allclose(f[:, 4], (cloud.points[:, 2] - low) * 0.1, atol=1e-6)
    np.testing.assert_allclose(f[:, 6], np.log1p(miners.point_density(cloud.points, 0.8)), rtol=1e-6)
    assert 0 <= f[:, 7].min() and f[:, 7].max() < 1
    again = FeatureSpec.from_spec(spec.get_config())
    assert again.get_config() == spec.get_config() and again.names == spec.names
    np.testing.assert_array_equal(again(cloud), f)
    assert spec.get_config()["features"][1] == {"name": "planarity", "radius": 0.8, "normalisation": "none"}


@pytest.mark.parametrize("item, error, message", [
    ({"name": "planarity", "radius": -1.0}, ValueError, r"feature 'planarity' radius must be a positive finite "
                                                        r"number, got -1.0"),
    ({"name": "planarity", "radius": "1"}, TypeError, r"feature 'planarity' radius must be a positive finite number, "
                                                      r"got '1'"),
    ({"name": "linearity", "k": 2}, ValueError, r"feature 'linearity' k must be an int >= 3, got 2"),
    ({"name": "planarity", "radius": 1.0, "k": 8}, ValueError, r"feature 'planarity' takes exactly one of "
                                                               r"\['radius', 'k'\], got \{'radius': 1.0, 'k': 8\}"),
    ({"name": "density", "cell_size": 2.0}, ValueError, r"feature 'density' takes exactly one of \['radius'\]"),
    ({"name": "intensity", "radius": 1.0}, ValueError, r"feature 'intensity' takes no 'radius': only mined features"),
    ({"name": "planarity", "radius": 1.0, "scale": 2}, ValueError, r"feature 'planarity' has unknown keys "
                                                                   r"\['scale'\]; valid keys"),
])
def test_bad_mined_feature_entries(item, error, message):
    with pytest.raises(error, match=message):
        FeatureSpec([item])


def test_a_stored_dimension_named_like_a_miner_is_read_not_mined():
    cloud = cloud_with_colours(50)
    cloud.attributes["planarity"] = np.full(len(cloud), 0.25)
    np.testing.assert_array_equal(FeatureSpec(["planarity"])(cloud)[:, 0], 0.25)
    assert FeatureSpec([{"name": "planarity", "k": 5}]).dimensions == []
