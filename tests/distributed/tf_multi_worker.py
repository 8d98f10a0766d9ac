"""One worker of a two-process `tf.distribute.MultiWorkerMirroredStrategy` run on loopback.

Usage: ``tf_multi_worker.py INDEX PORT0,PORT1 CACHE OUT_DIR EPOCHS``. Each worker reads its own
share of the shared OfflineSequencer cache, ``shard(num_workers, index)``, trains with
synchronous all-reduce and writes ``OUT_DIR/worker<INDEX>.json`` (the cache batches and sample
ids it trained on, its losses) and ``OUT_DIR/worker<INDEX>.npz`` (its final weights).

How the data reaches the strategy: Keras 3 turns a PyDataset into
``tf.data.Dataset.from_generator`` and hands it to ``strategy.experimental_distribute_dataset``
(``TFEpochIterator`` in keras/src/backend/tensorflow/trainer.py), which treats every element as
a GLOBAL batch: it splits it into one piece per replica and, with the default auto-shard policy,
each worker keeps only its own piece. A worker that already reads only its own batches would
lose half of each; Keras offers no way to set that dataset's auto-shard policy. The per-worker
input API, ``strategy.distribute_datasets_from_function``, neither splits nor auto-shards, and
`model.fit` accepts its result, so the worker's shard goes in through it.
"""

import itertools
import json
import os
import sys

INDEX, PORTS, CACHE, OUT_DIR, EPOCHS = (int(sys.argv[1]), sys.argv[2].split(","), sys.argv[3],
                                        sys.argv[4], int(sys.argv[5]))
os.environ["TF_CONFIG"] = json.dumps({
    "cluster": {"worker": [f"127.0.0.1:{port}" for port in PORTS]},
    "task": {"type": "worker", "index": INDEX},
})
os.environ["KERAS_BACKEND"] = "tensorflow"
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
HERE = os.path.dirname(os.path.abspath(__file__))
sys.path[:0] = [HERE, os.path.dirname(HERE), os.path.dirname(os.path.dirname(HERE))]

import keras  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

from conftest import make_deterministic  # noqa: E402
from pointseq.sequencers import EpochSync  # noqa: E402
from stream_data import NUM_POINTS, offline_sequencer  # noqa: E402


class MultiWorkerModel(keras.Model):
    """A functional model that `fit` can train under MultiWorkerMirroredStrategy in Keras 3.15.

    Two steps of Keras' TF trainer fail under this strategy (keras-team/keras#20585), before
    and after the training step; the step itself (forward, loss, gradients all-reduced by the
    optimizer, update) is Keras' own and untouched:

    - ``_maybe_symbolic_build`` (keras/src/backend/tensorflow/trainer.py:713-740) pulls one
      distributed batch and calls ``strategy.reduce("MEAN", batch, axis=None)`` on the whole
      ``(x, y)`` structure, which this strategy cannot reduce: "Attempt to convert a value
      (PerReplica:{...}) with an unsupported type". The build needs only shapes and dtypes,
      so it is given one local batch.
    - ``reduce_per_replica`` (same file, 833-841) reduces every log with
      ``strategy.reduce("MEAN", v, axis=0)``, which fails on the scalar loss: "Invalid
      reduction dimension 0 for input with 0 dimensions". The step returns each log with a
      length-1 axis, which that reduction averages over the replicas to a scalar.
    """

    example_batch = None

    def _maybe_symbolic_build(self, iterator=None, data_batch=None):
        return super()._maybe_symbolic_build(data_batch=self.example_batch)

    def train_step(self, data):
        logs = super().train_step(data)
        return {name: tf.reshape(value, [1]) for name, value in logs.items()}


def build_model(example_batch) -> keras.Model:
    points = keras.Input((NUM_POINTS, 3))
    sample_id = keras.Input((1,))  # carried for the report, not used by the layers
    h = keras.layers.GlobalAveragePooling1D()(keras.layers.Dense(8, activation="relu")(points))
    model = MultiWorkerModel([points, sample_id], keras.layers.Dense(1, activation="sigmoid")(h))
    model.example_batch = example_batch
    model.compile(keras.optimizers.SGD(0.1), "binary_crossentropy")
    return model


def main() -> None:
    strategy = tf.distribute.MultiWorkerMirroredStrategy()
    make_deterministic(0)
    sequencer = offline_sequencer(CACHE)
    shards = []
    served = []  # (generator run, epoch, step, cache batch, sample ids), in the order produced

    def worker_dataset(context: tf.distribute.InputContext) -> tf.data.Dataset:
        shard = sequencer.shard(context.num_input_pipelines, context.input_pipeline_id)
        shards.append(shard)
        first = shard[0]
        signature = tf.nest.map_structure(
            lambda a: tf.TensorSpec((None,) + a.shape[1:], tf.as_dtype(a.dtype)), first
        )

        def stream():
            # One continuous stream over epochs: fit(steps_per_epoch=len(shard)) keeps one
            # iterator for the whole run, so the epoch number is explicit here.
            run = len({entry[0] for entry in served})
            for epoch in itertools.count():
                shard.set_epoch(epoch)
                for step in range(len(shard)):
                    batch = shard[step]
                    served.append((run, epoch, step, shard.cache_batch_index(step),
                                   batch[0][1][:, 0].astype(int).tolist()))
                    yield batch

        return tf.data.Dataset.from_generator(stream, output_signature=signature)

    dataset = strategy.distribute_datasets_from_function(worker_dataset)
    (shard,) = shards
    with strategy.scope():
        model = build_model(shard[0])
    steps = len(shard)
    history = model.fit(dataset, epochs=EPOCHS, steps_per_epoch=steps, verbose=0, callbacks=[EpochSync(shard)])

    last_run = served[-1][0] if served else None
    trained = [entry[1:] for entry in served if entry[0] == last_run][: EPOCHS * steps]
    report = {
        "index": INDEX,
        "num_replicas_in_sync": strategy.num_replicas_in_sync,
        "shard": list(shard._shard),
        "steps_per_epoch": steps,
        "generator_runs": len({entry[0] for entry in served}),
        "trained": trained,
        "loss": history.history["loss"],
    }
    os.makedirs(OUT_DIR, exist_ok=True)
    np.savez(os.path.join(OUT_DIR, f"worker{INDEX}.npz"), *model.get_weights())
    with open(os.path.join(OUT_DIR, f"worker{INDEX}.json.tmp"), "w") as f:
        json.dump(report, f)
    os.replace(os.path.join(OUT_DIR, f"worker{INDEX}.json.tmp"), os.path.join(OUT_DIR, f"worker{INDEX}.json"))


if __name__ == "__main__":
    main()
