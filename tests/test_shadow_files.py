"""The sparse shadow path from point-cloud files: per-field grids, the grid cache, train and predict."""

import keras
import numpy as np
import pytest

from conftest import make_deterministic
from pointseq.offline import OfflineSequencer, OfflineStorageError, PointCloudSource
from pointseq.sequencers.models.shadow_model import build_shadow_segmentation_model
from pointseq.tiles.pipeline import predict_cloud
from pointseq.tiles.recipe import compile_for_recipe
from pointseq.tiles.synthetic import make_tiles
from pointseq.pointclouds import CoveringFieldSampler, build_sparse_grid, classification_metrics, read_point_cloud
from pointseq.pointclouds.field_grids import SparseGridPreProcessor
from pointseq.sequencers import EpochSync, SparseShadowSequencer, build_sequencer

laspy = pytest.importorskip("laspy")

SAMPLER = {"type": "CoveringFieldSampler", "num_points": 128,
           "neighborhood": {"type": "rectangular2d", "radius": 5.0, "separation_factor": 1.0}}
GRID = {"type": "SparseGridPreProcessor", "cell_size": 1.0, "depth": 3, "_note": "comments are ignored"}
CLASSES = {"codes": [2, 5, 6], "names": ["ground", "vegetation", "building"], "ignore": [7]}


def write_tiles(folder, count, seed, size=30.0):
    paths = []
    for i, tile in enumerate(make_tiles(count, seed=seed, size=size, density=2.0)):
        las = laspy.create(point_format=1, file_version="1.2")
        las.header.offsets = tile["xyz"].min(axis=0)
        las.header.scales = [0.001] * 3
        las.x, las.y, las.z = tile["xyz"].T
        for key in ("classification", "intensity", "return_number", "number_of_returns"):
            setattr(las, key, tile[key])
        paths.append(str(folder / f"tile{seed}_{i}.las"))
        las.write(paths[-1])
    return paths


def files_spec(paths, grid=GRID):
    return {"paths": paths, "sampler": SAMPLER, "grid": grid, "classes": CLASSES,
            "features": ["intensity", "return_number", "number_of_returns"]}


def test_field_grids_equal_one_grid_per_field_and_specs_are_checked():
    rng = np.random.default_rng(0)
    points = rng.uniform(0, 20, (600, 3))
    fields = CoveringFieldSampler(64, {"type": "sphere", "radius": 4.0})(points)
    pre = SparseGridPreProcessor.from_spec({"type": "HierarchicalSparseGridPreProcessor", "cell_size": 0.8,
                                            "depth": 3, "_c": 1})
    grids = pre(points, fields, points[:, :1])
    assert len(grids) == len(fields)
    for f in (0, len(fields) - 1):
        relative = points[fields.indices[f]] - fields.centres[f]
        height = relative[:, 2] - np.percentile(relative[:, 2], 1.0)
        alone = build_sparse_grid(relative, np.column_stack([height, points[fields.indices[f], :1]]),
                                  cell_size=0.8, depth=3)
        for name in ("keys", "cell_coords", "centres", "parent", "children_ptr"):
            for a, b in zip(getattr(grids[f], name), getattr(alone, name)):
                np.testing.assert_array_equal(a, b, err_msg=name)
        np.testing.assert_array_equal(grids[f].point_to_cell, alone.point_to_cell)
        np.testing.assert_allclose(grids[f].features, alone.features, rtol=1e-6)
    with pytest.raises(TypeError, match=r"unknown key\(s\) \['cellsize'\]"):
        SparseGridPreProcessor.from_spec({"type": "SparseGridPreProcessor", "cellsize": 1, "depth": 2})
    with pytest.raises(ValueError, match="type must be one of"):
        SparseGridPreProcessor.from_spec({"type": "Grid", "cell_size": 1, "depth": 2})
    with pytest.raises(ValueError, match=r"max_rows must be a list of 2 row counts"):
        SparseGridPreProcessor(1.0, 2, max_rows=[5])


def test_cells_relative_to_the_field_centre_keep_float64_precision():
    rng = np.random.default_rng(1)
    offset = np.array([5e6, 5e6, 300.0])
    points = offset + rng.uniform(0, 10, (400, 3))
    fields = CoveringFieldSampler(64, {"type": "cylinder", "radius": 3.0})(points)
    grids = SparseGridPreProcessor(0.1, 2)(points, fields)
    for f in range(len(fields)):
        truth = points[fields.indices[f]] - fields.centres[f]  # float64 throughout
        cells = np.floor((truth - truth.min(axis=0)) / 0.1).astype(np.int64)
        np.testing.assert_array_equal(grids[f].cell_coords[0][grids[f].point_to_cell], cells)
        centre = truth.min(axis=0) + (cells + 0.5) * 0.1
        np.testing.assert_allclose(grids[f].centres[0][grids[f].point_to_cell], centre, atol=1e-5)
    # The same cells from float32 absolute coordinates are wrong at this offset.
    naive = points.astype(np.float32)[fields.indices[0]] - fields.centres[0].astype(np.float32)
    naive_cells = np.floor((naive - naive.min(axis=0)) / np.float32(0.1))
    truth = points[fields.indices[0]] - fields.centres[0]
    assert np.any(naive_cells != np.floor((truth - truth.min(axis=0)) / 0.1))


def test_grid_cache_from_las_files_reopens_and_equals_an_in_memory_build(tmp_path):
    paths = write_tiles(tmp_path, 2, seed=0)
    spec, path = files_spec(paths), tmp_path / "grids.h5"
    seq = OfflineSequencer(SparseShadowSequencer(batch_size=4, seed=0), path, offline_pcloud=spec, chunk_size=2,
                           progress=False)
    source = PointCloudSource.from_spec(spec)
    source.scan()
    rows = source.encoder.max_rows
    grids = [g for i in range(len(paths)) for g in source.file_samples(i)]
    memory = SparseShadowSequencer(grids, batch_size=4, max_rows=list(rows), shuffle=False)
    assert rows[0] <= 128 and len(seq) == len(memory) == -(-len(grids) // 4)
    noise_cells = 0
    for i in range(len(seq)):
        (x, y, sw), (mx, my, msw) = seq[i], memory[i]
        assert set(x) == set(mx)
        for key in mx:
            np.testing.assert_array_equal(x[key], mx[key], err_msg=key)
        trained = my < 3  # 3: ignored (noise) cells: label 0 and weight 0 in the cache
        np.testing.assert_array_equal(y, np.where(trained, my, 0))
        np.testing.assert_array_equal(sw, msw * trained)
        noise_cells += int((msw * ~trained).sum())
    assert noise_cells > 0
    stamp = path.stat().st_mtime_ns
    again = OfflineSequencer(SparseShadowSequencer(batch_size=4, seed=0), path, offline_pcloud=spec, chunk_size=2,
                             disable_offline_storage_writing=True, progress=False)
    assert path.stat().st_mtime_ns == stamp and len(again) == len(seq)
    other = files_spec(paths, {**GRID, "cell_size": 0.5})
    with pytest.raises(OfflineStorageError, match="rebuild"):
        OfflineSequencer(SparseShadowSequencer(batch_size=4, seed=0), path, offline_pcloud=other, chunk_size=2,
                         disable_offline_storage_writing=True, progress=False)


def test_grid_files_need_a_grid_spec_and_a_grid_backbone(tmp_path):
    paths = write_tiles(tmp_path, 1, seed=2)
    spec = files_spec(paths)
    del spec["grid"]
    with pytest.raises(TypeError, match="'dense' encoder needs a backbone of type Sequencer, got a SparseShadowSequencer"):
        OfflineSequencer(SparseShadowSequencer(batch_size=4), tmp_path / "x.h5", offline_pcloud=spec, progress=False)
    with pytest.raises(ValueError, match=r"unknown keys \['grids'\]"):
        OfflineSequencer(SparseShadowSequencer(batch_size=4), tmp_path / "x.h5",
                         offline_pcloud={**files_spec(paths), "grids": GRID}, progress=False)
    with pytest.raises(ValueError, match=r"max_rows \[2, 2, 2\] is smaller than the files' largest grids"):
        OfflineSequencer(SparseShadowSequencer(batch_size=4), tmp_path / "x.h5",
                         offline_pcloud=files_spec(paths, {**GRID, "max_rows": [2, 2, 2]}), progress=False)
    assert not (tmp_path / "x.h5").exists()


def test_train_from_grid_cache_then_predict_every_point_of_a_held_out_tile(tmp_path):
    make_deterministic(0)
    train = write_tiles(tmp_path, 3, seed=0)
    held = write_tiles(tmp_path, 1, seed=7)[0]
    spec = {"type": "OfflineSequencer", "offline_storage": str(tmp_path / "train.h5"), "seed": 0,
            "backbone": {"type": "SparseShadowSequencer", "batch_size": 8, "seed": 0},
            "offline_pcloud": files_spec(train, {**GRID, "cell_size": 1.0})}
    seq = build_sequencer({**spec, "progress": False})
    x = seq[0][0]
    rows = [int(x[f"coords_{t}"].shape[1]) for t in range(3)]
    labels = np.concatenate([seq[i][1][seq[i][2] > 0] for i in range(len(seq))])
    model = build_shadow_segmentation_model(int(x["features"].shape[-1]), 3, 3, rows, width=16)
    compile_for_recipe(model, np.bincount(labels, minlength=3), total_steps=6 * len(seq), learning_rate=1e-2)
    model.fit(seq, epochs=6, verbose=0, callbacks=[EpochSync(seq)])

    config = seq.pcloud_config
    pipeline = {"sampler": config["sampler"], "encoder": config["encoder"], "seed": 0,
                "features": config["feature_normalisation"], "class_map": config["class_map"]}
    cloud = read_point_cloud(held, label=None)
    points = cloud.points
    probabilities = predict_cloud(model, pipeline, cloud, batch_size=8)
    assert probabilities.shape == (len(points), 3)
    np.testing.assert_allclose(probabilities.sum(axis=1), 1.0, atol=1e-4)  # every point predicted
    codes = laspy.read(held).classification
    reference = np.select([codes == 2, codes == 5, codes == 6], [0, 1, 2], 3)
    keep = reference < 3
    scores = classification_metrics(reference[keep], probabilities.argmax(axis=1)[keep], 3)
    majority = np.bincount(reference[keep]).max() / keep.sum() / 3  # mIoU of "all majority class"
    assert scores.mean_iou > majority + 0.25, (scores.mean_iou, majority)


def test_a_shadow_cache_build_cuts_each_file_twice_not_three_times(tmp_path, monkeypatch):
    """Counting the fields and sizing the grids share one cut; writing is the second."""
    cuts = []
    real_cut = PointCloudSource.cut

    def counted_cut(self, index):
        cuts.append(index)
        return real_cut(self, index)

    monkeypatch.setattr(PointCloudSource, "cut", counted_cut)
    source = PointCloudSource.from_spec(files_spec(write_tiles(tmp_path, 2, seed=0)))
    config = source.cache_config()
    assert sorted(cuts) == [0, 1] and source.num_samples() > 0
    assert config["encoder"]["max_rows"] == list(source.encoder.max_rows)
    batches = list(source.batches(4, drop_last=False))
    assert sorted(cuts) == [0, 0, 1, 1]
    assert sum(len(b[1]) for b in batches) == source.num_samples()
