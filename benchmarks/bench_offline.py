"""OfflineSequencer read and build throughput against raw h5py, tf.data and a naive PyDataset.

Prints one JSON object. Every figure is measured in this run on the same file, so the
ratios compare like with like (the file sits in the page cache for all readers). Reading
runs with chunk and batch randomization on. The build (batches gathered from the backbone,
the data fingerprinted, chunks written) is compared with two raw writes of the same arrays:
a plain contiguous one, and one with the cache's dataset options (chunked, fletcher32), and,
when the ``array_record`` package is installed (``pip install array-record``; not a
dependency), with ArrayRecord files of one record per batch (its chunks carry their own
hashes), with its default options (compressed) and uncompressed.

    python benchmarks/bench_offline.py [--batches 48] [--points 4096] [--repeats 5]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import tempfile
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import h5py  # noqa: E402
import keras  # noqa: E402
import numpy as np  # noqa: E402

from pointseq.offline import OfflineSequencer, build_cache  # noqa: E402
from pointseq.offline.order import visit_order  # noqa: E402
from pointseq.offline.writer import storage_chunks  # noqa: E402
from pointseq.sequencers import Sequencer  # noqa: E402


def best(fn, repeats):
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return min(times)


def batch_slices(path, num_batches, chunk_size, seed, epoch):
    """(chunk, start, stop) of each batch in the OfflineSequencer's visit order."""
    with h5py.File(path, "r") as f:
        offsets = [f[f"data/{c}/batch_offsets"][()] for c in range(-(-num_batches // chunk_size))]
    order = visit_order(num_batches, chunk_size, seed, epoch, chunk_randomization=True, batch_randomization=True)
    return order, [(b // chunk_size, offsets[b // chunk_size][b % chunk_size], offsets[b // chunk_size][b % chunk_size + 1])
                   for b in order.batches]


class NaivePyDataset(keras.utils.PyDataset):
    """Opens the file on every batch and slices that batch's rows."""

    def __init__(self, path, slices):
        super().__init__()
        self.path, self.slices = path, slices

    def __len__(self):
        return len(self.slices)

    def __getitem__(self, i):
        c, start, stop = self.slices[i]
        with h5py.File(self.path, "r") as f:
            return f[f"data/{c}/X0"][start:stop], f[f"references/{c}/Y0"][start:stop]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--batches", type=int, default=48)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--points", type=int, default=4096)
    parser.add_argument("--chunk-size", type=int, default=8)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    import tensorflow as tf

    n = args.batches * args.batch_size
    rng = np.random.default_rng(0)
    X = rng.normal(size=(n, args.points, 3)).astype("float32")
    y = rng.integers(0, 8, size=(n, args.points)).astype("int32")
    nbytes = X.nbytes + y.nbytes
    tmp = tempfile.mkdtemp()
    try:
        path = os.path.join(tmp, "cache.h5")
        backbone = Sequencer(X, y, batch_size=args.batch_size, shuffle=False, seed=0)

        def build():  # includes fingerprinting the data (SHA-1 of X and y)
            if os.path.exists(path):
                os.remove(path)
            build_cache(backbone, path, chunk_size=args.chunk_size, progress=False)

        def raw_write(same_options=False):
            raw = os.path.join(tmp, "raw.h5")
            if os.path.exists(raw):
                os.remove(raw)
            with h5py.File(raw, "w") as f:
                for name, a in (("X", X), ("y", y)):
                    if same_options:  # the cache's layout: chunked storage with fletcher32 checksums
                        f.create_dataset(name, data=a, chunks=storage_chunks(a.shape, a.itemsize), fletcher32=True)
                    else:
                        f.create_dataset(name, data=a)

        def array_record_write(options):
            from array_record.python.array_record_module import ArrayRecordWriter

            target = os.path.join(tmp, "batches.array_record")
            writer = ArrayRecordWriter(target, options)
            for start in range(0, n, args.batch_size):
                stop = start + args.batch_size
                writer.write(X[start:stop].tobytes() + y[start:stop].tobytes())
            writer.close()

        t_build = best(build, args.repeats)
        t_raw_write = best(raw_write, args.repeats)
        t_raw_write_same = best(lambda: raw_write(same_options=True), args.repeats)

        seq = OfflineSequencer(backbone, path, chunk_size=args.chunk_size, chunk_randomization=True,
                               batch_randomization=True, seed=0, progress=False)
        epoch = [1]

        def offline_epoch():
            seq.set_epoch(epoch[0])  # a new order each repeat, as in training
            epoch[0] += 1
            for i in range(len(seq)):
                seq[i]

        order, slices = batch_slices(path, args.batches, args.chunk_size, 0, 1)

        def raw_chunks():
            with h5py.File(path, "r") as f:
                for c in order.chunks:
                    for group, name in (("data", "X0"), ("references", "Y0")):
                        ds = f[f"{group}/{c}/{name}"]
                        out = np.empty(ds.shape, ds.dtype)
                        ds.read_direct(out)

        def tf_data():
            def gen():
                with h5py.File(path, "r") as f:
                    for c, start, stop in slices:
                        yield f[f"data/{c}/X0"][start:stop], f[f"references/{c}/Y0"][start:stop]
            spec = (tf.TensorSpec((None, args.points, 3), tf.float32), tf.TensorSpec((None, args.points), tf.int32))
            for _ in tf.data.Dataset.from_generator(gen, output_signature=spec):
                pass

        naive = NaivePyDataset(path, slices)

        def naive_epoch():
            for i in range(len(naive)):
                naive[i]

        offline_epoch()  # warm the page cache and the first chunks
        t_offline = best(offline_epoch, args.repeats)
        t_raw_read = best(raw_chunks, args.repeats)
        t_tf = best(tf_data, args.repeats)
        t_naive = best(naive_epoch, args.repeats)
        seq.close()
        mb = nbytes / 1e6
        array_record = {}
        try:
            for label, options in (("array_record_default", ""), ("array_record_uncompressed", "uncompressed")):
                array_record[label] = best(lambda: array_record_write(options), args.repeats)
        except ImportError:
            array_record = {}
        result = {
            "setup": {"batches": args.batches, "batch_size": args.batch_size, "points": args.points,
                      "chunk_size": args.chunk_size, "data_mb": round(mb, 1),
                      "file_mb": round(os.path.getsize(path) / 1e6, 1), "repeats_best_of": args.repeats,
                      "cpu_count": os.cpu_count()},
            "read_mb_per_s": {"offline_sequencer": round(mb / t_offline), "raw_h5py_chunk_read_direct": round(mb / t_raw_read),
                              "tf_data_from_generator_batch_slices": round(mb / t_tf),
                              "naive_pydataset_open_and_slice": round(mb / t_naive)},
            "write_mb_per_s": {"build_cache": round(mb / t_build), "raw_h5py_write": round(mb / t_raw_write),
                               "raw_h5py_write_chunked_fletcher32": round(mb / t_raw_write_same),
                               **{label: round(mb / t) for label, t in array_record.items()}},
            "ratios": {
                "offline_vs_raw_read (target >= 0.8)": round(t_raw_read / t_offline, 2),
                "offline_vs_tf_data (target >= 2)": round(t_tf / t_offline, 2),
                "offline_vs_naive_pydataset (target >= 3)": round(t_naive / t_offline, 2),
                "build_vs_raw_write (target >= 0.7)": round(t_raw_write / t_build, 2),
                "build_vs_raw_write_same_dataset_options": round(t_raw_write_same / t_build, 2),
                **{f"build_vs_{label} (target >= 1.0)": round(t / t_build, 2) for label, t in array_record.items()},
            },
        }
        print(json.dumps(result))
    finally:
        shutil.rmtree(tmp)


if __name__ == "__main__":
    main()
