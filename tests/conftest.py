import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
os.environ.setdefault("KERAS_BACKEND", "tensorflow")

import keras  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402


def make_deterministic(seed: int = 0) -> None:
    """Seed Keras, NumPy and Python, and make TF kernels deterministic where TF is the backend."""
    keras.utils.set_random_seed(seed)
    if keras.backend.backend() == "tensorflow":
        import tensorflow as tf

        tf.config.experimental.enable_op_determinism()


@pytest.fixture
def deterministic():
    make_deterministic(0)
    return make_deterministic


@pytest.fixture
def clouds():
    """20 tiny clouds of 8 points with a binary label (is the cloud above z=0)."""
    rng = np.random.default_rng(0)
    X = rng.normal(size=(20, 8, 3)).astype("float32")
    y = (X[:, :, 2].mean(axis=1) > 0).astype("int32")
    return X, y


def dense_data(kind: str, n: int = 20):
    """Tiny dense inputs as one array ("single"), a tuple ("tuple") or a dict ("dict"),
    with a binary label per cloud (is its mean z above 0)."""
    rng = np.random.default_rng(1)
    points = rng.normal(size=(n, 8, 3)).astype("float32")
    feats = rng.normal(size=(n, 8, 2)).astype("float32")
    y = (points[:, :, 2].mean(axis=1) > 0).astype("float32")[:, None]
    if kind == "single":
        return points, y
    if kind == "tuple":
        return (points, feats), y
    return {"points": points, "feats": feats}, y


def dense_model(kind: str) -> keras.Model:
    """A tiny compiled classifier taking the inputs of ``dense_data(kind)``."""
    points = keras.Input((8, 3), name="points")
    if kind == "single":
        inputs, merged = points, points
    else:
        feats = keras.Input((8, 2), name="feats")
        inputs = [points, feats] if kind == "tuple" else {"points": points, "feats": feats}
        merged = keras.layers.Concatenate()([points, feats])
    h = keras.layers.GlobalAveragePooling1D()(keras.layers.Dense(4, activation="relu")(merged))
    model = keras.Model(inputs, keras.layers.Dense(1, activation="sigmoid")(h))
    model.compile(keras.optimizers.SGD(0.1), "binary_crossentropy", metrics=["accuracy"])
    return model
