"""Single-process data parallel training on two host CPU devices with keras.distribution.

Run as a script (the device count must be fixed before jax is imported). Prints one JSON
object: the devices, how every trained batch was laid out over them, and the losses.
"""

import json
import os
import sys

os.environ["XLA_FLAGS"] = os.environ.get("XLA_FLAGS", "") + " --xla_force_host_platform_device_count=2"
os.environ["KERAS_BACKEND"] = "jax"
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
sys.path[:0] = [os.path.dirname(os.path.dirname(os.path.abspath(__file__))),  # tests/ (conftest)
                os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))]

import jax  # noqa: E402
import keras  # noqa: E402
import numpy as np  # noqa: E402

from conftest import make_deterministic  # noqa: E402
from pointseq.sequencers import EpochSync, Sequencer, prebuild_model  # noqa: E402

N, POINTS, BATCH, EPOCHS = 32, 8, 8, 4


def main() -> None:
    make_deterministic(0)
    devices = jax.devices("cpu")
    distribution = keras.distribution.DataParallel(devices=devices)
    keras.distribution.set_distribution(distribution)

    rng = np.random.default_rng(0)
    X = rng.normal(size=(N, POINTS, 3)).astype("float32")
    # Every point carries its sample id in a second input, so a device's slice names its samples.
    ids = np.repeat(np.arange(N, dtype="float32")[:, None, None], POINTS, axis=1)
    y = (X[:, :, 2].mean(axis=1) > 0).astype("float32")[:, None]
    seq = Sequencer((X, ids), y, batch_size=BATCH, seed=5)

    points = keras.Input((POINTS, 3))
    sample_id = keras.Input((POINTS, 1))
    h = keras.layers.Dense(16, activation="relu")(points)
    h = keras.layers.GlobalAveragePooling1D()(h)
    out = keras.layers.Dense(1, activation="sigmoid")(h)
    model = keras.Model([points, sample_id], out)
    model.compile(keras.optimizers.Adam(0.05), "binary_crossentropy")
    prebuild_model(model, seq)

    # Record how the trainer lays each global batch out: it calls this JAX function on every
    # batch under a distribution; the wrapper only reads the result.
    layouts = []
    original = jax.make_array_from_process_local_data

    def spy(sharding, local_data, *args, **kwargs):
        array = original(sharding, local_data, *args, **kwargs)
        if np.ndim(local_data) == 3 and np.shape(local_data)[-1] == 1:  # the id input
            layouts.append(sorted(
                (str(s.device), s.index[0].start or 0, np.asarray(s.data)[:, 0, 0].astype(int).tolist())
                for s in array.addressable_shards
            ))
        return array

    jax.make_array_from_process_local_data = spy
    history = model.fit(seq, epochs=EPOCHS, shuffle=False, verbose=0, callbacks=[EpochSync(seq)])
    jax.make_array_from_process_local_data = original

    expected = []
    for epoch in range(EPOCHS):
        seq.set_epoch(epoch)
        expected += [seq.batch_indices(i).tolist() for i in range(len(seq))]
    kernel = model.layers[1].kernel.value
    print(json.dumps({
        "devices": [str(d) for d in devices],
        "kernel_devices": sorted(str(d) for d in kernel.sharding.device_set),
        "layouts": layouts,
        "expected_batches": expected,
        "loss": history.history["loss"],
    }))


if __name__ == "__main__":
    main()
