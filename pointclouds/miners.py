"""Geometric feature miners: per-point features computed from a cloud's coordinates and colours.

What a classical LiDAR classifier feeds its trees, and what a deep model gets as extra inputs
(named in `FeatureSpec` like any dimension, e.g. ``{"name": "planarity", "radius": 1.0}``):

- **Eigenvalue features** of the covariance of each point's neighbourhood (the points within
  ``radius``, or its ``k`` nearest, itself included), with eigenvalues l1 >= l2 >= l3 >= 0 and
  their normalised values e_i = l_i / (l1 + l2 + l3): linearity (l1 - l2) / l1, planarity
  (l2 - l3) / l1, sphericity (alias scattering) l3 / l1, anisotropy (l1 - l3) / l1, surface
  variation l3 / (l1 + l2 + l3), omnivariance (e1 e2 e3)^(1/3) in [0, 1/3], eigenentropy
  -sum e_i ln e_i in [0, ln 3], normal_z |n_z| of the unit normal (the eigenvector of l3) and
  verticality 1 - |n_z|. A neighbourhood whose points all coincide (l1 = 0: a lone point)
  gets 0 for every one of them.
- **Heights**: z minus the lowest z (``height_above_min``) and the highest z minus z
  (``height_below_max``) of the point's xy cell (``cell_size``) or of the points within an xy
  distance ``radius`` (a vertical cylinder).
- **Density**: points within ``radius`` (itself included) per unit volume.
- **HSV** from red, green, blue: hue as a fraction of a turn in [0, 1), saturation and value
  in [0, 1] (value: the largest channel over the channels' integer range).

Everything stays float64 until the caller casts: neighbourhoods are expressed relative to
their query point before the covariance, so a tile at a georeferenced offset of 1e6-1e7 loses
nothing. Neighbours come from one scipy `cKDTree` per cloud, in padded blocks of rows grouped
by neighbour count (no Python loop per point).
"""

from __future__ import annotations

import math
from collections.abc import Iterator

import numpy as np
from scipy.spatial import cKDTree

EIGEN_FEATURES = ("linearity", "planarity", "sphericity", "scattering", "omnivariance", "anisotropy",
                  "eigenentropy", "surface_variation", "verticality", "normal_z")
HEIGHT_FEATURES = ("height_above_min", "height_below_max")
DENSITY_FEATURES = ("density",)
COLOUR_FEATURES = ("hue", "saturation", "value")
BLOCK_ENTRIES = 1 << 20  # k-NN slots per block: about 24 MiB of float64 offsets
BLOCK_PAIRS = 1 << 21  # radius pairs per xy block: a few hundred MiB of work arrays at most
MAX_RING = 8  # xy blocks are at least radius / MAX_RING wide


def _tree(points: np.ndarray) -> tuple[cKDTree, np.ndarray]:
    """A k-d tree of ``points`` relative to their lowest corner, and those relative points."""
    points = np.asarray(points, dtype=np.float64)
    local = points - points.min(axis=0) if len(points) else points
    return cKDTree(local), local


def knn_blocks(tree: cKDTree, local: np.ndarray, k: int,
               block_entries: int = BLOCK_ENTRIES) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """Blocks ``(rows, neighbours)`` covering every point of ``local`` (the tree's data):
    ``neighbours[i]`` the ``k`` nearest points of point ``rows[i]``, itself included (all the
    points when the cloud has fewer)."""
    n = len(local)
    width = min(int(k), n)
    step = max(1, block_entries // max(width, 1))
    for first in range(0, n, step):
        rows = np.arange(first, min(first + step, n))
        _, idx = tree.query(local[rows], k=width, workers=-1)
        yield rows, idx.reshape(len(rows), width)


def _block_side(tree: cKDTree, local: np.ndarray, radius: float, block_pairs: int) -> float:
    """The side of the xy blocks `radius_pairs` cuts: about ``block_pairs`` neighbour pairs each
    (the mean neighbour count estimated on an even sample), at least ``radius / MAX_RING``."""
    sample = local[np.linspace(0, len(local) - 1, min(len(local), 2048)).astype(np.int64)]
    mean_count = float(np.mean(tree.query_ball_point(sample, radius, return_length=True)))
    extent = np.maximum(np.ptp(local[:, :2], axis=0), radius)
    points_per_block = max(block_pairs / max(mean_count, 1.0), 1.0)
    return max(math.sqrt(float(extent[0] * extent[1]) * points_per_block / len(local)), float(radius) / MAX_RING)


def radius_pairs(local: np.ndarray, radius: float, *, block_pairs: int = BLOCK_PAIRS,
                 tree: cKDTree | None = None) -> Iterator[tuple[np.ndarray, int, np.ndarray]]:
    """Blocks ``(members, core, pairs)`` covering every point of ``local`` (2 or 3 columns):
    ``members[:core]`` are the points of one xy block, ``members[core:]`` those of the blocks
    around it within ``radius`` of it, ``pairs`` ``(P, 2)`` indices into ``members`` of pairs
    within distance ``radius`` (<=) that name every neighbour of each core point once (the point
    itself excluded). Memory stays near ``block_pairs`` pairs whatever the cloud's size.

    Blocks at least ``radius`` wide take their pairs from scipy's ``query_pairs`` over the
    block and its 8 neighbours; narrower ones (dense clouds, large radii) from the core's
    ``sparse_distance_matrix`` to the blocks within ``radius``, so no pair is computed twice.
    """
    if not len(local):
        return
    side = _block_side(cKDTree(local) if tree is None else tree, local, radius, block_pairs)
    ring = int(math.ceil(radius / side - 1e-9))
    cells = np.floor((local[:, :2] - local[:, :2].min(axis=0)) / side).astype(np.int64) + ring
    height = int(cells[:, 1].max()) + 2 * ring + 1
    keys = cells[:, 0] * height + cells[:, 1]
    order = np.argsort(keys, kind="stable")
    sorted_keys = keys[order]
    blocks = np.unique(sorted_keys)
    steps = range(-ring, ring + 1)
    shifts = np.array([0] + [dx * height + dy for dx in steps for dy in steps if dx or dy])
    lows = np.searchsorted(sorted_keys, blocks[:, None] + shifts, side="left")
    highs = np.searchsorted(sorted_keys, blocks[:, None] + shifts, side="right")
    for low, high in zip(lows, highs):
        rows = order[low[0]:high[0]]
        around = np.concatenate([order[a:b] for a, b in zip(low[1:], high[1:])])
        box_low, box_high = local[rows, :2].min(axis=0) - radius, local[rows, :2].max(axis=0) + radius
        around = around[np.all((local[around, :2] >= box_low) & (local[around, :2] <= box_high), axis=1)]
        members = np.concatenate([rows, around])
        yield members, len(rows), _member_pairs(local[members], len(rows), radius, ring)


def _member_pairs(points: np.ndarray, core: int, radius: float, ring: int) -> np.ndarray:
    """The pairs of `radius_pairs` for one block's ``points`` (its ``core`` first)."""
    if ring == 1:
        pairs = cKDTree(points).query_pairs(radius, output_type="ndarray")
        return pairs[(pairs < core).any(axis=1)]
    cross = cKDTree(points[:core]).sparse_distance_matrix(cKDTree(points), radius, output_type="ndarray")
    first, second = cross["i"].astype(np.int64), cross["j"].astype(np.int64)
    once = (second >= core) | (first < second)  # a pair of two core points appears both ways
    return np.column_stack([first[once], second[once]])


def _pair_sums(pairs: np.ndarray, values: np.ndarray, size: int, sign: float = 1.0) -> np.ndarray:
    """Per member, the sum of ``values`` over its pairs: ``+values`` at the first index,
    ``sign * values`` at the second."""
    return np.bincount(pairs[:, 0], values, size) + sign * np.bincount(pairs[:, 1], values, size)


def _pair_covariance(points: np.ndarray, core: int, pairs: np.ndarray) -> np.ndarray:
    """Covariances ``(core, 3, 3)`` (divided by the count) of the first ``core`` points' pair
    neighbourhoods (themselves included), from sums of offsets relative to each point: an
    offset and its products are the same from either end of a pair but for the sign."""
    size = len(points)
    offsets = points[pairs[:, 1]] - points[pairs[:, 0]]
    count = (_pair_sums(pairs, np.ones(len(pairs)), size) + 1.0)[:core]
    mean = np.stack([_pair_sums(pairs, offsets[:, a], size, -1.0)[:core] for a in range(3)], axis=1)
    mean /= count[:, None]
    cov = np.empty((core, 3, 3))
    for a in range(3):
        for b in range(a, 3):
            cov[:, a, b] = _pair_sums(pairs, offsets[:, a] * offsets[:, b], size)[:core] / count - mean[:, a] * mean[:, b]
            cov[:, b, a] = cov[:, a, b]
    return cov


def _padded_covariance(local: np.ndarray, rows: np.ndarray, idx: np.ndarray) -> np.ndarray:
    """Covariances ``(b, 3, 3)`` (divided by the count) of k-NN blocks, relative to each query
    point."""
    offsets = local[idx] - local[rows][:, None, :]
    mean = offsets.mean(axis=1)
    cov = np.empty((len(rows), 3, 3))
    for a in range(3):
        for b in range(a, 3):
            cov[:, a, b] = (offsets[..., a] * offsets[..., b]).mean(axis=1) - mean[:, a] * mean[:, b]
            cov[:, b, a] = cov[:, a, b]
    return cov


def neighbourhood_eigen(points: np.ndarray, *, radius: float | None = None, k: int | None = None,
                        block_pairs: int = BLOCK_PAIRS) -> tuple[np.ndarray, np.ndarray]:
    """Per point: the eigenvalues ``(N, 3)`` of its neighbourhood's covariance, largest first,
    and ``|n_z|`` ``(N,)`` of the eigenvector of the smallest (the local normal's z)."""
    if (radius is None) == (k is None):
        raise ValueError(f"give exactly one of radius and k, got radius={radius!r}, k={k!r}")
    tree, local = _tree(points)
    values = np.zeros((len(local), 3))
    normal_z = np.zeros(len(local))
    if k is not None:
        blocks = ((rows, _padded_covariance(local, rows, idx)) for rows, idx in knn_blocks(tree, local, k))
    else:
        blocks = ((members[:core], _pair_covariance(local[members], core, pairs))
                  for members, core, pairs in radius_pairs(local, radius, block_pairs=block_pairs, tree=tree))
    for rows, cov in blocks:
        eigenvalues, eigenvectors = np.linalg.eigh(cov)
        values[rows] = np.maximum(eigenvalues[:, ::-1], 0.0)
        normal_z[rows] = np.abs(eigenvectors[:, 2, 0])
    return values, normal_z


def eigen_features(eigenvalues: np.ndarray, normal_z: np.ndarray) -> dict[str, np.ndarray]:
    """Every eigenvalue feature (`EIGEN_FEATURES`) from `neighbourhood_eigen`'s results."""
    l1, l2, l3 = (eigenvalues[:, i] for i in range(3))
    defined = l1 > 0
    top = np.where(defined, l1, 1.0)
    total = np.where(defined, eigenvalues.sum(axis=1), 1.0)
    shares = eigenvalues / total[:, None]
    logs = np.log(np.where(shares > 0, shares, 1.0))
    sphericity = np.where(defined, l3 / top, 0.0)
    features = {
        "linearity": np.where(defined, (l1 - l2) / top, 0.0),
        "planarity": np.where(defined, (l2 - l3) / top, 0.0),
        "sphericity": sphericity,
        "scattering": sphericity,
        "omnivariance": np.where(defined, np.cbrt(shares.prod(axis=1)), 0.0),
        "anisotropy": np.where(defined, (l1 - l3) / top, 0.0),
        "eigenentropy": np.where(defined, -(shares * logs).sum(axis=1), 0.0),
        "surface_variation": np.where(defined, l3 / total, 0.0),
        "normal_z": np.where(defined, normal_z, 0.0),
    }
    features["verticality"] = np.where(defined, 1.0 - normal_z, 0.0)
    return features


def _grouped_extremes(keys: np.ndarray, z: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per point, the lowest and highest z of the points sharing its key."""
    order = np.argsort(keys, kind="stable")
    starts = np.flatnonzero(np.r_[True, keys[order][1:] != keys[order][:-1]])
    group = np.cumsum(np.r_[True, keys[order][1:] != keys[order][:-1]]) - 1
    low = np.minimum.reduceat(z[order], starts)
    high = np.maximum.reduceat(z[order], starts)
    lows, highs = np.empty_like(z), np.empty_like(z)
    lows[order], highs[order] = low[group], high[group]
    return lows, highs


def local_z_extremes(points: np.ndarray, *, cell_size: float | None = None, radius: float | None = None,
                     block_pairs: int = BLOCK_PAIRS) -> tuple[np.ndarray, np.ndarray]:
    """Per point, the lowest and highest z of its xy cell of side ``cell_size`` (cells counted
    from the cloud's lowest x and y) or of the points within xy distance ``radius``."""
    if (cell_size is None) == (radius is None):
        raise ValueError(f"give exactly one of cell_size and radius, got cell_size={cell_size!r}, radius={radius!r}")
    points = np.asarray(points, dtype=np.float64)
    z = points[:, 2].copy()
    if not len(points):
        return z, z.copy()
    if cell_size is not None:
        cells = np.floor((points[:, :2] - points[:, :2].min(axis=0)) / cell_size).astype(np.int64)
        return _grouped_extremes(cells[:, 0] * (int(cells[:, 1].max()) + 1) + cells[:, 1], z)
    _, local = _tree(points[:, :2])
    lows, highs = z.copy(), z.copy()
    for members, core, pairs in radius_pairs(local, radius, block_pairs=block_pairs):
        heights = z[members]
        low, high = heights.copy(), heights.copy()
        for ends in (pairs, pairs[:, ::-1]):
            np.minimum.at(low, ends[:, 0], heights[ends[:, 1]])
            np.maximum.at(high, ends[:, 0], heights[ends[:, 1]])
        lows[members[:core]], highs[members[:core]] = low[:core], high[:core]
    return lows, highs


def point_density(points: np.ndarray, radius: float, *, block_pairs: int = BLOCK_PAIRS) -> np.ndarray:
    """Points within ``radius`` (itself included) per unit volume of the ball."""
    _, local = _tree(points)
    counts = np.ones(len(local))
    for members, core, pairs in radius_pairs(local, float(radius), block_pairs=block_pairs):
        counts[members[:core]] += _pair_sums(pairs, np.ones(len(pairs)), len(members))[:core]
    return counts / (4.0 / 3.0 * math.pi * float(radius) ** 3)


def rgb_to_hsv(red: np.ndarray, green: np.ndarray, blue: np.ndarray) -> dict[str, np.ndarray]:
    """Hue (fraction of a turn, [0, 1)), saturation and value ([0, 1]) of integer or [0, 1]
    float colour channels; an integer channel's range is its dtype's (LAS: 16 bits)."""
    channels = [np.asarray(c) for c in (red, green, blue)]
    full = max(float(np.iinfo(c.dtype).max) if np.issubdtype(c.dtype, np.integer) else 1.0 for c in channels)
    rgb = np.stack([c.astype(np.float64) for c in channels], axis=1)
    high, low = rgb.max(axis=1), rgb.min(axis=1)
    spread = high - low
    safe = np.where(spread > 0, spread, 1.0)
    r, g, b = rgb.T
    sector = np.where(high == r, ((g - b) / safe) % 6.0,
                      np.where(high == g, (b - r) / safe + 2.0, (r - g) / safe + 4.0))
    hue = np.where(spread > 0, sector / 6.0, 0.0) % 1.0
    saturation = np.where(high > 0, spread / np.where(high > 0, high, 1.0), 0.0)
    return {"hue": hue, "saturation": saturation, "value": high / full}
