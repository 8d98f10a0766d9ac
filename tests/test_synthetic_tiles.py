"""Synthetic LiDAR tiles: reproducible, georeferenced, ASPRS-classified, plausible per class."""

import numpy as np
import pytest

from pointseq.tiles.synthetic import (
    BUILDING, GROUND, HIGH_VEGETATION, NOISE, TILE_KEYS, make_tile, make_tiles,
)


@pytest.fixture(scope="module")
def tiles():
    return make_tiles(3, seed=11)


def test_same_seed_same_tiles_and_tiles_are_keyed(tiles):
    again = make_tiles(2, seed=11)
    for a, b in zip(tiles, again):
        for key in TILE_KEYS:
            np.testing.assert_array_equal(a[key], b[key])
    other = make_tiles(1, seed=12)[0]
    assert len(other["xyz"]) != len(tiles[0]["xyz"]) or not np.array_equal(other["xyz"], tiles[0]["xyz"])


def test_dtypes_shapes_and_georeferenced_offset(tiles):
    for tile in tiles:
        n = len(tile["xyz"])
        assert 20_000 <= n <= 70_000
        assert tile["xyz"].dtype == np.float64 and tile["xyz"].shape == (n, 3)
        assert tile["intensity"].dtype == np.uint16
        for key in ("classification", "return_number", "number_of_returns"):
            assert tile[key].dtype == np.uint8 and tile[key].shape == (n,)
        low, high = tile["xyz"].min(axis=0), tile["xyz"].max(axis=0)
        assert 4.9e5 < low[0] and high[0] < 5.4e5 and 5.39e6 < low[1] and high[1] < 5.44e6
        np.testing.assert_allclose(high[:2] - low[:2], [60.0, 60.0], atol=1.0)
        ground_z = tile["xyz"][tile["classification"] == GROUND, 2]
        assert 230 < np.median(ground_z) < 370 and np.ptp(ground_z) < 12


def test_every_class_present_in_plausible_proportions(tiles):
    codes = np.concatenate([t["classification"] for t in tiles])
    assert set(np.unique(codes)) == {GROUND, HIGH_VEGETATION, BUILDING, NOISE}
    share = {c: np.mean(codes == c) for c in (GROUND, HIGH_VEGETATION, BUILDING, NOISE)}
    assert 0.5 < share[GROUND] < 0.9
    assert 0.04 < share[HIGH_VEGETATION] < 0.35 and 0.03 < share[BUILDING] < 0.3
    assert 0.0005 < share[NOISE] < 0.01


def test_returns_and_heights_tell_the_classes_apart(tiles):
    tile = tiles[0]
    codes, z = tile["classification"], tile["xyz"][:, 2]
    rn, nr = tile["return_number"], tile["number_of_returns"]
    assert (rn >= 1).all() and (rn <= nr).all()
    assert np.mean(nr[codes == HIGH_VEGETATION] > 1) > 0.7  # canopy splits pulses
    assert np.mean(nr[codes == BUILDING] == 1) > 0.6  # roofs mostly do not
    ground = np.median(z[codes == GROUND])
    assert np.median(z[codes == HIGH_VEGETATION]) > ground + 3
    assert np.median(z[codes == BUILDING]) > ground + 2.5
    assert np.abs(z[codes == NOISE] - ground).min() > 3  # noise is isolated, far off the terrain


def test_density_is_uneven_and_origin_is_respected():
    tile = make_tile(np.random.default_rng(3), origin=(1000.0, 2000.0, 50.0))
    xy = tile["xyz"][:, :2] - [1000.0, 2000.0]
    assert (xy >= 0).all() and (xy < 60).all()
    counts = np.histogram2d(xy[:, 0], xy[:, 1], bins=6, range=[[0, 60], [0, 60]])[0]
    assert counts.max() > 1.5 * counts.min()


@pytest.mark.parametrize("size", [1.0, 5.0, 10.0, 20.0, 24.0])
def test_small_tiles_hold_ground_inside_the_tile(size):
    for seed in range(3):
        tile = make_tile(np.random.default_rng(seed), size=size, origin=(0.0, 0.0, 0.0))
        xy = tile["xyz"][:, :2]
        assert (xy >= 0).all() and (xy < size).all()
        assert (tile["classification"] == GROUND).sum() > 0.5 * size * size  # holes scale with the tile
        roofs = tile["xyz"][tile["classification"] == BUILDING]
        if size < 8:  # no building fits with its 2 m margin
            assert len(roofs) == 0


def test_bad_arguments_are_named():
    with pytest.raises(ValueError, match="n must be an int >= 1, got 0"):
        make_tiles(0)
    with pytest.raises(ValueError, match="size must be"):
        make_tile(np.random.default_rng(0), size=-1.0)
