"""build_sparse_grid: cells, keys, hierarchy maps, reduced features and labels, errors."""

import re
import dataclasses

import numpy as np
import pytest

from pointseq.pointclouds.sparse_grid import SparseGrid, build_sparse_grid

# Five points, unit cells; the min corner is (0, 0, 0) because of the first point.
POINTS = np.array(
    [
        [0.0, 0.0, 0.0],  # cell (0,0,0)
        [0.5, 0.2, 0.9],  # cell (0,0,0)
        [1.2, 0.1, 0.3],  # cell (1,0,0)
        [3.9, 3.9, 3.9],  # cell (3,3,3)
        [3.1, 3.5, 3.0],  # cell (3,3,3)
    ]
)
FEATURES = np.array([[1.0, 10.0], [3.0, 20.0], [5.0, 30.0], [7.0, 40.0], [9.0, 50.0]])
LABELS = np.array([4, 2, 1, 0, 0])


@pytest.fixture(scope="module")
def grid() -> SparseGrid:
    return build_sparse_grid(POINTS, FEATURES, LABELS, cell_size=1.0, depth=3)


def test_depth0_cells_keys_and_counts(grid):
    np.testing.assert_array_equal(grid.dims[0], [4, 4, 4])
    # key = (i * 4 + j) * 4 + k
    np.testing.assert_array_equal(grid.keys[0], [0, 16, 63])
    np.testing.assert_array_equal(grid.cell_coords[0], [[0, 0, 0], [1, 0, 0], [3, 3, 3]])
    np.testing.assert_array_equal(grid.counts[0], [2, 1, 2])
    np.testing.assert_array_equal(grid.point_to_cell, [0, 0, 1, 2, 2])
    np.testing.assert_allclose(grid.centres[0], [[0.5, 0.5, 0.5], [1.5, 0.5, 0.5], [3.5, 3.5, 3.5]])
    assert grid.centres[0].dtype == np.float32
    assert grid.num_cells(0) == 3 and grid.num_points == 5 and grid.num_features == 2


def test_deeper_levels_double_the_cell_size(grid):
    assert grid.cell_sizes() == (1.0, 2.0, 4.0)
    np.testing.assert_array_equal(grid.dims[1], [2, 2, 2])
    np.testing.assert_array_equal(grid.keys[1], [0, 7])
    np.testing.assert_array_equal(grid.counts[1], [3, 2])
    np.testing.assert_allclose(grid.centres[1], [[1, 1, 1], [3, 3, 3]])
    np.testing.assert_array_equal(grid.dims[2], [1, 1, 1])
    np.testing.assert_array_equal(grid.keys[2], [0])
    np.testing.assert_array_equal(grid.counts[2], [5])
    np.testing.assert_allclose(grid.centres[2], [[2, 2, 2]])


def test_parent_and_children_maps(grid):
    assert len(grid.parent) == 2 and len(grid.children) == 2
    np.testing.assert_array_equal(grid.parent[0], [0, 0, 1])
    np.testing.assert_array_equal(grid.parent[1], [0, 0])
    np.testing.assert_array_equal(grid.children_ptr[0], [0, 2, 3])
    np.testing.assert_array_equal(grid.children[0], [0, 1, 2])
    np.testing.assert_array_equal(grid.children_ptr[1], [0, 2])


def test_mean_features_and_majority_labels(grid):
    np.testing.assert_allclose(grid.features, [[2.0, 15.0], [5.0, 30.0], [8.0, 45.0]])
    assert grid.features.dtype == np.float32
    # Cell 0 holds labels {4, 2}: a tie goes to the smaller label.
    np.testing.assert_array_equal(grid.labels, [2, 1, 0])


def test_majority_label_with_clear_winner():
    pts = np.zeros((5, 3))
    g = build_sparse_grid(pts, labels=[7, 3, 7, 3, 7], cell_size=0.5, depth=1)
    np.testing.assert_array_equal(g.labels, [7])
    assert g.features is None and g.num_features == 0 and g.parent == ()


def test_one_dimensional_features_become_a_column():
    g = build_sparse_grid(POINTS, FEATURES[:, 0], cell_size=1.0, depth=1)
    np.testing.assert_allclose(g.features, [[2.0], [5.0], [8.0]])


def test_origin_is_the_min_corner_and_centres_in_input_frame():
    g = build_sparse_grid(POINTS + [100.0, -50.0, 7.0], cell_size=1.0, depth=2)
    np.testing.assert_allclose(g.origin, [100.0, -50.0, 7.0])
    np.testing.assert_allclose(g.centres[0][0], [100.5, -49.5, 7.5])


def test_hierarchy_invariants_on_a_random_cloud():
    rng = np.random.default_rng(3)
    pts = rng.normal(size=(2000, 3)) * [3.0, 2.0, 1.0]
    labels = rng.integers(0, 4, size=2000)
    g = build_sparse_grid(pts, labels=labels, cell_size=0.25, depth=4)
    for t in range(4):
        keys = g.keys[t]
        assert np.all(np.diff(keys) > 0), "keys must be sorted and unique"
        c = g.cell_coords[t]
        dims = g.dims[t]
        np.testing.assert_array_equal(keys, (c[:, 0] * dims[1] + c[:, 1]) * dims[2] + c[:, 2])
        assert np.all(c < g.dims[t]) and np.all(c >= 0)
        assert g.counts[t].sum() == 2000
    for t in range(3):
        # Parent coordinates are the child coordinates halved.
        np.testing.assert_array_equal(g.cell_coords[t + 1][g.parent[t]], g.cell_coords[t] >> 1)
        np.testing.assert_array_equal(
            np.bincount(g.parent[t], weights=g.counts[t]), g.counts[t + 1]
        )
        # The children grouping is the inverse of the parent map.
        ptr, children = g.children_ptr[t], g.children[t]
        assert ptr[-1] == g.num_cells(t)
        owner = np.repeat(np.arange(g.num_cells(t + 1)), np.diff(ptr))
        np.testing.assert_array_equal(g.parent[t][children], owner)
        np.testing.assert_array_equal(np.sort(children), np.arange(g.num_cells(t)))
    # Every point lies inside its depth-0 cell.
    offset = np.abs(pts - g.centres[0][g.point_to_cell])
    assert np.all(offset <= 0.125 + 1e-5)
    # Majority labels agree with a direct count.
    for cell in rng.choice(g.num_cells(0), size=20, replace=False):
        counts = np.bincount(labels[g.point_to_cell == cell], minlength=4)
        assert g.labels[cell] == np.argmax(counts)


def test_grid_is_frozen_and_read_only(grid):
    with pytest.raises(dataclasses.FrozenInstanceError):
        grid.depth = 5
    with pytest.raises(ValueError, match="read-only"):
        grid.keys[0][0] = 1
    with pytest.raises(IndexError, match=r"depth index t must be an int in \[0, 3\), got 3"):
        grid.num_cells(3)


@pytest.mark.parametrize(
    "points, kwargs, match",
    [
        (np.zeros((0, 3)), {}, r"at least one point"),
        (np.zeros((4, 2)), {}, r"points must have shape \(N, 3\), got shape \(4, 2\)"),
        (np.zeros(3), {}, r"points must have shape \(N, 3\), got shape \(3,\)"),
        (np.array([[0.0, np.nan, 0.0], [1, 1, 1]]), {}, r"points must be finite, got 1 point"),
        (np.array([[0.0, np.inf, 0.0]]), {}, r"points must be finite"),
        (np.array([["a", "b", "c"]]), {}, r"points must be numeric"),
        (POINTS, {"cell_size": 0}, r"cell_size must be a positive finite number, got 0"),
        (POINTS, {"cell_size": -1.0}, r"cell_size must be a positive finite number, got -1.0"),
        (POINTS, {"cell_size": float("nan")}, r"cell_size must be a positive finite number"),
        (POINTS, {"depth": 0}, r"depth must be an int >= 1, got 0"),
        (POINTS, {"depth": 1.5}, r"depth must be an int >= 1, got 1.5"),
        (POINTS, {"depth": True}, r"depth must be an int >= 1, got True"),
        (POINTS, {"features": np.zeros((4, 2))}, r"features must have shape \(5,\) or \(5, F\)"),
        (POINTS, {"labels": np.zeros(4, int)}, r"labels must have shape \(5,\) to match 5 points"),
        (POINTS, {"labels": np.zeros(5)}, r"labels must be integers, got dtype float64"),
        (np.array([[0, 0, 0], [1e15, 1e15, 1e15]]), {"cell_size": 1e-6}, r"overflow int64"),
    ],
)
def test_bad_input_is_rejected(points, kwargs, match):
    args = {"cell_size": 1.0, "depth": 2, **kwargs}
    with pytest.raises(Exception, match=match) as raised:
        build_sparse_grid(points, **args)
    type_mistake = re.search(r"numeric|1\.5|True|integers, got dtype", match)
    assert raised.type is (TypeError if type_mistake else ValueError)
