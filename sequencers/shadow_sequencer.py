"""SparseShadowSequencer: batches of ragged sparse grids as regular ("shadow") tensors; the
batch layout is documented in `pointseq.pointclouds.shadow_batch`."""


from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from pointseq.sequencers.abstract_sequencer import AbstractSequencer
from pointseq.augment import as_augmentor
from pointseq.sequencers.registry import register_sequencer
from pointseq.pointclouds.shadow_batch import assemble_shadow_batch, assemble_shadow_labels, valid_rows
from pointseq.pointclouds.sparse_grid import SparseGrid

__all__ = ["SparseShadowSequencer", "assemble_shadow_batch", "assemble_shadow_labels"]


@register_sequencer("SparseShadowSequencer", "DLSparseShadowSequencer")
class SparseShadowSequencer(AbstractSequencer):
    """Batches of `SparseGrid` hierarchies padded to dataset-wide row counts.

    Args:
        grids: a list of `SparseGrid` (one per sample), all with the same depth, the same
            feature width and all with labels or all without; None for a backbone whose
            samples all come from point-cloud files (``OfflineSequencer(offline_pcloud=...)``).
        y: must be None: labels live in the grids.
        batch_size: grids per batch.
        max_rows: rows per element at each depth; default: the dataset's maximum. Pass the
            training set's values to a validation sequencer so both share one model.
        augmentor: an `augment.Augmentor` or its spec dict, applied in training mode with one
            rotation and scale per element shared by every depth's coordinates.
        X: an alias of ``grids`` (what `build_sequencer` passes).
        **kwargs: the `AbstractSequencer` options (shuffle, seed, drop_last, epoch_size, ...).
    """

    def __init__(
        self,
        grids: Sequence[SparseGrid] | None = None,
        y: None = None,
        batch_size: int = 16,
        *,
        max_rows: Sequence[int] | None = None,
        augmentor: Any = None,
        X: Sequence[SparseGrid] | None = None,
        **kwargs: Any,
    ) -> None:
        if X is not None:
            if grids is not None:
                raise TypeError("pass the grids once, as grids or as X, not both")
            grids = X
        self.augmentor = as_augmentor(augmentor)
        self._max_rows_arg = None if max_rows is None else tuple(max_rows)
        self._grids: list[SparseGrid] = []
        # Without grids (an offline cache of point-cloud files only) the rows are the argument's.
        self.max_rows: tuple[int, ...] = self._max_rows_arg or ()
        super().__init__(grids, y, batch_size, **kwargs)

    # ---------------------------------------------------------------- config and data
    def get_config(self) -> dict:
        config = super().get_config()
        config.update(
            max_rows=list(self.max_rows),
            augmentor=None if self.augmentor is None else self.augmentor.get_config(),
        )
        return config

    def set_input_data(self, X: Sequence[SparseGrid], y: None = None) -> None:
        if y is not None:
            raise ValueError(
                "y must be None for SparseShadowSequencer: labels are taken from the grids "
                "(build_sparse_grid(..., labels=...))"
            )
        if isinstance(X, SparseGrid) or not isinstance(X, Sequence) or len(X) == 0:
            raise ValueError(f"grids must be a non-empty list of SparseGrid, got {X!r:.80}")
        grids = list(X)
        for i, g in enumerate(grids):
            if not isinstance(g, SparseGrid):
                raise TypeError(f"grids[{i}] must be a SparseGrid, got {type(g).__name__}")
        first = grids[0]
        for i, g in enumerate(grids):
            if g.depth != first.depth:
                raise ValueError(
                    f"grids[{i}] has depth {g.depth}, expected {first.depth} like grids[0]"
                )
            if g.num_features != first.num_features:
                raise ValueError(
                    f"grids[{i}] has {g.num_features} features per cell, expected "
                    f"{first.num_features} like grids[0]"
                )
            if (g.labels is None) != (first.labels is None):
                raise ValueError(
                    f"grids[{i}] {'lacks' if g.labels is None else 'has'} labels unlike "
                    "grids[0]: either all grids have labels or none"
                )
        needed = tuple(max(g.num_cells(t) for g in grids) for t in range(first.depth))
        rows = needed
        if self._max_rows_arg is not None:
            rows = self._max_rows_arg
            if len(rows) != first.depth or any(
                isinstance(r, bool) or not isinstance(r, (int, np.integer)) for r in rows
            ):
                raise ValueError(
                    f"max_rows must hold {first.depth} ints (one per depth), got {list(rows)}"
                )
            for t, (r, n) in enumerate(zip(rows, needed)):
                if r < n:
                    raise ValueError(
                        f"max_rows[{t}]={r} is smaller than the {n} cells of the largest grid "
                        f"at depth {t}"
                    )
            rows = tuple(int(r) for r in rows)
        self._grids = grids
        self.max_rows = rows
        super().set_input_data(X, y)

    def get_input_data(self) -> tuple[list[SparseGrid], None]:
        return self._grids, None

    def _count_samples(self) -> int:
        return len(self._grids)

    @property
    def depth(self) -> int:
        return self._grids[0].depth

    @property
    def num_features(self) -> int:
        """Width of the ``features`` input (1 when the grids carry no features)."""
        return max(self._grids[0].num_features, 1)

    @property
    def has_labels(self) -> bool:
        return self._grids[0].labels is not None

    # ---------------------------------------------------------------- batches
    def _select(self, indices: np.ndarray) -> list[SparseGrid]:
        return [self._grids[i] for i in indices]

    def extract_input_batch(self, indices: np.ndarray) -> dict:
        return assemble_shadow_batch(self._select(indices), self.max_rows)

    def extract_reference_batch(self, indices: np.ndarray) -> np.ndarray | None:
        if not self.has_labels:
            return None
        return assemble_shadow_labels(self._select(indices), self.max_rows)[0]

    def extract_sample_weight_batch(self, indices: np.ndarray) -> np.ndarray | None:
        if not self.has_labels:
            return None
        lengths = np.fromiter((self._grids[i].num_cells(0) for i in indices), dtype=np.int64)
        return valid_rows(lengths, self.max_rows[0]).astype(np.float32)

    def load_batch(self, indices: np.ndarray) -> tuple:
        if not self.has_labels:
            return (self.extract_input_batch(indices),)
        x = self.extract_input_batch(indices)
        y, sw = assemble_shadow_labels(self._select(indices), self.max_rows)
        return (x, y, sw)

    def augment(self, batch_x: dict, rng: np.random.Generator) -> dict:
        """One rotation and scale per element shared by all depths; padding stays zero.

        Linear transformations act about the frame's origin, as for `Sequencer`; jitter is
        drawn per depth.
        """
        if self.augmentor is None:
            return batch_x
        keys = [key for key in (f"coords_{t}" for t in range(len(batch_x))) if key in batch_x]  # no grids of its own
        moved, _ = self.augmentor([batch_x[k] for k in keys], rng)
        out = dict(batch_x)
        for t, (key, coords) in enumerate(zip(keys, moved)):
            out[key] = (coords * batch_x[f"mask_{t}"][..., None]).astype(np.float32, copy=False)
        return out

    # ---------------------------------------------------------------- outputs
    def _output_ids(self, idx: int | None) -> np.ndarray:
        if idx is None:
            return self._to_data_ids(np.arange(self.num_samples, dtype=np.int64))
        if self.training:
            return self.batch_indices(idx)
        return self.predict_indices(idx)

    def post_process_output(
        self, z: Any, idx: int | None = None, *, to_points: bool = False, depth: int = 0
    ) -> list[np.ndarray]:
        """Strip the padding from a model output: one array per element.

        Args:
            z: an output ``(B, R_depth, ...)`` of batch ``idx`` (predict mode: dataset order;
                training mode: that batch's samples in the current epoch), or with
                ``idx=None`` the output of ``model.predict`` over the whole sequencer.
            idx: the batch index, or None for the whole dataset.
            to_points: return one row per input point (through the point -> cell map, via
                the parent maps for ``depth > 0``) instead of one row per cell.
            depth: the grid depth whose rows ``z`` holds.
        """
        z = np.asarray(z)
        if isinstance(depth, bool) or not isinstance(depth, (int, np.integer)) or not (
            0 <= depth < self.depth
        ):
            raise ValueError(f"depth must be an int in [0, {self.depth}), got {depth!r}")
        ids = self._output_ids(idx)
        rows = self.max_rows[depth]
        if z.ndim < 2 or z.shape[0] != len(ids) or z.shape[1] != rows:
            raise ValueError(
                f"z must have shape ({len(ids)}, {rows}, ...) for "
                f"{'the whole dataset' if idx is None else f'batch {idx}'} at depth {depth}, "
                f"got {z.shape}"
            )
        out = []
        for k, i in enumerate(ids):
            grid = self._grids[i]
            if to_points:
                cells = grid.point_to_cell
                for s in range(depth):
                    cells = grid.parent[s][cells]
                out.append(z[k][cells])
            else:
                out.append(z[k, : grid.num_cells(depth)])
        return out
