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
        coordinate_columns: None (coordinate inputs are ``(..., 3)`` arrays), or 3: coordinate
            inputs are ``(..., C)`` arrays whose columns 0:3 are x, y, z and the rest other
            values (a field input `(B, P, 4 + F)`: height, then features), which only
            ``height_columns`` of are touched.
        height_columns: columns (>= 3) of the coordinate inputs that hold heights, i.e. z
            differences: they are multiplied by the factor the sample's linear maps stretch z
            by (the norm of the map's third row: a rotation about z leaves them, a scale s
            multiplies them by s, as it does z), never jittered. Needs ``coordinate_columns``.
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
        coordinate_columns: int | None = None,
        height_columns: Sequence[int] | int | None = None,
        **kwargs: Any,
    ) -> None:
        self.augmentor = as_augmentor(augmentor)
        self.coordinate_columns = _check_coordinate_columns(coordinate_columns)
        self.height_columns = _check_height_columns(height_columns, self.coordinate_columns)
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
            coordinate_columns=self.coordinate_columns,
            height_columns=None if self.height_columns is None else list(self.height_columns),
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
            if key in coord_keys and self.coordinate_columns is not None and array.ndim >= 2:
                array = array[..., : self.coordinate_columns]
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
                if role == "coordinate" and self.coordinate_columns is not None:
                    self._check_column_layout(array, key)
                elif array.ndim < 3 or array.shape[-1] != 3:
                    raise ValueError(
                        f"{role} input X[{key!r}] must have shape (num_samples, num_points, 3), "
                        f"got shape {array.shape}"
                    )
                if not np.issubdtype(array.dtype, np.floating):
                    raise ValueError(
                        f"{role} input X[{key!r}] must be a float array, got dtype {array.dtype}"
                    )
        return coord_keys, vector_keys

    def _check_column_layout(self, array: np.ndarray, key: InputKey) -> None:
        width = max([self.coordinate_columns - 1, *(self.height_columns or ())]) + 1
        if array.ndim < 3 or array.shape[-1] < width:
            raise ValueError(
                f"coordinate input X[{key!r}] must have shape (num_samples, num_points, C) with x, y, z in "
                f"columns 0:3 (coordinate_columns=3) and C >= {width} (height_columns={self.height_columns}), "
                f"got shape {array.shape}"
            )

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
        arrays = [_get(batch_x, k) for k in coord_keys]
        coords = arrays if self.coordinate_columns is None else [a[..., :3] for a in arrays]
        vectors = [_get(batch_x, k) for k in vector_keys]
        new_coords, new_vectors, maps = self.augmentor.apply(
            coords, rng, vectors=vectors, empty=self._buffers.empty
        )
        if self.coordinate_columns is not None:
            new_coords = [self._with_columns(a, c, maps) for a, c in zip(arrays, new_coords)]
        replaced = dict(zip(coord_keys + vector_keys, list(new_coords) + list(new_vectors)))
        return _replace(batch_x, replaced)

    def _with_columns(self, array: np.ndarray, coords: np.ndarray, maps: np.ndarray | None) -> np.ndarray:
        """A copy of ``array`` with the augmented ``coords`` in columns 0:3 and its height
        columns stretched like z; every other column as it was."""
        out = self._buffers.empty(array.shape, array.dtype)
        np.copyto(out[..., 3:], array[..., 3:])
        out[..., :3] = coords
        if self.height_columns and maps is not None:
            stretch = np.linalg.norm(maps[:, 2, :], axis=1).reshape((-1,) + (1,) * (array.ndim - 1))
            out[..., list(self.height_columns)] *= stretch.astype(out.dtype)
        return out


def _check_coordinate_columns(value: Any) -> int | None:
    if value is None:
        return None
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, np.integer)):
        raise TypeError(f"coordinate_columns must be None or 3 (x, y, z lead the last axis), got {value!r} "
                        f"({type(value).__name__})")
    if value != 3:
        raise ValueError(f"coordinate_columns must be None or 3 (x, y, z lead the last axis), got {value!r}")
    return 3


def _check_height_columns(value: Any, coordinate_columns: int | None) -> tuple[int, ...] | None:
    if value is None:
        return None
    columns = _as_list(value)
    if coordinate_columns is None:
        raise ValueError(f"height_columns={value!r} needs coordinate_columns=3 (heights follow x, y, z in "
                         "the same input)")
    for column in columns:
        if isinstance(column, (bool, np.bool_)) or not isinstance(column, (int, np.integer)) or column < 3:
            raise ValueError(f"height_columns must be column indices >= 3 (after x, y, z), got {value!r}")
    if len(set(columns)) != len(columns):
        raise ValueError(f"height_columns must name each column once, got {value!r}")
    return tuple(int(c) for c in columns)


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
