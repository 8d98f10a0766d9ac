"""OfflineSequencer: same batches as its backbone, keyed order, threads, forks, predict, errors."""

import gc
import hashlib
import multiprocessing
import os
from concurrent.futures import ThreadPoolExecutor

import keras
import numpy as np
import pytest

from conftest import make_deterministic
from pointseq.offline import OfflineSequencer, OfflineStorageError, visit_order
from pointseq.sequencers import Sequencer, build_sequencer

AUGMENTOR = {"transformations": [{"type": "Rotation", "axis": "random"},
                                 {"type": "Jitter", "noise_distribution": {"type": "normal", "mean": 0, "stdev": 0.01}}]}


def make_data(n=30, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, 8, 3)).astype("float32")
    y = (X[:, :, 2].mean(axis=1) > 0).astype("float32")[:, None]
    return X, y


def make_offline(tmp_path, name="c.h5", *, X=None, y=None, batch_size=4, chunk_size=3, backbone_kwargs=None, **kw):
    if X is None:
        X, y = make_data()
    backbone = Sequencer(X, y, batch_size=batch_size, shuffle=False, seed=7, **(backbone_kwargs or {}))
    kw.setdefault("seed", 7)
    return OfflineSequencer(backbone, str(tmp_path / name), chunk_size=chunk_size, progress=False, **kw)


def digest(batch):
    h = hashlib.blake2b()
    for part in batch:
        h.update(np.ascontiguousarray(part).tobytes())
    return h.hexdigest()


def epoch_digests(seq, epoch):
    seq.set_epoch(epoch)
    return [digest(seq[i]) for i in range(len(seq))]


def test_serves_the_backbone_batches_with_the_same_augmentation(tmp_path):
    seq = make_offline(tmp_path, backbone_kwargs={"augmentor": AUGMENTOR})
    backbone = seq.backbone
    assert len(seq) == len(backbone) == 8 and seq.num_samples == 30
    for epoch in (0, 1):
        seq.set_epoch(epoch)
        backbone.set_epoch(epoch)
        for i in range(len(seq)):
            a, b = seq[i], backbone[i]
            assert a[0].tobytes() == b[0].tobytes() and a[1].tobytes() == b[1].tobytes()
            assert seq.batch_indices(i).tolist() == backbone.batch_indices(i).tolist()
    seq.set_epoch(0)
    assert not np.array_equal(seq[0][0], seq.read_cached_batch(0)[0])  # augmented at read time


def _fit(seq, epochs=2):
    make_deterministic(0)
    model = keras.Sequential([keras.Input((8, 3)), keras.layers.Flatten(), keras.layers.Dense(4, activation="relu"),
                              keras.layers.Dense(1, activation="sigmoid")])
    model.compile(keras.optimizers.SGD(0.1), "binary_crossentropy")
    model.fit(seq, epochs=epochs, shuffle=False, verbose=0)
    return model.get_weights()


def test_fit_gives_the_backbone_weights_when_randomisation_is_off(tmp_path):
    seq = make_offline(tmp_path, backbone_kwargs={"augmentor": AUGMENTOR})
    on_cache = _fit(seq)
    on_backbone = _fit(seq.backbone)
    assert seq.epoch == seq.backbone.epoch == 2
    for a, b in zip(on_cache, on_backbone):
        np.testing.assert_array_equal(a, b)


def test_randomisation_visits_every_batch_once_and_reorders_after_first_pass(tmp_path):
    X, y = make_data(n=40)  # 10 batches in 5 chunks of 2
    for flags in [dict(chunk_randomization=True), dict(batch_randomization=True),
                  dict(chunk_randomization=True, batch_randomization=True)]:
        seq = make_offline(tmp_path, X=X, y=y, chunk_size=2, **flags)
        orders = []
        for epoch in range(4):
            seq.set_epoch(epoch)
            order = [seq.cache_batch_index(i) for i in range(len(seq))]
            assert sorted(order) == list(range(10))
            runs = [b // 2 for k, b in enumerate(order) if k == 0 or b // 2 != order[k - 1] // 2]
            assert sorted(runs) == list(range(5))  # a chunk's batches are visited together
            orders.append(order)
        assert orders[0] == list(range(10))
        assert orders[1] != orders[0] and len({tuple(o) for o in orders}) == 4
        if "batch_randomization" not in flags:  # chunks move, batches keep file order inside them
            assert all(o[k] + 1 == o[k + 1] for o in orders for k in range(0, 10, 2))
        if "chunk_randomization" not in flags:
            assert all([b // 2 for b in o] == [b // 2 for b in orders[0]] for o in orders)
        again = make_offline(tmp_path, X=X, y=y, chunk_size=2, **flags)
        again.set_epoch(3)
        assert [again.cache_batch_index(i) for i in range(10)] == orders[3]
    assert visit_order(10, 2, 7, 3, chunk_randomization=True).batches.tolist() != \
        visit_order(10, 2, 8, 3, chunk_randomization=True).batches.tolist()


def test_same_batches_from_threads_in_any_order(tmp_path):
    seq = make_offline(tmp_path, chunk_randomization=True, batch_randomization=True,
                       backbone_kwargs={"augmentor": AUGMENTOR}, chunk_size=2)
    expected = epoch_digests(seq, 2)
    shuffled = np.random.default_rng(0).permutation(np.repeat(np.arange(len(seq)), 3))
    fresh = make_offline(tmp_path, chunk_randomization=True, batch_randomization=True,
                         backbone_kwargs={"augmentor": AUGMENTOR}, chunk_size=2, max_resident_chunks=2)
    fresh.set_epoch(2)
    with ThreadPoolExecutor(4) as pool:
        got = list(pool.map(lambda i: (i, digest(fresh[int(i)])), shuffled))
    assert all(expected[i] == d for i, d in got)
    assert len(fresh._chunks.resident()) <= 2


_FORKED = None


def _forked_digest(i):
    return os.getpid(), digest(_FORKED[i])


def test_same_batches_in_forked_workers(tmp_path):
    global _FORKED
    seq = make_offline(tmp_path, chunk_randomization=True, batch_randomization=True,
                       backbone_kwargs={"augmentor": AUGMENTOR})
    expected = epoch_digests(seq, 1)  # the parent has the file open and readahead running
    _FORKED = seq
    with multiprocessing.get_context("fork").Pool(2) as pool:
        got = pool.map(_forked_digest, list(range(len(seq)))[::-1], chunksize=1)
    assert [d for _, d in got] == expected[::-1]
    assert os.getpid() not in {pid for pid, _ in got}


def test_fit_in_worker_processes_matches_the_main_process(tmp_path):
    kw = dict(chunk_randomization=True, batch_randomization=True, backbone_kwargs={"augmentor": AUGMENTOR})
    main = _fit(make_offline(tmp_path, **kw))
    forked = _fit(make_offline(tmp_path, workers=2, use_multiprocessing=True, **kw))
    for a, b in zip(main, forked):
        np.testing.assert_array_equal(a, b)


def test_predict_mode_delegates_to_the_backbone(tmp_path):
    X, y = make_data()
    seq = make_offline(tmp_path, X=X, y=y, chunk_randomization=True, batch_randomization=True)
    seq.enable_predict_mode()
    assert len(seq) == 8
    batches = [seq[i] for i in range(len(seq))]
    assert all(len(b) == 1 for b in batches)
    np.testing.assert_array_equal(np.concatenate([b[0] for b in batches]), X)


def test_shards_and_epoch_size(tmp_path):
    seq = make_offline(tmp_path, chunk_randomization=True)
    shards = [seq.shard(2, i) for i in range(2)]
    assert [len(s) for s in shards] == [4, 4]
    for epoch in range(2):
        seen = []
        for s in shards:
            s.set_epoch(epoch)
            seen += [s.cache_batch_index(i) for i in range(len(s))]
        assert len(set(seen)) == 8
    sized = make_offline(tmp_path, epoch_size=5)
    stream = []
    for epoch in range(3):
        sized.set_epoch(epoch)
        stream += [sized.cache_batch_index(i) for i in range(5)]
    assert stream == list(range(8)) + list(range(7))


def test_built_from_a_nested_spec(tmp_path):
    X, y = make_data()
    spec = {"type": "DLOfflineSequencer", "offline_storage": str(tmp_path / "s.h5"), "chunk_size": 2,
            "batch_randomization": True, "seed": 3, "progress": False,
            "backbone": {"type": "Sequencer", "batch_size": 5, "shuffle": False, "augmentor": AUGMENTOR}}
    seq = build_sequencer(spec, X, y)
    assert isinstance(seq, OfflineSequencer) and isinstance(seq.backbone, Sequencer)
    assert len(seq) == 6 and seq.get_config()["backbone"]["batch_size"] == 5
    again = OfflineSequencer(spec["backbone"], spec["offline_storage"], X=X, y=y, chunk_size=2, seed=3,
                             batch_randomization=True, disable_offline_storage_writing=True)
    assert epoch_digests(again, 1) == epoch_digests(seq, 1)


def test_cache_of_another_config_or_data_is_refused(tmp_path):
    X, y = make_data()
    make_offline(tmp_path, X=X, y=y)
    make_offline(tmp_path, X=X, y=y, backbone_kwargs={"augmentor": AUGMENTOR}, chunk_randomization=True, seed=1)
    with pytest.raises(OfflineStorageError, match=r"built from another config or other data.*pointseq cache build SPEC.json --force"):
        make_offline(tmp_path, X=X, y=y, batch_size=5)
    with pytest.raises(OfflineStorageError, match="built from another config or other data"):
        make_offline(tmp_path, X=X + 1, y=y)
    with pytest.raises(OfflineStorageError, match="built from another config or other data"):
        make_offline(tmp_path, X=X, y=y, chunk_size=4)
    rebuilt = make_offline(tmp_path, X=X + 1, y=y, force_rebuild=True)
    np.testing.assert_array_equal(rebuilt[0][0], X[:4] + 1)


def test_argument_errors(tmp_path):
    with pytest.raises(OfflineStorageError, match="does not exist and disable_offline_storage_writing=True"):
        make_offline(tmp_path, disable_offline_storage_writing=True)
    assert not os.path.exists(tmp_path / "c.h5")
    with pytest.raises(TypeError, match="does not take shuffle=True"):
        make_offline(tmp_path, shuffle=True)
    with pytest.raises(TypeError, match="unknown keyword argument"):
        make_offline(tmp_path, chunk_randomisation=True)
    with pytest.raises(ValueError, match="chunk_size must be a positive int, got 0"):
        make_offline(tmp_path, chunk_size=0)
    with pytest.raises(TypeError, match="backbone must be an AbstractSequencer"):
        OfflineSequencer(object(), str(tmp_path / "x.h5"))
    seq = make_offline(tmp_path)
    with pytest.raises(IndexError, match="out of range"):
        seq[8]


def test_memory_stays_bounded_on_a_file_much_larger_than_the_chunk_budget(tmp_path):
    psutil = pytest.importorskip("psutil")
    rng = np.random.default_rng(0)
    X = rng.normal(size=(259, 16384, 3)).astype("float32")  # 51 MB: 17 chunks of 3.1 MB
    y = np.zeros((259, 1), "float32")
    seq = make_offline(tmp_path, X=X, y=y, batch_size=8, chunk_size=2,
                       chunk_randomization=True, batch_randomization=True)
    chunk_bytes = 2 * 8 * 16384 * 3 * 4
    assert os.path.getsize(seq.offline_storage) >= 8 * seq.max_resident_chunks * chunk_bytes
    gc.collect()
    proc = psutil.Process()
    base = peak = proc.memory_info().rss
    for epoch in (1, 2):
        seq.set_epoch(epoch)
        for i in range(len(seq)):
            seq[i]
            peak = max(peak, proc.memory_info().rss)
    # two resident chunks (one of them read ahead) and the batch being served
    assert peak - base <= 3 * chunk_bytes
    assert len(seq._chunks.resident()) <= 2


def test_subsample_serves_the_first_samples_with_the_same_augmentation(tmp_path):
    X, y = make_data()  # 30 samples, batches of 4: 8 cache batches in chunks of 3
    seq = make_offline(tmp_path, X=X, y=y, backbone_kwargs={"augmentor": AUGMENTOR})
    view = seq.subsample(10)
    assert (len(view), view.num_samples, len(seq), seq.num_samples) == (3, 10, 8, 30)
    reference = seq.backbone.subsample(10)
    for epoch in (0, 1):
        for s in (view, reference, seq):
            s.set_epoch(epoch)
        for i in range(3):
            a, b = view[i], reference[i]
            assert a[0].tobytes() == b[0].tobytes() and a[1].tobytes() == b[1].tobytes()
            assert view.batch_indices(i).tolist() == list(range(4 * i, min(4 * i + 4, 10)))
        assert view[2][0].shape == (2, 8, 3)
        assert all(digest(view[i]) == digest(seq[i]) for i in range(2))  # the parent's batches
    np.testing.assert_array_equal(view.read_cached_batch(2)[1], y[8:10])
    whole = view.subsample(8)
    assert len(whole) == 2 and whole[1][0].shape == (4, 8, 3)
    view.enable_predict_mode()
    np.testing.assert_array_equal(np.concatenate([view[i][0] for i in range(len(view))]), X[:10])


def test_subsample_keeps_randomised_visits_inside_its_batches(tmp_path):
    seq = make_offline(tmp_path, chunk_size=2, chunk_randomization=True, batch_randomization=True)
    view = seq.subsample(19)  # batches 0-4 (the last cut to 3 samples) in chunks 0-2
    orders = []
    for epoch in range(4):
        view.set_epoch(epoch)
        order = [view.cache_batch_index(i) for i in range(len(view))]
        assert sorted(order) == list(range(5))
        rows = np.concatenate([view.batch_indices(i) for i in range(len(view))])
        assert sorted(rows.tolist()) == list(range(19))
        assert [len(view[i][0]) for i in range(5)] == [3 if b == 4 else 4 for b in order]
        orders.append(order)
    assert len({tuple(o) for o in orders}) > 1


def test_subsample_argument_errors(tmp_path):
    seq = make_offline(tmp_path)
    with pytest.raises(ValueError, match="n must be an int >= 1, got 0"):
        seq.subsample(0)
    with pytest.raises(ValueError, match="n must be <= num_samples=30, got 31"):
        seq.subsample(31)
    with pytest.raises(TypeError, match=r"n must be an int >= 1, got 2.0 \(float\)"):
        seq.subsample(2.0)


def test_cached_batches_are_read_only(tmp_path):
    seq = make_offline(tmp_path)
    x, y = seq.read_cached_batch(0)
    with pytest.raises(ValueError, match="read-only"):
        x[0] = 1
    np.testing.assert_array_equal(seq[0][0], make_data()[0][:4])


def test_build_hashing_aside_gives_the_expected_fingerprint(tmp_path, monkeypatch):
    import pointseq.offline.build as build

    monkeypatch.setattr(build, "_HASH_ASIDE_BYTES", 0)  # hash in the background even for tiny data
    X, y = make_data()
    backbone = Sequencer(X, y, batch_size=4, shuffle=False, seed=7)
    path = str(tmp_path / "b.h5")
    assert build.build_cache(backbone, path, chunk_size=3, progress=False) == \
        build.expected_fingerprint(backbone, 3)
    seq = OfflineSequencer(backbone, path, chunk_size=3, seed=7, disable_offline_storage_writing=True)
    np.testing.assert_array_equal(seq[7][0], X[28:])


def test_a_dropped_sequencer_frees_its_chunks_file_and_thread(tmp_path):
    import weakref

    X, y = make_data()
    seq = make_offline(tmp_path, X=X, y=y, chunk_randomization=True)
    for i in range(len(seq)):
        seq[i]
    for pending in list(seq._chunks._entries.values()):
        pending.result()  # let any read-ahead finish
    cache, reader = weakref.ref(seq._chunks), weakref.ref(seq._reader)
    del seq
    gc.collect()
    assert cache() is None and reader() is None
