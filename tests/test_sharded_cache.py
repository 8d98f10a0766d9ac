"""Sharded caches built on a Dask cluster and read as one (``pointseq[distributed]``)."""

import json
import os
import shutil
import signal
import sys
import threading
import time

import numpy as np
import pytest

from pointseq.cli.main import main
from pointseq.offline import OfflineSequencer, OfflineStorageError
from pointseq.offline.manifest import MANIFEST_NAME
from pointseq.offline.sharded_build import build_sharded, shard_ranges
from pointseq.sequencers import Sequencer


def table(n, seed):
    rng = np.random.default_rng(seed)
    return np.concatenate([rng.uniform(0, 4, (n, 3)), rng.uniform(size=(n, 1)), rng.integers(0, 5, (n, 1))], axis=1)


def inputs(tmp_path, files=4, samples=10, seed=0):
    """A backbone with ``samples`` clouds and ``files`` point-cloud files cut into fields.

    The files are ``.npz`` with ``points`` and ``labels``, and the spec leaves ``label`` and
    ``seed`` at their defaults: the defaults must survive the trip to the Dask workers.
    """
    paths = []
    for i in range(files):
        paths.append(str(tmp_path / f"tile{i}.npz"))
        rows = table(37 + 11 * i, seed=seed + i)  # fields run across file boundaries
        np.savez(paths[-1], points=rows[:, :3], intensity=rows[:, 3], labels=rows[:, 4].astype(np.int64))
    pcloud = {"paths": paths, "use_features": False, "classes": {"codes": [0, 1, 2, 3, 4]},
              "sampler": {"type": "CoveringFieldSampler", "num_points": 8, "subsampling": "random",
                          "neighborhood": {"type": "cylinder", "radius": 1.0, "separation_factor": 1.0}}}
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(samples, 8, 4)).astype("float32")  # x, y, z, height like the fields
    y = rng.integers(0, 5, size=(samples, 8))
    return (lambda: Sequencer(X, y, batch_size=3, shuffle=False, seed=0)), pcloud


def all_batches(seq, epochs):
    out = []
    for epoch in range(epochs):
        seq.epoch = epoch
        out += [seq[i] for i in range(len(seq))]
    return out


def assert_same_batches(a, b):
    assert len(a) == len(b)
    for x, y in zip(a, b):
        for u, v in zip(x, y):
            np.testing.assert_array_equal(u, v)


@pytest.fixture(scope="module")
def client():
    distributed = pytest.importorskip("dask.distributed")
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                                  dashboard_address=None) as cluster, distributed.Client(cluster) as c:
        yield c


def test_the_label_default_and_a_not_a_cache_error_survive_the_trip_to_a_worker():
    import copy
    import pickle

    from pointseq.offline.errors import NotACacheError
    from pointseq.pointclouds.reading import FORMAT_DEFAULT

    assert pickle.loads(pickle.dumps(FORMAT_DEFAULT)) is FORMAT_DEFAULT and copy.deepcopy(FORMAT_DEFAULT) is FORMAT_DEFAULT
    error = pickle.loads(pickle.dumps(NotACacheError("x.h5", "not an HDF5 file", "give a cache")))
    assert str(error) == "'x.h5' is not a pointseq offline cache (not an HDF5 file); it is left alone: give a cache"


def test_shard_ranges_cover_whole_chunks():
    assert shard_ranges(7, 3) == [(0, 3), (3, 2), (5, 2)]
    assert shard_ranges(2, 5) == [(0, 1), (1, 1)]


def test_sharded_build_reads_like_one_file_and_refuses_a_stale_shard(client, tmp_path, capsys):
    make_backbone, pcloud = inputs(tmp_path)
    options = dict(chunk_size=2, offline_pcloud=pcloud, chunk_randomization=True, batch_randomization=True,
                   seed=3, progress=False)
    single = OfflineSequencer(make_backbone(), str(tmp_path / "one.h5"), **options)
    manifest = build_sharded(client, make_backbone(), str(tmp_path / "sharded"), chunk_size=2,
                             offline_pcloud=pcloud, shards=3, progress=True)
    assert "shard 3/3 shard-00002.h5" in capsys.readouterr().err
    chunks = [s.num_chunks for s in manifest.shards]
    assert sum(chunks) == -(-single.num_cache_batches // 2) and max(chunks) - min(chunks) <= 1
    assert manifest.num_batches == single.num_cache_batches
    assert manifest.fingerprint == single._reader.header.fingerprint
    sharded = OfflineSequencer(make_backbone(), str(tmp_path / "sharded"), **options)
    assert_same_batches(all_batches(single, 3), all_batches(sharded, 3))
    np.testing.assert_array_equal(single.batch_indices(2), sharded.batch_indices(2))
    replica = OfflineSequencer(make_backbone(), str(tmp_path / "sharded" / MANIFEST_NAME), **options).shard(2, 1)
    replica[0]  # batch 1 of pass 0: chunk 0, in shard 0
    assert replica._reader.opened_shards() == [0]
    sharded.close()  # HDF5 would serve an open file's cached metadata

    other_backbone, _ = inputs(_sub(tmp_path, "other"), seed=9)  # other data, the same shard layout
    build_sharded(client, other_backbone(), str(tmp_path / "other_cache"), chunk_size=2, offline_pcloud=pcloud,
                  shards=3, progress=False)
    shutil.copy(tmp_path / "other_cache" / "shard-00001.h5", tmp_path / "sharded" / "shard-00001.h5")
    stale = OfflineSequencer(make_backbone(), str(tmp_path / "sharded"), **options)
    with pytest.raises(OfflineStorageError, match=r"shard-00001\.h5'.*another config"):
        all_batches(stale, 1)
    os.remove(tmp_path / "sharded" / MANIFEST_NAME)
    with pytest.raises(OfflineStorageError, match=r"shard-00001\.h5'.*another config"):
        build_sharded(client, make_backbone(), str(tmp_path / "sharded"), chunk_size=2, offline_pcloud=pcloud,
                      shards=3, progress=False)


def _sub(tmp_path, name):
    os.makedirs(tmp_path / name, exist_ok=True)
    return tmp_path / name


def _kill_workers_when_a_shard_is_under_way(client, folder, stop):
    pid = list(client.run(os.getpid).values())[0]
    while not stop.is_set():
        if os.path.isdir(folder) and any(n.endswith(".h5.tmp") for n in os.listdir(folder)):
            os.kill(pid, signal.SIGKILL)  # one worker: its task reruns on the other
            return True
        time.sleep(0.002)
    return False


def test_a_killed_worker_then_a_rerun_gives_identical_content(client, tmp_path):
    rng = np.random.default_rng(0)
    X, y = rng.normal(size=(400, 64, 3)).astype("float32"), rng.integers(0, 5, size=(400, 64))
    make_backbone = lambda: Sequencer(X, y, batch_size=2, shuffle=False, seed=0)  # noqa: E731
    folder = str(tmp_path / "sharded")
    stop, killed = threading.Event(), []
    watcher = threading.Thread(target=lambda: killed.append(_kill_workers_when_a_shard_is_under_way(
        client, folder, stop)))
    watcher.start()
    try:  # the cluster reruns the killed tasks (they resume their temp files) or gives up on them
        build_sharded(client, make_backbone(), folder, chunk_size=1, shards=2, progress=False)
    except Exception as exc:
        assert type(exc).__name__ == "KilledWorker", exc
    finally:
        stop.set()
        watcher.join()
    assert killed == [True]
    client.wait_for_workers(2, timeout=60)
    build_sharded(client, make_backbone(), folder, chunk_size=1, shards=2, progress=False)
    kept = os.stat(os.path.join(folder, "shard-00000.h5")).st_ino
    os.remove(os.path.join(folder, "shard-00001.h5"))
    os.remove(os.path.join(folder, MANIFEST_NAME))
    build_sharded(client, make_backbone(), folder, chunk_size=1, shards=2, progress=False)  # rebuilds shard 1 only
    assert os.stat(os.path.join(folder, "shard-00000.h5")).st_ino == kept
    single = OfflineSequencer(make_backbone(), str(tmp_path / "one.h5"), chunk_size=1, progress=False)
    sharded = OfflineSequencer(make_backbone(), folder, chunk_size=1, progress=False)
    assert_same_batches(all_batches(single, 1), all_batches(sharded, 1))
    assert main(["cache", "verify", folder, "--scheduler", client.scheduler.address]) == 0


def test_cli_sharded_build_info_and_a_missing_dask(client, tmp_path, capsys, monkeypatch):
    make_backbone, pcloud = inputs(tmp_path)
    spec = {"sequencer": {"type": "OfflineSequencer", "backbone": {"batch_size": 3, "shuffle": False},
                          "offline_storage": "cache_dir", "chunk_size": 2, "offline_pcloud": pcloud}}
    (tmp_path / "spec.json").write_text(json.dumps(spec))
    spec_file = str(tmp_path / "spec.json")
    assert main(["cache", "build", spec_file, "--quiet", "--scheduler", client.scheduler.address, "--shards", "2"]) == 0
    assert "in 2 shards" in capsys.readouterr().out
    assert main(["cache", "info", str(tmp_path / "cache_dir"), "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert [s["file"] for s in info["shards"]] == ["shard-00000.h5", "shard-00001.h5"]
    assert info["num_samples"] == sum(s["num_samples"] for s in info["shards"]) == info["elements"][0]["rows"]
    assert main(["cache", "verify", str(tmp_path / "cache_dir")]) == 0
    assert main(["cache", "build", spec_file, "--quiet", "--shards", "2"]) == 2
    assert "--shards 2 needs --workers or --scheduler" in capsys.readouterr().err
    monkeypatch.setitem(sys.modules, "dask.distributed", None)
    assert main(["cache", "build", spec_file, "--quiet", "--workers", "2"]) == 2
    assert "--workers runs on Dask, which is not installed: pip install 'pointseq[distributed]'" in capsys.readouterr().err


def test_cli_rerun_rebuilds_exactly_the_missing_shard(client, tmp_path, capsys):
    _, pcloud = inputs(tmp_path)  # label left to its default (the .npz 'labels' array)
    spec = {"sequencer": {"type": "OfflineSequencer", "backbone": {"batch_size": 3, "shuffle": False},
                          "offline_storage": "cache_dir", "chunk_size": 2, "offline_pcloud": pcloud}}
    (tmp_path / "spec.json").write_text(json.dumps(spec))
    spec_file, folder = str(tmp_path / "spec.json"), tmp_path / "cache_dir"
    assert main(["cache", "build", spec_file, "--quiet", "--scheduler", client.scheduler.address]) == 0
    assert "in 2 shards" in capsys.readouterr().out
    manifest = (folder / MANIFEST_NAME).read_text()
    kept = os.stat(folder / "shard-00000.h5").st_ino
    os.remove(folder / "shard-00001.h5")
    assert main(["cache", "verify", str(folder)]) == 1
    assert ("shard-00001.h5': the shard file named by the manifest is missing; rerun `pointseq cache build "
            "SPEC.json --workers N`, which rebuilds only missing shards") in capsys.readouterr().err

    assert main(["cache", "build", spec_file, "--scheduler", client.scheduler.address]) == 0
    out, err = capsys.readouterr()
    assert "in 2 shards" in out
    assert "shard 1/2 shard-00000.h5" in err and "kept (complete)" in err
    assert "shard 2/2 shard-00001.h5" in err and "batches written" in err
    assert os.stat(folder / "shard-00000.h5").st_ino == kept
    assert (folder / MANIFEST_NAME).read_text() == manifest
    assert main(["cache", "verify", str(folder)]) == 0
    assert "OK" in capsys.readouterr().out

    data = bytearray((folder / "shard-00000.h5").read_bytes())
    data[data.index(b"pointseq-offline") + 3] ^= 1  # its root attributes fail their checksum
    (folder / "shard-00000.h5").write_bytes(bytes(data))
    assert main(["cache", "build", spec_file, "--quiet", "--scheduler", client.scheduler.address]) == 1
    err = capsys.readouterr().err
    assert "shard-00000.h5': the pointseq cache is damaged: its root metadata fails its checksum" in err
    assert ("delete the shard file and rerun `pointseq cache build SPEC.json --workers N`, which rebuilds only "
            "missing shards") in err
    os.remove(folder / "shard-00000.h5")
    assert main(["cache", "build", spec_file, "--quiet", "--scheduler", client.scheduler.address]) == 0
    assert main(["cache", "verify", str(folder)]) == 0
