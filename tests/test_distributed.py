"""Training on several devices and processes, and the stream `shard` serves each replica.

The multi-device runs happen in subprocesses (tests/distributed/): JAX fixes its device count
when it is imported, and TensorFlow's multi-worker strategy needs one process per worker.
"""

import json
import os
import socket
import subprocess
import sys

import numpy as np
import pytest

from pointseq.sequencers import Sequencer

HERE = os.path.dirname(os.path.abspath(__file__))
SCRIPTS = os.path.join(HERE, "distributed")
sys.path.insert(0, SCRIPTS)

import stream_data  # noqa: E402

WORKER_TIMEOUT_S = 240


def script_env(**extra):
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3", **extra)
    env.pop("TF_CONFIG", None)
    env.pop("XLA_FLAGS", None)
    return env


def free_ports(count):
    """Ports the OS reports free now (closed before the workers bind them)."""
    sockets = [socket.socket() for _ in range(count)]
    try:
        for s in sockets:
            s.bind(("127.0.0.1", 0))
        return [s.getsockname()[1] for s in sockets]
    finally:
        for s in sockets:
            s.close()


def tail(text, lines=30):
    return "\n".join(text.splitlines()[-lines:])


# ------------------------------------------------------------------------------ JAX: one process, two devices
@pytest.mark.distributed
def test_jax_data_parallel_splits_each_global_batch_over_two_devices():
    proc = subprocess.run(
        [sys.executable, os.path.join(SCRIPTS, "jax_data_parallel.py")],
        capture_output=True, text=True, timeout=WORKER_TIMEOUT_S, env=script_env(),
    )
    assert proc.returncode == 0, tail(proc.stdout + proc.stderr)
    report = json.loads(proc.stdout.strip().splitlines()[-1])

    assert report["devices"] == ["cpu:0", "cpu:1"]
    assert report["kernel_devices"] == ["cpu:0", "cpu:1"]  # weights replicated on both
    expected = report["expected_batches"]
    assert len(report["layouts"]) == len(expected) == 16  # every trained batch, 4 epochs x 4
    for layout, batch in zip(report["layouts"], expected):
        (dev0, start0, ids0), (dev1, start1, ids1) = layout
        # The unsharded sequencer's global batch of 8: rows 0-3 on one device, 4-7 on the other.
        assert (dev0, start0, dev1, start1) == ("cpu:0", 0, "cpu:1", 4)
        assert ids0 == batch[:4] and ids1 == batch[4:]
        assert not set(ids0) & set(ids1)
    loss = report["loss"]
    assert np.isfinite(loss).all() and loss[-1] < loss[0]


# ------------------------------------------------------------------------------ TF: two worker processes
@pytest.mark.distributed
def test_tf_multi_worker_trains_disjoint_shards_of_one_stream(tmp_path):
    cache = tmp_path / "shared.h5"
    stream_data.offline_sequencer(cache, build=True)  # the shared cache, built once
    epochs = 3
    ports = ",".join(map(str, free_ports(2)))
    out = tmp_path / "out"
    workers = [
        subprocess.Popen(
            [sys.executable, os.path.join(SCRIPTS, "tf_multi_worker.py"), str(i), ports, str(cache),
             str(out), str(epochs)],
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=script_env(),
        )
        for i in range(2)
    ]
    logs = []
    try:
        for w in workers:
            logs.append(w.communicate(timeout=WORKER_TIMEOUT_S)[0])
    finally:
        for w in workers:
            if w.poll() is None:
                w.kill()
                w.wait()
    for i, w in enumerate(workers):
        assert w.returncode == 0, f"worker {i} failed:\n{tail(logs[i] if i < len(logs) else '')}"
    reports = [json.loads((out / f"worker{i}.json").read_text()) for i in range(2)]
    weights = [np.load(out / f"worker{i}.npz") for i in range(2)]

    # Synchronous training: both workers end on the same weights and the same global losses.
    assert sorted(weights[0].files) == sorted(weights[1].files)
    for name in weights[0].files:
        np.testing.assert_array_equal(weights[0][name], weights[1][name])
    assert reports[0]["loss"] == reports[1]["loss"] and np.isfinite(reports[0]["loss"]).all()

    # 7 cache batches over 2 workers: 3 steps each per epoch, the 7th carried to the next epoch.
    steps = 3
    for i, r in enumerate(reports):
        assert r["num_replicas_in_sync"] == 2 and r["shard"] == [2, i]
        assert r["steps_per_epoch"] == steps and r["generator_runs"] == 1
        assert [(e, s) for e, s, _, _ in r["trained"]] == [(e, s) for e in range(epochs) for s in range(steps)]

    # The stream: the unsharded sequencer with an epoch of 2 x 3 batches reads the same positions.
    stream = stream_data.offline_sequencer(cache, epoch_size=2 * steps)
    for e in range(epochs):
        stream.set_epoch(e)
        expected = [stream.cache_batch_index(j) for j in range(2 * steps)]
        served = {}
        for i, r in enumerate(reports):
            for epoch, step, batch, ids in r["trained"]:
                if epoch == e:
                    served[2 * step + i] = batch  # round-robin position in the epoch's stream
                    rows = range(batch * stream_data.BATCH_SIZE,
                                 min((batch + 1) * stream_data.BATCH_SIZE, stream_data.NUM_SAMPLES))
                    assert ids == list(rows)  # the worker trained on that cache batch's samples
        assert sorted(served) == list(range(2 * steps))  # disjoint, and together the whole epoch
        assert [served[j] for j in range(2 * steps)] == expected


# ------------------------------------------------------------------------------ shard coverage
def sharded_stream(shards, epochs):
    """The training batches of every shard in global stream order: epoch, step, then shard."""
    out = []
    for e in range(epochs):
        for s in shards:
            s.set_epoch(e)
        steps = {len(s) for s in shards}
        assert len(steps) == 1  # every replica runs the same number of steps
        for step in range(steps.pop()):
            out += [s.batch_indices(step) for s in shards]
    return out


@pytest.mark.parametrize("num_samples", [33, 35])  # 11 full batches (+ 2 leftover samples)
def test_shards_read_one_continuous_stream_with_the_remainder_carried(num_samples):
    X = np.arange(num_samples, dtype="float32")[:, None, None] * np.ones((1, 2, 3), "float32")
    seq = Sequencer(X, np.arange(num_samples), batch_size=3, seed=4)
    shards = [seq.shard(3, i) for i in range(3)]
    assert [len(s) for s in shards] == [3, 3, 3]  # 11 // 3 steps; 2 batches carried over

    epochs = 4
    batches = sharded_stream(shards, epochs)
    # Replica i serves stream positions i, i + 3, ...: exactly what one unsharded reader of
    # 9-batch epochs serves, so the replicas' batches are disjoint and together the stream.
    unsharded = Sequencer(X, np.arange(num_samples), batch_size=3, seed=4, epoch_size=9)
    assert [b.tolist() for b in batches] == [b.tolist() for b in sharded_stream([unsharded], epochs)]
    first_epoch = np.concatenate(batches[:9])  # inside the first pass: no sample twice
    assert len(set(first_epoch.tolist())) == 27
    flat = np.concatenate(batches)
    # Every pass over the data is a permutation: no sample repeats within a pass, none is skipped.
    for p in range(len(flat) // num_samples):
        window = flat[p * num_samples:(p + 1) * num_samples]
        assert sorted(window.tolist()) == list(range(num_samples))
    # Consecutive passes are shuffled differently.
    assert flat[:num_samples].tolist() != flat[num_samples:2 * num_samples].tolist()


def test_offline_shards_read_each_cache_batch_once_per_pass(tmp_path):
    from pointseq.offline import OfflineSequencer

    X = np.arange(33, dtype="float32")[:, None, None] * np.ones((1, 2, 3), "float32")
    backbone = Sequencer(X, np.arange(33), batch_size=3, shuffle=False, seed=1)
    seq = OfflineSequencer(backbone, tmp_path / "c.h5", chunk_size=4, chunk_randomization=True,
                           batch_randomization=True, seed=9, progress=False)
    shards = [seq.shard(3, i) for i in range(3)]
    assert [len(s) for s in shards] == [3, 3, 3]
    positions = []
    for e in range(4):
        epoch = []
        for s in shards:
            s.set_epoch(e)
        for step in range(3):
            epoch += [s.cache_batch_index(step) for s in shards]
            for s in shards:  # the rows served are the rows of that cache batch
                batch = s[step]
                np.testing.assert_array_equal(batch[1], np.arange(3) + 3 * s.cache_batch_index(step))
        assert len(epoch) == 9
        positions += epoch
    for p in range(len(positions) // 11):
        assert sorted(positions[p * 11:(p + 1) * 11]) == list(range(11))


def test_predict_shards_split_the_dataset_in_order():
    X = np.arange(34, dtype="float32")[:, None, None] * np.ones((1, 2, 3), "float32")
    seq = Sequencer(X, None, batch_size=3, training=False)
    shards = [seq.shard(3, i) for i in range(3)]
    assert [len(s) for s in shards] == [4, 4, 4]  # 12 batches, the last one partial
    seen = {}
    for i, s in enumerate(shards):
        for k in range(len(s)):
            seen[k * 3 + i] = s[k][0][:, 0, 0].astype(int).tolist()
    assert [v for _, v in sorted(seen.items())] == [
        list(range(b * 3, min(b * 3 + 3, 34))) for b in range(12)
    ]


@pytest.mark.parametrize(
    "args, error, match",
    [
        ((3, 3), ValueError, r"index must be in \[0, 3\), got 3"),
        ((0, 0), ValueError, "num_shards must be an int >= 1, got 0"),
        ((12, 0), ValueError, "num_shards=12 exceeds the 11 batches one pass over 33 samples gives"),
        ((2, 1.0), TypeError, "index must be an int"),
    ],
)
def test_shard_rejects_bad_arguments(args, error, match):
    seq = Sequencer(np.zeros((33, 2, 3), "float32"), np.zeros(33), batch_size=3)
    with pytest.raises(error, match=match):
        seq.shard(*args)


def test_a_shard_cannot_be_sharded_again():
    seq = Sequencer(np.zeros((33, 2, 3), "float32"), np.zeros(33), batch_size=3)
    with pytest.raises(ValueError, match="already a shard"):
        seq.shard(3, 0).shard(2, 0)
