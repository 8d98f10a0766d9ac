"""The augmentation pipeline: transformations applied in order to a batch of point clouds."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from numbers import Integral
from typing import Any

import numpy as np

from pointseq.arguments import check_spec_keys
from pointseq.augment.jitter import Jitter
from pointseq.augment.rotation import Rotation
from pointseq.augment.scale import Scale
from pointseq.augment.transformation import LinearTransformation, PointwiseTransformation, Transformation

_TRANSFORMATIONS: dict[str, type] = {
    cls.type_name.lower(): cls for cls in (Rotation, Scale, Jitter)
}
_AUGMENTOR_TYPES = ("augmentor", "simpledataaugmentor")

Arrays = np.ndarray | Sequence[np.ndarray]


def transformation_from_spec(spec: Transformation | Mapping[str, Any]) -> Transformation:
    """Build a transformation from itself or a spec dict whose ``"type"`` names it."""
    if isinstance(spec, Transformation):
        return spec
    if not isinstance(spec, Mapping):
        raise TypeError(
            f"a transformation must be a Transformation or a spec dict, "
            f"got {type(spec).__name__}: {spec!r}"
        )
    kind = spec.get("type")
    if not isinstance(kind, str) or kind.lower() not in _TRANSFORMATIONS:
        known = [cls.type_name for cls in _TRANSFORMATIONS.values()]
        raise ValueError(
            f"transformation spec {dict(spec)!r} has unknown type {kind!r}; known types: {known}"
        )
    return _TRANSFORMATIONS[kind.lower()].from_spec(spec)


class Augmentor:
    """Apply ``transformations`` in order to batches of point clouds, vectorised over the batch.

    Each sample gets one draw of every transformation, shared by all its coordinate arrays
    (e.g. its points at several depths) and its vectors (normals): the same rotation and
    scale everywhere. Jitter is drawn independently for every coordinate array and never
    touches vectors. Consecutive rotations and scales are folded into one ``(B, 3, 3)`` map
    per sample before the points are touched, so each coordinate array is read once per run
    of linear transformations.
    """

    def __init__(self, transformations: Iterable[Transformation | Mapping[str, Any]] = ()):
        if isinstance(transformations, (Transformation, Mapping, str)):
            raise TypeError(
                "transformations must be a list of transformations or their spec dicts, "
                f"got {transformations!r}"
            )
        self.transformations: tuple[Transformation, ...] = tuple(
            transformation_from_spec(t) for t in transformations
        )
        for t in self.transformations:
            if not isinstance(t, (LinearTransformation, PointwiseTransformation)):
                raise TypeError(
                    f"{type(t).__name__} is neither a LinearTransformation nor a "
                    "PointwiseTransformation; the augmentor cannot apply it"
                )

    # ------------------------------------------------------------------ specs
    @classmethod
    def from_spec(
        cls, spec: Augmentor | Mapping[str, Any] | Sequence[Mapping[str, Any]]
    ) -> Augmentor:
        """Build from ``{"transformations": [{"type": "Rotation", ...}, ...]}``.

        Transformation specs take the original keys (``angle_distribution``,
        ``scale_distribution``, ``noise_distribution``) or the constructor names (``angle``,
        ``factor``, ``noise``), plus ``axis``, ``anisotropic``, ``clip`` and ``p``. A bare
        list of transformation specs is accepted too.
        """
        if isinstance(spec, Augmentor):
            return spec
        if isinstance(spec, Sequence) and not isinstance(spec, str):
            return cls(spec)
        check_spec_keys(
            spec, "Augmentor", ("type", "transformations"), required=("transformations",)
        )
        kind = spec.get("type", "Augmentor")
        if not isinstance(kind, str) or kind.lower() not in _AUGMENTOR_TYPES:
            raise ValueError(
                f"Augmentor spec type must be one of ['Augmentor', 'SimpleDataAugmentor'], "
                f"got {kind!r}"
            )
        return cls(spec["transformations"])

    def to_spec(self) -> dict[str, Any]:
        """A JSON-able dict that `from_spec` turns back into an equal augmentor."""
        return {"transformations": [t.to_spec() for t in self.transformations]}

    get_config = to_spec

    @classmethod
    def from_config(cls, config: Mapping[str, Any]) -> Augmentor:
        """Alias of `from_spec`, for symmetry with `get_config`."""
        return cls.from_spec(config)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Augmentor) and other.transformations == self.transformations

    def __hash__(self) -> int:
        return hash(self.transformations)

    def __repr__(self) -> str:
        return f"Augmentor({list(self.transformations)!r})"

    # ---------------------------------------------------------------- applying
    def __call__(self, coords: Arrays, rng: np.random.Generator | int, vectors: Arrays = (), *,
                 empty: Callable[..., np.ndarray] = np.empty) -> tuple[Arrays, Arrays]:
        """Augment one batch; returns ``(new_coords, new_vectors)``.

        Args:
            coords: an array ``(B, ..., 3)`` or a list/tuple of them, all over the same B
                samples (their middle dimensions may differ).
            rng: the generator every draw comes from (or an int seed for one).
            vectors: an array ``(B, ..., 3)`` or a list/tuple of them (normals): rotated,
                under a negative scale flipped, under an anisotropic scale mapped by the
                inverse scale; their lengths are kept; never jittered.
            empty: ``empty(shape, dtype)`` gives the arrays results are written into (a
                sequencer passes reused, aligned memory); ``np.empty`` by default.

        Each output has the structure of its input (array, list or tuple), the input's shape
        and dtype (integers become float64). Inputs are never modified.
        """
        new_coords, new_vectors, _ = self.apply(coords, rng, vectors, empty=empty)
        return new_coords, new_vectors

    def apply(self, coords: Arrays, rng: np.random.Generator | int, vectors: Arrays = (), *,
              empty: Callable[..., np.ndarray] = np.empty) -> tuple[Arrays, Arrays, np.ndarray | None]:
        """What `__call__` returns (the same draws from ``rng``), plus the ``(B, 3, 3)`` product
        of every linear map applied to the points, or None when none was (e.g. for columns
        that follow a coordinate, such as a height that scales with z)."""
        generator = _as_generator(rng)
        coord_arrays, coords_kind = _as_arrays(coords, "coords")
        vector_arrays, vectors_kind = _as_arrays(vectors, "vectors")
        if not coord_arrays:
            raise ValueError("coords must hold at least one array, got an empty sequence")
        batch = _batch_size(coord_arrays, vector_arrays)

        points = [_Working(a, empty) for a in coord_arrays]
        point_map: np.ndarray | None = None
        applied_map: np.ndarray | None = None
        vector_map: np.ndarray | None = None
        renormalise = False
        for t in self.transformations:
            if t.is_identity:
                continue
            if isinstance(t, LinearTransformation):
                maps = t.linear_maps(generator, batch)
                point_map = _compose(maps.points, point_map)
                applied_map = _compose(maps.points, applied_map)
                if maps.vectors is not None:
                    vector_map = _compose(maps.vectors, vector_map)
                renormalise |= not maps.vectors_orthogonal
            else:
                if point_map is not None:
                    for w in points:
                        w.apply_linear(point_map)
                    point_map = None
                applied = t.draw_applied(generator, batch)
                for w in points:
                    t.add_offsets(generator, w.writable(), applied)
        if point_map is not None:
            for w in points:
                w.apply_linear(point_map)

        new_vectors = []
        for array in vector_arrays:
            w = _Working(array, empty)
            if vector_map is not None:
                w.apply_linear(vector_map)
                if renormalise:
                    w.restore_lengths(w.source)
            new_vectors.append(w.result())
        new_coords = [w.result() for w in points]
        return _restructure(new_coords, coords_kind), _restructure(new_vectors, vectors_kind), applied_map


def _compose(later: np.ndarray, earlier: np.ndarray | None) -> np.ndarray:
    return later if earlier is None else np.matmul(later, earlier)


class _Working:
    """One array being augmented: a ``(B, P, 3)`` working view, copied on first write."""

    def __init__(self, array: np.ndarray, empty: Callable[..., np.ndarray] = np.empty):
        self.empty = empty
        self.shape = array.shape
        self.dtype = array.dtype
        small_float = array.dtype.kind == "f" and array.dtype.itemsize <= 4
        self.work_dtype = np.dtype(np.float32 if small_float else np.float64)
        flat = (array.shape[0], int(np.prod(array.shape[1:-1], dtype=np.int64)), 3)
        self.source = array.reshape(flat)
        self.values = self.source
        self.owned = False  # whether ``values`` is a fresh array this object may write into

    def apply_linear(self, maps: np.ndarray) -> None:
        values = self.values
        if values.dtype != self.work_dtype:
            values = values.astype(self.work_dtype)
        self.values = map_points(values, maps, self.empty(values.shape, self.work_dtype))
        self.owned = True

    def writable(self) -> np.ndarray:
        """``values`` as a fresh contiguous array of the working dtype, to write into."""
        if not self.owned or not self.values.flags.c_contiguous:
            self.values = self._copy(self.values, self.work_dtype)
            self.owned = True
        return self.values

    def restore_lengths(self, original: np.ndarray) -> None:
        """Rescale every vector to the length it had in ``original``; zero stays zero."""
        before = np.linalg.norm(original.astype(self.work_dtype, copy=False), axis=-1)
        after = np.linalg.norm(self.values, axis=-1)
        ratio = np.divide(before, after, out=np.zeros_like(after), where=after > 0)
        self.values *= ratio[..., None]

    def result(self) -> np.ndarray:
        out_dtype = self.dtype if self.dtype.kind == "f" else np.dtype(np.float64)
        values = self.values.reshape(self.shape)
        # An array not written yet is still the caller's: copy it.
        if not self.owned or values.dtype != out_dtype:
            return self._copy(values, out_dtype)
        return values

    def _copy(self, values: np.ndarray, dtype: np.dtype) -> np.ndarray:
        out = self.empty(values.shape, dtype)
        np.copyto(out, values, casting="unsafe")
        return out


_GROUP = 4  # points per row of the grouped product


def map_points(values: np.ndarray, maps: np.ndarray, out: np.ndarray) -> np.ndarray:
    """``out[b, p] = maps[b] @ values[b, p]`` for ``(B, P, 3)`` values and ``(B, 3, 3)`` maps.

    BLAS is slow for an inner dimension of 3, so rows of 4 points (12 values) are multiplied
    by the block-diagonal ``(12, 12)`` matrix that holds 4 copies of the map: 4 times the
    arithmetic at an inner dimension BLAS handles well, about 1.7x as fast overall.
    """
    batch, count = values.shape[:2]
    transposed = np.ascontiguousarray(maps.transpose(0, 2, 1), dtype=out.dtype)
    grouped = count - count % _GROUP
    if batch and grouped and values.flags.c_contiguous and out.flags.c_contiguous:
        blocks = np.zeros((batch, _GROUP, 3, _GROUP, 3), dtype=out.dtype)
        for g in range(_GROUP):
            blocks[:, g, :, g, :] = transposed
        rows = (batch, grouped // _GROUP, 3 * _GROUP)
        np.matmul(values.reshape(batch, -1)[:, : 3 * grouped].reshape(rows),
                  blocks.reshape(batch, 3 * _GROUP, 3 * _GROUP),
                  out=out.reshape(batch, -1)[:, : 3 * grouped].reshape(rows))
        values, out_rest = values[:, grouped:], out[:, grouped:]
    else:
        out_rest = out
    if values.size:
        np.matmul(values, transposed, out=out_rest)
    return out


def _as_generator(rng: Any) -> np.random.Generator:
    if isinstance(rng, np.random.Generator):
        return rng
    if isinstance(rng, Integral) and not isinstance(rng, bool):
        return np.random.default_rng(int(rng))
    raise TypeError(f"rng must be a numpy.random.Generator or an int seed, got {rng!r}")


def _as_arrays(value: Any, name: str) -> tuple[list[np.ndarray], type]:
    """The arrays of ``value`` (one array, or a list/tuple of them) and the container type."""
    if isinstance(value, (list, tuple)):
        kind: type = type(value)
        items = list(value)
        labels = [f"{name}[{i}]" for i in range(len(items))]
    else:
        kind = np.ndarray
        items = [value]
        labels = [name]
    arrays = []
    for label, item in zip(labels, items):
        array = np.asarray(item)
        if array.dtype.kind not in "fiu":
            raise ValueError(f"{label} must hold real numbers, got dtype {array.dtype}")
        if array.ndim < 2 or array.shape[-1] != 3:
            raise ValueError(f"{label} must have shape (B, ..., 3), got shape {array.shape}")
        arrays.append(array)
    return arrays, kind


def _batch_size(coords: list[np.ndarray], vectors: list[np.ndarray]) -> int:
    sizes = [(f"coords[{i}]", a.shape[0]) for i, a in enumerate(coords)]
    sizes += [(f"vectors[{i}]", a.shape[0]) for i, a in enumerate(vectors)]
    batch = sizes[0][1]
    for label, size in sizes[1:]:
        if size != batch:
            raise ValueError(
                "coords and vectors must share the batch size (first axis); "
                f"{sizes[0][0]} has {batch} samples but {label} has {size}"
            )
    return batch


def _restructure(arrays: list[np.ndarray], kind: type) -> Arrays:
    if kind is np.ndarray:
        return arrays[0]
    return kind(arrays)


def as_augmentor(value: Any) -> Augmentor | None:
    """An ``augmentor`` argument: an `Augmentor`, its spec dict, or None."""
    if value is None or isinstance(value, Augmentor):
        return value
    if isinstance(value, Mapping):
        return Augmentor.from_spec(dict(value))
    raise TypeError(
        f"augmentor must be a pointseq.augment.Augmentor, its spec dict or None, got {value!r} "
        f"({type(value).__name__})"
    )
