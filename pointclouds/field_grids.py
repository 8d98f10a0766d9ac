"""Hierarchical sparse grids over receptive fields, for the sparse (shadow) models.

`SparseGridPreProcessor` turns the fields of one cloud (`receptive_fields.Fields`) into one
`SparseGrid` per field, built over the field's kept points: coordinates are taken relative
to the field centre in float64 (exact at any georeferenced offset) and only the cell
centres, a few metres at most, become float32. Each grid's ``point_to_cell`` follows the
field's ``indices`` row, so per-cell predictions go back to the field's points (P of them)
and from there to every source point with the dense path's `PropagationAccumulator`.

Grids "per tile block" are the same thing with a block-shaped sampler: a ``rectangular2d``
neighbourhood with ``separation_factor`` 2 cuts the tile into non-overlapping blocks.

All fields of a call are voxelised together (one ``np.unique`` per depth over
``(field, cell)`` keys); the result equals `build_sparse_grid` run on each field alone.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from pointseq.arguments import check_spec_keys, require_int, require_positive
from pointseq.pointclouds.field_encoders import FieldEncoder, register_encoder
from pointseq.pointclouds.field_inputs import HEIGHT_PERCENTILE
from pointseq.pointclouds.receptive_fields import CoveringFieldSampler, Fields
from pointseq.pointclouds.shadow_batch import assemble_shadow_batch, assemble_shadow_labels
from pointseq.pointclouds.sparse_grid import SparseGrid, build_field_grids

GRID_TYPES = ("SparseGridPreProcessor", "HierarchicalSparseGridPreProcessor")
GRID_KEYS = ("type", "cell_size", "depth", "max_rows")


class SparseGridPreProcessor:
    """Per-field hierarchical sparse grids: ``cell_size`` (metres) doubling over ``depth`` levels.

    ``max_rows``: rows per depth of the padded shadow batches; None lets the data decide
    (`padded_rows`). Cell features are the mean of the point features: first the point's height
    above the field's 1st-percentile z (metres), then the cloud's own features, if any.
    Cell labels are the majority of the field's point labels (`Fields.labels`).
    """

    def __init__(self, cell_size: float, depth: int, *, max_rows: Sequence[int] | None = None) -> None:
        self.cell_size = require_positive("cell_size", cell_size)
        self.depth = require_int("depth", depth, 1)
        if max_rows is not None:
            if isinstance(max_rows, (str, bytes)) or not isinstance(max_rows, Sequence) or len(max_rows) != self.depth:
                raise ValueError(f"max_rows must be a list of {self.depth} row counts (one per depth), got {max_rows!r}")
            max_rows = tuple(require_int(f"max_rows[{t}]", r, 1) for t, r in enumerate(max_rows))
        self.max_rows = max_rows

    def get_config(self) -> dict:
        """The spec, JSON-ready: ``from_spec(config)`` rebuilds the pre-processor."""
        return {"type": "SparseGridPreProcessor", "cell_size": self.cell_size, "depth": self.depth,
                "max_rows": None if self.max_rows is None else list(self.max_rows)}

    @classmethod
    def from_spec(cls, spec: Mapping[str, Any] | "SparseGridPreProcessor") -> "SparseGridPreProcessor":
        """From ``{"type": "SparseGridPreProcessor" | "HierarchicalSparseGridPreProcessor",
        "cell_size", "depth", "max_rows"}``; keys starting with ``_`` are comments."""
        if isinstance(spec, SparseGridPreProcessor):
            return spec
        check_spec_keys(spec, "sparse grid pre-processor", GRID_KEYS, ("cell_size", "depth"))
        kind = spec.get("type", GRID_TYPES[0])
        if str(kind).lower() not in {t.lower() for t in GRID_TYPES}:
            raise ValueError(f"sparse grid pre-processor type must be one of {list(GRID_TYPES)}, got {kind!r}")
        return cls(spec["cell_size"], spec["depth"], max_rows=spec.get("max_rows"))

    def num_features(self, cloud_features: int) -> int:
        """Width of the cell features for clouds with ``cloud_features`` feature columns."""
        return 1 + cloud_features

    def __call__(self, points: np.ndarray, fields: Fields, features: np.ndarray | None = None,
                 first: int = 0, stop: int | None = None) -> list[SparseGrid]:
        """Grids of fields ``[first, stop)``; ``points`` (N, 3) absolute float64 coordinates of
        the cloud the fields were cut from, ``features`` (N, F) its point features or None."""
        if not isinstance(fields, Fields):
            raise TypeError(f"fields must be a Fields object, got {type(fields).__name__}")
        points = np.asarray(points)
        if points.shape != (fields.num_source_points, 3):
            raise ValueError(f"points must have shape ({fields.num_source_points}, 3) like the fields' cloud, "
                             f"got {points.shape}")
        stop = len(fields) if stop is None else stop
        if not 0 <= first < stop <= len(fields):
            raise ValueError(f"fields [{first}, {stop}) must be a non-empty range within the {len(fields)} fields")
        indices = fields.indices[first:stop]
        relative = points[indices].astype(np.float64) - fields.centres[first:stop, None, :]  # float64 first
        low = np.percentile(relative[..., 2], HEIGHT_PERCENTILE, axis=1)[:, None]
        columns = [(relative[..., 2] - low)[..., None]]
        if features is not None:
            columns.append(np.asarray(features, dtype=np.float64)[indices].reshape(indices.shape + (-1,)))
        labels = None if fields.labels is None else fields.labels[first:stop]
        return build_field_grids(relative, np.concatenate(columns, axis=-1), labels,
                                 cell_size=self.cell_size, depth=self.depth)


def largest_cells(grids: Sequence[SparseGrid]) -> tuple[int, ...]:
    """The most cells any of ``grids`` holds, per depth."""
    return tuple(int(r) for r in np.max([[g.num_cells(t) for t in range(g.depth)] for g in grids], axis=0))


def padded_rows(needed: Sequence[int], num_points: int, headroom: float = 1.25) -> tuple[int, ...]:
    """Padded rows per depth for a data set whose largest grids hold ``needed`` cells: plus
    ``headroom`` (fields seen later, at prediction, may hold a few more cells), never more
    than ``num_points`` (a field of P points has at most P cells at any depth)."""
    num_points = require_int("num_points", num_points, 1)
    return tuple(int(min(np.ceil(r * headroom), num_points)) for r in needed)


class SparseGridEncoder(FieldEncoder):
    """Each field as a hierarchical sparse grid (`SparseGridPreProcessor`), batched as shadow tensors.

    ``max_rows`` (rows per depth of every batch) is fixed by the first pass over the training
    files (`observe`, `settle`: the largest grids plus headroom, `padded_rows`) unless given.
    A prediction batch whose grids outgrow it is padded to what it needs instead (a model
    whose row dimensions are free takes any row count).
    """

    type_name = "sparse_grid"
    backbones = ("SparseShadowSequencer",)

    def __init__(self, cell_size: float, depth: int, max_rows: Sequence[int] | None = None) -> None:
        self.grid = SparseGridPreProcessor(cell_size, depth, max_rows=max_rows)
        self._needed: list[tuple[int, ...]] = []
        self._num_points: int | None = None

    @classmethod
    def from_preprocessor(cls, grid: SparseGridPreProcessor | Mapping[str, Any]) -> "SparseGridEncoder":
        grid = SparseGridPreProcessor.from_spec(grid)
        return cls(grid.cell_size, grid.depth, grid.max_rows)

    @property
    def max_rows(self) -> tuple[int, ...] | None:
        return self.grid.max_rows

    def get_config(self) -> dict:
        config = self.grid.get_config()
        return {**config, "type": self.type_name}

    def bind(self, sampler: CoveringFieldSampler) -> None:
        self._num_points = sampler.num_points

    def encode(self, points: np.ndarray, fields: Fields, features: np.ndarray | None,
               first: int = 0, stop: int | None = None) -> list[SparseGrid]:
        self._num_points = fields.num_points
        return self.grid(points, fields, features, first, stop)

    def observe(self, samples: list[SparseGrid]) -> None:
        self._needed.append(largest_cells(samples))

    def settle(self) -> None:
        if not self._needed:
            return
        needed = tuple(int(r) for r in np.max(self._needed, axis=0))
        if self.grid.max_rows is None:
            self.grid.max_rows = padded_rows(needed, self._num_points or max(needed))
        short = [t for t in range(self.grid.depth) if self.grid.max_rows[t] < needed[t]]
        if short:
            raise ValueError(f"max_rows {list(self.grid.max_rows)} is smaller than the files' largest grids "
                             f"{list(needed)} at depth(s) {short}: raise max_rows")
        self._needed = []

    def _rows(self, grids: list[SparseGrid]) -> tuple[int, ...]:
        if self.grid.max_rows is None:
            raise ValueError("the sparse-grid encoder has no max_rows yet: give max_rows or observe the "
                             "training files first")
        return self.grid.max_rows

    def inputs(self, samples: list[SparseGrid]) -> dict:
        return assemble_shadow_batch(samples, self._rows(samples))

    def prediction_inputs(self, samples: list[SparseGrid], batch_size: int) -> dict:
        samples = list(samples) + [samples[-1]] * (batch_size - len(samples))
        rows = tuple(max(r, n) for r, n in zip(self._rows(samples), largest_cells(samples)))
        return assemble_shadow_batch(samples, rows)

    def targets(self, samples: list[SparseGrid], num_classes: int) -> tuple[np.ndarray, np.ndarray]:
        labels, valid = assemble_shadow_labels(samples, self._rows(samples))
        trained = labels < num_classes
        return np.where(trained, labels, 0).astype(np.int32), (valid * trained).astype(np.float32)

    def to_points(self, outputs: np.ndarray, samples: list[SparseGrid]) -> np.ndarray:
        outputs = np.asarray(outputs, dtype=np.float32)
        return np.stack([outputs[k][grid.point_to_cell] for k, grid in enumerate(samples)])

    def num_input_features(self, num_point_features: int) -> int:
        return self.grid.num_features(num_point_features)


register_encoder("sparse_grid", lambda spec: SparseGridEncoder(**spec))
