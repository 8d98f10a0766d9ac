"""prebuild_model: build a compiled model on one batch before fit, without training it."""

from __future__ import annotations

import keras

from pointseq.sequencers.abstract_sequencer import AbstractSequencer


def prebuild_model(model: keras.Model, sequencer: AbstractSequencer) -> None:
    """Build ``model``, its loss and its metrics on the sequencer's first un-augmented batch.

    On the JAX and torch backends the first ``fit``/``evaluate`` of an unbuilt model opens
    the dataset once to build it. With ``workers > 1``, Keras' enqueuer keeps the batches it
    prefetched during that pass and serves them first in the next epoch, so the first epoch
    repeats some batches and misses others. Building the model beforehand skips that pass.
    The weights are not changed. Harmless, and unnecessary, on TensorFlow.
    """
    # A decorator (OfflineSequencer) builds its batches from its backbone's.
    source = getattr(sequencer, "backbone", sequencer)
    indices = source.predict_indices(0)
    batch = source.load_batch(indices)
    sample_weight = batch[2] if len(batch) > 2 else None
    model.evaluate(batch[0], batch[1], sample_weight=sample_weight, batch_size=len(indices), verbose=0)
