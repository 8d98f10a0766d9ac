"""Compiled kernels for cutting receptive fields (numba, optional: ``pip install pointseq[fast]``).

One neighbourhood per loop iteration, each in a cache-sized scratch buffer, instead of the
padded whole-block numpy passes of `subsampling` and `neighborhoods` (those stay as the
fallback and give the same results). Every kernel releases the GIL, so `run_chunks` spreads
independent ranges of neighbourhoods over threads.

Neighbourhoods are CSR groups: group g holds rows ``offsets[g]:offsets[g+1]`` of ``member``,
indices into ``source`` (R, 3) float64; a row's coordinates relative to its group's
``centres[g]`` are taken as float32 ``(source[member[r]] - centres[g])``, exactly as the numpy
path computes them, so both paths measure the same float32 distances.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor

import numpy as np

try:  # the compiled path; without numba every caller uses its numpy fallback
    import numba
except ImportError:  # pragma: no cover - exercised where numba is not installed
    numba = None

AVAILABLE = numba is not None and os.environ.get("POINTSEQ_NO_NUMBA", "") in ("", "0")


def _jit(function):
    """Compile without the GIL, cached on disk, when numba is there; else leave the function alone."""
    return numba.njit(nogil=True, cache=True)(function) if numba is not None else function


def _inline(function):
    """A helper compiled into its callers (no call, no array reference counting per element)."""
    return numba.njit(nogil=True, cache=True, inline="always")(function) if numba is not None else function


@_jit
def _gather(source, member, centre, first, stop, xyz):
    """Rows ``first:stop`` relative to ``centre``, float32, into ``xyz`` (3, >= stop - first)."""
    for r in range(first, stop):
        m = member[r]
        for axis in range(3):
            xyz[axis, r - first] = np.float32(source[m, axis] - centre[axis])


@_inline
def _distance(xyz, i, cx, cy, cz):
    """Squared float32 distance of position ``i`` to (cx, cy, cz), summed in the numpy path's order."""
    dx = xyz[0, i] - cx
    dy = xyz[1, i] - cy
    dz = xyz[2, i] - cz
    total = dx * dx
    total += dy * dy
    total += dz * dz
    return total


@_inline
def _box_gap(boxes, c, x, y, z):
    """Smallest squared distance (float64) from (x, y, z) to cell ``c``'s box."""
    total = 0.0
    for axis, value in enumerate((x, y, z)):
        gap = max(float(boxes[axis, c]) - float(value), float(value) - float(boxes[axis + 3, c]), 0.0)
        total += gap * gap
    return total


PRUNE_BELOW = 1.0 - 1e-5  # box distances shrunk past the float32 rounding of point distances
POINTS_PER_CELL = 10  # about how many points of a neighbourhood share a pruning cell


@_jit
def _bin_cells(xyz, n, order, starts, boxes, cell_xyz):
    """Sort positions ``0..n-1`` into cubic cells (about `POINTS_PER_CELL` each): ``order`` (n,)
    positions cell by cell (ascending within a cell), ``starts`` (cells + 1,), ``boxes`` (6, cells)
    each cell's tight bounding box (low xyz, high xyz), ``cell_xyz`` the coordinates in that
    order. Returns the number of occupied cells."""
    low, extent = np.empty(3), np.empty(3)
    for axis in range(3):
        low[axis] = xyz[axis, :n].min()
        extent[axis] = xyz[axis, :n].max() - low[axis]
    target = max(n / POINTS_PER_CELL, 1.0)
    side = _cell_side(extent, target)
    shape = np.floor(extent / side).astype(np.int64) + 1
    keys = np.empty(n, dtype=np.int64)
    for i in range(n):
        key = 0
        for axis in range(3):
            key = key * shape[axis] + min(int((xyz[axis, i] - low[axis]) / side), shape[axis] - 1)
        keys[i] = key
    order[:n] = np.argsort(keys, kind="mergesort")
    cells = 0
    for at in range(n):
        i = order[at]
        if at == 0 or keys[i] != keys[order[at - 1]]:
            starts[cells] = at
            boxes[:3, cells] = xyz[:, i]
            boxes[3:, cells] = xyz[:, i]
            cells += 1
        for axis in range(3):
            cell_xyz[axis, at] = xyz[axis, i]
            boxes[axis, cells - 1] = min(boxes[axis, cells - 1], xyz[axis, i])
            boxes[axis + 3, cells - 1] = max(boxes[axis + 3, cells - 1], xyz[axis, i])
    starts[cells] = n
    return cells


@_jit
def _fps_cells(cell_xyz, order, starts, boxes, cells, num, kept, near, reach, best_at):
    """Exact furthest-point sampling from position 0 (positions ``order`` of `_bin_cells`) into
    ``kept`` (num,). A cell is skipped when its box is further from the new point than its
    furthest point's nearest kept one: none of its points moves. ``near`` (n,), ``reach`` and
    ``best_at`` (cells,) are scratch."""
    n = starts[cells]
    near[:n] = np.inf
    reach[:cells] = np.inf
    current = np.argmin(order[:n])  # position 0
    for step in range(num):
        kept[step] = order[current]
        cx, cy, cz = cell_xyz[0, current], cell_xyz[1, current], cell_xyz[2, current]
        for c in range(cells):
            if _box_gap(boxes, c, cx, cy, cz) * PRUNE_BELOW >= reach[c]:
                continue
            far, far_at = np.float32(-1.0), starts[c]
            for at in range(starts[c], starts[c + 1]):
                value = min(near[at], _distance(cell_xyz, at, cx, cy, cz))
                near[at] = value
                if value > far:  # positions ascend within a cell: the first furthest
                    far, far_at = value, at
            reach[c], best_at[c] = far, far_at
        far, current = np.float32(-1.0), 0
        for c in range(cells):  # the furthest point, the lowest position on a tie, like argmax
            if reach[c] > far or (reach[c] == far and order[best_at[c]] < order[current]):
                far, current = reach[c], best_at[c]


@_inline
def _cell_side(extent, cells):
    """A cube side giving about ``cells`` occupied cells to points spread over a box of ``extent``
    (3,), on a line, a surface or in a volume alike; at most 7 ``cells`` + 1 cells in the box."""
    ordered = np.sort(extent)
    side = max(ordered[2] / cells, np.sqrt(ordered[1] * ordered[2] / cells), np.cbrt(ordered.prod() / cells))
    return side if side > 0 else 1.0


MAX_REGISTER_K = 4  # up to this many nearest are kept in registers; more take the numpy path


@_inline
def _before(d, t, a, b):
    return d < a or (d == a and t < b)


@_inline
def _push(d, t, a0, b0, a1, b1, a2, b2, a3, b3):
    """(d, t) into the ascending ranks (a0, b0) .. (a3, b3), pairs ordered by (distance, slot)."""
    if _before(d, t, a0, b0):
        return d, t, a0, b0, a1, b1, a2, b2
    if _before(d, t, a1, b1):
        return a0, b0, d, t, a1, b1, a2, b2
    if _before(d, t, a2, b2):
        return a0, b0, a1, b1, d, t, a2, b2
    if _before(d, t, a3, b3):
        return a0, b0, a1, b1, a2, b2, d, t
    return a0, b0, a1, b1, a2, b2, a3, b3


@_jit
def _nearest_kept(xyz, n, kept_xyz, k, slots, first_row):
    """Each position's k (<= `MAX_REGISTER_K`) nearest kept points (3, P) into ``slots[first_row +
    position]``: ascending distance, ties to the lower slot, -1 where P < k. Brute force: the
    distances to all kept points in one vectorised pass, then the k nearest kept in registers
    (for a few hundred kept points this beats any search structure here)."""
    inf = np.float32(np.inf)
    count = kept_xyz.shape[1]
    distances = np.empty(count, dtype=np.float32)
    kx, ky, kz = kept_xyz[0], kept_xyz[1], kept_xyz[2]
    for i in range(n):
        x, y, z = xyz[0, i], xyz[1, i], xyz[2, i]
        for t in range(count):
            dx = kx[t] - x
            dy = ky[t] - y
            dz = kz[t] - z
            total = dx * dx
            total += dy * dy
            total += dz * dz
            distances[t] = total
        a0, a1, a2, a3, b0, b1, b2, b3 = inf, inf, inf, inf, -1, -1, -1, -1
        bound = inf
        for t in range(count):
            d = distances[t]
            if d < bound:  # slots arrive in order: an equal distance keeps the earlier slot
                a0, b0, a1, b1, a2, b2, a3, b3 = _push(d, t, a0, b0, a1, b1, a2, b2, a3, b3)
                bound = a0 if k == 1 else a1 if k == 2 else a2 if k == 3 else a3
        row = first_row + i
        for j, slot in enumerate((b0, b1, b2, b3)):
            if j < k:
                slots[row, j] = slot


@_jit
def _scratch(width, num):
    return (np.empty((3, width), dtype=np.float32), np.empty(width, dtype=np.int64),
            np.empty(width + 1, dtype=np.int64), np.empty((6, width), dtype=np.float32),
            np.empty((3, width), dtype=np.float32), np.empty(width, dtype=np.float32),
            np.empty(width, dtype=np.float32), np.empty(width, dtype=np.int64), np.empty((3, num), dtype=np.float32))


@_jit
def _field_groups(source, member, centres, offsets, first_group, stop_group, num, k, fps, cyclic, kept, slots):
    """Groups [first_group, stop_group): with ``fps``, furthest-point positions into ``kept`` (M, num)
    (groups of at most ``num`` rows keep them all, cyclically in index order with ``cyclic``, else
    in FPS order, then position 0 again); else ``kept`` holds positions already. Then every row's
    k nearest kept slots into ``slots`` (nnz, k), ties to the lower slot."""
    width = 1
    for g in range(first_group, stop_group):
        width = max(width, offsets[g + 1] - offsets[g])
    xyz, order, starts, boxes, cell_xyz, near, reach, best_at, kept_xyz = _scratch(width, num)
    for g in range(first_group, stop_group):
        start, n = offsets[g], offsets[g + 1] - offsets[g]
        _gather(source, member, centres[g], start, start + n, xyz)
        if fps and (n > num or not cyclic):
            cells = _bin_cells(xyz, n, order, starts, boxes, cell_xyz)
            _fps_cells(cell_xyz, order, starts, boxes, cells, num, kept[g], near, reach, best_at)
        elif fps:
            for step in range(num):
                kept[g, step] = step % n
        if k:
            for slot in range(num):
                kept_xyz[:, slot] = xyz[:, kept[g, slot]]
            _nearest_kept(xyz, n, kept_xyz, k, slots, start)


def field_kernel(source: np.ndarray, member: np.ndarray, centres: np.ndarray, offsets: np.ndarray, num: int,
                 k: int, kept: np.ndarray | None = None, nthreads: int = 1,
                 cyclic: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """Kept positions (M, num) within each group, by furthest-point sampling when ``kept`` is None
    (else the given positions), and each row's k nearest kept slots (nnz, k) int64. Groups of at
    most ``num`` rows keep them all: cyclically in index order, or (``cyclic`` false) in FPS
    order followed by position 0 again, as `subsampling.farthest_point_positions` does.

    ``source`` (R, 3) float64, ``member`` (nnz,) int64 rows of it, ``centres`` (M, 3) float64,
    ``offsets`` (M + 1,) int64; every group holds at least one row.
    """
    fps = kept is None
    kept = np.empty((offsets.size - 1, num), dtype=np.int64) if fps else np.ascontiguousarray(kept, dtype=np.int64)
    slots = np.empty((member.size, k), dtype=np.int64)
    source, member = np.ascontiguousarray(source, dtype=np.float64), np.ascontiguousarray(member, dtype=np.int64)
    centres, offsets = np.ascontiguousarray(centres, dtype=np.float64), np.ascontiguousarray(offsets, dtype=np.int64)
    work = np.diff(offsets) * (num + 1)
    run_chunks(lambda first, stop: _field_groups(source, member, centres, offsets, first, stop, num, k, fps, cyclic,
                                                 kept, slots), work, nthreads)
    return kept, slots


@_jit
def _slots_groups(relative, offsets, kept, k, first_group, stop_group, slots):
    width = 1
    for g in range(first_group, stop_group):
        width = max(width, offsets[g + 1] - offsets[g])
    xyz = np.empty((3, width), dtype=np.float32)
    kept_xyz = np.empty((3, kept.shape[1]), dtype=np.float32)
    origin = np.zeros(3)
    for g in range(first_group, stop_group):
        start, n = offsets[g], offsets[g + 1] - offsets[g]
        for r in range(start, start + n):
            for axis in range(3):
                xyz[axis, r - start] = np.float32(relative[r, axis] - origin[axis])
        kept_xyz[:, :] = kept[g].T
        _nearest_kept(xyz, n, kept_xyz, k, slots, start)


def kept_slots(relative: np.ndarray, offsets: np.ndarray, kept: np.ndarray, k: int, nthreads: int = 1) -> np.ndarray:
    """Each row's k nearest slots (nnz, k) among its group's ``kept`` points (M, P, 3): `field_kernel`
    for kept points given by coordinates (float32) rather than by position."""
    slots = np.empty((relative.shape[0], k), dtype=np.int64)
    relative, offsets = np.ascontiguousarray(relative, dtype=np.float64), np.ascontiguousarray(offsets, dtype=np.int64)
    kept = np.ascontiguousarray(kept, dtype=np.float32)
    run_chunks(lambda first, stop: _slots_groups(relative, offsets, kept, k, first, stop, slots),
               np.diff(offsets) + 1.0, nthreads)
    return slots


@_jit
def _smallest_groups(draws, offsets, num, first_group, stop_group, kept):
    for g in range(first_group, stop_group):
        start, n = offsets[g], offsets[g + 1] - offsets[g]
        order = np.argsort(draws[start:start + n], kind="mergesort")
        for step in range(num):
            kept[g, step] = order[step % n]


def smallest_draws(draws: np.ndarray, offsets: np.ndarray, num: int, nthreads: int = 1) -> np.ndarray:
    """Positions (M, num) of each group's ``num`` smallest ``draws`` (nnz,), ascending (ties: the
    lower position), repeated cyclically in groups of fewer rows: `subsampling.random_rows`."""
    kept = np.empty((offsets.size - 1, num), dtype=np.int64)
    draws, offsets = np.ascontiguousarray(draws, dtype=np.float64), np.ascontiguousarray(offsets, dtype=np.int64)
    run_chunks(lambda first, stop: _smallest_groups(draws, offsets, num, first, stop, kept), np.diff(offsets) + 1.0,
               nthreads)
    return kept


def run_chunks(task: Callable[[int, int], None], work: np.ndarray, nthreads: int) -> None:
    """Call ``task(first, stop)`` over consecutive ranges of items of about equal ``work``, on
    ``nthreads`` threads (the kernels release the GIL); one range per thread, four with several."""
    count = int(work.size)
    if count == 0:
        return
    pieces = 1 if nthreads <= 1 else 4 * nthreads
    bounds = _balanced_bounds(work, pieces)
    if nthreads <= 1 or len(bounds) <= 2:
        task(0, count)
        return
    with ThreadPoolExecutor(max_workers=nthreads) as pool:
        for future in [pool.submit(task, a, b) for a, b in zip(bounds[:-1], bounds[1:])]:
            future.result()


def _balanced_bounds(work: np.ndarray, pieces: int) -> Sequence[int]:
    total = np.cumsum(work, dtype=np.float64)
    cuts = np.searchsorted(total, total[-1] * np.arange(1, pieces) / pieces)
    return sorted({0, work.size, *(int(c) for c in cuts if 0 < c < work.size)})


@_jit
def _count_members(ordered, order, starts, counts, centre_keys, stencil_keys, centres, inf_norm, first, stop, out):
    for s in range(first, stop):
        total = 0
        for key in stencil_keys:
            cell = centre_keys[s] + key
            for row in range(starts[cell], starts[cell] + counts[cell]):
                total += _inside(ordered, row, centres, s, inf_norm)
        out[s] = total


@_jit
def _fill_members(ordered, order, starts, counts, centre_keys, stencil_keys, centres, inf_norm, first, stop,
                  offsets, out):
    for s in range(first, stop):
        at = offsets[s]
        for key in stencil_keys:
            cell = centre_keys[s] + key
            for row in range(starts[cell], starts[cell] + counts[cell]):
                if _inside(ordered, row, centres, s, inf_norm):
                    out[at] = order[row]
                    at += 1
        out[offsets[s]:at].sort()  # points ascending within each support


@_inline
def _inside(ordered, row, centres, s, inf_norm):
    """Point ``row`` (scaled, (dims, N)) within the unit ball (p=2) or cube (p=inf) around ``centres[s]``."""
    total = 0.0
    for axis in range(ordered.shape[0]):
        offset = ordered[axis, row] - centres[s, axis]
        if inf_norm:
            total = max(total, abs(offset))
        else:
            total += offset * offset
    return total <= 1.0


def member_lists(ordered: np.ndarray, order: np.ndarray, starts: np.ndarray, counts: np.ndarray,
                 centre_keys: np.ndarray, stencil_keys: np.ndarray, centres: np.ndarray, inf_norm: bool,
                 nthreads: int = 1) -> tuple[np.ndarray, np.ndarray]:
    """CSR neighbourhoods (offsets (S + 1,), points ascending within each) of the scaled ``centres``
    (S, dims), from points binned in cells (see `neighborhoods.CellGrid`)."""
    centres = np.ascontiguousarray(centres, dtype=np.float64)
    args = (ordered, order, starts, counts, centre_keys, stencil_keys, centres, inf_norm)
    sizes = np.empty(centres.shape[0], dtype=np.int64)
    work = np.full(centres.shape[0], 1.0)
    run_chunks(lambda first, stop: _count_members(*args, first, stop, sizes), work, nthreads)
    offsets = np.concatenate([[0], np.cumsum(sizes)]).astype(np.int64)
    members = np.empty(int(offsets[-1]), dtype=np.int64)
    run_chunks(lambda first, stop: _fill_members(*args, first, stop, offsets, members), sizes + 1.0, nthreads)
    return offsets, members


@_jit
def _bin_field(ref, k, low, side, cell_of, items):
    """Bin a field's points (R, 3) into a uniform grid of about k/2 points per xy column of
    cells: fills ``low``, ``side`` and ``items`` (points in cell order); returns the cell side
    and the cells' starts into ``items``."""
    width = ref.shape[0]
    high = np.empty(3)
    for axis in range(3):
        low[axis] = ref[:, axis].min()
        high[axis] = ref[:, axis].max()
    extent_xy = max(high[0] - low[0], high[1] - low[1], 1e-12)
    h = max(extent_xy * np.sqrt(max(k, 4) / (2.0 * width)), 1e-12)
    for axis in range(3):
        side[axis] = min(max(1, int((high[axis] - low[axis]) / h) + 1), 64)
    starts = np.zeros(side[0] * side[1] * side[2] + 1, dtype=np.int64)
    for r in range(width):
        c = 0
        for axis in range(3):
            c = c * side[axis] + min(int((ref[r, axis] - low[axis]) / h), side[axis] - 1)
        cell_of[r] = c
        starts[c + 1] += 1
    for c in range(1, starts.size):
        starts[c] += starts[c - 1]
    fill = starts[:-1].copy()
    for r in range(width):
        items[fill[cell_of[r]]] = r
        fill[cell_of[r]] += 1
    return h, starts


@_inline
def _scan_cell(ref, items, first, stop, qx, qy, qz, best_d, best_i, worst):
    """Offer the points ``items[first:stop]`` to the sorted k best (ties: lower position first);
    returns the new k-th distance."""
    k = best_d.size
    for s in range(first, stop):
        j = items[s]
        dx = ref[j, 0] - qx
        dy = ref[j, 1] - qy
        dz = ref[j, 2] - qz
        d = dx * dx + dy * dy + dz * dz
        if d < worst or (d == worst and j < best_i[k - 1]):
            t = k - 1
            while t > 0 and (best_d[t - 1] > d or (best_d[t - 1] == d and best_i[t - 1] > j)):
                best_d[t] = best_d[t - 1]
                best_i[t] = best_i[t - 1]
                t -= 1
            best_d[t] = d
            best_i[t] = j
            worst = best_d[k - 1]
    return worst


@_inline
def _outside(q, cell, ring, lo, h, side):
    """How near a point outside cells ``cell - ring .. cell + ring`` of one axis can be to ``q``."""
    bound = np.inf
    if cell - ring > 0:
        bound = q - (lo + (cell - ring) * h)
    if cell + ring < side - 1:
        bound = min(bound, lo + (cell + ring + 1) * h - q)
    return bound


@_jit
def _nearest_groups(reference, query, k, first_group, stop_group, out):
    """For fields [first_group, stop_group): each query point's k nearest reference points of its
    own field into ``out`` (M, Q, k), nearest first, ties to the lower position. The field is
    binned (`_bin_field`); a query scans rings of cells outwards from its own until no point
    outside the scanned cells can be nearer than its k-th."""
    width = reference.shape[1]
    cell_of, items = np.empty(width, dtype=np.int64), np.empty(width, dtype=np.int64)
    best_d, best_i = np.empty(k), np.empty(k, dtype=np.int64)
    low, side = np.empty(3), np.empty(3, dtype=np.int64)
    for g in range(first_group, stop_group):
        ref = reference[g]
        h, starts = _bin_field(ref, k, low, side, cell_of, items)
        sx, sy, sz = side[0], side[1], side[2]
        for q in range(query.shape[1]):
            qx, qy, qz = query[g, q, 0], query[g, q, 1], query[g, q, 2]
            cx = min(max(int((qx - low[0]) / h), 0), sx - 1)
            cy = min(max(int((qy - low[1]) / h), 0), sy - 1)
            cz = min(max(int((qz - low[2]) / h), 0), sz - 1)
            best_d[:] = np.inf
            best_i[:] = width
            worst, ring = np.inf, 0
            while True:
                for ix in range(max(cx - ring, 0), min(cx + ring, sx - 1) + 1):
                    for iy in range(max(cy - ring, 0), min(cy + ring, sy - 1) + 1):
                        rim = ix == cx - ring or ix == cx + ring or iy == cy - ring or iy == cy + ring
                        for iz in range(max(cz - ring, 0), min(cz + ring, sz - 1) + 1):
                            if rim or iz == cz - ring or iz == cz + ring:
                                c = (ix * sy + iy) * sz + iz
                                worst = _scan_cell(ref, items, starts[c], starts[c + 1], qx, qy, qz, best_d, best_i,
                                                   worst)
                bound = min(_outside(qx, cx, ring, low[0], h, sx), _outside(qy, cy, ring, low[1], h, sy),
                            _outside(qz, cz, ring, low[2], h, sz))
                if bound == np.inf or (bound > 0 and bound * bound > worst):
                    break
                ring += 1
            out[g, q, :] = best_i


def nearest_in_groups(reference: np.ndarray, query: np.ndarray, k: int, nthreads: int = 1) -> np.ndarray:
    """Positions (M, Q, k) int32 of the k nearest ``reference`` (M, R, 3) points of each ``query``
    (M, Q, 3) point within the same field, nearest first (float64 distances, ties to the lower
    position); k <= R."""
    reference = np.ascontiguousarray(reference, dtype=np.float64)
    query = np.ascontiguousarray(query, dtype=np.float64)
    out = np.empty((reference.shape[0], query.shape[1], k), dtype=np.int32)
    run_chunks(lambda first, stop: _nearest_groups(reference, query, k, first, stop, out),
               np.full(reference.shape[0], 1.0), nthreads)
    return out
