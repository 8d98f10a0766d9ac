"""Sequencer: the dense sequencer over in-memory point arrays."""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np

from pointseq.augment import Augmentor
from pointseq.sequencers.abstract_sequencer import AbstractSequencer
from pointseq.sequencers.batch_buffers import BatchBuffers
from pointseq.augment import as_augmentor
from pointseq.sequencers.registry import register_sequencer
from pointseq.sequencers.structure import (
    Structure,
    leaves,
    normalize_structure,
    num_rows,
    take_rows,
)

InputKey = int | str


@register_sequencer("Sequencer", "DLSequencer")
class Sequencer(AbstractSequencer):
    """Batches of point arrays held in memory.

    Args:
        X: ``(n, N, 3)`` points, a list of arrays (structure space, features, ...) or a dict.
        y: ``(n, ...)`` references, or None.
        batch_size: samples per batch.
        augmentor: an `augment.Augmentor` or its spec dict, applied in training mode only.
        augment_inputs: which inputs are coordinates to augment (tuple positions or dict
            keys); default: the first input.
        vector_inputs: which inputs are vectors (normals): rotated with their coordinates,
            never jittered.
        **kwargs: the `AbstractSequencer` options (shuffle, seed, drop_last, epoch_size, ...).
    """

    def __init__(
        self,
        X: Structure = None,
        y: np.ndarray | None = None,
        batch_size: int = 16,
        *,
        augmentor: Augmentor | dict | None = None,
        augment_inputs: Sequence[InputKey] | InputKey | None = None,
        vector_inputs: Sequence[InputKey] | InputKey | None = None,
        **kwargs: Any,
    ) -> None:
        self.augmentor = as_augmentor(augmentor)
        self._augment_inputs_arg = augment_inputs
        self._vector_inputs_arg = vector_inputs
        self._X: Structure = None
        self._y: np.ndarray | None = None
        super().__init__(X, y, batch_size, **kwargs)
        # Enough for the batches Keras' queue, the workers (or those built ahead) and tf.data's prefetch hold.
        self._buffers = BatchBuffers(per_size=self.max_queue_size + 2 * max(self.workers, self.worker_threads) + 8)

    def get_config(self) -> dict:
        config = super().get_config()
        config.update(
            augmentor=None if self.augmentor is None else self.augmentor.get_config(),
            augment_inputs=_as_list(self._augment_inputs_arg),
            vector_inputs=_as_list(self._vector_inputs_arg),
        )
        return config

    # ---------------------------------------------------------------- data
    def set_input_data(self, X: Structure, y: np.ndarray | None = None) -> None:
        X = normalize_structure(X, "X")
        n = num_rows(X, "X")
        if y is not None:
            y = np.asarray(y)
            if y.ndim == 0:
                raise ValueError(f"y must have a leading sample axis, got a scalar {y!r}")
            if y.dtype.kind not in "biuf":
                raise TypeError(f"y must be a numeric array (bool, int or float labels), got dtype {y.dtype}")
            if len(y) != n:
                raise ValueError(
                    f"X and y must have the same number of samples, got len(X)={n} "
                    f"and len(y)={len(y)}"
                )
        self._input_roles(X)  # validates the coordinate and vector inputs
        # Coordinates, augmented or not (the first input by default), must be finite.
        coord_keys = _resolve_keys(X, self._augment_inputs_arg, "augment_inputs", default_first=True)
        for key in coord_keys + _resolve_keys(X, self._vector_inputs_arg, "vector_inputs", default_first=False):
            array = _get(X, key)
            if np.issubdtype(array.dtype, np.floating) and array.ndim >= 2 and array.shape[-1] == 3:
                _check_finite(array, key)
        self._X, self._y = X, y
        super().set_input_data(X, y)

    def _input_roles(self, X: Structure) -> tuple[list[InputKey], list[InputKey]]:
        """The coordinate and vector inputs of X (or of a batch with its structure)."""
        coord_keys = _resolve_keys(
            X, self._augment_inputs_arg, "augment_inputs", default_first=self.augmentor is not None
        )
        vector_keys = _resolve_keys(X, self._vector_inputs_arg, "vector_inputs", default_first=False)
        overlap = set(coord_keys) & set(vector_keys)
        if overlap:
            raise ValueError(f"inputs {sorted(overlap)} are in both augment_inputs and vector_inputs")
        for role, keys in (("coordinate", coord_keys), ("vector", vector_keys)):
            for key in keys:
                array = _get(X, key)
                if array.ndim < 3 or array.shape[-1] != 3:
                    raise ValueError(
                        f"{role} input X[{key!r}] must have shape (num_samples, num_points, 3), "
                        f"got shape {array.shape}"
                    )
                if not np.issubdtype(array.dtype, np.floating):
                    raise ValueError(
                        f"{role} input X[{key!r}] must be a float array, got dtype {array.dtype}"
                    )
        return coord_keys, vector_keys

    def get_input_data(self) -> tuple[Structure, np.ndarray | None]:
        return self._X, self._y

    def _count_samples(self) -> int:
        return 0 if self._X is None else num_rows(self._X, "X")

    # ---------------------------------------------------------------- batches
    def extract_input_batch(self, indices: np.ndarray) -> Structure:
        return take_rows(self._X, indices, self._buffers.empty)

    def extract_reference_batch(self, indices: np.ndarray) -> np.ndarray | None:
        return None if self._y is None else take_rows(self._y, indices, self._buffers.empty)

    def augment(self, batch_x: Structure, rng: np.random.Generator) -> Structure:
        if self.augmentor is None:
            return batch_x
        # Resolved from the batch, so a backbone without data (an offline cache of point-cloud
        # files) augments too.
        coord_keys, vector_keys = self._input_roles(batch_x)
        coords = [_get(batch_x, k) for k in coord_keys]
        vectors = [_get(batch_x, k) for k in vector_keys]
        new_coords, new_vectors = self.augmentor(
            coords, rng, vectors=vectors, empty=self._buffers.empty
        )
        replaced = dict(zip(coord_keys + vector_keys, list(new_coords) + list(new_vectors)))
        return _replace(batch_x, replaced)


def _check_finite(array: np.ndarray, key: InputKey) -> None:
    """Refuse NaN or infinite coordinates, naming the first sample that holds one."""
    bad = ~np.isfinite(array.reshape(len(array), -1)).all(axis=1) if array.size else np.zeros(0, bool)
    if bad.any():
        sample = int(np.flatnonzero(bad)[0])
        raise ValueError(f"X[{key!r}] holds NaN or infinite coordinates in {int(bad.sum())} sample(s), the "
                         f"first is sample {sample}; coordinates must be finite")


def _as_list(value: Any) -> list | None:
    if value is None:
        return None
    if isinstance(value, (list, tuple)):
        return list(value)
    return [value]


def _resolve_keys(X: Structure, wanted: Any, name: str, *, default_first: bool) -> list[InputKey]:
    """Turn ``augment_inputs`` / ``vector_inputs`` into validated keys of X."""
    names = [k for k, _ in leaves(X)]
    if wanted is None:
        if not default_first:
            return []
        return [names[0] if isinstance(X, dict) else 0]
    keys = []
    for key in _as_list(wanted):
        if isinstance(X, dict):
            if key not in X:
                raise ValueError(f"{name} names input {key!r}, but X has keys {names}")
        else:
            count = len(X) if isinstance(X, tuple) else 1
            if isinstance(key, (bool, np.bool_)) or not isinstance(key, (int, np.integer)) or not 0 <= key < count:
                raise ValueError(f"{name} must hold input positions in [0, {count}), got {key!r}")
            key = int(key)
        keys.append(key)
    return keys


def _get(X: Structure, key: InputKey) -> np.ndarray:
    if isinstance(X, (dict, tuple)):
        return X[key]
    return X


def _replace(X: Structure, replaced: dict) -> Structure:
    if isinstance(X, dict):
        return {k: replaced.get(k, v) for k, v in X.items()}
    if isinstance(X, tuple):
        return tuple(replaced.get(i, v) for i, v in enumerate(X))
    return replaced.get(0, X)
