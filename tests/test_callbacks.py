"""The training-loop callbacks through model.fit: profiler, interval evaluation, resume."""

import json
import os
import time

import keras
import numpy as np
import pytest

from conftest import make_deterministic
from pointseq.sequencers import Sequencer
from pointseq.sequencers.callbacks import DataWaitProfiler, IntervalEvaluator, SequencerCheckpoint
from pointseq.sequencers.callbacks.data_wait_profiler import IN_STEP_BACKENDS


def make_data(n=20, seed=1):
    rng = np.random.default_rng(seed)
    points = rng.normal(size=(n, 8, 3)).astype("float32")
    y = (points[:, :, 2].mean(axis=1) > 0).astype("float32")[:, None]
    return points, y


def make_model(optimizer="sgd"):
    inputs = keras.Input((8, 3))
    h = keras.layers.GlobalAveragePooling1D()(keras.layers.Dense(4, activation="relu")(inputs))
    model = keras.Model(inputs, keras.layers.Dense(1, activation="sigmoid")(h))
    opt = keras.optimizers.SGD(0.1) if optimizer == "sgd" else keras.optimizers.Adam(0.01)
    model.compile(opt, "binary_crossentropy", metrics=["accuracy"])
    return model


class _Recording(Sequencer):
    """Remembers every served training batch's sample ids (workers=1: one producer)."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.served = []

    def getitem_training(self, idx):
        self.served.append(tuple(int(i) for i in self.batch_indices(idx)))
        return super().getitem_training(idx)


class _Slow(Sequencer):
    def getitem_training(self, idx):
        time.sleep(0.05)
        return super().getitem_training(idx)


# ------------------------------------------------------------------------- DataWaitProfiler
class _FakeClock:
    def __init__(self):
        self.now = 0.0

    def __call__(self):
        return self.now


def test_profiler_splits_each_interval_into_wait_and_step():
    clock = _FakeClock()
    profiler = DataWaitProfiler(warmup_steps=1, clock=clock)
    profiler.on_train_begin()
    profiler.on_epoch_begin(0)
    # (wait before the step, step duration, begin_step, end_step)
    for wait, step, begin, end in [(1.0, 5.0, 0, 0), (0.5, 0.25, 1, 1), (0.25, 0.5, 2, 3)]:
        clock.now += wait
        profiler.on_train_batch_begin(begin)
        clock.now += step
        profiler.on_train_batch_end(end, {"loss": 0.0})
    clock.now += 2.0  # e.g. validation: in wall time, in neither sum
    logs = {"loss": 0.1}
    profiler.on_epoch_end(0, logs)

    (record,) = profiler.records
    assert record["warmup_steps"] == 1 and record["warmup_s"] == 6.0
    assert record["steps"] == 2 and record["batches"] == 3  # the last pair covers steps 2-3
    assert record["data_wait_s"] == 0.75 and record["step_s"] == 0.75
    assert record["max_data_wait_s"] == 0.5 and record["max_step_s"] == 0.5
    assert record["wall_s"] == 9.5
    assert logs == {"loss": 0.1, "data_wait_s": 0.75, "step_s": 0.75, "data_wait_fraction": 0.5}

    profiler.on_epoch_begin(1)  # warm-up is once per fit, so every step of epoch 1 counts
    clock.now += 3.0
    profiler.on_train_batch_begin(0)
    clock.now += 1.0
    profiler.on_train_batch_end(0)
    profiler.on_epoch_end(1, {})
    summary = profiler.summary()
    assert summary["epochs"] == 2 and summary["steps"] == 3 and summary["warmup_steps"] == 1
    assert summary["data_wait_s"] == 3.75 and summary["step_s"] == 1.75
    assert summary["mean_data_wait_ms"] == 1250.0
    assert "wait ms/step" in profiler.report() and str(profiler) == profiler.report()


def test_profiler_in_fit_accounts_for_a_slow_sequencer():
    make_deterministic(0)
    X, y = make_data(30)
    seq = _Slow(X, y, batch_size=5, seed=0)  # 6 batches, each taking >= 50 ms to make
    profiler = DataWaitProfiler(seq, warmup_steps=1)
    history = make_model().fit(seq, epochs=2, shuffle=False, verbose=0, callbacks=[profiler])

    for key in ("data_wait_s", "step_s", "data_wait_fraction", "batch_load_s"):
        assert len(history.history[key]) == 2
    first, second = profiler.records
    assert (first["warmup_steps"], first["steps"]) == (1, 5)
    assert (second["warmup_steps"], second["steps"], second["batches"]) == (0, 6, 6)
    assert history.history["data_wait_s"][1] == second["data_wait_s"]
    assert 0.0 <= second["data_wait_fraction"] <= 1.0
    # One producer makes the epoch's 6 batches after the epoch begins; the step that needs
    # the last one cannot end before, whichever hook interval holds the wait.
    floor = 0.8 * 6 * 0.05
    assert second["data_wait_s"] + second["step_s"] >= floor
    # The sequencer's own clock shows the slow batches on every backend.
    assert second["batches_loaded"] == 6 and second["batch_load_s"] >= 6 * 0.05
    assert profiler.summary()["mean_batch_load_ms"] >= 50.0
    assert "building a batch took" in profiler.report()
    if keras.backend.backend() in IN_STEP_BACKENDS:
        # The train function pulls the batch itself: the wait is step time.
        assert second["step_s"] >= floor
    else:
        assert second["data_wait_s"] >= floor


def test_profiler_rejects_a_negative_warmup():
    with pytest.raises(ValueError, match="warmup_steps must be an int >= 0, got -1"):
        DataWaitProfiler(warmup_steps=-1)


def test_profiler_refuses_a_sequencer_it_cannot_time():
    X, y = make_data(10)
    with pytest.raises(ValueError, match="use_multiprocessing=True builds its batches in worker processes"):
        DataWaitProfiler(_Slow(X, y, batch_size=5, workers=2, use_multiprocessing=True))
    with pytest.raises(TypeError, match="sequencer must be a pointseq sequencer, got list"):
        DataWaitProfiler([1, 2])


# ------------------------------------------------------------------------- IntervalEvaluator
def _fit_with(callbacks, epochs=2):
    make_deterministic(0)
    X, y = make_data(20)
    seq = Sequencer(X, y, batch_size=5, seed=4)  # 4 batches per epoch
    model = make_model()
    history = model.fit(seq, epochs=epochs, shuffle=False, verbose=0, callbacks=callbacks)
    return model, history, seq


def test_interval_evaluator_fires_at_exact_updates_and_keeps_training_logs():
    Xv, yv = make_data(10, seed=2)
    val = Sequencer(Xv, yv, batch_size=5, shuffle=False, training=True)
    every3 = IntervalEvaluator(val, every_n_updates=3)
    model, history, seq = _fit_with([every3])

    assert [r["update"] for r in every3.results] == [3, 6]
    assert [r["epoch"] for r in every3.results] == [0, 1]
    assert every3.updates == 8 and seq.epoch == 2
    assert set(every3.results[0]) == {
        "update", "samples", "epoch", "interval_val_loss", "interval_val_accuracy"
    }
    assert history.history["interval_val_loss"] == [r["interval_val_loss"] for r in every3.results]
    assert val.epoch == 0  # same batches each time: the evaluation epoch is pinned

    # Evaluating mid-epoch leaves the training run and its logged metrics untouched.
    plain_model, plain_history, _ = _fit_with([])
    assert history.history["loss"] == plain_history.history["loss"]
    assert history.history["accuracy"] == plain_history.history["accuracy"]
    for a, b in zip(model.get_weights(), plain_model.get_weights()):
        np.testing.assert_array_equal(a, b)


def test_interval_evaluator_counts_samples_across_epochs():
    Xv, yv = make_data(10, seed=2)
    val = Sequencer(Xv, yv, batch_size=5, shuffle=False)
    every12 = IntervalEvaluator(val, every_n_samples=12, batch_size=5, prefix="mid_")
    model, history, _ = _fit_with([every12])
    # 5 samples per update: 15 >= 12 at update 3, 25 >= 24 at 5, 40 >= 36 at 8.
    assert [(r["update"], r["samples"]) for r in every12.results] == [(3, 15), (5, 25), (8, 40)]
    last = every12.results[-1]  # fired after the final update: the final weights
    expected = model.evaluate(val, verbose=0, return_dict=True)
    assert last["mid_loss"] == pytest.approx(expected["loss"], rel=1e-6)
    assert history.history["mid_loss"] == [every12.results[0]["mid_loss"], last["mid_loss"]]


class _Schedule(IntervalEvaluator):
    """Records when it would evaluate, without a model."""

    def evaluate_now(self):
        self.results.append({"update": self.updates})


def test_interval_evaluator_resumes_its_count_from_initial_epoch():
    evaluator = _Schedule(object(), every_n_updates=3)
    evaluator.set_params({"steps": 4, "epochs": 4})
    evaluator.on_epoch_begin(2)  # a fresh callback in fit(initial_epoch=2): 8 updates done
    for step in range(4):
        evaluator.on_train_batch_begin(step)
        evaluator.on_train_batch_end(step)
    assert [r["update"] for r in evaluator.results] == [9, 12]


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(), "exactly one of every_n_updates and every_n_samples"),
        (dict(every_n_updates=2, every_n_samples=10), "exactly one of every_n_updates"),
        (dict(every_n_samples=10), "every_n_samples needs batch_size"),
        (dict(every_n_updates=0), "every_n_updates must be an int >= 1, got 0"),
    ],
)
def test_interval_evaluator_rejects_bad_schedules(kwargs, message):
    with pytest.raises(ValueError, match=message):
        IntervalEvaluator(object(), **kwargs)


# ------------------------------------------------------------------------- SequencerCheckpoint
def _resume_run(tmp_path, X, y, *, stop_after=None, restore=True, **seq_kwargs):
    """Train to epoch 4 (or `stop_after`) with model + sequencer checkpoints in tmp_path."""
    model_path, state_path = tmp_path / "model.keras", tmp_path / "sequencer.json"
    make_deterministic(0)
    seq = Sequencer(X, y, batch_size=5, seed=7)
    callbacks = [keras.callbacks.ModelCheckpoint(model_path), SequencerCheckpoint(seq, state_path)]
    model = make_model("adam")
    model.fit(seq, epochs=stop_after or 4, shuffle=False, verbose=0, callbacks=callbacks)
    if stop_after is None:
        return model
    # A new process would start here: fresh model from the checkpoint, fresh sequencer.
    make_deterministic(123)
    model = keras.models.load_model(model_path)
    seq = Sequencer(X, y, batch_size=5, seed=None, **seq_kwargs)
    callbacks = [SequencerCheckpoint(seq, state_path, restore_on_train_begin=restore)]
    model.fit(
        seq, initial_epoch=stop_after, epochs=4, shuffle=False, verbose=0, callbacks=callbacks
    )
    return model


@pytest.fixture(scope="module")
def uninterrupted_weights(tmp_path_factory):
    return _resume_run(tmp_path_factory.mktemp("full"), *make_data(20)).get_weights()


@pytest.mark.parametrize("mode", ["main", "processes"])
def test_checkpoint_resume_reproduces_the_uninterrupted_run(tmp_path, mode, uninterrupted_weights):
    X, y = make_data(20)
    reference = uninterrupted_weights
    workers = dict(workers=2, use_multiprocessing=True) if mode == "processes" else {}
    resumed = _resume_run(tmp_path / "resumed", X, y, stop_after=2, **workers).get_weights()
    for a, b in zip(reference, resumed):
        np.testing.assert_array_equal(a, b)
    with open(tmp_path / "resumed" / "sequencer.json") as f:
        assert json.load(f) == {"seed": 7, "epoch": 4}
    assert sorted(os.listdir(tmp_path / "resumed")) == ["model.keras", "sequencer.json"]


def test_resume_without_the_sequencer_state_diverges(tmp_path, uninterrupted_weights):
    X, y = make_data(20)
    reference = uninterrupted_weights
    resumed = _resume_run(tmp_path / "resumed", X, y, stop_after=2, restore=False).get_weights()
    assert any(not np.array_equal(a, b) for a, b in zip(reference, resumed))


def test_checkpoint_save_restore_and_errors(tmp_path):
    X, y = make_data(20)
    seq = Sequencer(X, y, batch_size=5, seed=11)
    checkpoint = SequencerCheckpoint(seq, tmp_path / "sub" / "state.json")
    assert checkpoint.restore() is False
    checkpoint.on_epoch_end(5)
    other = Sequencer(X, y, batch_size=5)
    assert SequencerCheckpoint(other, tmp_path / "sub" / "state.json").restore() is True
    assert (other.seed, other.epoch) == (11, 6)
    (tmp_path / "bad.json").write_text("[1, 2]")
    with pytest.raises(ValueError, match="must hold a JSON object, got list"):
        SequencerCheckpoint(seq, tmp_path / "bad.json").restore()
    with pytest.raises(TypeError, match=r"sequencer must provide state_dict\(\)"):
        SequencerCheckpoint(object(), tmp_path / "x.json")
    with pytest.raises(ValueError, match="filepath must be a non-empty path, got ''"):
        SequencerCheckpoint(seq, "")


# ------------------------------------------------------------------------- epoch_size, subsample
def test_epoch_size_epochs_continue_one_stream_through_fit():
    make_deterministic(0)
    X, y = make_data(24)
    seq = _Recording(X, y, batch_size=5, seed=9, epoch_size=3)  # 15 samples per epoch
    make_model().fit(seq, epochs=3, shuffle=False, verbose=0)
    served = seq.served[2:]  # Keras first fetches batches 0 and 1 to infer tensor specs
    assert len(served) == 9 and seq.epoch == 3
    stream = [i for batch in served for i in batch]
    first_pass, second_pass = stream[:24], stream[24:]
    assert sorted(first_pass) == list(range(24))  # epoch 1 finished the pass epoch 0 began
    assert len(second_pass) == 21 and len(set(second_pass)) == 21
    assert second_pass != first_pass[:21]  # the second pass is reshuffled


def test_subsample_trains_on_the_first_n_samples_only():
    make_deterministic(0)
    X, y = make_data(24)
    view = _Recording(X, y, batch_size=4, seed=2).subsample(10)
    make_model().fit(view, epochs=2, shuffle=False, verbose=0)
    served = view.served[2:]
    assert len(served) == 6  # 3 batches (4, 4, 2) per epoch
    for epoch in (served[:3], served[3:]):
        assert sorted(i for b in epoch for i in b) == list(range(10))
