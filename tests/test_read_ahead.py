"""Worker threads of the sequencer's own: batches built ahead, identical to those built on demand."""

import copy
import pickle
import threading

import numpy as np
import pytest

from pointseq.augment import Augmentor, Jitter, Normal, Rotation
from pointseq.sequencers import Sequencer
from pointseq.sequencers.read_ahead import ReadAhead


def make(workers, **kw):
    rng = np.random.default_rng(0)
    X = rng.normal(size=(40, 64, 3)).astype(np.float32)
    y = rng.integers(0, 3, size=(40, 64)).astype(np.int32)
    augmentor = Augmentor([Rotation(axis="random"), Jitter(Normal(0, 0.01))])
    return Sequencer(X, y, batch_size=6, seed=3, augmentor=augmentor, workers=workers, **kw)


def epoch_batches(seq, order=None):
    return [tuple(np.copy(a) for a in seq[i]) for i in (order if order is not None else range(len(seq)))]


def assert_same(a, b):
    assert len(a) == len(b)
    for left, right in zip(a, b):
        for x, z in zip(left, right):
            np.testing.assert_array_equal(x, z)


def test_threads_are_the_sequencers_own_and_keras_sees_one_worker():
    seq = make(3, max_queue_size=4)
    assert seq.workers == 1 and seq.worker_threads == 3 and seq._read_ahead.depth == 4
    processes = make(2, use_multiprocessing=True)
    assert processes.workers == 2 and processes.worker_threads == 0 and processes._read_ahead is None
    assert make(1).worker_threads == 0


@pytest.mark.parametrize("order", ["in order", "out of order"])
def test_batches_built_ahead_equal_those_built_on_demand_across_epochs_and_modes(order):
    alone, ahead = make(1), make(2)
    for epoch in range(2):
        indices = list(range(len(alone)))
        if order == "out of order":
            indices = list(np.random.default_rng(epoch).permutation(indices))
        assert_same(epoch_batches(alone, indices), epoch_batches(ahead, indices))
        for seq in (alone, ahead):
            seq.on_epoch_begin()
            seq.on_epoch_end()
    assert ahead.epoch == 2
    alone.enable_predict_mode()
    ahead.enable_predict_mode()
    assert_same(epoch_batches(alone), epoch_batches(ahead))


def test_new_data_drops_batches_built_from_the_old():
    seq = make(2)
    seq[0]  # starts building 1..4 from the first data
    X = np.ones((40, 64, 3), np.float32)
    seq.augmentor = Augmentor([])
    seq.set_input_data(X, np.zeros((40, 64), np.int32))
    np.testing.assert_array_equal(seq[1][0], np.ones((6, 64, 3), np.float32))


def test_an_error_in_a_thread_reaches_the_caller_of_that_batch_with_its_name():
    seq = make(2)

    def failing(indices):
        if 12 in indices:  # batch 2 in dataset order
            raise ValueError("bad sample")
        return real(indices)

    seq.shuffle = False
    real = seq.load_batch
    seq.load_batch = failing
    seq[0], seq[1]
    with pytest.raises(ValueError, match=r"Sequencer\[2\] \(training, epoch 0\) failed: bad sample"):
        seq[2]
    assert seq[3][0].shape == (6, 64, 3)


def test_views_copies_and_pickles_get_their_own_read_ahead():
    seq = make(2)
    view = seq.subsample(12)
    assert view._read_ahead is not seq._read_ahead and len(view) == 2
    assert_same(epoch_batches(view), epoch_batches(make(1).subsample(12)))
    twin = copy.copy(seq)
    assert twin._read_ahead is not seq._read_ahead
    restored = pickle.loads(pickle.dumps(seq._read_ahead))
    assert (restored.threads, restored.depth) == (2, 4) and restored._futures == {}


def test_read_ahead_builds_the_window_after_the_asked_item_in_other_threads():
    built, threads = [], set()
    lock = threading.Lock()

    def build(index):
        with lock:
            built.append(index)
            threads.add(threading.get_ident())
        return index * 10

    ahead = ReadAhead(2, 3)
    assert ahead.get("g", 0, 10, build) == 0
    assert ahead.get("g", 1, 10, build) == 10
    ahead.close()
    assert 0 in built and set(built) <= {0, 1, 2, 3, 4} and threading.get_ident() in threads
    assert ahead.get("other", 9, 10, build) == 90  # the last item starts nothing after it
    ahead.close()
