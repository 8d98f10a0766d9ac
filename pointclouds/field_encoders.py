"""Field encoders: what a model type's inputs are for a run of covering fields of one cloud.

One protocol serves the offline cache build (training) and whole-tile prediction, so the two
cannot drift: both cut a cloud into `Fields`, call `FieldEncoder.encode` on a run of them and
assemble batches with `FieldEncoder.inputs` (and, for training, `FieldEncoder.targets`);
prediction takes the model's output back to the fields' kept points with
`FieldEncoder.to_points` and from there to every source point (`PropagationAccumulator`).

Encoded fields ("samples") are either a dict of arrays whose first axis is the field, or a list
with one object per field (e.g. `SparseGrid`): `take_samples`, `concat_samples` and
`count_samples` handle both, so a source can carry a partial batch across files.

An encoder whose padded shapes depend on the data (sparse grids) learns them in a first pass
(`observe` each file's samples, then `settle`); its `get_config` then holds them, so a
prediction rebuilt from the stored config pads exactly like training did.

Registered encoders (``{"type": ...}`` specs, `encoder_from_spec`):

- ``dense``: each field's kept points as one array ``(P, 4 + F)`` (`field_inputs`).
- ``sparse_grid``: each field as a hierarchical sparse grid (`SparseGridEncoder`, in
  `field_grids`).
- ``hierarchical_fps``: each field as an FPS pyramid with k-NN, down- and upsampling maps
  (`HierarchicalFPSEncoder`, in `hierarchical_fields`).
"""

from __future__ import annotations

import abc
from collections.abc import Callable, Mapping, Sequence
from typing import Any, ClassVar

import numpy as np

from pointseq.pointclouds.receptive_fields import CoveringFieldSampler, Fields

Samples = dict[str, np.ndarray] | np.ndarray | list


class FieldEncoder(abc.ABC):
    """Turns fields of a cloud into model inputs (and training targets).

    Subclasses set ``type_name`` (the spec's ``"type"``) and ``backbones`` (the sequencer
    types that batch their samples in an offline cache, e.g. ``("Sequencer",)``).
    """

    type_name: ClassVar[str]
    backbones: ClassVar[tuple[str, ...]] = ("Sequencer",)

    @abc.abstractmethod
    def get_config(self) -> dict:
        """The JSON-ready spec, ``"type"`` included; `encoder_from_spec` rebuilds the encoder."""

    def bind(self, sampler: CoveringFieldSampler) -> None:
        """Adopt what the sampler fixes (e.g. the field scale); called before `encode`."""

    @abc.abstractmethod
    def encode(self, points: np.ndarray, fields: Fields, features: np.ndarray | None,
               first: int = 0, stop: int | None = None) -> Samples:
        """Samples of fields ``[first, stop)``: ``points`` (N, 3) absolute float64 coordinates
        of the cloud the fields were cut from, ``features`` (N, F) its point features or None.
        Training targets come from ``fields.labels`` (class ids; ignored points
        ``num_classes``) when present."""

    def observe(self, samples: Samples) -> None:
        """First pass: see a file's samples (e.g. to size padding). Default: nothing to learn."""

    def settle(self) -> None:
        """End of the first pass: fix what `observe` learnt. Default: nothing."""

    @abc.abstractmethod
    def inputs(self, samples: Samples) -> Any:
        """The model inputs of a batch of samples (an array, or a dict of arrays)."""

    @abc.abstractmethod
    def targets(self, samples: Samples, num_classes: int) -> tuple[np.ndarray, np.ndarray]:
        """``(y, sample_weight)`` of a batch: class ids with ignored or padded entries set to a
        valid id and weight 0."""

    @abc.abstractmethod
    def to_points(self, outputs: np.ndarray, samples: Samples) -> np.ndarray:
        """Per kept point probabilities ``(B, P, C)`` from the model's ``outputs`` on ``samples``."""

    def prediction_inputs(self, samples: Samples, batch_size: int) -> Any:
        """The inputs of a prediction batch: by default `inputs`, padded to ``batch_size``
        fields by repeating the last one, so the model sees one shape whatever the block."""
        count = count_samples(samples)
        if count < batch_size:
            samples = concat_samples([samples, take_samples(samples, [count - 1] * (batch_size - count))])
        return self.inputs(samples)

    def num_input_features(self, num_point_features: int) -> int:
        """Feature width of the model inputs for clouds with ``num_point_features`` features."""
        return num_point_features

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.get_config()!r})"


# --------------------------------------------------------------------------- samples
def count_samples(samples: Samples) -> int:
    """How many fields ``samples`` hold."""
    if isinstance(samples, Mapping):
        return int(len(next(iter(samples.values()))))
    return len(samples)


def take_samples(samples: Samples, rows: slice | Sequence[int] | np.ndarray) -> Samples:
    """The samples of ``rows`` (a slice or field positions)."""
    if isinstance(samples, Mapping):
        return {k: v[rows] for k, v in samples.items()}
    if isinstance(samples, np.ndarray):
        return samples[rows]
    if isinstance(rows, slice):
        return samples[rows]
    return [samples[int(i)] for i in rows]


def concat_samples(parts: Sequence[Samples]) -> Samples:
    """The samples of ``parts`` one after the other."""
    parts = [p for p in parts if p is not None and count_samples(p)]
    if len(parts) == 1:
        return parts[0]
    first = parts[0]
    if isinstance(first, Mapping):
        return {k: np.concatenate([p[k] for p in parts]) for k in first}
    if isinstance(first, np.ndarray):
        return np.concatenate(parts)
    return [item for p in parts for item in p]


# --------------------------------------------------------------------------- registry
ENCODERS: dict[str, Callable[[dict], FieldEncoder]] = {}


def register_encoder(name: str, factory: Callable[[dict], FieldEncoder]) -> None:
    """Make ``{"type": name, ...}`` specs build ``factory(spec)``."""
    ENCODERS[name.lower()] = factory


def encoder_from_spec(spec: Mapping[str, Any] | FieldEncoder | None) -> FieldEncoder:
    """The encoder of a spec ``{"type": "dense" | "sparse_grid" | ...}`` (None: ``dense``)."""
    if isinstance(spec, FieldEncoder):
        return spec
    spec = {"type": "dense"} if spec is None else spec
    if not isinstance(spec, Mapping):
        raise TypeError(f"encoder must be a spec dict like {{'type': 'dense'}}, got {spec!r}")
    kind = str(spec.get("type", "dense")).lower()
    _load_builtin_encoders()
    if kind not in ENCODERS:
        raise ValueError(f"encoder type must be one of {sorted(ENCODERS)}, got {spec.get('type')!r}")
    return ENCODERS[kind]({k: v for k, v in spec.items() if k != "type" and not str(k).startswith("_")})


def _load_builtin_encoders() -> None:
    # The encoders of other modules register when those load; importing here (not at the top)
    # keeps this module free of import cycles.
    from pointseq.pointclouds import field_grids, field_inputs, hierarchical_fields  # noqa: F401
