"""Faults in data workers end model.fit with an error naming the batch, never a hang.

Each fit runs in a subprocess under a timeout, so a regression fails the test instead of
hanging the suite.
"""

import json
import multiprocessing
import os
import re
import signal
import subprocess
import sys
import textwrap
import time

import pytest
from keras.src.trainers.data_adapters import py_dataset_adapter

from pointseq.sequencers import worker_watchdog
from pointseq.sequencers.worker_watchdog import WorkerProcessDied, describe_exitcode, ensure_watchdog

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

_PRELUDE = """
import json, os, signal, sys, time
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
import keras
import numpy as np
from pointseq.sequencers import Sequencer

class BrokenSample(Exception):
    pass

class Faulty(Sequencer):
    def __init__(self, *args, fail_at=3, kill=False, **kwargs):
        super().__init__(*args, **kwargs)
        self.fail_at, self.kill, self.main_pid = fail_at, kill, os.getpid()

    def getitem_training(self, idx):
        if idx == self.fail_at:
            if not self.kill:
                raise BrokenSample("sample 7 is unreadable")
            if os.getpid() != self.main_pid:  # only ever a worker process
                time.sleep(0.2)  # let the pool hand out the following batches too
                os.kill(os.getpid(), signal.SIGKILL)
        return super().getitem_training(idx)

def fit(**kwargs):
    rng = np.random.default_rng(0)
    X = rng.normal(size=(40, 8, 3)).astype("float32")
    y = rng.normal(size=(40, 1)).astype("float32")
    seq = Faulty(X, y, batch_size=5, seed=1, **kwargs)
    model = keras.Sequential([keras.Input((8, 3)), keras.layers.Flatten(), keras.layers.Dense(1)])
    model.compile("sgd", "mse")
    start = time.monotonic()
    try:
        model.fit(seq, epochs=2, shuffle=False, verbose=0)
        error = None
    except Exception as e:
        error = e
    return error, time.monotonic() - start

def report(name, error, seconds):
    tf_error = type(error).__module__.startswith("tensorflow")
    print(json.dumps({
        "name": name,
        "type": None if error is None else type(error).__name__,
        "original_type": isinstance(error, BrokenSample),
        "tf_op_error": tf_error,
        "message": "" if error is None else str(error),
        "seconds": seconds,
    }), flush=True)
"""


def run_script(body: str, timeout: float) -> list[dict]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (REPO, env.get("PYTHONPATH")) if p)
    script = _PRELUDE + textwrap.dedent(body)
    try:
        done = subprocess.run(
            [sys.executable, "-c", script], cwd=REPO, env=env, capture_output=True,
            text=True, timeout=timeout,
        )
    except subprocess.TimeoutExpired as expired:
        pytest.fail(f"model.fit hung: no result within {timeout} s\n{expired.stderr}")
    assert done.returncode == 0, done.stderr[-3000:]
    return [json.loads(line) for line in done.stdout.splitlines() if line.startswith("{")]


def test_an_exception_in_getitem_ends_fit_naming_the_batch_in_every_worker_mode():
    results = run_script(
        """
        for name, kwargs in [
            ("main", dict(workers=1)),
            ("threads", dict(workers=2)),
            ("processes", dict(workers=2, use_multiprocessing=True)),
        ]:
            report(name, *fit(**kwargs))
        """,
        timeout=120,
    )
    assert [r["name"] for r in results] == ["main", "threads", "processes"]
    for r in results:
        # Keras re-raises the original exception; TensorFlow's tf.data turns an exception
        # in the generator into a tf.errors.OpError that carries its type and message.
        assert r["original_type"] or r["tf_op_error"], r
        expected = r"BrokenSample: Faulty\[3\] \(training, epoch 0\) failed: sample 7 is unreadable"
        assert re.search(expected, r["message"]), r


def test_a_killed_worker_process_ends_fit_with_worker_process_died():
    (result,) = run_script(
        """
        from pointseq.sequencers.worker_watchdog import ensure_watchdog
        assert ensure_watchdog()
        report("killed", *fit(workers=2, use_multiprocessing=True, kill=True))
        """,
        timeout=90,
    )
    assert result["type"] is not None, "fit finished although a worker was killed"
    assert "WorkerProcessDied: data worker process pid" in result["message"]
    assert "killed by signal SIGKILL" in result["message"]
    assert result["seconds"] < 60


def _kill_self():
    os.kill(os.getpid(), signal.SIGKILL)


def _square(x):
    return x * x


def test_watchdog_fails_the_pending_results_of_a_pool_whose_worker_died():
    assert ensure_watchdog() and ensure_watchdog()  # idempotent
    assert isinstance(py_dataset_adapter._DATA_POOLS, worker_watchdog._WatchedPools)
    pool = multiprocessing.get_context("fork").Pool(1)
    try:
        py_dataset_adapter._DATA_POOLS.add(pool)
        assert pool.apply_async(_square, (3,)).get(timeout=30) == 9
        lost = pool.apply_async(_kill_self)
        with pytest.raises(WorkerProcessDied, match=r"pid \d+ \(killed by signal SIGKILL\)"):
            lost.get(timeout=30)  # without the watchdog: TimeoutError after 30 s
        # The pool replaced its worker and keeps serving.
        assert pool.apply_async(_square, (4,)).get(timeout=30) == 16
    finally:
        pool.terminate()
        pool.join()


def test_watchdog_ignores_workers_of_a_normally_closed_pool():
    ensure_watchdog()
    pool = multiprocessing.get_context("fork").Pool(2)
    py_dataset_adapter._DATA_POOLS.add(pool)
    assert pool.map(_square, range(4)) == [0, 1, 4, 9]
    pool.close()
    pool.join()
    time.sleep(2 * worker_watchdog.POLL_INTERVAL_S)
    assert worker_watchdog.check_pools() == []
    seen = worker_watchdog._workers[pool]  # exit code 0: still tracked, never reported dead
    assert len(seen) == 2 and all(p.exitcode == 0 for p in seen.values())


def test_describe_exitcode():
    assert describe_exitcode(-9) == "killed by signal SIGKILL"
    assert describe_exitcode(-11) == "killed by signal SIGSEGV"
    assert describe_exitcode(3) == "exit code 3"


_CTRL_C = """
import os, sys, time
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
import keras
import numpy as np
from pointseq.sequencers import Sequencer

class Slow(Sequencer):
    def getitem_training(self, idx):
        time.sleep(0.02)
        return super().getitem_training(idx)

class Announce(keras.callbacks.Callback):
    def on_train_batch_end(self, batch, logs=None):
        if batch == 3:
            print("training", flush=True)

rng = np.random.default_rng(0)
seq = Slow(rng.normal(size=(400, 8, 3)).astype("float32"), rng.normal(size=(400, 1)).astype("float32"),
           batch_size=4, seed=1, workers=2, use_multiprocessing=True)
model = keras.Sequential([keras.Input((8, 3)), keras.layers.Flatten(), keras.layers.Dense(1)])
model.compile("sgd", "mse")
try:
    model.fit(seq, epochs=100, shuffle=False, verbose=0, callbacks=[Announce()])
except KeyboardInterrupt:
    print("interrupted", flush=True)
    sys.exit(130)
"""


@pytest.mark.parametrize("attempt", range(3))
def test_ctrl_c_to_the_process_group_ends_fit_with_worker_processes(attempt):
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (REPO, env.get("PYTHONPATH")) if p)
    child = subprocess.Popen([sys.executable, "-c", _CTRL_C], cwd=REPO, env=env, text=True,
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True)
    try:
        assert child.stdout.readline().strip() == "training"
        os.killpg(child.pid, signal.SIGINT)  # what a terminal sends on Ctrl-C
        out, err = child.communicate(timeout=60)
    except subprocess.TimeoutExpired:
        os.killpg(child.pid, signal.SIGKILL)
        child.communicate()
        pytest.fail("fit with worker processes hung after Ctrl-C")
    assert child.returncode == 130, err[-2000:]
    assert out.strip() == "interrupted"


def _sigint_handler() -> int:
    return int(signal.getsignal(signal.SIGINT))


def test_keras_worker_processes_ignore_sigint_once_watched():
    assert ensure_watchdog()
    initializer = py_dataset_adapter.init_pool_generator
    assert initializer.ignores_sigint
    for method in ("fork", "spawn"):  # a spawned worker unpickles the initializer
        with multiprocessing.get_context(method).Pool(1, initializer=initializer, initargs=([], None, None)) as pool:
            assert pool.apply(_sigint_handler) == int(signal.SIG_IGN)
    assert signal.getsignal(signal.SIGINT) is not signal.SIG_IGN  # the main process still reacts
