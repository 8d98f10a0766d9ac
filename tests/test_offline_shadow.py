"""A SparseShadowSequencer as the backbone of an OfflineSequencer."""

import keras
import numpy as np
import pytest

from conftest import make_deterministic
from pointseq.offline import OfflineSequencer, OfflineStorageError
from pointseq.pointclouds import build_sparse_grid
from pointseq.sequencers import EpochSync, SparseShadowSequencer, build_shadow_segmentation_model

AUGMENTOR = {"transformations": [{"type": "Rotation", "axis": [0, 0, 1]}]}


def grids(count=10, seed=0):
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(count):
        pts = rng.uniform(0, 1, size=(int(rng.integers(30, 80)), 3))
        out.append(build_sparse_grid(pts, pts[:, 2:], (pts[:, 2] > 0.5).astype(int), cell_size=0.25, depth=2))
    return out


def test_shadow_batches_round_trip_and_augment_at_read_time(tmp_path):
    backbone = SparseShadowSequencer(grids(), batch_size=4, shuffle=False, seed=3, augmentor=AUGMENTOR)
    seq = OfflineSequencer(backbone, tmp_path / "shadow.h5", chunk_size=2, seed=3, progress=False)
    assert len(seq) == len(backbone) == 3
    for i in range(len(seq)):
        x, y, sw = seq[i]
        bx, by, bsw = backbone[i]  # same seed, epoch and index: the same augmentation
        assert set(x) == set(bx)
        for key in bx:
            np.testing.assert_array_equal(x[key], bx[key], err_msg=key)
        np.testing.assert_array_equal(y, by)
        np.testing.assert_array_equal(sw, bsw)
        raw = backbone.load_batch(backbone.batch_indices(i))[0]
        assert not np.allclose(x["coords_0"], raw["coords_0"])  # rotated at read time
        np.testing.assert_array_equal(x["parent_0"], raw["parent_0"])  # index maps untouched


def test_shadow_cache_trains_and_is_refused_for_other_grids(tmp_path):
    make_deterministic(0)
    path = tmp_path / "shadow.h5"
    backbone = SparseShadowSequencer(grids(), batch_size=4, seed=1)
    seq = OfflineSequencer(backbone, path, chunk_size=2, chunk_randomization=True, seed=1, progress=False)
    model = build_shadow_segmentation_model(backbone.num_features, 2, backbone.depth, backbone.max_rows, width=8)
    model.compile(keras.optimizers.Adam(0.02), "sparse_categorical_crossentropy")
    history = model.fit(seq, epochs=4, shuffle=False, verbose=0, callbacks=[EpochSync(seq)])
    assert history.history["loss"][-1] < history.history["loss"][0]
    # Grids rebuilt from the same clouds are the same data: the cache is reused, not refused.
    stamp = path.stat().st_mtime_ns
    same = SparseShadowSequencer(grids(), batch_size=4, seed=1)
    OfflineSequencer(same, path, chunk_size=2, seed=1, disable_offline_storage_writing=True, progress=False)
    assert path.stat().st_mtime_ns == stamp
    other = SparseShadowSequencer(grids(seed=1), batch_size=4, seed=1)
    with pytest.raises(OfflineStorageError, match="rebuild"):
        OfflineSequencer(other, path, chunk_size=2, seed=1, disable_offline_storage_writing=True, progress=False)


def test_post_process_output_follows_the_predict_order(tmp_path):
    data = grids()
    backbone = SparseShadowSequencer(data, batch_size=4, seed=2)  # shuffles in training mode
    seq = OfflineSequencer(backbone, tmp_path / "p.h5", chunk_size=2, seed=2, progress=False)
    with pytest.raises(ValueError, match="call enable_predict_mode"):
        seq.post_process_output(np.zeros((4, backbone.max_rows[0], 2)), 0)
    seq.enable_predict_mode()
    (x,) = seq[1]
    z = np.repeat(x["mask_0"][..., None], 2, axis=-1)  # an "output" that marks real cells
    per_element = seq.post_process_output(z, 1)
    assert [len(e) for e in per_element] == [g.num_cells(0) for g in data[4:8]]
    assert all(e.min() == 1.0 for e in per_element)  # no padded row slipped in


def test_point_cloud_files_need_a_sampler_backbone(tmp_path):
    np.save(tmp_path / "cloud.npy", np.random.default_rng(0).uniform(size=(100, 3)))
    spec = {"paths": [str(tmp_path / "cloud.npy")], "sampler": {"type": "CoveringFieldSampler", "num_points": 16, "subsampling": "random", "neighborhood": {"type": "sphere", "radius": 1.0}}}
    backbone = SparseShadowSequencer(grids(), batch_size=4)
    with pytest.raises(TypeError, match="'dense' encoder needs a backbone of type Sequencer, got a SparseShadowSequencer"):
        OfflineSequencer(backbone, tmp_path / "x.h5", offline_pcloud=spec, progress=False)
    assert not (tmp_path / "x.h5").exists()
