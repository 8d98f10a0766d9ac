"""Shadow batches: ragged sparse grids as regular ("shadow") tensors, assembled vectorised.

Batch layout (``B`` elements, ``R_t`` = rows per element at depth ``t``, fixed for the whole
dataset so every batch has the same non-batch shapes):

====================  ==================  =======  =========================================
key                   shape               dtype    content
====================  ==================  =======  =========================================
``features``          ``(B, R_0, F)``     float32  mean point features per depth-0 cell (when
                                                   grids have none: one column equal to
                                                   ``mask_0``)
``coords_t``          ``(B, R_t, 3)``     float32  cell centres at depth ``t``
``mask_t``            ``(B, R_t)``        float32  1 on real rows, 0 on padding
``lengths_t``         ``(B,)``            int32    real rows per element
``parent_t``          ``(B, R_t)``        int32    for ``t < depth - 1``: LOCAL row of each
                                                   cell's parent at depth ``t + 1``; padded
                                                   rows hold ``R_{t+1}``, the zero row the
                                                   layers append
``neighbors_t``       ``(B, R_t, 27)``    int32    LOCAL row of the active cell at each offset
                                                   of a 3x3x3 kernel (`grid_neighbors`, centre
                                                   13); missing neighbours and padded rows
                                                   hold ``R_t`` (the zero row)
``position_t``        ``(B, R_t)``        int32    for ``t < depth - 1``: each cell's position
                                                   0..7 inside its parent (padding: 0)
``children_t``        ``(B, R_{t+1}, 8)`` int32    for ``t < depth - 1``: LOCAL depth-``t`` row
                                                   of the child at each position of each
                                                   depth ``t + 1`` cell; none and padding:
                                                   ``R_t``
====================  ==================  =======  =========================================

``y`` is the depth-0 cell labels ``(B, R_0)`` int32 and the sample weight ``(B, R_0)`` float32
is 1 on real cells, 0 on padding, so standard Keras losses and metrics ignore padding.

``neighbors_t``, ``position_t`` and ``children_t`` are left out with ``neighbors=False`` (models
without sparse convolutions). They are built for the whole batch at once: one sorted search
over every element's keys per depth (`grid_neighbors.neighbor_rows`).

Index maps are local to each element rather than offsets into the flattened batch: the
layers in `sequencers.shadow_layers` add the per-element offsets ``k * (R_{t+1} + 1)`` when
they gather, which keeps every array's leading axis the batch axis (Keras may slice or split
it) and makes an element's arrays independent of its position in the batch.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from pointseq.pointclouds.grid_neighbors import child_positions, children_rows, neighbor_rows
from pointseq.pointclouds.sparse_grid import SparseGrid

__all__ = ["assemble_neighbor_maps", "assemble_shadow_batch", "assemble_shadow_labels", "valid_rows"]


def valid_rows(lengths: np.ndarray, rows: int) -> np.ndarray:
    """``(B, rows)`` bool: True where a row holds data (rows are filled from the front)."""
    return np.arange(rows)[None, :] < lengths[:, None]


def _scatter(parts: list[np.ndarray], valid: np.ndarray, fill, dtype) -> np.ndarray:
    """The elements' rows in a padded ``(B, R, ...)`` array, rows from the front.

    ``parts``: one array per element (each copied once into its slice of the preallocated
    output, casting on the way: half the memory traffic of concatenating first), or one array
    of all elements' rows concatenated, scattered through ``valid`` with rows wider than one
    value viewed as single opaque (void) items, so the boolean scatter copies whole rows.
    """
    tail = parts[0].shape[1:]
    out = np.full(valid.shape + tail, fill, dtype=dtype)
    if len(parts) == valid.shape[0] and len(parts) > 1:
        for k, part in enumerate(parts):
            np.copyto(out[k, :len(part)], part, casting="same_kind")
        return out
    rows = np.concatenate(parts, axis=0, dtype=dtype, casting="same_kind")
    if not tail:
        out[valid] = rows
        return out
    width = int(np.prod(tail))
    row_type = np.dtype((np.void, out.itemsize * width))
    dst = out.reshape(valid.shape + (width,)).view(row_type)[..., 0]
    dst[valid] = rows.reshape(len(rows), width).view(row_type)[:, 0]
    return out


def _lengths(grids: Sequence[SparseGrid], t: int, rows: int) -> np.ndarray:
    lengths = np.fromiter((g.keys[t].shape[0] for g in grids), dtype=np.int64, count=len(grids))
    if lengths.max(initial=0) > rows:
        k = int(np.argmax(lengths))
        raise ValueError(
            f"grid at batch position {k} has {int(lengths[k])} cells at depth {t}, more than "
            f"max_rows[{t}]={rows}"
        )
    return lengths


def assemble_neighbor_maps(grids: Sequence[SparseGrid], max_rows: Sequence[int]) -> dict:
    """``neighbors_t``, ``position_t`` and ``children_t`` of a batch (see the module docstring):
    per depth one search over all elements' cells (`grid_neighbors.neighbor_rows`)."""
    x: dict[str, np.ndarray] = {}
    depth = grids[0].depth
    valid = [valid_rows(_lengths(grids, t, max_rows[t]), max_rows[t]) for t in range(depth)]
    levels = []
    for t in range(depth):
        starts = np.concatenate([[0], np.cumsum(valid[t].sum(axis=1))])
        coords = np.concatenate([g.cell_coords[t] for g in grids])
        rows = neighbor_rows(coords, np.stack([g.dims[t] for g in grids]), starts, local=True, missing=max_rows[t])
        x[f"neighbors_{t}"] = _scatter([rows], valid[t], max_rows[t], np.int32)
        levels.append((child_positions(coords), starts))
    for t in range(depth - 1):
        pos, starts = levels[t]
        x[f"position_{t}"] = _scatter([pos], valid[t], 0, np.int32)
        # Children as rows of the concatenation first, then made local per element.
        parent_starts = levels[t + 1][1]
        grid = np.repeat(np.arange(len(grids)), np.diff(starts))
        parent = np.concatenate([g.parent[t] for g in grids]) + parent_starts[grid]
        children = children_rows(parent, pos, int(parent_starts[-1]))
        parent_grid = np.repeat(np.arange(len(grids)), np.diff(parent_starts))
        children = np.where(children >= 0, children - starts[parent_grid][:, None], max_rows[t])
        x[f"children_{t}"] = _scatter([children], valid[t + 1], max_rows[t], np.int32)
    return x


def assemble_shadow_batch(grids: Sequence[SparseGrid], max_rows: Sequence[int], *, neighbors: bool = True) -> dict:
    """The input dict of a shadow batch over ``grids`` (see the module docstring).

    Vectorised: per depth, all elements' rows are concatenated once and scattered into a
    preallocated padded array through a validity mask; no per-element padding. With
    ``neighbors`` the batch also carries the neighbour and strided maps of sparse convolutions.
    """
    if len(grids) == 0:
        raise ValueError("grids must hold at least one SparseGrid, got 0")
    depth = grids[0].depth
    if len(max_rows) != depth:
        raise ValueError(f"max_rows must hold {depth} row counts (one per depth), got {max_rows!r}")
    x: dict[str, np.ndarray] = {}
    valid = []
    for t in range(depth):
        lengths = _lengths(grids, t, max_rows[t])
        valid.append(valid_rows(lengths, max_rows[t]))
        x[f"lengths_{t}"] = lengths.astype(np.int32)
    if grids[0].features is None:
        x["features"] = valid[0][..., None].astype(np.float32)
    else:
        x["features"] = _scatter([g.features for g in grids], valid[0], 0.0, np.float32)
    for t in range(depth):
        x[f"coords_{t}"] = _scatter([g.centres[t] for g in grids], valid[t], 0.0, np.float32)
        x[f"mask_{t}"] = valid[t].astype(np.float32)
        if t < depth - 1:
            x[f"parent_{t}"] = _scatter(
                [g.parent[t] for g in grids], valid[t], max_rows[t + 1], np.int32
            )
    if neighbors:
        x.update(assemble_neighbor_maps(grids, max_rows))
    return x


def assemble_shadow_labels(
    grids: Sequence[SparseGrid], max_rows: Sequence[int]
) -> tuple[np.ndarray, np.ndarray]:
    """Depth-0 labels ``(B, R_0)`` int32 and their sample weights (0 on padding)."""
    valid = valid_rows(_lengths(grids, 0, max_rows[0]), max_rows[0])
    labels = _scatter([g.labels for g in grids], valid, 0, np.int32)
    return labels, valid.astype(np.float32)
