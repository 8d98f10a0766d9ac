"""Real point-cloud files: LAS/LAZ/PLY in and out, precision at georeferenced offsets, class maps,
named features, file-by-file ingestion and every refusal with its message."""

import glob
import json
import os
import tracemalloc

import numpy as np
import pytest

from pointseq.cli.main import main
from pointseq.offline import OfflineSequencer, PointCloudSource
from pointseq.pointclouds import ClassMap, FeatureSpec, read_point_cloud, sampler_from_spec, write_point_cloud
from pointseq.sequencers import Sequencer
from pointseq.sequencers.seeding import field_rng

laspy = pytest.importorskip("laspy")

REAL_DATA = os.environ.get("POINTSEQ_REAL_DATA", "/work/data/real")  # LAS/LAZ samples, if any


def write_las(path, n=400, *, point_format=6, offset=(5e6, 5e6, 100.0), codes=(2, 5, 6, 7), seed=0, extra=True):
    """A LAS/LAZ tile at a georeferenced offset, millimetre scale, with an extra-bytes dimension."""
    rng = np.random.default_rng(seed)
    las = laspy.create(point_format=point_format, file_version="1.4" if point_format >= 6 else "1.2")
    las.header.offsets = list(offset)
    las.header.scales = [0.001] * 3
    if extra:
        las.add_extra_dims([laspy.ExtraBytesParams(name="height_above_ground", type=np.float32),
                            laspy.ExtraBytesParams(name="tree_id", type=np.uint16)])
        las.height_above_ground = rng.uniform(0, 30, n).astype(np.float32)
        las.tree_id = rng.integers(0, 50, n).astype(np.uint16)
    las.x = offset[0] + rng.uniform(0, 50, n)
    las.y = offset[1] + rng.uniform(0, 50, n)
    las.z = offset[2] + rng.uniform(0, 20, n)
    las.intensity = rng.integers(0, 65536, n).astype(np.uint16)
    las.return_number = rng.integers(1, 4, n)
    las.number_of_returns = np.maximum(las.return_number, 3)
    las.classification = rng.choice(codes, n)
    if "red" in las.point_format.dimension_names:
        las.red, las.green, las.blue = (rng.integers(0, 65536, n).astype(np.uint16) for _ in range(3))
    las.write(path)
    return laspy.read(path)


RADIUS = 5.0


def sampler(num_points=16, **kw):
    return {"type": "CoveringFieldSampler", "num_points": num_points, "subsampling": "random",
            "neighborhood": {"type": "cylinder", "radius": RADIUS, "separation_factor": 1.0}, **kw}


def cmap_config(ignored):
    return {"codes": [[2], [5], [6]], "names": ["2", "5", "6"], "ignore": [ignored], "unknown": "error"}


def cache_batches(seq):
    return [seq[i] for i in range(len(seq))]


@pytest.mark.parametrize("point_format", [1, 3, 6, 7, 8])
@pytest.mark.parametrize("suffix,offset", [(".las", (1e5, 2e5, 10.0)), (".laz", (5e6, 1e7, 300.0))])
def test_las_and_laz_round_trip(tmp_path, point_format, suffix, offset):
    source = tmp_path / f"tile{suffix}"
    truth = write_las(source, point_format=point_format, offset=offset)
    cloud = read_point_cloud(source)
    assert cloud.points.dtype == np.float64 and cloud.path == str(source)
    np.testing.assert_array_equal(cloud.points, np.stack([truth.x, truth.y, truth.z], axis=1))
    assert set(cloud.attributes) == set(truth.point_format.dimension_names) - {"X", "Y", "Z"}
    np.testing.assert_array_equal(cloud.labels, truth.classification)
    by_extra = read_point_cloud(source, label="tree_id")
    np.testing.assert_array_equal(by_extra.labels, truth.tree_id)

    n = len(cloud)
    probabilities = np.random.default_rng(1).uniform(size=(n, 2)).astype(np.float32)
    out = tmp_path / f"out{suffix}"
    write_point_cloud(out, source, classification=np.full(n, 9),
                      extra={"prediction": cloud.labels.astype(np.uint8), "p_ground": probabilities[:, 0],
                             "p_water": probabilities[:, 1]})
    assert not [f for f in os.listdir(tmp_path) if ".tmp" in f]
    back = laspy.read(out)
    with open(out, "rb") as f:  # LAZ sets bit 7 of the point format byte
        assert (f.read(105)[104] >= 128) == (suffix == ".laz")
    for name in truth.point_format.dimension_names:  # every point in order, every dimension kept
        if name != "classification":
            np.testing.assert_array_equal(np.asarray(back[name]), np.asarray(truth[name]), err_msg=name)
    np.testing.assert_array_equal(back.classification, 9)
    np.testing.assert_array_equal(back.prediction, truth.classification)
    np.testing.assert_array_equal(back.p_water, probabilities[:, 1])


def test_write_refusals_and_new_cloud(tmp_path):
    source = tmp_path / "a.las"
    write_las(source, n=50, point_format=1)
    with pytest.raises(ValueError, match=r"extra\['prediction'\] must be a numeric array of shape \(50,\), got int64 \(3,\)"):
        write_point_cloud(tmp_path / "o.las", source, extra={"prediction": np.arange(3)})
    with pytest.raises(ValueError, match=r"extra\['intensity'\] names a dimension the file already has"):
        write_point_cloud(tmp_path / "o.las", source, extra={"intensity": np.zeros(50)})
    with pytest.raises(ValueError, match=r"classification codes must lie in \[0, 31\] for point format 1, got range \[0, 40\]"):
        write_point_cloud(tmp_path / "o.las", source, classification=np.arange(50) % 41)
    with pytest.raises(ValueError, match="write_point_cloud path must end in .las or .laz, got '.*o.ply'"):
        write_point_cloud(tmp_path / "o.ply", source)
    assert sorted(os.listdir(tmp_path)) == ["a.las"]
    cloud = read_point_cloud(source)
    write_point_cloud(tmp_path / "new.laz", type(cloud)(cloud.points, {"intensity": cloud.attributes["intensity"]},
                                                        cloud.labels), extra={"score": np.ones(50, np.float32)})
    new = read_point_cloud(tmp_path / "new.laz")
    np.testing.assert_allclose(new.points, cloud.points, atol=5e-4)
    np.testing.assert_array_equal(new.labels, cloud.labels)
    np.testing.assert_array_equal(new.attributes["score"], 1.0)


def test_precision_at_a_georeferenced_offset(tmp_path):
    """Relative positions in the cache equal float64 truth to 1e-3 m at a 5e6 offset."""
    path = tmp_path / "tile.laz"
    write_las(path, n=2000, offset=(5e6, 5e6, 0.0))
    spec = {"paths": [str(path)], "sampler": sampler(32)}
    seq = OfflineSequencer(Sequencer(batch_size=8, seed=0), str(tmp_path / "c.h5"), offline_pcloud=spec,
                           progress=False)
    cached = np.concatenate([b[0] for b in cache_batches(seq)])[..., :3] * RADIUS  # back to metres
    points = read_point_cloud(path).points
    fields = sampler_from_spec(sampler(32))(points, field_rng(0, 0))
    truth = points[fields.indices] - fields.centres[:, None, :]  # float64 throughout
    assert np.abs(cached - truth).max() < 1e-3
    # the same fields cut from float32 coordinates (what casting on reading did) are off by decimetres
    as_float32 = points.astype(np.float32)
    old = as_float32[fields.indices] - fields.centres.astype(np.float32)[:, None, :]
    assert np.abs(old - truth).max() > 0.05
    assert len(np.unique(points[:, 0])) > 1.8 * len(np.unique(as_float32[:, 0]))


def test_class_map_ignores_and_refuses_unknown_codes():
    cmap = ClassMap.from_spec({"ignore": [7]}, [2, 5, 6, 7])
    assert cmap.num_classes == 3 and cmap.get_config() == {
        "codes": [[2], [5], [6]], "names": ["2", "5", "6"], "ignore": [7], "unknown": "error"}
    ids, weights = cmap.to_ids(np.array([2, 7, 6, 5, 7]))
    np.testing.assert_array_equal(ids, [0, 0, 2, 1, 0])
    np.testing.assert_array_equal(weights, [1, 0, 1, 1, 0])
    np.testing.assert_array_equal(cmap.to_codes(np.array([2, 0, 1])), [6, 2, 5])
    merged = ClassMap.from_config({"codes": [2, [3, 4, 5]], "names": ["ground", "vegetation"], "unknown": "ignore"})
    np.testing.assert_array_equal(merged.to_ids(np.array([4, 2, 11]))[0], [1, 0, 0])
    np.testing.assert_array_equal(merged.to_ids(np.array([4, 2, 11]))[1], [1, 1, 0])
    with pytest.raises(ValueError, match=r"the labels hold class codes \[9\] that the class map neither trains "
                                         r"nor ignores \(trained \[\[2\], \[5\], \[6\]\], ignored \[7\]\)"):
        cmap.to_ids(np.array([2, 9]))
    with pytest.raises(ValueError, match=r"classes: codes \[7\] are both trained \(codes\) and ignored"):
        ClassMap.from_spec({"codes": [2, 7], "ignore": [7]})
    with pytest.raises(ValueError, match=r"classes.names must be 2 strings \(one per class\), got \['a'\]"):
        ClassMap.from_spec({"codes": [2, 7], "names": ["a"]})
    with pytest.raises(ValueError, match=r"classes has unknown keys \['ignored'\]"):
        ClassMap.from_spec({"ignored": [7]}, [2])
    with pytest.raises(ValueError, match=r"classes.unknown must be one of \('error', 'ignore'\), got 'drop'"):
        ClassMap.from_spec({"unknown": "drop"}, [2])
    with pytest.raises(ValueError, match=r"class ids must lie in \[0, 3\), got range \[0, 3\]"):
        cmap.to_codes(np.array([0, 3]))


def test_cache_trains_three_classes_with_ignored_points_at_weight_zero(tmp_path):
    paths = [tmp_path / f"t{i}.laz" for i in range(2)]
    for i, p in enumerate(paths):
        write_las(p, n=300, seed=i)
    spec = {"paths": [str(p) for p in paths], "sampler": sampler(16, num_encoding_neighbors=1), "classes": {"ignore": [7]}}
    seq = OfflineSequencer(Sequencer(batch_size=8, seed=0), str(tmp_path / "c.h5"), offline_pcloud=spec,
                           progress=False)
    batches = cache_batches(seq)
    assert all(len(b) == 3 for b in batches)
    y, w = np.concatenate([b[1] for b in batches]), np.concatenate([b[2] for b in batches])
    assert set(np.unique(y)) == {0, 1, 2}
    # recompute the source codes of every cached point: weight 0 exactly on code 7
    codes = []
    for i, p in enumerate(paths):
        cloud = read_point_cloud(p)
        codes.append(cloud.labels[sampler_from_spec(sampler(16, num_encoding_neighbors=1))(
            cloud.points, field_rng(0, i)).indices])
    codes = np.concatenate(codes)
    np.testing.assert_array_equal(w == 0, codes == 7)
    np.testing.assert_array_equal(ClassMap.from_spec({"ignore": [7]}, [2, 5, 6, 7]).to_codes(y[w > 0]), codes[w > 0])
    stored = seq._reader.header.config["offline_pcloud"]
    assert ClassMap.from_config(stored["class_map"]).get_config() == cmap_config(7)
    assert seq.class_map.get_config() == cmap_config(7)
    assert stored["feature_normalisation"] == []

    import keras

    from pointseq.sequencers import build_pointnet_segmentation_model

    model = build_pointnet_segmentation_model(16, 3, num_features=4, width=8)
    model.compile("adam", "sparse_categorical_crossentropy")
    history = model.fit(seq, epochs=1, verbose=0)
    assert np.isfinite(history.history["loss"][0]) and keras.backend.backend()


def test_unknown_code_in_a_later_file_fails_before_the_cache_exists(tmp_path):
    write_las(tmp_path / "a.las", n=100, codes=(2, 5, 6, 7))
    write_las(tmp_path / "b.las", n=100, codes=(2, 9))
    spec = {"paths": [str(tmp_path / "a.las"), str(tmp_path / "b.las")], "sampler": sampler(),
            "classes": {"codes": [2, 5, 6], "ignore": [7]}}
    with pytest.raises(ValueError, match=r"point-cloud file '.*b.las' hold class codes \[9\] that the class map"):
        OfflineSequencer(Sequencer(batch_size=4), str(tmp_path / "c.h5"), offline_pcloud=spec, progress=False)
    assert not os.path.exists(tmp_path / "c.h5") and not os.path.exists(tmp_path / "c.h5.tmp")
    spec["classes"]["unknown"] = "ignore"
    seq = OfflineSequencer(Sequencer(batch_size=4), str(tmp_path / "c.h5"), offline_pcloud=spec, progress=False)
    covering = sampler_from_spec(sampler())
    assert seq.num_samples == sum(len(covering(read_point_cloud(p).points, field_rng(0, 0))) for p in spec["paths"])


def test_feature_dimensions_name_what_a_file_must_store():
    spec = FeatureSpec(["intensity", "return_ratio", {"name": "red", "normalisation": {"scale": 1.0, "offset": 0.0}}])
    assert spec.dimensions == ["intensity", "red", "return_number", "number_of_returns"]
    assert FeatureSpec().dimensions == []


def test_features_by_name_with_their_normalisation(tmp_path):
    truth = write_las(tmp_path / "a.las", n=60, point_format=7)
    cloud = read_point_cloud(tmp_path / "a.las")
    spec = FeatureSpec(["intensity", "red", "return_number", "height_above_ground",
                        {"name": "tree_id", "normalisation": {"scale": 0.5, "offset": 1.0}}])
    f = spec(cloud)
    assert f.dtype == np.float32 and f.shape == (60, 5)
    np.testing.assert_allclose(f[:, 0], truth.intensity / 65535.0, rtol=1e-6)
    np.testing.assert_allclose(f[:, 1], truth.red / 65535.0, rtol=1e-6)
    np.testing.assert_allclose(f[:, 2], np.asarray(truth.return_number) / 15.0, rtol=1e-6)
    np.testing.assert_allclose(f[:, 3], truth.height_above_ground, rtol=1e-6)
    np.testing.assert_allclose(f[:, 4], np.asarray(truth.tree_id) * 0.5 + 1.0, rtol=1e-6)
    assert spec.get_config()["features"][0] == {"name": "intensity", "normalisation": "bit_depth"}
    assert FeatureSpec()(cloud) is None
    with pytest.raises(ValueError, match=r"feature 'x_t': normalisation must be one of \('bit_depth', 'returns', "
                                         r"'none', 'log1p'\)"):
        FeatureSpec([{"name": "x_t", "normalisation": "minmax"}])
    with pytest.raises(ValueError, match=r"'height_above_ground' is float32, not an integer type with a bit depth"):
        FeatureSpec([{"name": "height_above_ground", "normalisation": "bit_depth"}])(cloud)


def test_mixed_point_formats(tmp_path):
    """Formats with and without RGB: features absent from one file fail naming it; none requested build."""
    write_las(tmp_path / "rgb.las", n=80, point_format=3)
    write_las(tmp_path / "plain.las", n=80, point_format=1, extra=False)
    paths = [str(tmp_path / "rgb.las"), str(tmp_path / "plain.las")]
    spec = {"paths": paths, "sampler": sampler(8), "features": ["intensity", "red"]}
    with pytest.raises(ValueError, match=r"point-cloud file '.*plain.las' lacks the feature dimensions \['red'\]"):
        OfflineSequencer(Sequencer(batch_size=4), str(tmp_path / "c.h5"), offline_pcloud=spec, progress=False)
    assert not os.path.exists(tmp_path / "c.h5") and not os.path.exists(tmp_path / "c.h5.tmp")
    for ok in ({**spec, "use_features": False}, {**spec, "features": ["intensity"]}, {**spec, "features": None}):
        seq = OfflineSequencer(Sequencer(batch_size=4), str(tmp_path / "c.h5"), offline_pcloud=ok,
                               progress=False, force_rebuild=True)
        x = seq[0][0]
        with_features = ok.get("features") == ["intensity"] and ok.get("use_features", True)
        assert x.shape == (4, 8, 5 if with_features else 4)  # x, y, z, height (+ intensity)
        assert not with_features or 0.0 <= x[..., 4].min() and x[..., 4].max() <= 1.0
        seq.close()


def test_ply_files(tmp_path):
    plyfile = pytest.importorskip("plyfile")
    rng = np.random.default_rng(0)
    n = 40
    vertex = np.zeros(n, dtype=[("x", "f8"), ("y", "f8"), ("z", "f8"), ("red", "u1"), ("label", "i4")])
    vertex["x"], vertex["y"], vertex["z"] = 4e5 + rng.uniform(0, 9, n), 5e6 + rng.uniform(0, 9, n), rng.uniform(0, 9, n)
    vertex["red"] = rng.integers(0, 256, n)
    vertex["label"] = rng.integers(0, 3, n)
    for text in (True, False):
        plyfile.PlyData([plyfile.PlyElement.describe(vertex, "vertex")], text=text).write(str(tmp_path / "a.ply"))
        cloud = read_point_cloud(tmp_path / "a.ply", label="label")
        np.testing.assert_array_equal(cloud.points, np.stack([vertex["x"], vertex["y"], vertex["z"]], axis=1))
        np.testing.assert_array_equal(cloud.labels, vertex["label"])
        np.testing.assert_allclose(FeatureSpec(["red"])(cloud)[:, 0], vertex["red"] / 255.0, rtol=1e-6)
    assert read_point_cloud(tmp_path / "a.ply").labels is None
    (tmp_path / "bad.ply").write_bytes(b"ply\nformat binary_little_endian 1.0\nelement vertex 3\n")
    with pytest.raises(ValueError, match=r"point-cloud file '.*bad.ply': is not a readable PLY file"):
        read_point_cloud(tmp_path / "bad.ply")


def test_refusals_name_the_file(tmp_path, monkeypatch):
    (tmp_path / "text.las").write_text("not a las file\n")
    with pytest.raises(ValueError, match=r"point-cloud file '.*text.las': is not a readable LAS/LAZ file"):
        read_point_cloud(tmp_path / "text.las")
    write_las(tmp_path / "a.laz", n=20)
    with pytest.raises(ValueError, match=r"'.*a.laz': has no label dimension 'label'; its dimensions are \[.*'tree_id'"):
        read_point_cloud(tmp_path / "a.laz", label="label")
    monkeypatch.setattr(laspy.LazBackend, "detect_available", staticmethod(lambda: ()))
    with pytest.raises(ValueError, match=r"point-cloud file '.*a.laz': reading LAZ needs a LAZ backend \(lazrs\): "
                                         r"pip install 'pointseq\[las\]'"):
        read_point_cloud(tmp_path / "a.laz")
    with pytest.raises(ValueError, match=r"offline_pcloud has unknown keys \['label_dim'\]"):
        PointCloudSource.from_spec({"paths": [str(tmp_path / "a.laz")], "sampler": sampler(), "label_dim": "x"})
    with pytest.raises(ValueError, match="give 'label' or its alias 'label_column', not both"):
        PointCloudSource.from_spec({"paths": [str(tmp_path / "a.laz")], "sampler": sampler(), "label": "a",
                                    "label_column": 3})


def test_cli_usage_errors_exit_2_and_leave_no_temp_file(tmp_path, monkeypatch, capsys):
    write_las(tmp_path / "a.laz", n=40)
    spec = {"sequencer": {"type": "OfflineSequencer", "offline_storage": "c.h5",
                          "backbone": {"type": "Sequencer", "batch_size": 4},
                          "offline_pcloud": {"paths": ["a.laz"], "sampler": sampler(8), "label": "missing"}}}
    (tmp_path / "spec.json").write_text(json.dumps(spec))
    assert main(["cache", "build", str(tmp_path / "spec.json"), "--quiet"]) == 2
    assert "has no label dimension 'missing'" in capsys.readouterr().err
    monkeypatch.setattr(laspy.LazBackend, "detect_available", staticmethod(lambda: ()))
    spec["sequencer"]["offline_pcloud"]["label"] = "classification"
    (tmp_path / "spec.json").write_text(json.dumps(spec))
    assert main(["cache", "build", str(tmp_path / "spec.json"), "--quiet"]) == 2
    assert "a.laz': reading LAZ needs a LAZ backend" in capsys.readouterr().err
    assert not os.path.exists(tmp_path / "c.h5") and not os.path.exists(tmp_path / "c.h5.tmp")
    monkeypatch.undo()
    assert main(["cache", "build", str(tmp_path / "spec.json")]) == 0
    err = capsys.readouterr().err
    assert "offline_pcloud: checked" in err and f"offline_pcloud: counted 77 fields in {tmp_path / 'a.laz'}" in err
    assert err.count(f"offline_pcloud: writing 77 fields of {tmp_path / 'a.laz'}") == 1


def test_ingestion_memory_is_bounded_by_the_largest_file(tmp_path):
    rng = np.random.default_rng(0)
    paths = []
    for i in range(4):
        np.save(tmp_path / f"s{i}.npy", np.floor(rng.uniform(0, 50, size=(100_000, 4))))
        paths.append(str(tmp_path / f"s{i}.npy"))
    peaks = []
    for count in (2, 4):
        spec = {"paths": paths[:count], "sampler": sampler(64), "label": -1,
                "classes": {"unknown": "ignore", "codes": [0]}}
        tracemalloc.start()
        seq = OfflineSequencer(Sequencer(batch_size=64), str(tmp_path / f"c{count}.h5"), offline_pcloud=spec,
                               progress=False, chunk_size=4)
        peaks.append(tracemalloc.get_traced_memory()[1])
        tracemalloc.stop()
        assert seq.num_samples == count * 121  # 11 x 11 cylinders 5 m apart over 50 m x 50 m
        seq.close()
    file_bytes = os.path.getsize(paths[0])
    print(f"peak traced memory: 2 files {peaks[0] / 2**20:.1f} MiB, 4 files {peaks[1] / 2**20:.1f} MiB, "
          f"file {file_bytes / 2**20:.1f} MiB")
    # four files cost no more than two: never all in memory (two, not one: the batch that spans
    # a file boundary holds the end of one file's fields with the next file's)
    assert peaks[1] < 1.15 * peaks[0]
    # float64 points, KD-tree, the covering fields' membership lists (each point in ~4 fields, with
    # its 3 nearest kept points, for label reduction) and the fields of one file: ~600 bytes a point
    assert peaks[0] < 24 * file_bytes


@pytest.mark.skipif(not glob.glob(os.path.join(REAL_DATA, "*.la[sz]")), reason=f"no LAS/LAZ sample under {REAL_DATA}")
def test_real_sample_files():
    for path in sorted(glob.glob(os.path.join(REAL_DATA, "*.la[sz]"))):
        cloud = read_point_cloud(path)
        header = laspy.open(path).header
        assert len(cloud) == header.point_count and cloud.points.dtype == np.float64
        assert np.all(np.abs(cloud.points.min(axis=0) - header.mins) <= header.scales)
        np.testing.assert_array_equal(cloud.labels, laspy.read(path).classification)
