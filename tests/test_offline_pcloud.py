"""Point-cloud files: readers, and appending their covering fields to a cache."""

import sys

import numpy as np
import pytest

from pointseq.offline import OfflineSequencer, PointCloudSource
from pointseq.pointclouds import read_point_cloud
from pointseq.sequencers import Sequencer


def table(n=50, seed=0):
    rng = np.random.default_rng(seed)
    xyz = rng.uniform(0, 4, size=(n, 3))
    intensity = rng.uniform(size=(n, 1))
    label = rng.integers(0, 5, size=(n, 1))
    return np.concatenate([xyz, intensity, label], axis=1)


def check_cloud(cloud, t, label=True):
    np.testing.assert_array_equal(cloud.points, t[:, :3])
    assert cloud.points.dtype == np.float64
    if label:
        np.testing.assert_array_equal(cloud.labels, t[:, 4].astype(np.int64))


def test_readers(tmp_path):
    t = table()
    np.save(tmp_path / "a.npy", t)
    check_cloud(read_point_cloud(tmp_path / "a.npy", label=-1), t)
    np.savez(tmp_path / "a.npz", points=t[:, :3], intensity=t[:, 3], labels=t[:, 4])
    npz = read_point_cloud(tmp_path / "a.npz")
    check_cloud(npz, t)
    assert sorted(npz.attributes) == ["intensity", "labels"]
    np.savetxt(tmp_path / "a.xyz", t, header="x y z intensity label")
    xyz = read_point_cloud(tmp_path / "a.xyz", label=4)
    check_cloud(xyz, t)
    np.testing.assert_array_equal(xyz.attributes["intensity"], t[:, 3])
    with open(tmp_path / "a.csv", "w") as f:
        f.write("x,y,z,i,label\n")
        np.savetxt(f, t, delimiter=",")
    check_cloud(read_point_cloud(tmp_path / "a.csv", label="label"), t)
    no_label = read_point_cloud(tmp_path / "a.npy")
    assert no_label.labels is None and sorted(no_label.attributes) == ["column_3", "column_4"]
    with pytest.raises(ValueError, match=r"a.las2'.*unsupported suffix '.las2'"):
        read_point_cloud(tmp_path / "a.las2")
    with pytest.raises(ValueError, match="label column must index a column after x, y, z"):
        read_point_cloud(tmp_path / "a.npy", label=1)
    with pytest.raises(ValueError, match=r"a.csv': has no label dimension 'class'; its dimensions are \['i', 'label'\]"):
        read_point_cloud(tmp_path / "a.csv", label="class")


def test_las_reader_and_missing_laspy(tmp_path, monkeypatch):
    laspy = pytest.importorskip("laspy")
    t = table()
    las = laspy.create(point_format=2, file_version="1.2")
    las.header.scales = [0.001] * 3
    las.x, las.y, las.z = t[:, 0], t[:, 1], t[:, 2]
    las.intensity = (t[:, 3] * 1000).astype(np.uint16)
    las.classification = t[:, 4].astype(np.uint8)
    las.write(tmp_path / "a.las")
    cloud = read_point_cloud(tmp_path / "a.las")
    np.testing.assert_allclose(cloud.points, t[:, :3], atol=1e-3)
    np.testing.assert_array_equal(cloud.labels, t[:, 4])
    assert {"intensity", "red", "green", "blue", "classification"} <= set(cloud.attributes)
    monkeypatch.setitem(sys.modules, "laspy", None)
    with pytest.raises(ValueError, match=r"a.las'.*needs laspy: pip install 'pointseq\[las\]'"):
        read_point_cloud(tmp_path / "a.las")


def test_point_cloud_files_are_appended_to_the_cache(tmp_path):
    paths = []
    for i in range(2):
        np.save(tmp_path / f"s{i}.npy", table(60, seed=i))
        paths.append(str(tmp_path / f"s{i}.npy"))
    spec = {"paths": paths, "label_column": -1, "use_features": False, "classes": {"codes": [0, 1, 2, 3, 4]},
            "sampler": {"type": "CoveringFieldSampler", "num_points": 8, "subsampling": "random",
                        "neighborhood": {"type": "cylinder", "radius": 2.0, "separation_factor": 1.0}}}
    parts = list(PointCloudSource.from_spec(spec).batches(100, False))
    assert len(parts) == 1
    X_fields, y_fields = parts[0]
    assert X_fields.shape == (18, 8, 4) and y_fields.shape == (18, 8)  # x, y, z, height; 9 fields per 4 m tile
    rng = np.random.default_rng(0)
    X = rng.normal(size=(6, 8, 4)).astype("float32")
    y = rng.integers(0, 5, size=(6, 8))
    backbone = Sequencer(X, y, batch_size=4, shuffle=False, seed=0)
    seq = OfflineSequencer(backbone, str(tmp_path / "c.h5"), chunk_size=2, offline_pcloud=spec, progress=False)
    assert len(seq) == 2 + 5 and seq.num_samples == 6 + 18
    got_x = np.concatenate([seq[i][0] for i in range(len(seq))])
    got_y = np.concatenate([seq[i][1] for i in range(len(seq))])
    np.testing.assert_array_equal(got_x, np.concatenate([X, X_fields]))
    np.testing.assert_array_equal(got_y, np.concatenate([y, y_fields]))
    only_clouds = OfflineSequencer(Sequencer(batch_size=4, seed=0), str(tmp_path / "p.h5"), offline_pcloud=spec,
                                   progress=False)
    assert len(only_clouds) == 5
    with pytest.raises(ValueError, match="offline_pcloud must be a dict with 'paths'"):
        OfflineSequencer(backbone, str(tmp_path / "x.h5"), offline_pcloud=paths)
    assert not (tmp_path / "x.h5.tmp").exists()
    with pytest.raises(FileNotFoundError, match="offline_pcloud files do not exist"):
        OfflineSequencer(backbone, str(tmp_path / "x.h5"), offline_pcloud={**spec, "paths": ["nope.npy"]})
