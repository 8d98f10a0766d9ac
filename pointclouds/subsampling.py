"""Reduce many neighbourhoods at once to a fixed number of points, and query within them.

Neighbourhoods are given in CSR form: ``offsets`` (M+1,) into rows of member arrays that are
grouped by neighbourhood. Every function here handles all neighbourhoods in one numpy pass (or
a few padded blocks), never one neighbourhood per Python iteration.
"""

from __future__ import annotations

import numpy as np
from scipy.spatial import cKDTree

from pointseq.pointclouds import field_kernels

PADDED_BLOCK_ELEMENTS = 1 << 16  # padded rows per furthest-point-sampling block: its arrays stay in cache
NO_SLOT = np.iinfo(np.int64).max  # key of an empty place among the k nearest slots
SLOT_MASK = (1 << 29) - 1  # slot bits of a k-nearest key (see keep_nearest): up to 2**29 kept points


def cyclic_take(offsets: np.ndarray, num: int) -> np.ndarray:
    """Rows (M, num): the first ``num`` rows of each group, repeated cyclically when it has fewer.

    A group of 3 rows gives positions 0 1 2 0 1 2 ...: every row is kept, none is invented.
    """
    counts = np.diff(offsets)
    if np.any(counts == 0):
        raise ValueError("every neighbourhood must hold at least one point")
    return offsets[:-1, None] + np.arange(num)[None, :] % counts[:, None]


def farthest_point_rows(relative: np.ndarray, offsets: np.ndarray, num: int,
                        k: int = 0, *, nthreads: int = 1) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Rows (M, num) chosen by furthest-point sampling inside each group of ``relative`` (nnz, 3).

    Sampling starts at each group's first row. Groups with at most ``num`` rows keep all of them
    (repeated cyclically). Also returns, for ``k`` > 0, each row's k nearest chosen slots (nnz, k)
    (nearest first, ties to the lower slot) and which groups (M,) were sampled. Compiled
    (`field_kernels`, ``nthreads`` threads; every row gets its slots) when numba is installed,
    else in padded blocks of similar size where only the sampled groups' rows get them (else -1).
    """
    sampled = np.diff(offsets) > num
    if compiled(k):
        relative = np.asarray(relative, dtype=np.float64)
        positions, nearest = field_kernels.field_kernel(relative, np.arange(relative.shape[0]),
                                                        np.zeros((offsets.size - 1, 3)), offsets, num, k,
                                                        nthreads=nthreads)
        return offsets[:-1, None] + positions, nearest, sampled
    rows = cyclic_take(offsets, num)
    nearest = np.full((relative.shape[0], k), -1, dtype=np.int64)
    for block, padded, valid in padded_blocks(offsets, np.flatnonzero(sampled), PADDED_BLOCK_ELEMENTS):
        chosen, slots = farthest_point_slots(np.take(relative, padded, axis=0).astype(np.float32), valid, num, k)
        rows[block] = np.take_along_axis(padded, chosen, axis=1)
        nearest[padded[valid]] = slots[valid]
    return rows, nearest, sampled


def compiled(k: int = 0) -> bool:
    """Whether the compiled kernels serve (numba installed, at most `MAX_REGISTER_K` nearest slots)."""
    return field_kernels.AVAILABLE and k <= field_kernels.MAX_REGISTER_K


def strided_rows(offsets: np.ndarray, num: int) -> tuple[np.ndarray, np.ndarray]:
    """Every ``n // num``-th row of each group (all rows when ``n < 2 num``), as rows into the
    groups and their CSR offsets: the uniform downsampling the original ran before FPS."""
    counts = np.diff(offsets)
    stride = np.maximum(counts // num, 1)
    strided = -(-counts // stride)
    sub_offsets = np.concatenate([[0], np.cumsum(strided)]).astype(np.int64)
    within = np.arange(sub_offsets[-1]) - np.repeat(sub_offsets[:-1], strided)
    return np.repeat(offsets[:-1], strided) + within * np.repeat(stride, strided), sub_offsets


def group_rows(offsets: np.ndarray, groups: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The rows of ``groups`` (ascending) and their CSR offsets: a sub-CSR of those groups."""
    counts = np.diff(offsets)[groups]
    sub_offsets = np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)
    within = np.arange(sub_offsets[-1]) - np.repeat(sub_offsets[:-1], counts)
    return np.repeat(offsets[groups], counts) + within, sub_offsets


def padded_blocks(offsets: np.ndarray, groups: np.ndarray, max_elements: int):
    """Yield ``(block, padded, valid)``: the ``groups`` in blocks of similar size (smallest first),
    each padded to its largest: ``padded`` (B, W) rows (the last row repeated), ``valid`` (B, W)
    marks the real ones; a block holds about ``max_elements`` padded rows (at least one group)."""
    counts = np.diff(offsets)
    groups = groups[np.argsort(counts[groups], kind="stable")]
    start = 0
    while start < groups.size:
        stop = start + 1
        while stop < groups.size and (stop - start + 1) * int(counts[groups[stop]]) <= max_elements:
            stop += 1
        block = groups[start:stop]
        width = int(counts[block[-1]])
        padded = offsets[block, None] + np.minimum(np.arange(width)[None, :], counts[block, None] - 1)
        yield block, padded, np.arange(width)[None, :] < counts[block, None]
        start = stop


def farthest_point_positions(coords: np.ndarray, valid: np.ndarray, num: int, *, nthreads: int = 1) -> np.ndarray:
    """Positions (B, num) of exact furthest-point sampling in each of B padded sets (B, n, 3).

    ``valid`` (B, n) marks each set's points: the padding is never chosen (a set of fewer than
    ``num`` points has them all in FPS order, then its first position again).
    Position 0 is taken first; each next point is the one furthest from all chosen so far.
    The fast path for many fields at once (hierarchical fields call it per depth).
    """
    if compiled():
        counts = valid.sum(axis=1)
        rows = np.flatnonzero(valid.ravel())
        offsets = np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)
        flat = np.asarray(coords, dtype=np.float32).astype(np.float64).reshape(-1, 3)
        positions, _ = field_kernels.field_kernel(flat, rows, np.zeros((valid.shape[0], 3)), offsets, num, 0,
                                                  nthreads=nthreads, cyclic=False)
        return (rows % valid.shape[1])[offsets[:-1, None] + positions]  # back to positions in each padded row
    return farthest_point_slots(coords, valid, num, 0)[0]


def farthest_point_slots(coords: np.ndarray, valid: np.ndarray, num: int, k: int) -> tuple[np.ndarray, np.ndarray]:
    """`farthest_point_positions`, and the k nearest chosen slots (B, n, k) of every point, nearest first.

    Sampling measures every point's distance to each newly chosen one, so keeping the k smallest
    costs a few array passes per step, not a search. Equal distances go to the lower slot; slots
    missing (num < k) are -1.
    """
    batch, width = valid.shape
    axes = np.ascontiguousarray(np.moveaxis(coords, -1, 0))  # (3, B, n): one contiguous pass per axis
    nearest = np.where(valid, np.float32(np.inf), np.float32(-1.0))  # padding is never chosen
    keys = np.full((k, batch, width), NO_SLOT, dtype=np.int64)  # sorted (distance, slot) keys, see keep_nearest
    scratch = np.empty((2, batch, width), dtype=np.int64)
    chosen = np.zeros((batch, num), dtype=np.int64)
    rows = np.arange(batch)
    current = np.zeros(batch, dtype=np.int64)
    total = np.empty((batch, width), dtype=np.float32)
    term = np.empty_like(total)
    for step in range(num):
        chosen[:, step] = current
        squared_distances(axes, axes[:, rows, current][:, :, None], total, term)
        if k:
            keep_nearest(keys, total, step, scratch)
        np.minimum(nearest, total, out=nearest)
        current = nearest.argmax(axis=1)
    return chosen, slots_of(keys)


def nearest_kept_slots(relative: np.ndarray, offsets: np.ndarray, kept: np.ndarray, k: int, *,
                       nthreads: int = 1) -> np.ndarray:
    """Slots (nnz, k) of the k nearest of its group's ``kept`` points (M, P, 3) for each row of ``relative``.

    Brute force over the P kept points with the sampling's distance and k-nearest kernels, in
    cache-sized padded blocks: cost rows x P, below a KD-tree search for a few hundred kept
    points. Nearest first, equal distances to the lower slot, missing slots (P < k) -1.
    Compiled (`field_kernels`, ``nthreads`` threads) when numba is installed.
    """
    if compiled(k):
        return field_kernels.kept_slots(np.asarray(relative, dtype=np.float64), offsets, kept, k, nthreads)
    nearest = np.full((relative.shape[0], k), -1, dtype=np.int64)
    kept_axes = np.ascontiguousarray(np.moveaxis(kept.astype(np.float32), -1, 0))  # (3, M, P)
    for block, padded, valid in padded_blocks(offsets, np.arange(offsets.size - 1), PADDED_BLOCK_ELEMENTS):
        axes = np.ascontiguousarray(np.moveaxis(np.take(relative, padded, axis=0).astype(np.float32), -1, 0))
        keys = np.full((k,) + padded.shape, NO_SLOT, dtype=np.int64)
        scratch = np.empty((2,) + padded.shape, dtype=np.int64)
        total = np.empty(padded.shape, dtype=np.float32)
        term = np.empty_like(total)
        centres = kept_axes[:, block, :]
        for slot in range(kept.shape[1]):
            squared_distances(axes, centres[:, :, slot, None], total, term)
            keep_nearest(keys, total, slot, scratch)
        nearest[padded[valid]] = slots_of(keys)[valid]
    return nearest


def slots_of(keys: np.ndarray) -> np.ndarray:
    """Slots (..., k) held by k-nearest keys (k, ...) of `keep_nearest`; -1 where none."""
    return np.moveaxis(np.where(keys == NO_SLOT, -1, keys & SLOT_MASK), 0, -1)


def keep_nearest(keys: np.ndarray, distance: np.ndarray, slot: int, scratch: np.ndarray) -> None:
    """Insert ``slot`` at ``distance`` (float32 >= 0) into the ascending k smallest ``keys`` (k, ...).

    A key is the distance as float64 bits (ordered like the value when >= 0; a float32 value
    leaves the low 29 bits zero) with the slot in those bits, so one integer min/max network
    keeps values and slots together and ties go to the lower slot. ``scratch`` (2, ...) int64
    is working space.
    """
    carry, spare = scratch[0], scratch[1]
    np.copyto(carry.view(np.float64), distance)
    np.bitwise_or(carry, slot, out=carry)
    for rank in range(keys.shape[0]):
        if rank + 1 < keys.shape[0]:
            np.maximum(keys[rank], carry, out=spare)  # what moves down a rank
        np.minimum(keys[rank], carry, out=keys[rank])
        carry, spare = spare, carry


def squared_distances(axes: np.ndarray, centre: np.ndarray, total: np.ndarray, term: np.ndarray) -> None:
    """``total`` (B, n) = squared distance of the points ``axes`` (3, B, n) to ``centre`` (3, B, 1); ``term`` is scratch."""
    for axis in range(3):
        np.subtract(axes[axis], centre[axis], out=term)
        if axis == 0:
            np.multiply(term, term, out=total)
        else:
            np.multiply(term, term, out=term)
            total += term


def random_rows(offsets: np.ndarray, num: int, rng: np.random.Generator | np.ndarray) -> np.ndarray:
    """Rows (M, num): a random subset of ``num`` rows of each group (all of them, repeated, if fewer).

    ``rng``: a Generator, or the draws (nnz,) in [0, 1) of the rows (`keyed_draws`): each group
    keeps its rows of smallest draw, in ascending draw order (ties: the lower row)."""
    group = np.repeat(np.arange(offsets.size - 1), np.diff(offsets))
    draws = rng.random(group.size) if isinstance(rng, np.random.Generator) else rng
    order = np.lexsort((draws, group))  # rows stay in their group, shuffled within it
    return order[cyclic_take(offsets, num)]


def position_keys(coords: np.ndarray, seed: int) -> np.ndarray:
    """A 64-bit hash (uint64) of each row of ``coords`` (n, d) float64, bit for bit, under ``seed``.

    Keys of positions, not of indices: a block of a tile holds its points under other indices, but
    at the same local coordinates, so it draws the same numbers for them."""
    bits = np.ascontiguousarray(coords, dtype=np.float64).view(np.uint64).reshape(coords.shape[0], -1)
    key = np.full(coords.shape[0], np.uint64(seed) ^ np.uint64(0x9E3779B97F4A7C15), dtype=np.uint64)
    for axis in range(bits.shape[1]):
        key = _mix(key ^ _mix(bits[:, axis] + np.uint64(axis + 1)))
    return key


def keyed_draws(field_keys: np.ndarray, row_fields: np.ndarray, row_keys: np.ndarray, salt: int = 0) -> np.ndarray:
    """Uniform draws in [0, 1) (float64) of rows: a hash of their field's key, their own key and ``salt``."""
    mixed = _mix(field_keys[row_fields] ^ _mix(row_keys + np.uint64(salt)))
    return (mixed >> np.uint64(11)).astype(np.float64) * 2.0 ** -53


def _mix(values: np.ndarray) -> np.ndarray:
    """The splitmix64 finaliser: every input bit moves about half the output bits."""
    with np.errstate(over="ignore"):
        values = (values ^ (values >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        values = (values ^ (values >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    return values ^ (values >> np.uint64(31))


def grid_rows(relative: np.ndarray, offsets: np.ndarray, num: int, cell: np.ndarray,
              rng: np.random.Generator | np.ndarray) -> np.ndarray:
    """Rows (M, num): one random point per occupied cell of side ``cell`` (3,), then ``num`` random cells.

    Groups with fewer occupied cells than ``num`` repeat their cells' points cyclically. ``rng``:
    a Generator, or two draws (nnz, 2) per row (`keyed_draws`): the row of smallest first draw
    represents its cell, and cells are taken by their representative's second draw.
    """
    group = np.repeat(np.arange(offsets.size - 1), np.diff(offsets))
    draws = rng.random((group.size, 2)) if isinstance(rng, np.random.Generator) else rng
    cells = np.floor(relative / cell).astype(np.int64)
    order = np.lexsort((draws[:, 0], cells[:, 2], cells[:, 1], cells[:, 0], group))
    keys = np.column_stack([group, cells])[order]
    first = np.ones(order.size, dtype=bool)
    first[1:] = np.any(keys[1:] != keys[:-1], axis=1)
    representatives = order[first]
    counts = np.bincount(group[representatives], minlength=offsets.size - 1)
    rep_offsets = np.concatenate([[0], np.cumsum(counts)])
    shuffled = representatives[np.lexsort((draws[representatives, 1], group[representatives]))]
    return shuffled[cyclic_take(rep_offsets, num)]


def nearest_within_groups(reference: np.ndarray, reference_group: np.ndarray, query: np.ndarray,
                          query_group: np.ndarray, k: int) -> np.ndarray:
    """Row indices (Q, k) of the k nearest ``reference`` rows in the query's own group.

    One KD-tree answers all groups: the group id becomes a fourth coordinate scaled by more
    than twice the largest extent, so a row of another group is always further than any row of
    the own group. Where a group has fewer than k rows the missing neighbours are -1.
    """
    extent = max(float(np.abs(reference).max(initial=0.0)), float(np.abs(query).max(initial=0.0)))
    span = 4.0 * extent + 1.0
    base = min(int(reference_group.min(initial=0)), int(query_group.min(initial=0)))
    tree = cKDTree(np.column_stack([reference, (reference_group - base) * span]))
    k_query = min(k, reference.shape[0])
    _, found = tree.query(np.column_stack([query, (query_group - base) * span]), k=k_query)
    found = found.reshape(query.shape[0], k_query)
    if np.any(reference_group[found[:, 0]] != query_group):
        raise ValueError("a query row has no reference row in its own group")
    found = np.where(reference_group[found] == query_group[:, None], found, -1)
    if k_query < k:
        found = np.concatenate([found, np.full((found.shape[0], k - k_query), -1)], axis=1)
    return found
