"""Neighbour and strided maps of sparse grids against a brute-force dictionary lookup."""

import itertools

import numpy as np
import pytest

import pointseq.pointclouds.grid_neighbors as grid_neighbors
from pointseq.pointclouds.grid_neighbors import child_positions, children_rows, kernel_offsets, neighbor_rows
from pointseq.pointclouds.shadow_batch import assemble_shadow_batch
from pointseq.pointclouds.sparse_grid import build_sparse_grid


def random_grids(count, seed=0, depth=3, offset=0.0):
    """Sparse clouds (many cells without neighbours, cells on every border) at ``offset``."""
    rng = np.random.default_rng(seed)
    grids = []
    for _ in range(count):
        n = int(rng.integers(1, 150))
        pts = rng.uniform(0, rng.uniform(0.5, 4.0, 3), size=(n, 3)) + offset
        grids.append(build_sparse_grid(pts, cell_size=0.3, depth=depth))
    return grids


def brute_neighbors(coords, kernel_size=3):
    """Row of each cell's neighbour at each offset, by dictionary lookup (-1: none)."""
    table = {tuple(c): row for row, c in enumerate(coords.tolist())}
    r = kernel_size // 2
    offsets = list(itertools.product(range(-r, r + 1), repeat=3))
    return np.array([[table.get((c[0] + a, c[1] + b, c[2] + d), -1) for a, b, d in offsets]
                     for c in coords.tolist()], dtype=np.int64).reshape(len(coords), len(offsets))


def test_kernel_offsets_order_and_errors():
    offsets = kernel_offsets(3)
    assert offsets.shape == (27, 3) and offsets[13].tolist() == [0, 0, 0]
    assert offsets[0].tolist() == [-1, -1, -1] and offsets[26].tolist() == [1, 1, 1]
    assert kernel_offsets(5).shape == (125, 3)
    with pytest.raises(ValueError, match="kernel_size must be odd"):
        kernel_offsets(4)


@pytest.mark.parametrize("offset", [0.0, 5e6])
@pytest.mark.parametrize("dense_table", [True, False])
def test_neighbor_rows_equal_a_dictionary_lookup(offset, dense_table, monkeypatch):
    if not dense_table:  # force the sorted search
        monkeypatch.setattr(grid_neighbors, "_SMALL_TABLE", 0)
        monkeypatch.setattr(grid_neighbors, "_TABLE_PER_QUERY", 0)
    grids = random_grids(12, seed=1, offset=offset)
    missing = 0
    for t in range(3):
        # One grid at a time and all grids at once (rows of the concatenation).
        coords = [g.cell_coords[t] for g in grids]
        starts = np.concatenate([[0], np.cumsum([len(c) for c in coords])])
        joint = neighbor_rows(np.concatenate(coords), np.stack([g.dims[t] for g in grids]), starts)
        for g, c, start in zip(grids, coords, starts):
            expected = brute_neighbors(c)
            np.testing.assert_array_equal(neighbor_rows(c, g.dims[t]), expected)
            np.testing.assert_array_equal(joint[start:start + len(c)], np.where(expected >= 0, expected + start, -1))
            missing += int((expected < 0).sum())
    assert missing > 0  # empty neighbours and borders were exercised


def test_neighbor_rows_kernel_5_and_per_grid_fallback(monkeypatch):
    grids = random_grids(4, seed=2, depth=1)
    coords = [g.cell_coords[0] for g in grids]
    starts = np.concatenate([[0], np.cumsum([len(c) for c in coords])])
    dims = np.stack([g.dims[0] for g in grids])
    expected = np.concatenate([np.where((b := brute_neighbors(c, 5)) >= 0, b + s, -1)
                               for c, s in zip(coords, starts)])
    np.testing.assert_array_equal(neighbor_rows(np.concatenate(coords), dims, starts, kernel_size=5), expected)
    monkeypatch.setattr(grid_neighbors, "_MAX_KEY", int(np.prod(dims + 4, axis=1).max()) + 1)
    np.testing.assert_array_equal(neighbor_rows(np.concatenate(coords), dims, starts, kernel_size=5), expected)


def test_neighbor_rows_rejects_bad_input():
    with pytest.raises(ValueError, match=r"coords must have shape \(n, 3\)"):
        neighbor_rows(np.zeros((4, 2), dtype=np.int64), [2, 2, 2])
    with pytest.raises(ValueError, match="starts must rise from 0"):
        neighbor_rows(np.zeros((4, 3), dtype=np.int64), [2, 2, 2], [0, 3])


def test_strided_maps_equal_a_dictionary_lookup():
    for grid in random_grids(6, seed=3):
        for t in range(grid.depth - 1):
            pos = child_positions(grid.cell_coords[t])
            parent_coords = grid.cell_coords[t + 1][grid.parent[t]]
            within = grid.cell_coords[t] - 2 * parent_coords
            np.testing.assert_array_equal(pos, within @ [4, 2, 1])
            children = children_rows(grid.parent[t], pos, grid.num_cells(t + 1))
            table = {(int(p), int(q)): row for row, (p, q) in enumerate(zip(grid.parent[t], pos))}
            expected = [[table.get((p, q), -1) for q in range(8)] for p in range(grid.num_cells(t + 1))]
            np.testing.assert_array_equal(children, expected)


def test_batch_maps_are_local_rows_with_the_zero_row_for_missing_and_padding():
    grids = random_grids(5, seed=4, offset=5e6)
    rows = [max(g.num_cells(t) for g in grids) + 2 for t in range(3)]
    x = assemble_shadow_batch(grids, rows)
    for k, g in enumerate(grids):
        for t in range(3):
            n = g.num_cells(t)
            expected = brute_neighbors(g.cell_coords[t])
            np.testing.assert_array_equal(x[f"neighbors_{t}"][k, :n], np.where(expected >= 0, expected, rows[t]))
            assert (x[f"neighbors_{t}"][k, n:] == rows[t]).all()
            if t < 2:
                pos = child_positions(g.cell_coords[t])
                np.testing.assert_array_equal(x[f"position_{t}"][k, :n], pos)
                children = children_rows(g.parent[t], pos, g.num_cells(t + 1))
                m = g.num_cells(t + 1)
                np.testing.assert_array_equal(x[f"children_{t}"][k, :m], np.where(children >= 0, children, rows[t]))
                assert (x[f"children_{t}"][k, m:] == rows[t]).all()
    assert x["neighbors_0"].dtype == np.int32 and x["children_0"].dtype == np.int32
    assert "neighbors_0" not in assemble_shadow_batch(grids, rows, neighbors=False)
