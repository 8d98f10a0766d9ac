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
    positions, num_meta = metadata_positions(cache, 1000)
    results = run_flips(cache, str(tmp_path / "expected.npz"), positions, str(tmp_path))
    counts = Counter(r.split(":")[0] for r in results)
    print(f"metadata bytes {num_meta}, positions tried {len(results)}: {dict(counts)}")
    bad = [(int(p[0]), int(p[1]), r) for p, r in zip(positions, results) if r not in ("correct", "error")]
    assert bad == []
    assert counts["error"] > len(results) // 2  # the flips hit checksummed metadata, not just slack
