"""fit epoch time through Sequencer and OfflineSequencer against in-memory numpy arrays.

Prints one JSON object. The same model architecture, data, batch size and number of
epochs run side by side in one process; the first epoch (tracing, cache warm-up) is left
out and the median of the others compared. Target (DESIGN.md): <= 1.05x.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import keras  # noqa: E402
import numpy as np  # noqa: E402

from pointseq.offline import OfflineSequencer  # noqa: E402
from pointseq.sequencers import EpochSync, Sequencer  # noqa: E402
from pointseq.sequencers.models.pointnet_model import build_pointnet_segmentation_model  # noqa: E402


class EpochTimer(keras.callbacks.Callback):
    def on_train_begin(self, logs=None):
        self.times = []

    def on_epoch_begin(self, epoch, logs=None):
        self._start = time.perf_counter()

    def on_epoch_end(self, epoch, logs=None):
        self.times.append(time.perf_counter() - self._start)


def timed_fit(data, y=None, *, epochs, batch_size, callbacks=()):
    keras.utils.set_random_seed(0)
    model = build_pointnet_segmentation_model(data_points, 4, width=64)
    model.compile(keras.optimizers.Adam(1e-3), "sparse_categorical_crossentropy")
    timer = EpochTimer()
    kwargs = dict(batch_size=batch_size, shuffle=True) if y is not None else dict(shuffle=False)
    model.fit(data, y, epochs=epochs, verbose=0, callbacks=[timer, *callbacks], **kwargs)
    return float(np.median(timer.times[1:]))


def main() -> None:
    global data_points
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--samples", type=int, default=512)
    parser.add_argument("--points", type=int, default=1024)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--epochs", type=int, default=4)
    args = parser.parse_args()
    data_points = args.points
    rng = np.random.default_rng(0)
    X = rng.normal(size=(args.samples, args.points, 3)).astype(np.float32)
    y = rng.integers(0, 4, size=(args.samples, args.points)).astype(np.int32)

    results = {"benchmark": "fit_epoch_time", "samples": args.samples, "points": args.points,
               "batch_size": args.batch_size, "backend": keras.backend.backend()}
    results["numpy_epoch_s"] = timed_fit(X, y, epochs=args.epochs, batch_size=args.batch_size)
    seq = Sequencer(X, y, batch_size=args.batch_size, seed=0)
    results["sequencer_epoch_s"] = timed_fit(seq, epochs=args.epochs, batch_size=args.batch_size,
                                             callbacks=[EpochSync(seq)])
    with tempfile.TemporaryDirectory() as tmp:
        offline = OfflineSequencer(Sequencer(X, y, batch_size=args.batch_size, shuffle=False),
                                   os.path.join(tmp, "bench_fit.h5"), chunk_size=8, chunk_randomization=True,
                                   batch_randomization=True, seed=0, progress=False)
        results["offline_epoch_s"] = timed_fit(offline, epochs=args.epochs, batch_size=args.batch_size,
                                               callbacks=[EpochSync(offline)])
    results["sequencer_vs_numpy"] = results["sequencer_epoch_s"] / results["numpy_epoch_s"]
    results["offline_vs_numpy"] = results["offline_epoch_s"] / results["numpy_epoch_s"]
    results["target_max_ratio"] = 1.05
    print(json.dumps(results))


data_points = 0

if __name__ == "__main__":
    main()
