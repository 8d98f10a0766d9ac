"""Sequencer behaviour without a model: order, purity, modes, state, shards, errors."""

import multiprocessing
import pickle

import numpy as np
import pytest

from pointseq.sequencers import AbstractSequencer, Sequencer, build_sequencer


def served_ids(seq):
    return np.concatenate([seq.batch_indices(i) for i in range(len(seq))])


def test_every_sample_once_per_epoch_and_partial_last_batch(clouds):
    X, y = clouds
    seq = Sequencer(X, y, batch_size=6, seed=3)
    assert len(seq) == 4
    sizes = [len(seq[i][0]) for i in range(len(seq))]
    assert sizes == [6, 6, 6, 2]
    ids = served_ids(seq)
    assert sorted(ids.tolist()) == list(range(20))


def test_drop_last_leaves_out_the_partial_batch(clouds):
    X, y = clouds
    seq = Sequencer(X, y, batch_size=6, seed=3, drop_last=True)
    assert len(seq) == 3
    assert all(len(seq[i][0]) == 6 for i in range(3))
    assert len(set(served_ids(seq).tolist())) == 18


def test_batches_hold_the_rows_of_their_indices(clouds):
    X, y = clouds
    seq = Sequencer(X, y, batch_size=4, seed=1)
    for i in range(len(seq)):
        ids = seq.batch_indices(i)
        x_batch, y_batch = seq[i]
        np.testing.assert_array_equal(x_batch, X[ids])
        np.testing.assert_array_equal(y_batch, y[ids])


def test_epochs_differ_and_repeat_from_the_seed(clouds):
    X, y = clouds
    seq = Sequencer(X, y, batch_size=4, seed=5)
    first = served_ids(seq)
    seq.on_epoch_begin()
    seq.on_epoch_end()
    assert seq.epoch == 1
    second = served_ids(seq)
    assert not np.array_equal(first, second)
    assert sorted(second.tolist()) == list(range(20))
    again = Sequencer(X, y, batch_size=4, seed=5)
    np.testing.assert_array_equal(served_ids(again), first)


def test_epoch_hooks_are_idempotent_around_keras_extra_calls(clouds):
    X, y = clouds
    seq = Sequencer(X, y, batch_size=4, seed=5)
    seq.on_epoch_end()  # Keras calls this once before the first epoch
    seq.on_epoch_end()
    assert seq.epoch == 0
    seq.on_epoch_begin()
    seq.on_epoch_begin()
    seq.on_epoch_end()
    seq.on_epoch_end()
    assert seq.epoch == 1


def test_no_shuffle_serves_dataset_order(clouds):
    X, y = clouds
    seq = Sequencer(X, y, batch_size=8, shuffle=False)
    np.testing.assert_array_equal(served_ids(seq), np.arange(20))


def test_original_shuffle_alias(clouds):
    X, y = clouds
    seq = Sequencer(X, y, batch_size=8, random_shuffle_indices=False)
    assert seq.shuffle is False


def test_getitem_is_pure_and_order_independent(clouds):
    X, y = clouds
    seq = Sequencer(X, y, batch_size=4, seed=2)
    forward = [seq[i] for i in range(len(seq))]
    backward = [seq[i] for i in reversed(range(len(seq)))][::-1]
    for a, b in zip(forward, backward):
        np.testing.assert_array_equal(a[0], b[0])
        np.testing.assert_array_equal(a[1], b[1])
    np.testing.assert_array_equal(seq[-1][0], forward[-1][0])


def _batch_in_child(seq_bytes, idx):
    seq = pickle.loads(seq_bytes)
    return seq[idx]


def test_getitem_equal_in_another_process(clouds):
    X, y = clouds
    seq = Sequencer(X, y, batch_size=4, seed=2)
    seq.set_epoch(3)
    ctx = multiprocessing.get_context("spawn")
    with ctx.Pool(1) as pool:
        x_child, y_child = pool.apply(_batch_in_child, (pickle.dumps(seq), 2))
    x_here, y_here = seq[2]
    np.testing.assert_array_equal(x_child, x_here)
    np.testing.assert_array_equal(y_child, y_here)


def test_callers_arrays_are_never_modified(clouds):
    X, y = clouds
    X_before, y_before = X.copy(), y.copy()
    seq = Sequencer(X, y, batch_size=4, seed=2)
    for e in range(2):
        seq.set_epoch(e)
        for i in range(len(seq)):
            x_batch, _ = seq[i]
            x_batch += 1.0
    np.testing.assert_array_equal(X, X_before)
    np.testing.assert_array_equal(y, y_before)


def test_index_out_of_range(clouds):
    X, y = clouds
    seq = Sequencer(X, y, batch_size=8)
    with pytest.raises(IndexError, match="batch index 3 out of range for 3 batches"):
        seq[3]


def test_seed_none_draws_and_keeps_a_seed(clouds):
    X, y = clouds
    seq = Sequencer(X, y, batch_size=4)
    assert isinstance(seq.seed, int)
    first = served_ids(seq)
    np.testing.assert_array_equal(served_ids(seq), first)
    np.testing.assert_array_equal(served_ids(Sequencer(X, y, batch_size=4, seed=seq.seed)), first)


# ---------------------------------------------------------------- inputs and modes
def test_tuple_and_dict_inputs_keep_their_structure(clouds):
    X, y = clouds
    feats = np.arange(20 * 8 * 2, dtype="float32").reshape(20, 8, 2)
    seq = Sequencer([X, feats], y, batch_size=4, seed=0)
    x_batch, _ = seq[0]
    assert isinstance(x_batch, tuple) and len(x_batch) == 2
    ids = seq.batch_indices(0)
    np.testing.assert_array_equal(x_batch[1], feats[ids])
    seq_d = Sequencer({"points": X, "features": feats}, y, batch_size=4, seed=0)
    x_batch, _ = seq_d[0]
    assert set(x_batch) == {"points", "features"}
    np.testing.assert_array_equal(x_batch["features"], feats[ids])


def test_predict_mode_is_ordered_and_returns_x_only(clouds):
    X, y = clouds
    seq = Sequencer(X, y, batch_size=6, seed=9)
    seq.enable_predict_mode()
    assert not seq.training
    assert len(seq) == 4
    batches = [seq[i] for i in range(len(seq))]
    assert all(isinstance(b, tuple) and len(b) == 1 for b in batches)
    np.testing.assert_array_equal(np.concatenate([b[0] for b in batches]), X)
    seq.enable_training_mode()
    assert len(seq[0]) == 2


def test_predict_mode_does_not_advance_the_epoch(clouds):
    X, y = clouds
    seq = Sequencer(X, y, batch_size=6, training=False)
    seq.on_epoch_begin()
    seq.on_epoch_end()
    assert seq.epoch == 0


# ---------------------------------------------------------------- state, resume, epoch_size
def test_state_dict_resume_reproduces_later_epochs(clouds):
    X, y = clouds
    run = Sequencer(X, y, batch_size=4, seed=11)
    epochs = []
    for _ in range(4):
        run.on_epoch_begin()
        epochs.append(served_ids(run))
        run.on_epoch_end()
    run.set_epoch(2)
    state = run.state_dict()
    assert state == {"seed": 11, "epoch": 2}
    resumed = Sequencer(X, y, batch_size=4)
    resumed.load_state_dict(state)
    np.testing.assert_array_equal(served_ids(resumed), epochs[2])
    resumed.on_epoch_begin()
    resumed.on_epoch_end()
    np.testing.assert_array_equal(served_ids(resumed), epochs[3])
    via_set_epoch = Sequencer(X, y, batch_size=4, seed=11)
    via_set_epoch.set_epoch(3)
    np.testing.assert_array_equal(served_ids(via_set_epoch), epochs[3])


def test_load_state_dict_names_missing_keys(clouds):
    X, y = clouds
    seq = Sequencer(X, y, batch_size=4)
    with pytest.raises(KeyError, match=r"lacks \['seed'\]"):
        seq.load_state_dict({"epoch": 1})


def test_epoch_size_continues_the_order_across_the_data_end(clouds):
    X, y = clouds
    seq = Sequencer(X, y, batch_size=3, seed=4, epoch_size=5)
    assert len(seq) == 5
    stream = []
    for e in range(4):
        seq.set_epoch(e)
        stream.append(served_ids(seq))
    stream = np.concatenate(stream)  # 60 positions = 3 passes of 20
    for p in range(3):
        assert sorted(stream[p * 20:(p + 1) * 20].tolist()) == list(range(20))
    assert all(len(seq[i][0]) == 3 for i in range(5))


def test_subsample_is_a_small_view(clouds):
    X, y = clouds
    seq = Sequencer(X, y, batch_size=4, seed=1)
    small = seq.subsample(6)
    assert small.num_samples == 6 and len(small) == 2
    assert set(served_ids(small).tolist()) == set(range(6))
    assert seq.num_samples == 20
    with pytest.raises(ValueError, match="n must be <= num_samples=20, got 21"):
        seq.subsample(21)


def test_shards_are_disjoint_equal_and_cover_the_epoch(clouds):
    X, y = clouds
    seq = Sequencer(X, y, batch_size=2, seed=7)  # 10 full batches
    shards = [seq.shard(3, i) for i in range(3)]
    assert [len(s) for s in shards] == [3, 3, 3]
    for epoch in range(3):
        per_shard = []
        for s in shards:
            s.set_epoch(epoch)
            per_shard.append([tuple(s.batch_indices(i)) for i in range(len(s))])
        flat = [b for batches in per_shard for b in batches]
        assert len(set(flat)) == len(flat) == 9
    # The 9-batch epochs of the shards are windows of one stream: the same batches a
    # sequencer with epoch_size=9 serves, so the remainder carries over and nothing repeats.
    whole = Sequencer(X, y, batch_size=2, seed=7, epoch_size=9)
    for epoch in range(3):
        whole.set_epoch(epoch)
        expected = {tuple(whole.batch_indices(i)) for i in range(9)}
        got = set()
        for s in shards:
            s.set_epoch(epoch)
            got |= {tuple(s.batch_indices(i)) for i in range(len(s))}
        assert got == expected


def test_shard_predict_mode_splits_dataset_order(clouds):
    X, y = clouds
    seq = Sequencer(X, y, batch_size=4, training=False)
    shards = [seq.shard(2, i) for i in range(2)]
    assert [len(s) for s in shards] == [3, 2]
    rows = np.concatenate([s.predict_indices(i) for s in shards for i in range(len(s))])
    assert sorted(rows.tolist()) == list(range(20))


# ---------------------------------------------------------------- bad input
def test_length_mismatch(clouds):
    X, y = clouds
    with pytest.raises(ValueError, match=r"len\(X\)=20 and len\(y\)=19"):
        Sequencer(X, y[:-1])


def test_inputs_of_different_lengths(clouds):
    X, _ = clouds
    with pytest.raises(ValueError, match="same number of samples"):
        Sequencer([X, X[:5]])


def test_empty_x():
    with pytest.raises(ValueError, match="at least one sample, got 0"):
        Sequencer(np.zeros((0, 8, 3), "float32"))


@pytest.mark.parametrize(
    "batch_size, error, message",
    [
        (0, ValueError, "batch_size must be an int >= 1, got 0"),
        (-3, ValueError, "batch_size must be an int >= 1, got -3"),
        (2.5, TypeError, r"batch_size must be an int >= 1, got 2.5 \(float\)"),
        ("8", TypeError, r"batch_size must be an int >= 1, got '8' \(str\)"),
    ],
)
def test_bad_batch_size(clouds, batch_size, error, message):
    X, y = clouds
    with pytest.raises(error, match=message):
        Sequencer(X, y, batch_size=batch_size)


def test_unknown_kwarg_lists_valid_ones(clouds):
    X, y = clouds
    with pytest.raises(TypeError, match=r"unknown keyword argument\(s\): shufle\. Valid .*shuffle"):
        Sequencer(X, y, shufle=True)


def test_wrong_rank_for_coordinate_inputs(clouds):
    X, y = clouds
    with pytest.raises(ValueError, match=r"X\[0\] must have shape \(num_samples, num_points, 3\), got shape \(20, 8\)"):
        Sequencer(X[:, :, 0], y, augment_inputs=[0])
    with pytest.raises(ValueError, match=r"X\['pts'\] must have shape .* got shape \(20, 8, 4\)"):
        Sequencer({"pts": np.zeros((20, 8, 4), "float32")}, y, augment_inputs=["pts"])


def test_augment_inputs_must_name_an_input(clouds):
    X, y = clouds
    with pytest.raises(ValueError, match=r"augment_inputs names input 'nope', but X has keys \['pts'\]"):
        Sequencer({"pts": X}, y, augment_inputs=["nope"])


# ---------------------------------------------------------------- registry
def test_build_sequencer_from_spec_and_original_names(clouds):
    X, y = clouds
    for name in ("Sequencer", "DLSequencer", "dlsequencer"):
        seq = build_sequencer({"type": name, "batch_size": 5, "random_shuffle_indices": False}, X, y)
        assert isinstance(seq, Sequencer)
        assert seq.batch_size == 5 and seq.shuffle is False


def test_build_sequencer_from_json_file(clouds, tmp_path):
    X, y = clouds
    path = tmp_path / "spec.json"
    path.write_text('{"type": "Sequencer", "batch_size": 7, "seed": 3}')
    seq = build_sequencer(str(path), X, y)
    assert (seq.batch_size, seq.seed) == (7, 3)


def test_unknown_spec_type_lists_known_types(clouds):
    X, y = clouds
    with pytest.raises(ValueError, match=r"unknown sequencer type 'Sequenzer'; known types .*DLSequencer.*Sequencer"):
        build_sequencer({"type": "Sequenzer"}, X, y)
    with pytest.raises(ValueError, match="must have a 'type' key"):
        build_sequencer({"batch_size": 3}, X, y)


def test_abstract_sequencer_needs_a_subclass():
    with pytest.raises(NotImplementedError, match="must implement _count_samples"):
        AbstractSequencer(np.zeros((3, 2, 3)))


class _Faulty(Sequencer):
    def extract_input_batch(self, indices):
        if 3 in indices:
            raise KeyError("sample 3 is unreadable")
        return super().extract_input_batch(indices)


def test_an_error_in_getitem_names_the_batch_and_keeps_its_type(clouds):
    X, y = clouds
    seq = _Faulty(X, y, batch_size=4, shuffle=False)
    with pytest.raises(KeyError, match=r"_Faulty\[0\] \(training, epoch 0\) failed: sample 3 is unreadable"):
        seq[0]
    seq[1]  # other batches still load


def test_drop_last_that_leaves_no_batch_is_refused_early(clouds):
    X, y = clouds
    with pytest.raises(ValueError, match="drop_last=True with batch_size=32 leaves no batch of 20 samples"):
        Sequencer(X, y, batch_size=32, drop_last=True)
    seq = Sequencer(X, y, batch_size=8, drop_last=True)
    with pytest.raises(ValueError, match="drop_last=True with batch_size=8 leaves no batch of 5 samples"):
        seq.subsample(5)


class _SharedFailure(Sequencer):
    """Raises one exception object for every batch, like a failed chunk read many wait on."""

    error = OSError("chunk 2 is corrupt")

    def extract_input_batch(self, indices):
        raise self.error


def test_a_shared_exception_is_named_per_batch_without_being_changed(clouds):
    X, y = clouds
    seq = _SharedFailure(X, y, batch_size=4, shuffle=False)
    for idx in (0, 1, 0):
        with pytest.raises(OSError) as info:
            seq[idx]
        assert str(info.value) == f"_SharedFailure[{idx}] (training, epoch 0) failed: chunk 2 is corrupt"
        assert info.value.__cause__ is _SharedFailure.error
    assert _SharedFailure.error.args == ("chunk 2 is corrupt",)
