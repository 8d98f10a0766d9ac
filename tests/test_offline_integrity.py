"""Cache integrity under damage: flipped metadata bits, missing chunks, a full disk."""

import os
import select
import subprocess
import sys
import time
from collections import Counter

import h5py
import numpy as np
import pytest

from pointseq.offline.errors import OfflineStorageError
from pointseq.offline.reader import CacheReader
from pointseq.offline.writer import write_cache

CHILD = os.path.join(os.path.dirname(__file__), "faults", "flip_bits.py")


def small_batches(num_batches=5, batch_size=4):
    rng = np.random.default_rng(1)
    return [(rng.normal(size=(batch_size, 6, 3)).astype(np.float32),
             rng.integers(1, 5, size=(batch_size, 6)).astype(np.int32)) for _ in range(num_batches)]


def data_ranges(path):
    """Byte ranges of the raw data of every dataset: everything else is metadata."""
    ranges = []
    with h5py.File(path, "r") as f:
        def visit(_, obj):
            if isinstance(obj, h5py.Dataset):
                if obj.chunks is None:
                    if obj.id.get_offset() is not None:
                        ranges.append((obj.id.get_offset(), obj.id.get_storage_size()))
                else:
                    for k in range(obj.id.get_num_chunks()):
                        info = obj.id.get_chunk_info(k)
                        ranges.append((info.byte_offset, info.size))
        f.visititems(visit)
    return ranges


def metadata_positions(path, count, seed=0):
    size = os.path.getsize(path)
    is_meta = np.ones(size, dtype=bool)
    for start, length in data_ranges(path):
        is_meta[start:start + length] = False
    meta = np.flatnonzero(is_meta)
    rng = np.random.default_rng(seed)
    chosen = np.sort(rng.choice(meta, size=min(count, meta.size), replace=False))
    return np.stack([chosen, rng.integers(0, 8, size=chosen.size)], axis=1), meta.size


def run_flips(cache, expected, positions, workdir, line_timeout=10.0):
    """Outcome per position; a child that dies or stalls marks its position crash or hang."""
    outcomes = {}
    start = 0
    while start < len(positions):
        np.save(os.path.join(workdir, "positions.npy"), positions[start:])
        child = subprocess.Popen([sys.executable, CHILD, cache, expected, os.path.join(workdir, "positions.npy"),
                                  workdir], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
        done, deadline = start, time.monotonic() + 60 + line_timeout  # the first line waits for imports
        while done < len(positions):
            ready, _, _ = select.select([child.stdout], [], [], max(0.0, deadline - time.monotonic()))
            line = child.stdout.readline() if ready else ""
            if not line:
                break
            index, result = line.rstrip("\n").split(" ", 1)
            outcomes[start + int(index)] = result
            done = start + int(index) + 1
            deadline = time.monotonic() + line_timeout
        if done < len(positions):
            child.kill()
            code = child.wait()
            outcomes[done] = "hang" if code == -9 and not ready else f"crash:{code}"
            done += 1
        child.wait()
        start = done
    return [outcomes[i] for i in range(len(positions))]


def test_flipped_metadata_bits_never_give_wrong_data_crash_or_hang(tmp_path):
    batches = small_batches()
    cache = str(tmp_path / "c.h5")
    write_cache(cache, batches, batch_size=4, chunk_size=2, fingerprint="f")
    expected = {"header": np.array([5, 20, 4, 2])}
    for i, (x, y) in enumerate(batches):
        expected[f"x{i}"], expected[f"y{i}"] = x, y
    np.savez(str(tmp_path / "expected.npz"), **expected)
    positions, num_meta = metadata_positions(cache, 600)
    results = run_flips(cache, str(tmp_path / "expected.npz"), positions, str(tmp_path))
    counts = Counter(r.split(":")[0] for r in results)
    print(f"metadata bytes {num_meta}, positions tried {len(results)}: {dict(counts)}")
    bad = [(int(p[0]), int(p[1]), r) for p, r in zip(positions, results) if r not in ("correct", "error")]
    assert bad == []
    assert counts["error"] > len(results) // 2  # the flips hit checksummed metadata, not just slack


def test_unallocated_chunk_is_an_error_not_zeros(tmp_path):
    """A chunk index that lost a storage chunk reads as fill values: refused on read and verify."""
    cache = str(tmp_path / "c.h5")
    write_cache(cache, small_batches(), batch_size=4, chunk_size=2, fingerprint="f")
    with h5py.File(cache, "a") as f:
        old = f["data/1/X0"]
        shape, dtype = old.shape, old.dtype
        del f["data/1/X0"]
        f["data/1"].create_dataset("X0", shape=shape, dtype=dtype, chunks=(2,) + shape[1:], fletcher32=True)
    reader = CacheReader(cache)
    with pytest.raises(OfflineStorageError, match=r"chunk 1: .*X0 has 0 of its 4 storage chunks"):
        reader.batch(2)
    assert len(reader.verify()) == 1


def test_version_1_cache_is_refused_with_a_rebuild_message(tmp_path):
    path = str(tmp_path / "v1.h5")
    with h5py.File(path, "w") as f:
        f.attrs["format"] = "pointseq-offline"
        f.attrs["format_version"] = 1
    with pytest.raises(OfflineStorageError, match="format version 1 .* no longer read.*rebuild it"):
        CacheReader(path)


def test_malformed_structure_is_refused_on_open(tmp_path):
    cache = str(tmp_path / "c.h5")
    write_cache(cache, small_batches(), batch_size=4, chunk_size=2, fingerprint="f")
    with h5py.File(cache, "a") as f:
        f.attrs["structure"] = f.attrs["structure"].replace(b'"array": 0}, "y"', b'"array": 3}, "y"')
    with pytest.raises(OfflineStorageError, match="malformed batch structure"):
        CacheReader(cache)


def test_num_samples_disagreeing_with_offsets_fails_verify(tmp_path):
    cache = str(tmp_path / "c.h5")
    write_cache(cache, small_batches(), batch_size=4, chunk_size=2, fingerprint="f")
    with h5py.File(cache, "a") as f:
        f.attrs["num_samples"] = 19
    faults = CacheReader(cache).verify()
    assert len(faults) == 1 and "num_samples=19, but the batch_offsets hold 20 samples" in faults[0]
    with pytest.raises(OfflineStorageError, match="describe 5 batches of 20 samples"):
        CacheReader(cache).batch_row_starts()


FULL_DISK_CHILD = """
import resource, signal, sys
import numpy as np
sys.path.insert(0, sys.argv[3])
from light_import import register_offline_package
register_offline_package()
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # writes past the limit fail with EFBIG, as on a full disk
resource.setrlimit(resource.RLIMIT_FSIZE, (int(sys.argv[2]), resource.RLIM_INFINITY))
from pointseq.offline.errors import OfflineStorageError
from pointseq.offline.writer import CacheWriter
rng = np.random.default_rng(0)
writer = CacheWriter(sys.argv[1], batch_size=8, chunk_size=2, fingerprint="f")
try:
    for i in range(writer.batches_done, 12):
        writer.append((np.full((8, 4000, 3), i, np.float32), np.full((8, 4000), i, np.int64)))
    writer.finalize()
    print("finished")
except OfflineStorageError as exc:
    print("refused after", writer.batches_done, "batches:", exc)
finally:
    writer.close()
"""


def test_full_disk_is_a_clear_error_and_a_rerun_resumes(tmp_path):
    """The file-size limit stands in for a full disk: HDF5's own writes fail at it."""
    path = str(tmp_path / "c.h5")

    def build(limit):
        return subprocess.run([sys.executable, "-c", FULL_DISK_CHILD, path, str(limit), os.path.dirname(CHILD)], capture_output=True,
                              text=True, timeout=120)

    first = build(3_000_000)  # room for a chunk or two of the six
    assert first.returncode == 0, first.stderr[-2000:]
    assert "refused after" in first.stdout and "the disk is full" in first.stdout
    assert "free space and rerun: the build resumes" in first.stdout
    written = int(first.stdout.split("refused after ")[1].split()[0])
    assert written >= 2 and not os.path.exists(path) and os.path.exists(path + ".tmp")
    second = build(2**40)
    assert second.returncode == 0 and second.stdout.strip() == "finished", second.stderr[-2000:]
    reader = CacheReader(path, expected_fingerprint="f")
    assert reader.header.num_batches == 12 and reader.verify() == []
    assert np.all(reader.batch(11)[0] == 11) and np.all(reader.batch(0)[1] == 0)


# -- bad input fails early ----------------------------------------------------------------
from pointseq.offline.sequencer import OfflineSequencer  # noqa: E402
from pointseq.sequencers import Sequencer  # noqa: E402


def clouds(n=8):
    rng = np.random.default_rng(0)
    return rng.normal(size=(n, 5, 3)).astype(np.float32), rng.integers(0, 3, size=(n, 5))


def test_nan_or_inf_coordinates_are_refused_naming_the_sample():
    X, y = clouds()
    X[5, 2, 1] = np.nan
    X[6, 0, 0] = np.inf
    with pytest.raises(ValueError, match=r"2 sample\(s\), the first is sample 5; coordinates must be finite"):
        Sequencer(X, y, batch_size=4)


@pytest.mark.parametrize("labels", [np.array(["a"] * 8), np.array([None] * 8, dtype=object)])
def test_label_dtype_object_or_str_is_refused(labels):
    with pytest.raises(TypeError, match="y must be a numeric array"):
        Sequencer(clouds()[0], labels, batch_size=4)


def test_y_without_x_is_refused():
    with pytest.raises(ValueError, match="y was given without X"):
        Sequencer(None, clouds()[1], batch_size=4)


@pytest.mark.parametrize("name", ["shuffle", "drop_last", "training", "random_shuffle_indices"])
def test_string_booleans_are_refused(name):
    with pytest.raises(TypeError, match=f"{name} must be True or False, got 'false'.*without quotes"):
        Sequencer(*clouds(), batch_size=4, **{name: "false"})


def test_offline_options_are_checked_before_any_build(tmp_path):
    backbone = Sequencer(*clouds(), batch_size=4)
    path = str(tmp_path / "c.h5")
    with pytest.raises(TypeError, match="chunk_randomization must be True or False, got 'false'"):
        OfflineSequencer(backbone, path, chunk_randomization="false")
    with pytest.raises(ValueError, match="max_resident_chunks must be an int >= 1, got 0"):
        OfflineSequencer(backbone, path, max_resident_chunks=0)
    with pytest.raises(ValueError, match="offline_storage must be the path of a cache file, got '' \\(empty\\)"):
        OfflineSequencer(backbone, "")
    with pytest.raises(ValueError, match="a directory"):
        OfflineSequencer(backbone, str(tmp_path))
    assert os.listdir(tmp_path) == []  # nothing was built


def test_cache_in_a_directory_that_does_not_exist_yet_is_built(tmp_path):
    path = tmp_path / "new" / "deeper" / "c.h5"
    seq = OfflineSequencer(Sequencer(*clouds(), batch_size=4), path, progress=False)
    assert os.path.exists(path) and seq.num_cache_batches == 2
    seq.close()


KILLED_CHILD = """
import os, sys
import numpy as np
sys.path.insert(0, sys.argv[2])
from light_import import register_offline_package
register_offline_package()
from pointseq.offline.writer import CacheWriter
writer = CacheWriter(sys.argv[1], batch_size=4, chunk_size=2, fingerprint="f")
for i in range(5):
    writer.append((np.full((4, 6, 3), i, np.float32), np.full((4, 6), i, np.int32)))
os._exit(0)  # killed: HDF5's "open for writing" mark stays in the superblock
"""


def test_killed_build_resumes_despite_the_open_for_writing_mark(tmp_path):
    from pointseq.offline.writer import CacheWriter

    path = str(tmp_path / "c.h5")
    subprocess.run([sys.executable, "-c", KILLED_CHILD, path, os.path.dirname(CHILD)], check=True, timeout=120)
    with pytest.raises(OSError, match="already open for write"):
        h5py.File(path + ".tmp", "r")
    with CacheWriter(path, batch_size=4, chunk_size=2, fingerprint="f") as writer:
        assert writer.batches_done == 4  # two complete chunks kept
        writer.append((np.full((4, 6, 3), 4, np.float32), np.full((4, 6), 4, np.int32)))
        writer.finalize()
    reader = CacheReader(path, expected_fingerprint="f")
    assert reader.verify() == [] and [int(reader.batch(i)[1][0, 0]) for i in range(5)] == [0, 1, 2, 3, 4]


# ---------------------------------------------------------------- damaged metadata: ours, said so
def flipped(path, offset, bit=0):
    data = bytearray(open(path, "rb").read())
    data[offset] ^= 1 << bit
    open(path, "wb").write(bytes(data))


@pytest.mark.parametrize("where", ["root attributes", "signature"])
def test_damaged_metadata_is_a_damaged_cache_with_how_to_rebuild_it(tmp_path, capsys, where):
    from pointseq.cli.main import main

    cache = str(tmp_path / "c.h5")
    write_cache(cache, small_batches(), batch_size=4, chunk_size=2, fingerprint="f")
    offset = open(cache, "rb").read().index(b"pointseq-offline") + 3 if where == "root attributes" else 1
    flipped(cache, offset)  # the format attribute's text (checksummed object header), or the HDF5 signature
    expected = ("the pointseq cache is damaged: its root metadata fails its checksum" if where == "root attributes"
                else "the file is damaged: its first 8 bytes (the HDF5 signature) are corrupt")
    for command in ("info", "verify"):
        assert main(["cache", command, cache]) == 1
        err = capsys.readouterr().err
        assert f"offline cache {cache!r}: {expected}" in err
        assert "rebuild it with `pointseq cache build SPEC.json --force`" in err
        assert "not a pointseq offline cache" not in err and "Traceback" not in err


def test_every_damaged_object_header_is_reported_as_a_damaged_cache(tmp_path):
    cache = str(tmp_path / "c.h5")
    write_cache(cache, small_batches(), batch_size=4, chunk_size=2, fingerprint="f")
    original = open(cache, "rb").read()
    headers = [k for k in range(len(original)) if original.startswith(b"OHDR", k)]
    assert len(headers) > 10
    messages = []
    for k in headers:
        open(cache, "wb").write(original)
        flipped(cache, k + 7)  # a byte inside the header, under its checksum
        try:
            reader = CacheReader(cache)
            messages += reader.verify()
            reader.close()
        except OfflineStorageError as exc:
            messages.append(str(exc))
    assert len(messages) >= len(headers)
    assert [m for m in messages if "the pointseq cache is damaged: " not in m or "rebuild it with" not in m] == []


def test_someone_elses_damaged_hdf5_file_is_never_advised_deleted(tmp_path):
    path = str(tmp_path / "theirs.h5")
    with h5py.File(path, "w", libver=("v110", "latest")) as f:  # checksummed metadata, like a cache
        f["points"] = np.zeros((4, 3))
        f.attrs["survey"] = np.bytes_(b"north-field-2024")
    original = open(path, "rb").read()
    flipped(path, original.index(b"north-field") + 2)  # the root header: nothing says whose file it is
    with pytest.raises(OfflineStorageError, match=r"the file is damaged: its root metadata fails its checksum .*"
                                                  r"if it is a pointseq cache, rebuild it with") as info:
        CacheReader(path)
    assert "delete" not in str(info.value)
    with h5py.File(path, "w", libver=("v110", "latest")) as f:
        f["points"] = np.zeros((4, 3))
        for k in range(12):  # more than 8: stored apart from the root header, which stays readable
            f.attrs[f"survey{k}"] = np.bytes_(b"north-field-%02d" % k)
    flipped(path, open(path, "rb").read().index(b"north-field") + 2)
    with pytest.raises(OfflineStorageError, match=r"is not a pointseq offline cache \(format attribute None") as info:
        CacheReader(path)
    assert "delete" not in str(info.value) and "rebuil" not in str(info.value)


def test_force_rebuilds_a_damaged_cache_but_never_replaces_someone_elses_file(tmp_path):
    from pointseq.offline.build import build_cache
    from pointseq.offline.errors import NotACacheError
    from pointseq.sequencers import Sequencer

    rng = np.random.default_rng(0)
    backbone = Sequencer(rng.normal(size=(8, 6, 3)).astype("float32"), rng.integers(0, 3, (8, 6)).astype("int32"),
                         batch_size=2, shuffle=False, seed=0)
    theirs = str(tmp_path / "theirs.h5")
    with h5py.File(theirs, "w") as f:
        f["points"] = np.zeros((4, 3))
    text = tmp_path / "notes.h5"
    text.write_text("field notes\n")
    before = open(theirs, "rb").read()
    for path in (theirs, str(text)):
        with pytest.raises(NotACacheError, match="is not a pointseq offline cache"):
            build_cache(backbone, path, force=True, progress=False)
    assert open(theirs, "rb").read() == before and text.read_text() == "field notes\n"
    ours = str(tmp_path / "ours.h5")
    build_cache(backbone, ours, progress=False)
    flipped(ours, open(ours, "rb").read().index(b"ordered_keys"))  # damaged metadata: ours, so force rebuilds it
    build_cache(backbone, ours, force=True, progress=False)
    CacheReader(ours).close()
