"""Sharded cache build on Dask (1 worker vs 2) and sharded vs single-file epoch reads.

Prints one JSON object. Synthetic airborne tiles (``.npz``, points plus classification)
are cut into covering fields; the cache holds the backbone-free stream
of their fields. Build times are measured on warm clusters (workers started and their
imports done before the clock starts), with the default one shard per worker; the
single-process ``OfflineSequencer`` build is given alongside. Reading runs one epoch with
chunk and batch randomization on, over the single file and over the shards.

    python benchmarks/bench_sharded.py [--tiles 12] [--size 120] [--repeats 3]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import tempfile
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import numpy as np  # noqa: E402
from dask.distributed import Client, LocalCluster  # noqa: E402

from pointseq.tiles.synthetic import make_tiles  # noqa: E402
from pointseq.offline import OfflineSequencer  # noqa: E402
from pointseq.offline.sharded_build import build_sharded  # noqa: E402
from pointseq.sequencers import Sequencer  # noqa: E402


def write_tiles(folder, n, size):
    paths = []
    for i, tile in enumerate(make_tiles(n, seed=0, size=size)):
        paths.append(os.path.join(folder, f"tile{i:03d}.npz"))
        np.savez(paths[-1], points=tile["xyz"], classification=tile["classification"].astype(np.int64))
    return paths


def pcloud_spec(paths):
    return {"paths": paths, "label": "classification", "use_features": False,
            "classes": {"codes": [2, 5, 6], "ignore": [7]},
            "sampler": {"type": "CoveringFieldSampler", "num_points": 1024, "subsampling": "random",
                        "neighborhood": {"type": "cylinder", "radius": 7.5, "separation_factor": 1.0}}}


def backbone():
    return Sequencer(batch_size=8, seed=0)


def _warm(_=None):
    import pointseq.sequencers.sequencer  # noqa: F401  (Keras, loaded by every task's backbone)

    return os.getpid()


def timed_build(workers, paths, folder):
    with LocalCluster(n_workers=workers, threads_per_worker=1, processes=True, dashboard_address=None) as cluster, \
            Client(cluster) as client:
        client.run(_warm)
        start = time.perf_counter()
        manifest = build_sharded(client, backbone(), folder, chunk_size=4, offline_pcloud=pcloud_spec(paths),
                                 progress=False)
        return time.perf_counter() - start, manifest


def epoch_seconds(path, paths, repeats):
    seq = OfflineSequencer(backbone(), path, chunk_size=4, offline_pcloud=pcloud_spec(paths), progress=False,
                           chunk_randomization=True, batch_randomization=True, seed=0)
    times = []
    for epoch in range(1, repeats + 1):
        seq.epoch = epoch
        start = time.perf_counter()
        for i in range(len(seq)):
            seq[i]
        times.append(time.perf_counter() - start)
    seq.close()
    return min(times), len(seq)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--tiles", type=int, default=12)
    parser.add_argument("--size", type=float, default=120.0, help="tile side in metres (about 10 points/m^2)")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    work = tempfile.mkdtemp(prefix="bench_sharded_")
    try:
        paths = write_tiles(work, args.tiles, args.size)
        start = time.perf_counter()
        single = OfflineSequencer(backbone(), os.path.join(work, "one.h5"), chunk_size=4,
                                  offline_pcloud=pcloud_spec(paths), progress=False)
        single_build = time.perf_counter() - start
        single.close()
        one, _ = timed_build(1, paths, os.path.join(work, "w1"))
        two, manifest = timed_build(2, paths, os.path.join(work, "w2"))
        read_single, batches = epoch_seconds(os.path.join(work, "one.h5"), paths, args.repeats)
        read_sharded, _ = epoch_seconds(os.path.join(work, "w2"), paths, args.repeats)
        print(json.dumps({
            "tiles": args.tiles, "points": int(sum(len(np.load(p)["points"]) for p in paths)),
            "batches": batches, "shards_2_workers": len(manifest.shards), "cpu_count": os.cpu_count(),
            "build_single_process_s": round(single_build, 3), "build_1_worker_s": round(one, 3),
            "build_2_workers_s": round(two, 3), "build_speedup_2_vs_1": round(one / two, 3),
            "epoch_read_single_file_s": round(read_single, 4), "epoch_read_sharded_s": round(read_sharded, 4),
            "read_throughput_sharded_vs_single": round(read_single / read_sharded, 3),
        }, indent=1))
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
