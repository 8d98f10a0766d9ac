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
