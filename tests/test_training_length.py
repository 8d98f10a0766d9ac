"""Training on files is counted in optimiser updates: bounded whatever the tiles' size, with
warnings when the files are too small or too sparse for the recipe's fields."""

import json

import numpy as np
import pytest

import pointseq
from pointseq.tiles import recipe
from pointseq.tiles.synthetic import make_tiles, write_tiles
from pointseq.tiles.training import MIN_EPOCH_BATCHES, training_plan


@pytest.mark.parametrize("batches_per_pass", [1, 7, 25, 149, 150, 151, 9515])
def test_the_updates_do_not_depend_on_the_data_size_beyond_one_epoch(batches_per_pass):
    plan = training_plan(batches_per_pass, 150)
    assert 150 <= plan["updates"] < 150 + plan["epoch_size"]
    assert plan["updates"] == plan["epochs"] * plan["epoch_size"]
    assert min(MIN_EPOCH_BATCHES, 150) <= plan["epoch_size"] <= 150
    if MIN_EPOCH_BATCHES <= batches_per_pass <= 150:
        assert plan["epoch_size"] == batches_per_pass  # an epoch is a pass over the data


def test_a_tiny_tile_trains_the_asked_updates_and_warns(tmp_path):
    tile = write_tiles(str(tmp_path), make_tiles(1, seed=5, size=20.0, density=2.0))
    seg = pointseq.Segmenter("pointnet", updates=30, seed=0)
    with pytest.warns(UserWarning, match=r"the training files give only \d+ fields: each is seen about \d+ times"):
        seg.fit(tile, output=str(tmp_path / "run"), verbose=0)
    assert seg.report["updates"] >= 30 and seg.report["epochs"] * 20 == seg.report["updates"]
    with open(tmp_path / "run" / "train_spec.json") as f:
        assert json.load(f)["updates"] == 30  # what was asked, so a rerun of the same call resumes
    assert len(seg.report["history"]["loss"]) == seg.report["epochs"]


def test_sparse_files_warn(tmp_path):
    tile = make_tiles(1, seed=6, size=20.0, density=2.0)[0]
    keep = np.random.default_rng(0).random(len(tile["xyz"])) < 0.08
    sparse = write_tiles(str(tmp_path), [{k: v[keep] for k, v in tile.items()}])
    with pytest.warns(UserWarning, match=r"the training files are sparse for the fields: \d+ points in a field's"):
        pointseq.Segmenter("pointnet", updates=20).fit(sparse, output=str(tmp_path / "run"), verbose=0)


def test_the_cache_built_before_the_plan_serves_the_planned_run(tmp_path):
    """The plan needs the cache's batch count; the run with the planned epoch size reuses that
    cache (its fingerprint covers the encoder as specified, not the padded rows it settled)."""
    tile = write_tiles(str(tmp_path), make_tiles(1, seed=7, size=20.0, density=2.0))
    seg = pointseq.Segmenter({"type": "shadow", "depth": 3, "width": 8}, updates=20)
    with pytest.warns(UserWarning, match="give only"):
        seg.fit(tile, output=str(tmp_path / "run"), verbose=0)
    assert seg.report["updates"] == 20 and seg.pipeline["encoder"]["max_rows"] is not None


@pytest.mark.parametrize("batches_per_pass", [1, 5, 15, 56, 150, 400, 5000])
def test_left_to_the_recipe_the_updates_grow_with_the_fields_within_bounds(batches_per_pass):
    plan = training_plan(batches_per_pass, 150, recipe.PASSES)
    asked = min(max(150, recipe.PASSES * batches_per_pass), recipe.MAX_UPDATES)
    assert asked <= plan["updates"] < asked + plan["epoch_size"]
    assert 150 <= plan["updates"] <= recipe.MAX_UPDATES + plan["epoch_size"]
    assert training_plan(batches_per_pass, 3000, recipe.PASSES)["updates"] >= 3000  # a larger minimum stays


def test_asked_updates_are_not_scaled(tmp_path):
    tiles = write_tiles(str(tmp_path), make_tiles(2, seed=8, size=30.0, density=3.0))
    seg = pointseq.Segmenter("pointnet", updates=20, seed=0)
    seg.fit(tiles, output=str(tmp_path / "asked"), verbose=0)
    assert seg.report["updates"] < 40 and seg.train_spec(tiles)["updates"] == 20
    default = pointseq.Segmenter("pointnet", seed=0).train_spec(tiles)
    assert "updates" not in default  # left to the model type: passes over the fields decide
