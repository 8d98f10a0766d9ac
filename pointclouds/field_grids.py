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
from pointseq.pointclouds.sparse_grid import (
    _MAX_KEY,
    SparseGrid,
    _cell_means,
    _linear_keys,
    _majority,
    _readonly,
)

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


def _level(field: np.ndarray, coords: np.ndarray, dims: np.ndarray) -> dict:
    """Distinct (field, cell) pairs sorted by field then linear key; ``dims`` per field (M, 3)."""
    keys = _linear_keys(coords, dims[field].T)
    stride = int(keys.max()) + 1
    if stride * (int(field.max()) + 1) >= _MAX_KEY:
        raise ValueError(f"too many cells per field ({stride}) for int64 keys: use a larger cell_size")
    combined, inverse = np.unique(field * stride + keys, return_inverse=True)
    inverse = inverse.reshape(-1)
    cell_coords = np.empty((len(combined), 3), dtype=np.int64)
    cell_coords[inverse] = coords
    cell_field = combined // stride
    starts = np.searchsorted(cell_field, np.arange(dims.shape[0] + 1))
    return {"keys": combined % stride, "coords": cell_coords, "field": cell_field, "inverse": inverse,
            "starts": starts, "dims": dims}


def _coarser(child: dict) -> dict:
    level = _level(child["field"], child["coords"] >> 1, (child["dims"] + 1) >> 1)
    num_cells = len(level["keys"])
    level["counts"] = np.bincount(level["inverse"], weights=child["counts"], minlength=num_cells).astype(np.int64)
    level["children"] = np.argsort(level["inverse"], kind="stable")
    level["children_ptr"] = np.concatenate([[0], np.cumsum(np.bincount(level["inverse"], minlength=num_cells))])
    return level


def build_field_grids(relative: np.ndarray, features: np.ndarray | None, labels: np.ndarray | None, *,
                      cell_size: float, depth: int) -> list[SparseGrid]:
    """One `SparseGrid` per field from ``relative`` (M, P, 3) float64 coordinates, ``features``
    (M, P, F) and ``labels`` (M, P) (either may be None); equal to `build_sparse_grid` per field."""
    cell_size = require_positive("cell_size", cell_size)
    depth = require_int("depth", depth, 1)
    count, num_points = relative.shape[:2]
    if not np.all(np.isfinite(relative)):
        raise ValueError("field coordinates must be finite (no NaN or inf)")
    origins = relative.min(axis=1)  # (M, 3)
    point_coords = np.floor((relative - origins[:, None, :]) / cell_size).astype(np.int64)
    point_field = np.repeat(np.arange(count), num_points)
    flat_coords = point_coords.reshape(-1, 3)
    levels = [_level(point_field, flat_coords, point_coords.max(axis=1) + 1)]
    levels[0]["counts"] = np.bincount(levels[0]["inverse"], minlength=len(levels[0]["keys"])).astype(np.int64)
    for _ in range(1, depth):
        levels.append(_coarser(levels[-1]))
    point_to_cell = levels[0]["inverse"]
    cell_features = cell_labels = None
    if features is not None:
        cell_features = _cell_means(features.reshape(count * num_points, -1), point_to_cell, levels[0]["counts"])
    if labels is not None:
        cell_labels = _majority(point_to_cell, np.asarray(labels, dtype=np.int64).reshape(-1), len(levels[0]["keys"]))
    for t, level in enumerate(levels):
        size = cell_size * 2.0**t
        level["centres"] = (origins[level["field"]] + (level["coords"] + 0.5) * size).astype(np.float32)
    return [_one_grid(levels, f, origins[f], point_to_cell, num_points, cell_features, cell_labels, cell_size)
            for f in range(count)]


def _one_grid(levels: list[dict], f: int, origin: np.ndarray, point_to_cell: np.ndarray, num_points: int,
              features: np.ndarray | None, labels: np.ndarray | None, cell_size: float) -> SparseGrid:
    """Field ``f``'s slice of the joint levels, with its row numbers made local."""
    rows = [slice(level["starts"][f], level["starts"][f + 1]) for level in levels]

    def local(t: int, key: str) -> np.ndarray:
        return _readonly(levels[t][key][rows[t]])

    parent, children, children_ptr = [], [], []
    for t in range(1, len(levels)):
        parent.append(_readonly(levels[t]["inverse"][rows[t - 1]] - rows[t].start))
        ptr = levels[t]["children_ptr"][rows[t].start:rows[t].stop + 1]
        children.append(_readonly(levels[t]["children"][ptr[0]:ptr[-1]] - rows[t - 1].start))
        children_ptr.append(_readonly(ptr - ptr[0]))
    depth = len(levels)
    return SparseGrid(
        cell_size=cell_size, depth=depth, origin=_readonly(origin),
        keys=tuple(local(t, "keys") for t in range(depth)),
        dims=tuple(_readonly(levels[t]["dims"][f]) for t in range(depth)),
        cell_coords=tuple(local(t, "coords") for t in range(depth)),
        centres=tuple(local(t, "centres") for t in range(depth)),
        counts=tuple(local(t, "counts") for t in range(depth)),
        parent=tuple(parent), children=tuple(children), children_ptr=tuple(children_ptr),
        point_to_cell=_readonly(point_to_cell[f * num_points:(f + 1) * num_points] - rows[0].start),
        features=None if features is None else _readonly(features[rows[0]]),
        labels=None if labels is None else _readonly(labels[rows[0]]),
    )


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
