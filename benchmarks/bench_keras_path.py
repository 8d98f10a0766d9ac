"""Epoch time through the data path ``model.fit`` builds on TensorFlow, no model compute.

Keras wraps a PyDataset in ``tf.data.Dataset.from_generator`` (behind its own thread pool,
with tf.data's prefetching off, when the PyDataset reports ``workers > 1``; a pointseq
sequencer runs its worker threads itself and reports 1, and the ``keras_thread_pool`` row
times Keras' pool for comparison); this times Keras' ``TFEpochIterator`` over a pointseq `Sequencer`
against a plain tf.data pipeline doing the same work (shuffled, batch 32, random-axis
rotation + scale + clipped Gaussian jitter) and pulls every batch as ``fit`` does. One
process, side by side, best of ``--repeats`` epochs after a warm-up epoch. It also counts
minor page faults per epoch and times pointseq's own loop (``seq[i]``) for reference, and
the floor of Keras' path: a PyDataset that returns one ready batch (aligned arrays, no work)
for every index, so ``tf_data / floor`` is the best ratio any PyDataset can reach there.

Prints one JSON object. Run: ``python benchmarks/bench_keras_path.py [--points 1024 4096]``.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import resource
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import numpy as np  # noqa: E402
import keras  # noqa: E402
import tensorflow as tf  # noqa: E402
from keras.src.backend.tensorflow.trainer import TFEpochIterator  # noqa: E402

from pointseq.augment import Augmentor, Jitter, Normal, Rotation, Scale, Uniform  # noqa: E402
from pointseq.sequencers import Sequencer  # noqa: E402

BATCH = 32
STDEV, CLIP = 0.01, 0.05
SCALE_RANGE = (0.8, 1.25)


def make_sequencer(X, y, workers: int) -> Sequencer:
    augmentor = Augmentor([
        Rotation(axis="random", angle=Uniform(-math.pi, math.pi)),
        Scale(factor=Uniform(*SCALE_RANGE)),
        Jitter(noise=Normal(0.0, STDEV), clip=CLIP),
    ])
    return Sequencer(X, y, batch_size=BATCH, augmentor=augmentor, seed=0, workers=workers,
                     max_queue_size=4)


def tf_augment(points, labels):
    """The same augmentation as tf ops on a batch: random axis, angle, scale, clipped noise."""
    batch = tf.shape(points)[0]
    axes = tf.math.l2_normalize(tf.random.normal([batch, 3]), axis=-1)
    angles = tf.random.uniform([batch], -math.pi, math.pi)
    x, y_, z = axes[:, 0], axes[:, 1], axes[:, 2]
    zero = tf.zeros_like(x)
    skew = tf.reshape(tf.stack([zero, -z, y_, z, zero, -x, -y_, x, zero], axis=-1), [batch, 3, 3])
    sin, cos = tf.sin(angles)[:, None, None], tf.cos(angles)[:, None, None]
    rotation = tf.eye(3, batch_shape=[batch]) + sin * skew + (1.0 - cos) * tf.matmul(skew, skew)
    scale = tf.random.uniform([batch, 1, 1], *SCALE_RANGE)
    points = tf.matmul(points, rotation, transpose_b=True) * scale
    noise = tf.clip_by_value(tf.random.normal(tf.shape(points), stddev=STDEV), -CLIP, CLIP)
    return points + noise, labels


def tf_data_pipeline(X, y) -> tf.data.Dataset:
    ds = tf.data.Dataset.from_tensor_slices((X, y)).shuffle(len(X), seed=0)
    ds = ds.batch(BATCH).map(tf_augment, num_parallel_calls=tf.data.AUTOTUNE)
    return ds.prefetch(tf.data.AUTOTUNE)


class ReadyBatches(keras.utils.PyDataset):
    """Every index gives the same prepared batch: what Keras' path costs with no work at all."""

    def __init__(self, batch: tuple, count: int) -> None:
        super().__init__(workers=1)
        self.batch, self.count = batch, count

    def __len__(self) -> int:
        return self.count

    def __getitem__(self, index: int) -> tuple:
        return self.batch


def keras_epoch(iterator: TFEpochIterator) -> None:
    """One epoch the way ``fit`` walks it: ``next`` on the iterator per step."""
    for _, _, data in iterator:
        if isinstance(data, list):  # Keras >= 3.10 buffers steps_per_execution batches
            continue
        next(data)


def timed(fn, repeats: int) -> tuple[float, int]:
    """Best seconds of ``repeats`` calls after a warm-up, and minor faults of the best run."""
    fn()
    best, faults = math.inf, 0
    for _ in range(repeats):
        before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
        start = time.perf_counter()
        fn()
        seconds = time.perf_counter() - start
        if seconds < best:
            best, faults = seconds, resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before
    return best, faults


def measure(points: int, samples: int, repeats: int) -> dict:
    rng = np.random.default_rng(0)
    X = rng.standard_normal((samples, points, 3), dtype=np.float32)
    y = rng.integers(0, 4, size=(samples, points)).astype(np.int32)
    strategy = tf.distribute.get_strategy()
    ds = tf_data_pipeline(X, y)
    tf_s, tf_faults = timed(lambda: [None for _ in ds], repeats)
    row = {"points": points, "samples": samples, "tf_data_epoch_s": round(tf_s, 4),
           "tf_data_minor_faults": tf_faults}
    for workers in (1, 2):
        seq = make_sequencer(X, y, workers)
        it = TFEpochIterator(distribute_strategy=strategy, x=seq, shuffle=False)
        seconds, faults = timed(lambda: keras_epoch(it), repeats)
        row[f"pointseq_fit_path_w{workers}_epoch_s"] = round(seconds, 4)
        row[f"pointseq_fit_path_w{workers}_minor_faults"] = faults
    pooled = make_sequencer(X, y, 1)
    pooled.workers = 2  # Keras' own thread pool, as before the sequencer ran its worker threads
    it = TFEpochIterator(distribute_strategy=strategy, x=pooled, shuffle=False)
    row["keras_thread_pool_w2_epoch_s"] = round(timed(lambda: keras_epoch(it), repeats)[0], 4)
    ready = seq[0]  # the sequencer's own aligned buffers
    floor = TFEpochIterator(distribute_strategy=strategy, x=ReadyBatches(ready, len(seq)), shuffle=False)
    floor_s, _ = timed(lambda: keras_epoch(floor), repeats)
    row["keras_path_floor_epoch_s"] = round(floor_s, 4)
    row["tf_data_vs_keras_path_floor"] = round(tf_s / floor_s, 2)

    def loop() -> None:
        for i in range(len(seq)):
            seq[i]  # consumed and dropped, as a training step does

    loop_s, loop_faults = timed(loop, repeats)
    row["pointseq_loop_epoch_s"] = round(loop_s, 4)
    row["pointseq_loop_minor_faults"] = loop_faults
    best = min(row["pointseq_fit_path_w1_epoch_s"], row["pointseq_fit_path_w2_epoch_s"])
    row["fit_path_best_vs_tf_data"] = round(tf_s / best, 2)
    row["fit_path_w1_vs_tf_data"] = round(tf_s / row["pointseq_fit_path_w1_epoch_s"], 2)
    row["workers2_vs_workers1"] = round(
        row["pointseq_fit_path_w1_epoch_s"] / row["pointseq_fit_path_w2_epoch_s"], 2)
    row["keras_pool_w2_vs_workers1"] = round(
        row["pointseq_fit_path_w1_epoch_s"] / row["keras_thread_pool_w2_epoch_s"], 2)
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--points", type=int, nargs="+", default=[1024, 4096, 16384])
    parser.add_argument("--points-per-epoch", type=int, default=1 << 22,
                        help="samples per size = this / points (at least 8 batches)")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    rows = [measure(n, max(8 * BATCH, args.points_per_epoch // n), args.repeats) for n in args.points]
    result = {"benchmark": "keras_fit_path", "batch_size": BATCH, "cpu_count": os.cpu_count(),
              "workload": "shuffled, random-axis rotation + scale + clipped jitter, float32",
              "rows": rows, "target_vs_tf_data": 1.5, "target_workers2_vs_1_at_4096": 1.6}
    print(json.dumps(result))


if __name__ == "__main__":
    main()
