"""Two processes building the same cache at once: one builds, the other waits and reuses it."""

import multiprocessing
import os
import time

import numpy as np

from pointseq.offline import CacheReader, build_cache
from pointseq.sequencers import Sequencer


class _SlowSequencer(Sequencer):
    def extract_input_batch(self, indices):
        time.sleep(0.02)
        return super().extract_input_batch(indices)


def _data():
    rng = np.random.default_rng(0)
    return rng.normal(size=(48, 16, 3)).astype("float32"), rng.integers(0, 3, size=(48, 16))


def _build(path, results):
    X, y = _data()
    results.put(build_cache(_SlowSequencer(X, y, batch_size=4, shuffle=False, seed=0), path, chunk_size=2,
                            progress=False))


def test_concurrent_builders_leave_one_good_cache(tmp_path):
    path = str(tmp_path / "shared.h5")
    ctx = multiprocessing.get_context("fork")
    results = ctx.Queue()
    builders = [ctx.Process(target=_build, args=(path, results)) for _ in range(2)]
    for p in builders:
        p.start()
    fingerprints = {results.get(timeout=120), results.get(timeout=120)}
    for p in builders:
        p.join(timeout=60)
        assert p.exitcode == 0
    assert len(fingerprints) == 1
    assert not os.path.exists(path + ".tmp")
    reader = CacheReader(path, expected_fingerprint=fingerprints.pop())
    X, y = _data()
    assert reader.header.num_batches == 12
    np.testing.assert_array_equal(np.concatenate([reader.batch(b)[0] for b in range(12)]), X)
    reader.close()
