"""The data every distributed worker and the test that checks them build identically.

No backend is imported here: the test imports this module to build the shared cache and to
compute the expected stream, and each worker imports it after choosing its backend.
"""

from __future__ import annotations

import os

import numpy as np

NUM_SAMPLES, NUM_POINTS, BATCH_SIZE, CHUNK_SIZE, SEED = 26, 8, 4, 2, 11
AUGMENTOR = {"transformations": [{"type": "Rotation", "axis": [0, 0, 1]},
                                 {"type": "Jitter", "noise_distribution": {"type": "normal", "mean": 0, "stdev": 0.01}}]}


def arrays() -> tuple[tuple[np.ndarray, np.ndarray], np.ndarray]:
    """``((points, sample_id), y)``: the id column lets a worker report the samples it trained on."""
    rng = np.random.default_rng(0)
    points = rng.normal(size=(NUM_SAMPLES, NUM_POINTS, 3)).astype("float32")
    ids = np.arange(NUM_SAMPLES, dtype="float32")[:, None]
    y = (points[:, :, 2].mean(axis=1) > 0).astype("float32")[:, None]
    return (points, ids), y


def offline_sequencer(cache: str | os.PathLike, *, build: bool = False, **kwargs):
    """The OfflineSequencer over ``cache``; only the caller with ``build=True`` may write it."""
    from pointseq.offline import OfflineSequencer
    from pointseq.sequencers import Sequencer

    X, y = arrays()
    backbone = Sequencer(X, y, batch_size=BATCH_SIZE, shuffle=False, seed=SEED, augmentor=AUGMENTOR)
    return OfflineSequencer(backbone, cache, chunk_size=CHUNK_SIZE, chunk_randomization=True,
                            batch_randomization=True, seed=SEED, progress=False,
                            disable_offline_storage_writing=not build, **kwargs)
