"""Fit the OfflineSequencer pipeline with Keras' worker processes started by spawn.

Usage: ``spawn_workers.py CACHE_DIR OUT.npz``; the backend comes from ``KERAS_BACKEND``.
A separate interpreter because the start method is process-wide and must be chosen before
the first worker pool: Keras creates one worker-id queue per process on first use
(``get_worker_id_queue`` in keras/src/trainers/data_adapters/py_dataset_adapter.py) and a
queue made under fork cannot be handed to spawned workers ("A SemLock created in a fork
context is being shared with a process in a spawn context").
"""

import multiprocessing
import os
import sys
from pathlib import Path

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path[:0] = [os.path.dirname(HERE), os.path.dirname(os.path.dirname(HERE))]


def main() -> None:
    multiprocessing.set_start_method("spawn")
    import numpy as np

    import test_backends

    def make(options):
        return test_backends.offline_sequencer(Path(sys.argv[1]), **options), test_backends.dense_model("tuple")

    weights = test_backends.fit_weights(make, "processes")
    np.savez(sys.argv[2], *weights)


if __name__ == "__main__":
    main()
