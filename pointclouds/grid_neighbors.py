"""Neighbour maps of sparse grids: what a sparse convolution gathers, computed with numpy.

A submanifold sparse convolution (MinkowskiEngine, spconv) visits, for every active cell, the
cells at each offset of its kernel; the original looked them up in a hash table per batch. Here
the lookup is a sorted search: the active cells' linear keys are sorted already
(`SparseGrid.keys`), so the key of every (cell, offset) pair is found with one
``np.searchsorted`` over all cells of a whole batch (keys made unique per element by an element
stride), with no dictionary and no loop over cells.

The strided maps between depth ``t`` and its parent depth ``t + 1`` are exact because a cell's
integer coordinates at ``t + 1`` are its coordinates at ``t`` shifted right by one bit: its
position inside the parent is the low bit of each coordinate (``4 * (i & 1) + 2 * (j & 1) +
(k & 1)``, 0..7), and the parent's children at the 8 positions form a ``(n_{t+1}, 8)`` map.

Kernel offsets are ordered like ``itertools.product(range(-r, r + 1), repeat=3)`` (i slowest),
so for kernel size 3 offset 13 is the centre. A larger kernel (5x5x5: 125 offsets) needs no
other change here: `kernel_offsets(5)` and ``kernel_size=5`` give a ``(n, 125)`` map.
"""

from __future__ import annotations

import functools

import numpy as np

from pointseq.arguments import require_int

__all__ = ["kernel_offsets", "neighbor_rows", "child_positions", "children_rows", "NUM_CHILDREN"]

NUM_CHILDREN = 8
_MAX_KEY = 2**62
# A dense key -> row table replaces the sorted search when it holds at most this many entries
# per query (or fewer than _SMALL_TABLE): filling it then costs about what it saves.
_TABLE_PER_QUERY = 4
_SMALL_TABLE = 1 << 16


def kernel_offsets(kernel_size: int = 3) -> np.ndarray:
    """int64 ``(kernel_size**3, 3)`` integer offsets of a cubic kernel (odd size), i slowest."""
    size = require_int("kernel_size", kernel_size, 1)
    if size % 2 == 0:
        raise ValueError(f"kernel_size must be odd (a kernel centred on its cell), got {size}")
    return _offsets(size)


@functools.lru_cache(maxsize=8)
def _offsets(size: int) -> np.ndarray:
    r = size // 2
    axis = np.arange(-r, r + 1, dtype=np.int64)
    grid = np.stack(np.meshgrid(axis, axis, axis, indexing="ij"), axis=-1).reshape(-1, 3)
    grid.setflags(write=False)
    return grid


def neighbor_rows(coords: np.ndarray, dims: np.ndarray, starts: np.ndarray | None = None, *,
                  kernel_size: int = 3, local: bool = False, missing: int = -1) -> np.ndarray:
    """Row of the active cell at each kernel offset of every active cell; -1 where none is.

    Args:
        coords: int64 ``(n, 3)`` integer cell coordinates (`SparseGrid.cell_coords[t]`), each
            grid's rows in ascending key order (as a `SparseGrid` holds them); with ``starts``
            the rows of several grids one after the other.
        dims: int64 ``(3,)`` cells per axis, or ``(G, 3)``, one row per grid.
        starts: int64 ``(G + 1,)`` first row of each grid and the total (None: one grid).
        kernel_size: odd kernel edge; ``kernel_size**3`` offsets (`kernel_offsets`).
        local: rows counted from each grid's first row instead of into the concatenation.
        missing: the row given for an inactive or out-of-grid neighbour.

    Returns:
        int64 ``(n, kernel_size**3)``: rows into the same concatenated arrays (or, with
        ``local``, each grid's own rows); a grid's cells only ever find cells of the same grid.
    """
    coords, dims, starts = _checked_grids(coords, dims, starts)
    n = len(coords)
    offsets = kernel_offsets(kernel_size)
    if n == 0:
        return np.full((0, len(offsets)), missing, dtype=np.int64)
    # Keys on the grid padded by r cells at every side: a neighbour's key is then the cell's
    # plus a constant per offset (no border test), and absent exactly when no cell is active.
    r = int(np.abs(offsets).max())
    padded = dims + 2 * r
    steps = np.stack([padded[:, 1] * padded[:, 2], padded[:, 2], np.ones(len(padded), dtype=np.int64)], axis=1)
    stride = int(np.prod(padded, axis=1).max())
    if stride >= _MAX_KEY:
        raise ValueError(f"dims {dims.max(axis=0).tolist()} hold too many cells for int64 keys")
    if stride * (len(starts) - 1) >= _MAX_KEY:
        # Too many cells per grid for one joint key: search each grid on its own.
        out = np.full((n, len(offsets)), missing, dtype=np.int64)
        for g in range(len(starts) - 1):
            a, b = starts[g], starts[g + 1]
            if b > a:
                rows = neighbor_rows(coords[a:b], dims[g], kernel_size=kernel_size)
                out[a:b] = np.where(rows >= 0, rows + (0 if local else a), missing)
        return out
    grid = np.repeat(np.arange(len(starts) - 1), np.diff(starts))
    rows = np.arange(n, dtype=np.int64)
    if local:
        rows -= starts[grid]
    # Ascending: grids one after the other, and within a grid the padded keys keep the order.
    joint = grid * stride + np.einsum("ij,ij->i", coords + r, steps[grid])
    query = joint[:, None] + (steps @ offsets.T)[grid]  # (n, K)
    return _lookup(joint, query, rows, stride * (len(starts) - 1), missing)


def _checked_grids(coords, dims, starts) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``coords`` as int64 ``(n, 3)``, ``dims`` as ``(G, 3)`` and ``starts`` checked to rise 0..n."""
    coords = np.asarray(coords, dtype=np.int64)
    if coords.ndim != 2 or coords.shape[1] != 3:
        raise ValueError(f"coords must have shape (n, 3), got {coords.shape}")
    n = len(coords)
    starts = np.array([0, n], dtype=np.int64) if starts is None else np.asarray(starts, dtype=np.int64)
    if starts.ndim != 1 or starts[0] != 0 or starts[-1] != n or np.any(np.diff(starts) < 0):
        raise ValueError(f"starts must rise from 0 to the {n} rows, got {starts!r:.80}")
    return coords, np.broadcast_to(np.asarray(dims, dtype=np.int64), (len(starts) - 1, 3)), starts


def _lookup(joint: np.ndarray, query: np.ndarray, rows: np.ndarray, table_size: int, missing: int) -> np.ndarray:
    """Row of each ``query`` key among the ascending ``joint`` keys; ``missing`` where absent."""
    if table_size <= max(_TABLE_PER_QUERY * query.size, _SMALL_TABLE):
        # Small key space: a dense key -> row table answers each query with one gather.
        table = np.full(table_size, missing, dtype=np.int64)
        table[joint] = rows
        return table[query]
    pos = np.minimum(np.searchsorted(joint, query), len(joint) - 1)
    return np.where(joint[pos] == query, rows[pos], missing)


def child_positions(coords: np.ndarray) -> np.ndarray:
    """int64 ``(n,)`` position 0..7 of each cell inside its parent, from its integer coordinates."""
    coords = np.asarray(coords, dtype=np.int64)
    if coords.ndim != 2 or coords.shape[1] != 3:
        raise ValueError(f"coords must have shape (n, 3), got {coords.shape}")
    return (coords & 1) @ np.array([4, 2, 1], dtype=np.int64)


def children_rows(parent: np.ndarray, positions: np.ndarray, num_parents: int) -> np.ndarray:
    """int64 ``(num_parents, 8)``: the child row at each position of each parent; -1 where none is."""
    parent = np.asarray(parent, dtype=np.int64)
    positions = np.asarray(positions, dtype=np.int64)
    if parent.shape != positions.shape or parent.ndim != 1:
        raise ValueError(f"parent and positions must be (n,) arrays of one length, got {parent.shape} and "
                         f"{positions.shape}")
    out = np.full((num_parents, NUM_CHILDREN), -1, dtype=np.int64)
    out[parent, positions] = np.arange(len(parent), dtype=np.int64)
    return out
