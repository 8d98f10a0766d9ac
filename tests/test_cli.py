"""The pointseq command line: cache build, info and verify, and usage errors."""

import json
import os
import subprocess
import sys

import h5py
import numpy as np
import pytest

from pointseq.cli.main import main
from pointseq.offline.reader import CacheReader


@pytest.fixture
def spec_file(tmp_path):
    rng = np.random.default_rng(0)
    np.save(tmp_path / "x.npy", rng.normal(size=(22, 8, 3)).astype("float32"))
    np.save(tmp_path / "f.npy", rng.normal(size=(22, 8, 2)).astype("float32"))
    np.save(tmp_path / "y.npy", rng.integers(0, 2, size=(22, 1)).astype("int32"))
    spec = {
        "sequencer": {"type": "OfflineSequencer", "offline_storage": "cache.h5", "chunk_size": 2,
                      "compression": "lzf", "seed": 1,
                      "backbone": {"type": "Sequencer", "batch_size": 4, "shuffle": False, "seed": 1}},
        "data": {"X": ["x.npy", "f.npy"], "y": "y.npy"},
    }
    path = tmp_path / "spec.json"
    path.write_text(json.dumps(spec))
    return str(path)


def test_build_info_verify(spec_file, tmp_path, capsys):
    assert main(["cache", "build", spec_file, "--quiet"]) == 0
    cache = str(tmp_path / "cache.h5")
    assert "6 batches, 22 samples, 3 chunks" in capsys.readouterr().out
    reader = CacheReader(cache)
    x, y = reader.batch(5)
    np.testing.assert_array_equal(x[1], np.load(tmp_path / "f.npy")[20:])
    np.testing.assert_array_equal(y, np.load(tmp_path / "y.npy")[20:])
    reader.close()

    assert main(["cache", "build", spec_file, "--quiet"]) == 0  # already built: kept
    assert main(["cache", "info", cache]) == 0
    out = capsys.readouterr().out
    assert "batches 6 (batch_size 4), samples 22, chunks 3 (chunk_size 2)" in out
    assert "x/1" in out and "float32" in out and "rows 22 x (8, 2)" in out and "lzf" in out
    assert main(["cache", "info", cache, "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["num_batches"] == 6 and info["config"]["backbone"]["batch_size"] == 4
    assert [e["name"] for e in info["elements"]] == ["x/0", "x/1", "y"]
    assert info["elements"][2]["dtype"] == "int32" and info["elements"][0]["bytes"] == 22 * 8 * 3 * 4
    assert main(["cache", "verify", cache]) == 0
    assert "OK, 3 chunks, 6 batches, 22 samples verified" in capsys.readouterr().out


def test_verify_fails_on_a_corrupted_chunk(spec_file, tmp_path, capsys):
    assert main(["cache", "build", spec_file, "--quiet"]) == 0
    cache = str(tmp_path / "cache.h5")
    with h5py.File(cache, "r") as f:
        info = f["references/2/Y0"].id.get_chunk_info(0)
    with open(cache, "r+b") as f:
        f.seek(info.byte_offset)
        first = f.read(1)
        f.seek(info.byte_offset)
        f.write(bytes([first[0] ^ 0x01]))
    capsys.readouterr()
    assert main(["cache", "verify", cache]) == 1
    err = capsys.readouterr().err
    assert "chunk 2" in err and "/references/2/Y0" in err and "1 fault(s)" in err
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
    done = subprocess.run([sys.executable, "-m", "pointseq.cli.main", "cache", "verify", cache], env=env,
                          capture_output=True, text=True, cwd=os.path.dirname(os.path.dirname(__file__)))
    assert done.returncode == 1 and "chunk 2" in done.stderr


def test_build_refuses_a_cache_of_another_config_unless_forced(spec_file, tmp_path, capsys):
    assert main(["cache", "build", spec_file, "--quiet"]) == 0
    spec = json.loads(open(spec_file).read())
    spec["sequencer"]["backbone"]["batch_size"] = 5
    with open(spec_file, "w") as f:
        json.dump(spec, f)
    assert main(["cache", "build", spec_file, "--quiet"]) == 1
    assert "built from another config or other data" in capsys.readouterr().err
    assert main(["cache", "build", spec_file, "--quiet", "--force"]) == 0
    assert "5 batches, 22 samples" in capsys.readouterr().out


def test_usage_errors_exit_2(spec_file, tmp_path, capsys):
    assert main([]) == 2
    assert main(["cache"]) == 2
    assert main(["cache", "info", str(tmp_path / "missing.h5")]) == 2
    assert "does not exist" in capsys.readouterr().err
    assert main(["cache", "build", str(tmp_path / "missing.json")]) == 2
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"sequencer": {"type": "Sequencer"}}))
    assert main(["cache", "build", str(bad)]) == 2
    assert "sequencer.type must be 'OfflineSequencer'" in capsys.readouterr().err
    bad.write_text(json.dumps({"sequencer": {"type": "OfflineSequencer", "offline_storage": "c.h5",
                                             "backbone": {"type": "Sequencer"}}, "data": {"X": "nope.npy"}}))
    assert main(["cache", "build", str(bad)]) == 2
    assert "data.X file" in capsys.readouterr().err
    bad.write_text("{not json")
    assert main(["cache", "build", str(bad)]) == 2
    assert "not valid JSON" in capsys.readouterr().err


def test_info_and_verify_report_a_file_or_folder_that_is_not_a_cache(tmp_path, capsys):
    path = tmp_path / "junk.h5"
    path.write_bytes(b"not hdf5 at all")
    (tmp_path / "photos").mkdir()
    for target, problem in ((path, "not an HDF5 file"), (tmp_path / "photos", "a folder with neither a "
                                                                              "manifest.json nor shard files")):
        for command in ("info", "verify"):
            assert main(["cache", command, str(target)]) == 1
            err = capsys.readouterr().err
            assert f"{str(target)!r} is not a pointseq offline cache ({problem}); it is left alone: give the path " \
                   "of a cache file or of a sharded cache's folder" in err
            assert "new path" not in err and "build" not in err and "delete" not in err


def test_cache_info_is_the_offline_package_s(spec_file, tmp_path):
    from pointseq.offline.info import cache_info

    assert main(["cache", "build", spec_file, "--quiet"]) == 0
    info = cache_info(tmp_path / "cache.h5")
    assert (info["num_batches"], info["num_samples"], info["num_chunks"]) == (6, 22, 3)
    assert [(e["name"], e["rows"], e["row_shape"]) for e in info["elements"]] == [
        ("x/0", 22, [8, 3]), ("x/1", 22, [8, 2]), ("y", 22, [1])]
    with open(os.path.join(os.path.dirname(os.path.dirname(__file__)), "cli", "cache.py")) as f:
        assert "import h5py" not in f.read()  # the command prints; the offline package reads the layout


def test_build_with_an_unreadable_npy_is_a_usage_error(spec_file, tmp_path, capsys):
    (tmp_path / "f.npy").write_bytes(b"not an npy file")
    assert main(["cache", "build", spec_file, "--quiet"]) == 2
    err = capsys.readouterr().err
    assert "data.X[1] file" in err and "cannot be read as .npy or .npz" in err and "Traceback" not in err


def test_info_and_verify_of_a_damaged_cache_print_one_line_no_traceback(spec_file, tmp_path, capsys):
    assert main(["cache", "build", spec_file, "--quiet"]) == 0
    cache = tmp_path / "cache.h5"
    data = bytearray(cache.read_bytes())
    data[200:260] = bytes(60)  # zero part of the root object header: its checksum fails
    cache.write_bytes(bytes(data))
    for command in ("info", "verify"):
        capsys.readouterr()
        assert main(["cache", command, str(cache)]) == 1
        err = capsys.readouterr().err
        assert "offline cache" in err and "rebuild it" in err and "Traceback" not in err


def test_build_over_a_damaged_cache_says_so_and_force_rebuilds_it(spec_file, tmp_path, capsys):
    assert main(["cache", "build", spec_file, "--quiet"]) == 0
    cache = tmp_path / "cache.h5"
    data = bytearray(cache.read_bytes())
    data[data.index(b"pointseq-offline") + 3] ^= 1  # the format attribute: its object header's checksum fails
    cache.write_bytes(bytes(data))
    capsys.readouterr()
    assert main(["cache", "build", spec_file, "--quiet"]) == 1
    err = capsys.readouterr().err
    assert f"offline cache {str(cache)!r}: the pointseq cache is damaged: its root metadata fails its checksum" in err
    assert "rebuild it with `pointseq cache build SPEC.json --force`" in err and "not a pointseq" not in err
    assert main(["cache", "build", spec_file, "--quiet", "--force"]) == 0
    assert main(["cache", "verify", str(cache)]) == 0
