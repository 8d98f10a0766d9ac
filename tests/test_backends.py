"""Every sequencer kind and the shadow layers on the active Keras backend.

Marked ``backends``: the CI runs this subset under ``KERAS_BACKEND=jax`` and ``torch`` as well
as TensorFlow (``python -m pytest -m backends``). Models are tiny so each backend's run stays
in seconds; what is checked is values, not that a call returns.
"""

import os
import subprocess
import sys

import keras
import numpy as np
import pytest

from conftest import dense_data, dense_model, make_deterministic
from pointseq.offline import OfflineSequencer
from pointseq.pointclouds import build_sparse_grid
from pointseq.sequencers import (
    EpochSync,
    MaskedDense,
    PoolToParent,
    Sequencer,
    SparseShadowSequencer,
    UnpoolToChild,
    build_shadow_segmentation_model,
    prebuild_model,
)

pytestmark = pytest.mark.backends

WORKER_MODES = {
    "main": dict(workers=1),
    "threads": dict(workers=2),
    "processes": dict(workers=2, use_multiprocessing=True),
}
AUGMENTOR = {
    "transformations": [
        {"type": "Rotation", "axis": "random"},
        {"type": "Scale", "scale_distribution": {"type": "uniform", "start": 0.9, "end": 1.1}},
        {"type": "Jitter", "noise_distribution": {"type": "normal", "mean": 0, "stdev": 0.01}},
    ]
}


# ------------------------------------------------------------------------------ data and models
def shadow_grids(count=10, seed=0):
    rng = np.random.default_rng(seed)
    grids = []
    for _ in range(count):
        pts = rng.uniform(0, 1, size=(int(rng.integers(20, 60)), 3))
        grids.append(build_sparse_grid(pts, pts[:, :1], (pts[:, 2] > 0.5).astype(int), cell_size=0.25, depth=2))
    return grids


def shadow_model(seq):
    model = build_shadow_segmentation_model(seq.num_features, 2, seq.depth, seq.max_rows, width=8)
    model.compile(keras.optimizers.Adam(0.01), "sparse_categorical_crossentropy")
    return model


def offline_sequencer(tmp_path, **kwargs):
    X, y = dense_data("tuple")
    backbone = Sequencer(X, y, batch_size=4, shuffle=False, seed=7, augmentor=AUGMENTOR)
    return OfflineSequencer(backbone, tmp_path / "cache.h5", chunk_size=2, chunk_randomization=True,
                            batch_randomization=True, progress=False, seed=7, **kwargs)


def fit(model, seq, epochs=2):
    """Fit the way the library documents: prebuild, then EpochSync keeps the epoch exact."""
    prebuild_model(model, seq)
    return model.fit(seq, epochs=epochs, shuffle=False, verbose=0, callbacks=[EpochSync(seq)])


def assert_same_weights(a, b):
    assert len(a) == len(b)
    for wa, wb in zip(a, b):
        np.testing.assert_array_equal(wa, wb)


# ------------------------------------------------------------------------------ fit / evaluate / predict
@pytest.mark.parametrize("kind", ["single", "tuple", "dict"])
def test_sequencer_fit_evaluate_predict(kind):
    make_deterministic(0)
    X, y = dense_data(kind)
    seq = Sequencer(X, y, batch_size=6, seed=3)
    model = dense_model(kind)
    history = fit(model, seq)
    assert len(history.history["loss"]) == 2 and np.isfinite(history.history["loss"]).all()
    assert seq.epoch == 2

    # Loss and accuracy are per-sample means, so the shuffled sequencer and the arrays agree.
    by_seq = model.evaluate(seq, verbose=0, return_dict=True)
    by_arrays = model.evaluate(X, y, batch_size=6, verbose=0, return_dict=True)
    np.testing.assert_allclose(by_seq["loss"], by_arrays["loss"], rtol=1e-5)
    np.testing.assert_allclose(by_seq["accuracy"], by_arrays["accuracy"], rtol=1e-6)

    seq.enable_predict_mode()
    pred = model.predict(seq, verbose=0)
    assert pred.shape == (20, 1)  # 4 batches (6, 6, 6, 2) concatenated in dataset order
    np.testing.assert_allclose(pred, model.predict(X, batch_size=6, verbose=0), rtol=1e-5, atol=1e-6)


def test_shadow_sequencer_fit_evaluate_predict():
    make_deterministic(0)
    grids = shadow_grids()
    seq = SparseShadowSequencer(grids, batch_size=4, seed=2, augmentor=AUGMENTOR)
    model = shadow_model(seq)
    before = [w.copy() for w in model.get_weights()]
    history = fit(model, seq, epochs=3)
    assert np.isfinite(history.history["loss"]).all()
    assert any(not np.array_equal(a, b) for a, b in zip(before, model.get_weights()))
    assert np.isfinite(model.evaluate(seq, verbose=0))

    seq.enable_predict_mode()
    pred = model.predict(seq, verbose=0)
    assert pred.shape == (10, seq.max_rows[0], 2)
    cells = seq.post_process_output(pred)
    assert [c.shape for c in cells] == [(g.num_cells(0), 2) for g in grids]
    points = seq.post_process_output(pred, to_points=True)
    assert [p.shape[0] for p in points] == [len(g.point_to_cell) for g in grids]

    # An element's output does not depend on its batch neighbours or position.
    alone = SparseShadowSequencer(grids[::-1], batch_size=3, max_rows=seq.max_rows, training=False)
    reversed_cells = alone.post_process_output(model.predict(alone, verbose=0))
    for a, b in zip(cells, reversed_cells[::-1]):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)


def test_offline_sequencer_fit_evaluate_predict(tmp_path):
    make_deterministic(0)
    seq = offline_sequencer(tmp_path)
    model = dense_model("tuple")
    history = fit(model, seq)
    assert np.isfinite(history.history["loss"]).all() and seq.epoch == 2
    assert np.isfinite(model.evaluate(seq, verbose=0, return_dict=True)["loss"])

    seq.enable_predict_mode()
    pred = model.predict(seq, verbose=0)
    X, _ = dense_data("tuple")
    np.testing.assert_allclose(pred, model.predict(X, batch_size=4, verbose=0), rtol=1e-5, atol=1e-6)


# ------------------------------------------------------------------------------ shadow layers
# Two elements, 4 child rows and 3 parent rows each; padded children point at row R_p = 3.
CHILDREN = np.array(
    [[[1, -1], [2, -2], [3, -3], [4, -4]], [[5, -5], [7, -7], [99, 99], [99, 99]]], dtype="float32"
)
PARENT = np.array([[0, 1, 0, 1], [0, 0, 3, 3]], dtype="int32")
CHILD_MASK = np.array([[1, 1, 1, 1], [1, 1, 0, 0]], dtype="float32")
PARENT_MASK = np.array([[1, 1, 0], [1, 0, 0]], dtype="float32")


@pytest.mark.parametrize(
    "reduction, expected",
    [
        ("mean", [[[2, -2], [3, -3], [0, 0]], [[6, -6], [0, 0], [0, 0]]]),
        ("max", [[[3, -1], [4, -2], [0, 0]], [[7, -5], [0, 0], [0, 0]]]),
        ("sum", [[[4, -4], [6, -6], [0, 0]], [[12, -12], [0, 0], [0, 0]]]),
    ],
)
def test_pool_to_parent_values(reduction, expected):
    out = PoolToParent(reduction)([CHILDREN, PARENT, CHILD_MASK, PARENT_MASK])
    np.testing.assert_allclose(keras.ops.convert_to_numpy(out), expected)


def test_unpool_and_masked_dense_values():
    parents = np.arange(12, dtype="float32").reshape(2, 3, 2) + 1
    out = keras.ops.convert_to_numpy(UnpoolToChild()([parents, PARENT]))
    np.testing.assert_allclose(out, [parents[0][[0, 1, 0, 1]], [parents[1][0], parents[1][0], [0, 0], [0, 0]]])

    layer = MaskedDense(3, use_bias=True)
    dense = keras.ops.convert_to_numpy(layer([CHILDREN, CHILD_MASK]))
    kernel, bias = (keras.ops.convert_to_numpy(w) for w in layer.dense.weights)
    np.testing.assert_allclose(dense, (CHILDREN @ kernel + bias) * CHILD_MASK[..., None], rtol=1e-5, atol=1e-5)
    assert not dense[1, 2:].any()


def test_shadow_layers_compile_inside_a_jitted_step():
    """The layers trace with a symbolic batch size (jit on JAX, tf.function on TF)."""
    make_deterministic(0)
    seq = SparseShadowSequencer(shadow_grids(6), batch_size=3, seed=1)
    model = shadow_model(seq)
    x, y, sw = seq.load_batch(seq.predict_indices(0))
    eager = keras.ops.convert_to_numpy(model(x))
    compiled = model.predict_on_batch(x)
    np.testing.assert_allclose(eager, compiled, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(compiled.sum(axis=-1), 1.0, rtol=1e-5)


# ------------------------------------------------------------------------------ determinism
def fit_weights(make, mode):
    """Seeded fit of a fresh model in one worker mode; returns the trained weights."""
    make_deterministic(0)
    seq, model = make(WORKER_MODES[mode])
    fit(model, seq)
    return model.get_weights()


def make_dense(options):
    X, y = dense_data("tuple")
    return Sequencer(X, y, batch_size=5, seed=42, augmentor=AUGMENTOR, **options), dense_model("tuple")


def make_shadow(options):
    seq = SparseShadowSequencer(shadow_grids(8), batch_size=4, seed=5, augmentor=AUGMENTOR, **options)
    return seq, shadow_model(seq)


@pytest.mark.parametrize("make", [make_dense, make_shadow], ids=["Sequencer", "SparseShadowSequencer"])
def test_same_weights_in_every_worker_mode(make):
    reference = fit_weights(make, "main")
    for mode in ("threads", "processes"):
        assert_same_weights(reference, fit_weights(make, mode))


def test_offline_same_weights_in_every_worker_mode(tmp_path):
    def make(options):
        return offline_sequencer(tmp_path, **options), dense_model("tuple")

    reference = fit_weights(make, "main")  # builds the cache; the others read it
    for mode in ("threads", "processes"):
        assert_same_weights(reference, fit_weights(make, mode))


def test_same_weights_with_spawned_worker_processes(tmp_path):
    """Fork is unsafe once JAX or torch run threads; workers started by spawn (a pickled
    sequencer in a fresh interpreter, the cache reopened there) serve the same batches."""
    def make(options):
        return offline_sequencer(tmp_path, **options), dense_model("tuple")

    reference = fit_weights(make, "main")  # builds the cache the spawned run reads
    out = tmp_path / "spawned.npz"
    script = os.path.join(os.path.dirname(os.path.abspath(__file__)), "distributed", "spawn_workers.py")
    env = dict(os.environ, KERAS_BACKEND=keras.backend.backend(), TF_CPP_MIN_LOG_LEVEL="3")
    proc = subprocess.run([sys.executable, script, str(tmp_path), str(out)], capture_output=True,
                          text=True, timeout=240, env=env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    spawned = np.load(out)
    assert_same_weights(reference, [spawned[f"arr_{i}"] for i in range(len(spawned.files))])
