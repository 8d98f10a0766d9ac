"""Child process of the fault-injection test: flip metadata bits of a cache, read it back.

Usage: flip_bits.py CACHE EXPECTED.npz POSITIONS.npy WORKDIR. For each (byte, bit) in
POSITIONS it writes CACHE with that bit flipped, reads every batch and verifies, and prints
one flushed line "<index> <outcome>": correct, error (OfflineStorageError), wrong (data read
without error but different) or other:<exception>. A crash or hang shows as a missing line.
"""

import os
import sys

import numpy as np
from light_import import register_offline_package

register_offline_package()
from pointseq.offline.errors import OfflineStorageError  # noqa: E402
from pointseq.offline.reader import CacheReader  # noqa: E402


def outcome(path: str, expected: dict) -> str:
    try:
        reader = CacheReader(path, expected_fingerprint="f")
        h = reader.header
        if (h.num_batches, h.num_samples, h.batch_size, h.chunk_size) != tuple(expected["header"]):
            return "wrong"
        for i in range(h.num_batches):
            x, y = reader.batch(i)
            if not (np.array_equal(x, expected[f"x{i}"]) and np.array_equal(y, expected[f"y{i}"])
                    and x.dtype == expected[f"x{i}"].dtype and y.dtype == expected[f"y{i}"].dtype):
                return "wrong"
        faults = reader.verify()
        reader.close()
        return "error" if faults else "correct"
    except OfflineStorageError:
        return "error"
    except Exception as exc:  # noqa: BLE001 - reported to the parent
        return f"other:{type(exc).__name__}:{exc}".replace("\n", " ")[:300]


def main() -> None:
    cache, expected_path, positions_path, workdir = sys.argv[1:5]
    original = open(cache, "rb").read()
    expected = dict(np.load(expected_path))
    target = os.path.join(workdir, "flipped.h5")
    for index, (byte, bit) in enumerate(np.load(positions_path)):
        data = bytearray(original)
        data[byte] ^= 1 << int(bit)
        with open(target, "wb") as f:
            f.write(data)
        print(index, outcome(target, expected), flush=True)


if __name__ == "__main__":
    main()
