"""Spatial blocks: a tile cut block by block gets exactly the whole tile's fields and predictions."""

import numpy as np
import pytest
from test_receptive_fields import HOODS, rough_tile

from pointseq.pointclouds.blocks import BlockPlan, TileAccumulator, block_halo, tile_blocks
from pointseq.pointclouds.neighborhoods import SupportGrid, grid_supports
from pointseq.pointclouds.propagation import PropagationAccumulator, propagate
from pointseq.pointclouds.receptive_fields import CoveringFieldSampler

CASES = [(spec, False) for spec in HOODS] + [
    (dict(HOODS[0], separation_factor=2.5), False),  # above the covering limit: the coverage pass adds fields
    (dict(HOODS[1], separation_factor=3.0), False),
    (HOODS[0], True),  # center_on_pcloud
    (dict(HOODS[2], separation_factor=3.0), True),
]


def one_hot(labels, indices, fields, num_classes=3):
    """'Predictions' of each field: the one-hot true labels of its kept points."""
    return np.eye(num_classes, dtype=np.float32)[labels[indices][fields.indices]]


def blocked(sampler, points, labels, block_points):
    tile, blocks = TileAccumulator(len(points), 3), []
    for block in tile_blocks(sampler, points, block_points):
        accumulator = PropagationAccumulator(block.fields, 3)
        accumulator.add(0, one_hot(labels, block.indices, block.fields))
        tile.add(block, accumulator)
        blocks.append(block)
    return tile.result(), blocks, tile.counts


@pytest.mark.parametrize("spec,center", CASES)
def test_blocks_cut_exactly_the_whole_tiles_fields_and_predictions(spec, center):
    points = rough_tile(2500)
    labels = ((points[:, 2] > np.median(points[:, 2])) + (points[:, 0] % 7 > 3)).astype(np.int64)
    sampler = CoveringFieldSampler(24, spec, num_encoding_neighbors=2, center_on_pcloud=center)
    whole = sampler(points)
    expected = propagate(whole, one_hot(labels, np.arange(len(points)), whole))
    result, blocks, counts = blocked(sampler, points, labels, 500)
    assert len(blocks) >= 6 and all(len(b.indices) < len(points) for b in blocks)
    # the same fields (centre -> kept source points), each cut by exactly one block
    whole_fields = {tuple(c): tuple(i) for c, i in zip(whole.centres.round(9), whole.indices)}
    block_fields = [(tuple(c), tuple(b.indices[i])) for b in blocks for c, i in zip(b.fields.centres.round(9), b.fields.indices)]
    assert len(block_fields) == len(whole) and dict(block_fields) == whole_fields
    # every point in as many fields as in the whole tile (so at least one), and the same result
    assert np.array_equal(counts, np.bincount(whole.member_indices, minlength=len(points))) and counts.min() >= 1
    np.testing.assert_allclose(result, expected, atol=1e-6)
    assert np.array_equal(result.argmax(axis=1), expected.argmax(axis=1))


def test_a_small_tile_or_a_whole_cloud_neighbourhood_is_one_block():
    points = rough_tile(500)
    sampler = CoveringFieldSampler(16, HOODS[1])
    blocks = list(tile_blocks(sampler, points, len(points)))
    assert len(blocks) == 1 and blocks[0].indices is None and len(blocks[0].fields) == len(sampler(points))
    whole = CoveringFieldSampler(16, dict(HOODS[0], radius=0))
    blocks = list(tile_blocks(whole, points, 50))
    assert len(blocks) == 1 and len(blocks[0].fields) == 1
    with pytest.raises(ValueError, match="block_points must be an int >= 1, got 0"):
        tile_blocks(sampler, points, 0)  # refused at once, not at the first block


def test_every_position_has_one_owner_and_blocks_read_their_cores_with_the_halo():
    points = rough_tile(3000)
    local = points[:, :2] - points[:, :2].min(axis=0)
    plan = BlockPlan.for_tile(local, 400, halo=2.0)
    owner = plan.owner(local)
    counts = np.bincount(owner, minlength=len(plan))
    assert len(plan) >= 8 and counts.max() <= 2 * 400  # about block_points per core (quantile edges)
    origin = points.min(axis=0)
    for number in range(len(plan)):
        reads = plan.read_mask(points, origin, number)
        assert reads[owner == number].all()  # the core ...
        near = np.zeros(len(points), dtype=bool)  # ... and everything within the halo of an owned position
        core = local[owner == number]
        if core.size:
            lo, hi = core.min(axis=0) - 1.99, core.max(axis=0) + 1.99
            near = np.all((local >= lo) & (local <= hi), axis=1)
        assert reads[near].all()
    sampler = CoveringFieldSampler(16, dict(HOODS[0], separation_factor=2.5), center_on_pcloud=True)
    assert block_halo(sampler) == pytest.approx(3 * 3.0 + 3.0 * 2 / 3 ** 0.5 / 2, rel=1e-5)


def test_the_tile_grid_gives_a_block_the_tiles_own_nodes():
    points = rough_tile(2000)
    sampler = CoveringFieldSampler(16, HOODS[0])
    hood = sampler.neighborhood
    local = points - points.min(axis=0)
    grid = SupportGrid.over(local.min(axis=0), local.max(axis=0), hood.spacing)
    whole = grid_supports(local, hood, hood.spacing)
    np.testing.assert_array_equal(grid_supports(local, hood, hood.spacing, grid), whole)
    part = local[local[:, 0] < 20]
    nodes = grid_supports(part, hood, hood.spacing, grid)  # a subset of the tile's nodes, not a grid of its own
    rows = {tuple(n) for n in whole}
    assert nodes.shape[0] < whole.shape[0] and all(tuple(n) in rows for n in nodes)


def test_bad_tiles_are_refused_before_any_block():
    sampler = CoveringFieldSampler(16, HOODS[0])
    points = rough_tile(500)
    points[7, 1] = np.nan
    with pytest.raises(ValueError, match="points must be finite"):
        tile_blocks(sampler, points, 100)
    with pytest.raises(TypeError, match="sampler must be a CoveringFieldSampler, got dict"):
        tile_blocks({"type": "sphere"}, points, 100)


def test_the_tile_accumulator_refuses_half_added_blocks_and_uncovered_points():
    points = rough_tile(400)
    sampler = CoveringFieldSampler(8, HOODS[1])
    block = next(iter(tile_blocks(sampler, points, 10_000)))
    accumulator = PropagationAccumulator(block.fields, 2)
    accumulator.add(0, np.full((1, 8, 2), 0.5, dtype=np.float32))
    tile = TileAccumulator(len(points), 2)
    with pytest.raises(ValueError, match=f"{len(block.fields) - 1} fields of block 0 were never added"):
        tile.add(block, accumulator)
    with pytest.raises(ValueError, match=f"{len(points)} points lie in no field: the blocks do not cover the tile"):
        tile.result()


SAMPLERS = [
    dict(subsampling="random"),
    dict(subsampling="grid", cell_size=0.3),
    dict(subsampling="uniform_fps"),
    dict(subsampling="fps", support_strategy="fps", support_strategy_num_points=40),
    dict(subsampling="random", support_strategy="fps", support_strategy_num_points=40, support_strategy_fast=2),
    dict(subsampling="fps", support_strategy="fps", support_strategy_num_points=40, support_strategy_fast=True),
]


@pytest.mark.parametrize("options", SAMPLERS)
@pytest.mark.parametrize("hood", [HOODS[0], HOODS[1]])
def test_blocks_equal_the_whole_tile_for_every_sampler_random_ones_included(options, hood):
    points = rough_tile(2500)
    sampler = CoveringFieldSampler(24, hood, num_encoding_neighbors=2, **options)
    whole = sampler(points, np.random.default_rng(3))
    blocks = list(tile_blocks(sampler, points, 500, np.random.default_rng(3)))
    assert len(blocks) >= 6
    whole_fields = {tuple(c): tuple(i) for c, i in zip(whole.centres.round(9), whole.indices)}
    block_fields = [(tuple(c), tuple(b.indices[i])) for b in blocks for c, i in zip(b.fields.centres.round(9), b.fields.indices)]
    assert len(block_fields) == len(whole) and dict(block_fields) == whole_fields
    # the same member slots: each point's nearest kept points in each field
    whole_slots = {(tuple(c), int(m)): tuple(s) for f, c in enumerate(whole.centres.round(9))
                   for m, s in zip(whole.member_indices[whole.member_offsets[f]:whole.member_offsets[f + 1]],
                                   whole.member_slots[whole.member_offsets[f]:whole.member_offsets[f + 1]])}
    for b in blocks:
        f = b.fields
        for g, c in enumerate(f.centres.round(9)):
            rows = slice(f.member_offsets[g], f.member_offsets[g + 1])
            for m, s in zip(b.indices[f.member_indices[rows]], f.member_slots[rows]):
                assert whole_slots[(tuple(c), int(m))] == tuple(s)
    if options["subsampling"] in ("random", "grid"):  # another generator, other fields
        other = sampler(points, np.random.default_rng(4))
        assert not np.array_equal(other.indices, whole.indices)
