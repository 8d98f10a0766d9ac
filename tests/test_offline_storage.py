"""The cache file format: round trips, resume, and refusal of damaged or foreign files."""

import os

import h5py
import numpy as np
import pytest

from pointseq.offline import format as fmt
from pointseq.offline.chunk_cache import ChunkCache
from pointseq.offline.errors import OfflineStorageError
from pointseq.offline.reader import CacheReader
from pointseq.offline.structure import flatten_batch
from pointseq.offline.writer import CacheWriter, write_cache


def make_batches(kind, num_batches=7, batch_size=4, last=3, seed=0):
    rng = np.random.default_rng(seed)
    out = []
    for i in range(num_batches):
        n = last if i == num_batches - 1 else batch_size
        pts = rng.normal(size=(n, 5, 3)).astype(np.float32)
        feats = rng.integers(0, 100, size=(n, 5, 2)).astype(np.int16)
        y = rng.integers(0, 3, size=(n, 5)).astype(np.int32)
        if kind == "array":
            out.append(pts)
        elif kind == "tuple":
            out.append(((pts, feats), y))
        elif kind == "dict":
            out.append(({"points": pts, "feats": feats}, {"seg": y}, rng.random(n)))
        elif kind == "x_only_tuple":
            out.append((pts,))
    return out


def assert_same(a, b):
    assert type(a) is type(b)
    if isinstance(a, tuple):
        assert len(a) == len(b)
        for u, v in zip(a, b):
            assert_same(u, v)
    elif isinstance(a, dict):
        assert list(a) == list(b)
        for k in a:
            assert_same(a[k], b[k])
    elif a is None:
        assert b is None
    else:
        assert a.dtype == b.dtype and a.shape == b.shape
        assert a.tobytes() == b.tobytes()


@pytest.mark.parametrize("kind", ["array", "tuple", "dict", "x_only_tuple"])
@pytest.mark.parametrize("compression", [None, "lzf", "gzip"])
def test_round_trip_is_bit_exact(tmp_path, kind, compression):
    batches = make_batches(kind)
    path = str(tmp_path / "c.h5")
    write_cache(path, batches, batch_size=4, chunk_size=3, fingerprint="f", compression=compression)
    reader = CacheReader(path, expected_fingerprint="f")
    h = reader.header
    assert (h.num_batches, h.num_chunks, h.num_samples, h.batch_size) == (7, 3, 27, 4)
    for i, batch in enumerate(batches):
        assert_same(reader.batch(i), batch)
    assert reader.verify() == []
    assert not os.path.exists(fmt.temp_path(path))


def test_file_layout_follows_format_version_2(tmp_path):
    path = str(tmp_path / "c.h5")
    write_cache(path, make_batches("dict"), batch_size=4, chunk_size=3, fingerprint="f")
    with h5py.File(path, "r") as f:
        assert f.attrs["format"] == b"pointseq-offline" and f.attrs["format_version"] == 2
        # text attributes are fixed-length bytes in the (checksummed) object header
        assert f.attrs.get_id("structure").dtype.kind == "S" and f.attrs["fingerprint"] == b"f"
        assert f["ordered_keys"].dtype.kind == "S" and f["ordered_keys"].fletcher32
        with open(path, "rb") as raw:  # superblock version 3: the HDF5 1.10 format, with checksums
            assert raw.read(9)[8] == 3
        assert bool(f.attrs["complete"]) and f.attrs["num_chunks"] == 3
        assert [k.decode() for k in f["ordered_keys"][()]] == ["x/points", "x/feats"]
        assert f["data/0/X0"].shape == (12, 5, 3) and f["data/2/X0"].shape == (3, 5, 3)
        assert f["data/0/batch_offsets"][()].tolist() == [0, 4, 8, 12]
        assert f["data/2/batch_offsets"][()].tolist() == [0, 3]
        assert f["references/1/Y0"].shape == (12, 5) and f["references/1/Y1"].shape == (12,)
        assert f["data/0/X0"].fletcher32 and f["data/0"].attrs["complete"]


def test_chunk_batches_are_read_only_views(tmp_path):
    path = str(tmp_path / "c.h5")
    write_cache(path, make_batches("array"), batch_size=4, chunk_size=3)
    reader = CacheReader(path)
    chunk = reader.read_chunk(0)
    first = chunk.batch(0, reader.structure)
    with pytest.raises(ValueError, match="read-only"):
        first[...] = 0
    with pytest.raises(ValueError, match="WRITEABLE"):
        first.flags.writeable = True
    assert chunk.batch(0, reader.structure).tobytes() == make_batches("array")[0].tobytes()


def test_a_chunk_buffer_is_reused_only_when_no_batch_of_it_is_alive(tmp_path):
    path = str(tmp_path / "c.h5")
    batches = make_batches("array", num_batches=9)
    write_cache(path, batches, batch_size=4, chunk_size=1)
    cache = ChunkCache(CacheReader(path), max_resident_chunks=1)
    kept = cache.get(0).batch(0, cache.reader.structure)
    for c in list(range(1, 9)) * 2:  # each read evicts the last chunk and recycles buffers
        assert cache.get(c).batch(0, cache.reader.structure).tobytes() == batches[c].tobytes()
    assert kept.tobytes() == batches[0].tobytes() and not kept.flags.writeable
    assert len(cache._free) <= 1


def test_unequal_row_counts_per_element_round_trip(tmp_path):
    rng = np.random.default_rng(0)
    batches = [({"a": rng.normal(size=(2, 3)), "b": rng.normal(size=(5,))}, rng.normal(size=(2,)))
               for _ in range(3)]
    path = str(tmp_path / "c.h5")
    write_cache(path, batches, batch_size=2, chunk_size=2)
    reader = CacheReader(path)
    for i, b in enumerate(batches):
        assert_same(reader.batch(i), b)
    chunk = reader.read_chunk(0)
    assert not chunk.rows_are_samples()
    with pytest.raises(ValueError, match="do not share row counts, so a batch cannot be cut to its first 1"):
        chunk.batch(0, reader.structure, rows=1)


def test_bad_batches_are_refused(tmp_path):
    path = str(tmp_path / "c.h5")
    with pytest.raises(TypeError, match="is a list; use a tuple or a dict"):
        flatten_batch(([np.zeros((2, 3)), np.zeros((2, 3))], np.zeros(2)))
    with pytest.raises(ValueError, match="must have a batch axis"):
        flatten_batch((np.float32(1.0), np.zeros(2)))
    batches = [np.zeros((4, 5, 3), np.float32), np.zeros((4, 6, 3), np.float32)]
    with pytest.raises(ValueError, match=r"batch 1 element 'x' has .* per-row shape \(6, 3\), expected .*\(5, 3\)"):
        write_cache(path, batches, batch_size=4, chunk_size=2)
    with pytest.raises(ValueError, match="batch 1 has the nesting"):
        write_cache(path, [np.zeros((4, 3)), (np.zeros((4, 3)), np.zeros(4))], batch_size=4)
    with pytest.raises(ValueError, match="chunk_size must be a positive int, got 0"):
        write_cache(path, [np.zeros((4, 3))], batch_size=4, chunk_size=0)
    with pytest.raises(ValueError, match="compression must be one of"):
        write_cache(path, [np.zeros((4, 3))], batch_size=4, compression="zstd")
    assert not os.path.exists(path)


def test_interrupted_write_resumes_from_last_complete_chunk(tmp_path):
    batches = make_batches("tuple", num_batches=8)
    path = str(tmp_path / "c.h5")
    writer = CacheWriter(path, batch_size=4, chunk_size=3, fingerprint="f")
    for b in batches[:5]:  # chunk 0 complete, chunk 1 pending
        writer.append(b)
    writer.close()
    assert not os.path.exists(path) and os.path.exists(fmt.temp_path(path))
    with h5py.File(fmt.temp_path(path), "a") as f:  # a half-written chunk group, as a kill leaves it
        f["data"].create_group("1").create_dataset("X0", data=np.zeros(3))
    other = CacheWriter(path, batch_size=4, chunk_size=3, fingerprint="other")
    assert other.batches_done == 0  # another fingerprint: the temp file is discarded
    other.close()
    os.remove(fmt.temp_path(path))
    writer = CacheWriter(path, batch_size=4, chunk_size=3, fingerprint="f")
    for b in batches[:7]:  # chunks 0 and 1 complete
        writer.append(b)
    writer.close()
    with h5py.File(fmt.temp_path(path), "a") as f:  # chunk 1 as a kill before its flag leaves it
        f["references/1"].attrs["complete"] = False
    resumed = CacheWriter(path, batch_size=4, chunk_size=3, fingerprint="f")
    assert resumed.batches_done == 3
    for b in batches[resumed.batches_done:]:
        resumed.append(b)
    resumed.finalize()
    reader = CacheReader(path, expected_fingerprint="f")
    assert reader.header.num_batches == 8
    for i, b in enumerate(batches):
        assert_same(reader.batch(i), b)


# ------------------------------------------------------------------------- damaged files
@pytest.fixture
def cache_file(tmp_path):
    path = str(tmp_path / "c.h5")
    write_cache(path, make_batches("tuple", num_batches=9), batch_size=4, chunk_size=3, fingerprint="f")
    return path


def test_truncated_file_is_refused(cache_file):
    size = os.path.getsize(cache_file)
    with open(cache_file, "r+b") as f:
        f.truncate(size // 2)
    with pytest.raises(OfflineStorageError, match=r"c\.h5.*truncated or corrupt.*pointseq cache build SPEC.json --force"):
        CacheReader(cache_file)


def test_flipped_byte_in_a_chunk_names_the_chunk(cache_file):
    with h5py.File(cache_file, "r") as f:
        info = f["data/1/X0"].id.get_chunk_info(0)
    with open(cache_file, "r+b") as f:
        f.seek(info.byte_offset + info.size // 2)
        byte = f.read(1)
        f.seek(-1, os.SEEK_CUR)
        f.write(bytes([byte[0] ^ 0xFF]))
    reader = CacheReader(cache_file, expected_fingerprint="f")
    reader.batch(0)  # other chunks stay readable
    for i in (3, 4, 5):
        with pytest.raises(OfflineStorageError, match=r"c\.h5', chunk 1: dataset /data/1/X0 failed its checksum"):
            reader.batch(i)
    faults = reader.verify()
    assert len(faults) == 1 and "chunk 1" in faults[0]


def test_missing_chunk_group_is_refused(cache_file):
    with h5py.File(cache_file, "a") as f:
        del f["data/2"]
    with pytest.raises(OfflineStorageError, match=r"chunk 2: group /data/2 is missing"):
        CacheReader(cache_file)


def test_wrong_format_version_is_refused(cache_file):
    with h5py.File(cache_file, "a") as f:
        f.attrs["format_version"] = 3
    with pytest.raises(OfflineStorageError, match="format version 3 is not supported.*reads format version 2"):
        CacheReader(cache_file)


def test_incomplete_or_foreign_file_is_refused(cache_file, tmp_path):
    with pytest.raises(OfflineStorageError, match="built from another config or other data"):
        CacheReader(cache_file, expected_fingerprint="g")
    with h5py.File(cache_file, "a") as f:
        f.attrs["complete"] = False
    with pytest.raises(OfflineStorageError, match="incomplete"):
        CacheReader(cache_file)
    other = str(tmp_path / "other.h5")
    with h5py.File(other, "w") as f:
        f.attrs["format"] = "something-else"
    with pytest.raises(OfflineStorageError, match="not a pointseq offline cache"):
        CacheReader(other)


def test_bad_offsets_are_refused(cache_file):
    with h5py.File(cache_file, "a") as f:
        del f["data/0/batch_offsets"]
        f["data/0"].create_dataset("batch_offsets", data=np.array([0, 8, 4, 12]))
    reader = CacheReader(cache_file)
    with pytest.raises(OfflineStorageError, match=r"chunk 0: input batch_offsets \[0, 8, 4, 12\]"):
        reader.read_chunk(0)
    reader.close()
    # offsets that skip rows of the data
    with h5py.File(cache_file, "a") as f:
        del f["data/0/batch_offsets"]
        f["data/0"].create_dataset("batch_offsets", data=np.array([0, 4, 8, 11]))
    with pytest.raises(OfflineStorageError, match="chunk 0: input batch_offsets"):
        CacheReader(cache_file).read_chunk(0)


def test_a_file_started_without_a_fingerprint_resumes_only_once_it_has_one(tmp_path):
    batches = make_batches("tuple", num_batches=8)
    path = str(tmp_path / "c.h5")
    writer = CacheWriter(path, batch_size=4, chunk_size=3, fingerprint=None)
    for b in batches[:4]:  # chunk 0 complete
        writer.append(b)
    with pytest.raises(ValueError, match="its fingerprint was never set"):
        writer.finalize()
    writer.close()
    fresh = CacheWriter(path, batch_size=4, chunk_size=3, fingerprint="f")
    assert fresh.batches_done == 0
    for b in batches[:4]:
        fresh.append(b)
    fresh.close()
    writer = CacheWriter(path, batch_size=4, chunk_size=3, fingerprint=None)  # discards that temp file
    for b in batches[:4]:
        writer.append(b)
    writer.set_fingerprint("f")
    with pytest.raises(ValueError, match="fingerprint is already 'f', got 'g'"):
        writer.set_fingerprint("g")
    writer.close()
    resumed = CacheWriter(path, batch_size=4, chunk_size=3, fingerprint="f")
    assert resumed.batches_done == 3
    for b in batches[3:]:
        resumed.append(b)
    resumed.finalize()
    reader = CacheReader(path, expected_fingerprint="f")
    for i, b in enumerate(batches):
        assert_same(reader.batch(i), b)
