"""The compiled field kernels (numba) give exactly the numpy path's fields."""

import numpy as np
import pytest
from test_receptive_fields import HOODS, rough_tile

from pointseq.pointclouds import field_kernels
from pointseq.pointclouds.receptive_fields import CoveringFieldSampler
from pointseq.pointclouds.subsampling import farthest_point_positions, nearest_kept_slots

pytest.importorskip("numba")


def both(monkeypatch, run):
    """``run()`` with the compiled kernels, then with the numpy fallback."""
    compiled = run()
    monkeypatch.setattr(field_kernels, "AVAILABLE", False)
    fallback = run()
    monkeypatch.setattr(field_kernels, "AVAILABLE", True)
    return compiled, fallback


@pytest.mark.parametrize("subsampling", ["fps", "uniform_fps", "random", "grid"])
@pytest.mark.parametrize("spec", HOODS)
def test_compiled_fields_equal_the_numpy_fields(monkeypatch, spec, subsampling):
    points = rough_tile(3000)
    sampler = CoveringFieldSampler(24, spec, subsampling=subsampling, num_encoding_neighbors=3, cell_size=0.3)
    compiled, fallback = both(monkeypatch, lambda: sampler(points, np.random.default_rng(2)))
    for name in ("indices", "member_offsets", "member_indices", "member_slots", "centres"):
        np.testing.assert_array_equal(getattr(compiled, name), getattr(fallback, name), err_msg=name)


@pytest.mark.parametrize("k", [1, 2, 4])
def test_compiled_kernels_equal_numpy_on_padded_blocks_and_kept_points(monkeypatch, k):
    rng = np.random.default_rng(5)
    counts = np.array([1, 5, 30, 200, 64, 2])
    coords = np.zeros((len(counts), 200, 3), dtype=np.float32)
    valid = np.arange(200)[None, :] < counts[:, None]
    coords[valid] = rng.normal(size=(int(counts.sum()), 3))
    coords[3, 10] = coords[3, 11]  # a duplicate point: ties
    chosen, chosen_numpy = both(monkeypatch, lambda: farthest_point_positions(coords, valid, 16))
    np.testing.assert_array_equal(chosen, chosen_numpy)
    offsets = np.concatenate([[0], np.cumsum(counts)])
    relative = coords[valid].astype(np.float64)
    kept = coords[np.arange(len(counts))[:, None], chosen]
    slots, slots_numpy = both(monkeypatch, lambda: nearest_kept_slots(relative, offsets, kept, k))
    np.testing.assert_array_equal(slots, slots_numpy)


def test_threads_split_the_work_without_changing_it():
    counts = np.array([300, 10, 2000, 1, 500, 700, 90])
    offsets = np.concatenate([[0], np.cumsum(counts)])
    source = np.random.default_rng(1).normal(size=(int(offsets[-1]), 3)) * 10 + 1e5
    member = np.random.default_rng(2).permutation(source.shape[0])
    centres = np.full((len(counts), 3), 1e5)
    one = field_kernels.field_kernel(source, member, centres, offsets, 32, 3, nthreads=1)
    three = field_kernels.field_kernel(source, member, centres, offsets, 32, 3, nthreads=3)
    np.testing.assert_array_equal(one[0], three[0])
    np.testing.assert_array_equal(one[1], three[1])
