"""Turn a dead Keras data worker process into an error instead of a hang.

With ``use_multiprocessing=True`` Keras serves batches from a `multiprocessing.Pool`. When a
worker process dies without returning (SIGKILL from the out-of-memory killer, a segfault in
native code), the pool starts a replacement but the task it was running is lost, and Keras
waits on that task's ``AsyncResult.get()`` without a timeout: ``fit`` hangs forever.

`ensure_watchdog()` starts one daemon thread per process that keeps a reference to every
worker of every Keras data pool and, when one has died with a non-zero exit code while its
pool still runs, fails all of that pool's pending results with `WorkerProcessDied`. Keras
then re-raises it from ``fit`` (on TensorFlow wrapped in a ``tf.errors.OpError`` whose
message names it). Workers that exit with code 0 (a pool closed between epochs) are normal.

It also makes Keras' worker processes ignore SIGINT, so Ctrl-C stops ``fit`` in the main
process instead of killing workers mid-task (which can leave the pool's shutdown waiting on
a lock forever).

It relies on private names: Keras' ``py_dataset_adapter._DATA_POOLS`` (the WeakSet of its
pools) and ``init_pool_generator`` (its pool initializer) and ``multiprocessing.pool.Pool``'s ``_pool``, ``_state``, ``_cache`` and
``ApplyResult._set``. Where they are missing it warns once and watches nothing.
"""

from __future__ import annotations

import os
import signal
import threading
import warnings
import weakref
from typing import Any

POLL_INTERVAL_S = 0.2
# Pool states (multiprocessing.pool.RUN / CLOSE) in which Keras may still wait on results.
_WAITING_STATES = ("RUN", "CLOSE")

_lock = threading.Lock()
_thread: threading.Thread | None = None
_thread_pid: int | None = None
_thread_stop: threading.Event | None = None
# pool -> {pid: Process}: every worker seen, kept after the pool reaps it so that its exit
# code can still be read; None once its death has been reported.
_workers: "weakref.WeakKeyDictionary[Any, dict[int, Any]]" = weakref.WeakKeyDictionary()
_workers_lock = threading.Lock()
_warned = False


class WorkerProcessDied(RuntimeError):
    """A data worker process died while batches were pending; those batches are lost."""


def describe_exitcode(exitcode: int) -> str:
    """``"killed by signal SIGKILL"`` or ``"exit code 3"``."""
    if exitcode < 0:
        try:
            name = signal.Signals(-exitcode).name
        except ValueError:
            name = str(-exitcode)
        return f"killed by signal {name}"
    return f"exit code {exitcode}"


def _keras_pools() -> Any:
    """Keras' WeakSet of data pools, or None (with one warning) where it is gone."""
    global _warned
    try:
        from keras.src.trainers.data_adapters import py_dataset_adapter
    except ImportError:
        pools = None
    else:
        pools = getattr(py_dataset_adapter, "_DATA_POOLS", None)
    if not isinstance(pools, weakref.WeakSet):
        if not _warned:
            _warned = True
            warnings.warn(
                "keras.src.trainers.data_adapters.py_dataset_adapter._DATA_POOLS is missing "
                "in this Keras version; a dead data worker process will not be detected and "
                "fit may hang on it",
                RuntimeWarning,
                stacklevel=3,
            )
        return None
    return pools


class _WatchedPools(weakref.WeakSet):
    """Keras' pool set, recording a pool's workers the moment Keras registers it.

    Keras adds a pool before submitting its first task, so no worker can have died unseen
    (polling alone would miss a worker that dies and is reaped between two polls).
    """

    def add(self, item: Any) -> None:
        super().add(item)
        _record_workers(item)


def _install_hook() -> None:
    try:
        from keras.src.trainers.data_adapters import py_dataset_adapter
    except ImportError:
        return
    pools = getattr(py_dataset_adapter, "_DATA_POOLS", None)
    if type(pools) is weakref.WeakSet:
        py_dataset_adapter._DATA_POOLS = _WatchedPools(pools)
    initializer = getattr(py_dataset_adapter, "init_pool_generator", None)
    if initializer is not None and not getattr(initializer, "ignores_sigint", False):
        py_dataset_adapter.init_pool_generator = IgnoringSigint(initializer)


class IgnoringSigint:
    """Keras' pool initializer, run after making the worker ignore SIGINT.

    Ctrl-C in a terminal sends SIGINT to the whole process group. A worker interrupted in
    the middle of a task can die holding the pool's queue lock, and the main process then
    waits on that lock forever while shutting the pool down. Only the main process should
    react: it stops ``fit`` and terminates the pool, whose workers are still intact.
    It pickles by name only: a spawned worker imports Keras afresh, where its module still
    holds the original initializer.
    """

    ignores_sigint = True

    def __init__(self, initializer: Any = None) -> None:
        self.initializer = initializer

    def __reduce__(self) -> tuple:
        return (IgnoringSigint, ())

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        initializer = self.initializer
        if initializer is None:  # unpickled in a spawned worker
            from keras.src.trainers.data_adapters import py_dataset_adapter

            initializer = py_dataset_adapter.init_pool_generator
            initializer = getattr(initializer, "initializer", None) or initializer
        return initializer(*args, **kwargs)


def _record_workers(pool: Any) -> None:
    with _workers_lock:
        known = _workers.setdefault(pool, {})
        for process in list(getattr(pool, "_pool", ())):
            pid = getattr(process, "pid", None)
            if pid is not None and pid not in known:
                known[pid] = process


def _take_dead_workers(pool: Any) -> list:
    """The pool's workers that died with a non-zero exit code, each reported only once."""
    with _workers_lock:
        known = _workers.get(pool, {})
        dead = [p for p in known.values() if p is not None and p.exitcode not in (None, 0)]
        for process in dead:
            known[process.pid] = None
    return dead


def fail_pending(pool: Any, error: BaseException) -> int:
    """Fail every pending result of ``pool`` with ``error``; returns how many were failed."""
    failed = 0
    for _ in range(3):  # the result thread may change the cache while it is copied
        try:
            pending = list(pool._cache.values())
            break
        except RuntimeError:
            continue
    else:
        return 0
    for result in pending:
        try:
            result._set(0, (False, error))
            failed += 1
        except KeyError:
            pass  # it completed meanwhile, and removed itself from the cache
    return failed


def check_pools() -> list[WorkerProcessDied]:
    """One pass of the watchdog: fail the pending results of pools with a dead worker."""
    pools = _keras_pools()
    if pools is None:
        return []
    raised = []
    for pool in list(pools):
        _record_workers(pool)
        dead = _take_dead_workers(pool)
        if not dead:
            continue
        if getattr(pool, "_state", None) not in _WAITING_STATES:
            continue  # terminated by its owner: its workers were killed on purpose
        who = ", ".join(f"pid {p.pid} ({describe_exitcode(p.exitcode)})" for p in dead)
        error = WorkerProcessDied(
            f"data worker process {who} died while batches were pending; the batch it was "
            "preparing is lost and Keras would wait for it forever. SIGKILL usually means the "
            "out-of-memory killer: lower workers, max_queue_size or the memory per batch"
        )
        if fail_pending(pool, error):
            raised.append(error)
    return raised


def _run(stop: threading.Event) -> None:
    while not stop.wait(POLL_INTERVAL_S):
        try:
            check_pools()
        except Exception as error:  # never let the watchdog die silently mid-training
            warnings.warn(f"worker watchdog pass failed: {error!r}", RuntimeWarning)


def ensure_watchdog() -> bool:
    """Start the watchdog thread of this process once; True if it can watch Keras' pools.

    Cheap and idempotent: call it whenever a multiprocessing epoch starts.
    """
    global _thread, _thread_pid, _thread_stop
    if _keras_pools() is None:
        return False
    with _lock:
        pid = os.getpid()
        if _thread is not None and _thread_pid == pid and _thread.is_alive():
            return True
        _install_hook()
        _thread_stop = threading.Event()
        _thread = threading.Thread(
            target=_run, args=(_thread_stop,), name="pointseq-worker-watchdog", daemon=True
        )
        _thread_pid = pid
        _thread.start()
    return True


def stop_watchdog() -> None:
    """Stop the watchdog thread (tests; a later `ensure_watchdog` starts a new one)."""
    global _thread, _thread_stop
    with _lock:
        thread, _thread = _thread, None
        if _thread_stop is not None:
            _thread_stop.set()
        _thread_stop = None
    if thread is not None and thread.is_alive() and thread is not threading.current_thread():
        thread.join()
