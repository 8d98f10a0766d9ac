"""Sequencers through model.fit / evaluate / predict, in every worker mode."""

import numpy as np
import pytest

from conftest import dense_data, make_deterministic
from conftest import dense_model as make_model
from pointseq.sequencers import EpochSync, Sequencer, prebuild_model

WORKER_MODES = {
    "main": dict(workers=1),
    "threads": dict(workers=2),
    "processes": dict(workers=2, use_multiprocessing=True),
}


def make_data(kind):
    return dense_data(kind, n=24)


def fit_weights(kind, mode, epochs=2):
    make_deterministic(0)
    X, y = make_data(kind)
    seq = Sequencer(X, y, batch_size=5, seed=42, **WORKER_MODES[mode])
    model = make_model(kind)
    prebuild_model(model, seq)
    history = model.fit(seq, epochs=epochs, shuffle=False, verbose=0, callbacks=[EpochSync(seq)])
    return model.get_weights(), history, seq, model


@pytest.mark.parametrize("kind", ["single", "tuple", "dict"])
@pytest.mark.parametrize("mode", list(WORKER_MODES))
def test_fit_evaluate_predict(kind, mode):
    _, history, seq, model = fit_weights(kind, mode)
    assert len(history.history["loss"]) == 2
    assert all(np.isfinite(history.history["loss"]))
    assert seq.epoch == 2  # the epoch after the two trained ones
    result = model.evaluate(seq, verbose=0, return_dict=True)
    assert set(result) >= {"loss", "accuracy"} and np.isfinite(result["loss"])
    seq.enable_predict_mode()
    pred = model.predict(seq, verbose=0)
    assert pred.shape == (24, 1)
    X, _ = make_data(kind)
    np.testing.assert_allclose(pred, model.predict(X, batch_size=5, verbose=0), rtol=1e-5, atol=1e-6)


def test_same_seed_same_weights_in_every_worker_mode():
    reference, _, _, _ = fit_weights("tuple", "main")
    again, _, _, _ = fit_weights("tuple", "main")
    for a, b in zip(reference, again):
        np.testing.assert_array_equal(a, b)
    for mode in ("threads", "processes"):
        other, _, _, _ = fit_weights("tuple", mode)
        for a, b in zip(reference, other):
            np.testing.assert_array_equal(a, b)


class _RecordingSequencer(Sequencer):
    """Remembers, in the main process, the epoch of every served batch (workers=1)."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.seen = []

    def getitem_training(self, idx):
        self.seen.append((self.epoch, tuple(self.batch_indices(idx))))
        return super().getitem_training(idx)


def test_fit_serves_a_new_order_each_epoch_and_resumes():
    make_deterministic(0)
    X, y = make_data("single")
    seq = _RecordingSequencer(X, y, batch_size=6, seed=3)
    model = make_model("single")
    model.fit(seq, epochs=3, shuffle=False, verbose=0, callbacks=[EpochSync(seq)])
    # Before training, Keras fetches batches to infer specs (TF) or build the model (JAX,
    # torch); the trained batches are the last 12.
    trained = seq.seen[-12:]
    by_epoch = {e: [b for ep, b in trained if ep == e] for e in range(3)}
    assert [len(v) for v in by_epoch.values()] == [4, 4, 4]
    assert by_epoch[0] != by_epoch[1] != by_epoch[2]
    for batches in by_epoch.values():
        assert sorted(i for b in batches for i in b) == list(range(24))

    resumed = _RecordingSequencer(X, y, batch_size=6)
    resumed.load_state_dict({"seed": 3, "epoch": 1})
    make_model("single").fit(
        resumed, initial_epoch=1, epochs=3, shuffle=False, verbose=0, callbacks=[EpochSync(resumed)]
    )
    got = [b for ep, b in resumed.seen[-8:]]
    assert got == by_epoch[1] + by_epoch[2]


def test_plain_fit_advances_the_epoch_once_per_epoch():
    X, y = make_data("single")
    seq = Sequencer(X, y, batch_size=6, seed=3)
    model = make_model("single")
    model.fit(seq, epochs=1, shuffle=False, verbose=0)  # builds the model on JAX / torch
    start = seq.epoch
    model.fit(seq, epochs=2, shuffle=False, verbose=0)
    assert seq.epoch == start + 2
