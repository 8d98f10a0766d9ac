"""Synthetic airborne-LiDAR tiles: georeferenced points with ASPRS classes, no download.

A tile is a square of terrain at a UTM-like offset (x ~ 5e5 m, y ~ 5.4e6 m, z ~ 300 m) with
the classes a classified LiDAR tile carries: ground (2) on gently sloped, undulating terrain,
high vegetation (5) as tree crowns on trunks with several returns per pulse, buildings (6)
with flat or gable roofs (dense) and walls (sparse, as seen from the air), and noise (7):
isolated points far above or below the terrain, to be ignored in training and evaluation.
Density varies across flight strips and a tile may have gaps without returns, so the code
that covers a tile with fields meets what it meets on real tiles.

Each tile is a dict of arrays named like LAS dimensions: ``xyz`` float64 ``(N, 3)``,
``classification`` uint8, ``intensity`` uint16, ``return_number`` and
``number_of_returns`` uint8. Everything is drawn from the ``rng`` given, so a seed fixes it.
"""

from __future__ import annotations

import numpy as np

from pointseq.arguments import require_int, require_positive
from pointseq.sequencers.seeding import synthetic_tile_rng

GROUND, HIGH_VEGETATION, BUILDING, NOISE = 2, 5, 6, 7
CLASS_CODES = {GROUND: "ground", HIGH_VEGETATION: "vegetation", BUILDING: "building", NOISE: "noise"}
TILE_KEYS = ("xyz", "classification", "intensity", "return_number", "number_of_returns")
_EAST, _NORTH = 500_000.0, 5_400_000.0


class _Terrain:
    """A smooth height field: a gentle plane plus two crossed undulations."""

    def __init__(self, rng: np.random.Generator, base: float):
        self.base = base
        self.slope = rng.uniform(-0.05, 0.05, 2)
        self.amplitude = rng.uniform(0.3, 1.2, 2)
        self.wavelength = rng.uniform(20.0, 60.0, 4)
        self.phase = rng.uniform(0.0, 2 * np.pi, 4)

    def height(self, xy: np.ndarray) -> np.ndarray:
        x, y = xy[:, 0], xy[:, 1]
        w, p, a = 2 * np.pi / self.wavelength, self.phase, self.amplitude
        return (self.base + xy @ self.slope
                + a[0] * np.sin(w[0] * x + p[0]) * np.cos(w[1] * y + p[1])
                + a[1] * np.sin(w[2] * (x + y) + p[2]) * np.sin(w[3] * (x - y) + p[3]))


def _coverage(rng: np.random.Generator, size: float) -> dict:
    """Flight-strip density modulation and one or two gaps without returns."""
    holes = rng.integers(1, 3)
    return {"angle": rng.uniform(0, np.pi), "strip": rng.uniform(15.0, 30.0), "phase": rng.uniform(0, 2 * np.pi),
            "hole_centres": rng.uniform(0.15 * size, 0.85 * size, (holes, 2)),
            "hole_radii": rng.uniform(2.0, 5.0, holes) * min(1.0, size / 30.0)}  # small tiles keep most ground


def _kept(rng: np.random.Generator, xy: np.ndarray, coverage: dict) -> np.ndarray:
    """Which points survive the uneven density (0.45 to 1 of the nominal) and the gaps."""
    direction = np.array([np.cos(coverage["angle"]), np.sin(coverage["angle"])])
    wave = np.sin(2 * np.pi * (xy @ direction) / coverage["strip"] + coverage["phase"])
    keep = rng.random(len(xy)) < 0.725 + 0.275 * wave
    for centre, radius in zip(coverage["hole_centres"], coverage["hole_radii"]):
        keep &= np.hypot(*(xy - centre).T) > radius
    return keep


def _part(xyz: np.ndarray, code: int, intensity: np.ndarray, returns: tuple[np.ndarray, np.ndarray]) -> dict:
    return {"xyz": xyz, "classification": np.full(len(xyz), code, np.uint8),
            "intensity": intensity, "return_number": returns[0], "number_of_returns": returns[1]}


def _single_returns(n: int) -> tuple[np.ndarray, np.ndarray]:
    return np.ones(n, np.uint8), np.ones(n, np.uint8)


def _to_frame(xy: np.ndarray, centre: np.ndarray, yaw: float) -> np.ndarray:
    """Coordinates of ``xy`` in a frame centred on ``centre`` and turned by ``yaw``."""
    c, s = np.cos(yaw), np.sin(yaw)
    return (xy - centre) @ np.array([[c, -s], [s, c]])


def _from_frame(uv: np.ndarray, centre: np.ndarray, yaw: float) -> np.ndarray:
    c, s = np.cos(yaw), np.sin(yaw)
    return uv @ np.array([[c, s], [-s, c]]) + centre


def _draw_buildings(rng: np.random.Generator, size: float) -> list[dict]:
    """Two to four buildings that do not overlap: footprint, height, yaw, roof shape."""
    buildings: list[dict] = []
    room = size / 2 - 2  # the largest half-extent that still fits inside the tile
    for _ in range(int(rng.integers(2, 5))):
        for _attempt in range(20):
            half = np.minimum(rng.uniform([4.5, 3.5], [11.0, 7.0]), room)
            if half.min() < 2.0:  # a tile this small holds no building
                return buildings
            centre = rng.uniform(half.max() + 2, size - half.max() - 2, 2)
            if all(np.hypot(*(centre - b["centre"])) > np.hypot(*half) + np.hypot(*b["half"]) + 2
                   for b in buildings):
                buildings.append({"centre": centre, "half": half, "yaw": rng.uniform(0, np.pi),
                                  "height": rng.uniform(3.5, 10.0),
                                  "rise": rng.uniform(1.5, 4.0) if rng.random() < 0.6 else 0.0})
                break
    return buildings


def _inside(xy: np.ndarray, footprints: list[dict], margin: float = 0.0) -> np.ndarray:
    inside = np.zeros(len(xy), bool)
    for b in footprints:
        uv = np.abs(_to_frame(xy, b["centre"], b["yaw"]))
        inside |= (uv[:, 0] < b["half"][0] + margin) & (uv[:, 1] < b["half"][1] + margin)
    return inside


def _building_points(rng: np.random.Generator, b: dict, terrain: _Terrain, density: float) -> dict:
    """A roof sampled at full density and its walls at a quarter of it (grazing view)."""
    half = b["half"]
    corners = _from_frame(np.array([[1, 1], [1, -1], [-1, 1], [-1, -1]]) * half, b["centre"], b["yaw"])
    base = float(terrain.height(corners).min())
    n_roof = rng.poisson(density * 4 * half[0] * half[1])
    uv = rng.uniform(-half, half, (n_roof, 2))
    roof_z = base + b["height"] + b["rise"] * (1 - np.abs(uv[:, 1]) / half[1])
    perimeter = 4 * (half[0] + half[1])
    n_wall = rng.poisson(0.25 * density * perimeter * b["height"])
    t = rng.uniform(0, perimeter, n_wall)
    side = np.minimum(t // (perimeter / 4), 3).astype(int)
    along = (t % (perimeter / 4)) / (perimeter / 4) * 2 - 1
    wall_uv = np.where(side[:, None] % 2 == 0,
                       np.column_stack([along * half[0], np.where(side == 0, -1, 1) * half[1]]),
                       np.column_stack([np.where(side == 1, -1, 1) * half[0], along * half[1]]))
    wall_z = base + rng.uniform(0, b["height"], n_wall)
    xy = _from_frame(np.vstack([uv, wall_uv]), b["centre"], b["yaw"])
    xyz = np.column_stack([xy, np.concatenate([roof_z, wall_z])]) + rng.normal(0, 0.03, (len(xy), 3))
    shade = rng.uniform(22000, 34000)
    intensity = np.concatenate([rng.normal(shade, 4000, n_roof), rng.normal(15000, 5000, n_wall)])
    return_number, number_of_returns = _single_returns(len(xy))
    number_of_returns[n_roof:] = rng.integers(1, 3, n_wall)  # walls: some pulses also hit the ground
    return _part(xyz, BUILDING, intensity, (np.minimum(return_number, number_of_returns), number_of_returns))


def _draw_trees(rng: np.random.Generator, size: float, buildings: list[dict]) -> list[dict]:
    """Trees clustered in one to three stands, kept off the buildings and inside the tile."""
    stands = rng.uniform(0, size, (int(rng.integers(1, 4)), 2))
    candidates = stands[rng.integers(0, len(stands), 60)] + rng.normal(0, 7.0, (60, 2))
    keep = (candidates > 1).all(axis=1) & (candidates < size - 1).all(axis=1)
    keep &= ~_inside(candidates, buildings, margin=2.0)
    positions = candidates[keep][: int(rng.integers(10, 30))]
    n = len(positions)
    heights = rng.uniform(7.0, 22.0, n)
    return [{"xy": positions[i], "height": heights[i], "conifer": bool(rng.random() < 0.4),
             "radius": rng.uniform(1.5, 3.8) * (0.7 if rng.random() < 0.4 else 1.0)} for i in range(n)]


def _crown_points(rng: np.random.Generator, tree: dict, n: int) -> tuple[np.ndarray, np.ndarray]:
    """Points in a crown (ellipsoid or cone), denser towards its outer surface, and their
    depth below the crown top (0 at the top, 1 at the bottom) for the return numbers."""
    h, r = tree["height"], tree["radius"]
    if tree["conifer"]:
        depth = rng.uniform(0, 1, n) ** 0.8
        top, length = h, 0.7 * h
        rad = r * depth * rng.beta(4.0, 1.3, n)
        z = top - depth * length
    else:
        direction = rng.normal(size=(n, 3))
        direction /= np.linalg.norm(direction, axis=1, keepdims=True)
        direction[:, 2] = np.abs(direction[:, 2]) * np.where(rng.random(n) < 0.8, 1, -1)  # seen from above
        shell = direction * rng.beta(4.0, 1.3, (n, 1))
        semi_z = min(0.35 * h, 1.3 * r)
        z = h - semi_z + shell[:, 2] * semi_z
        rad = np.hypot(shell[:, 0], shell[:, 1]) * r
        depth = (h - z) / (2 * semi_z)
    angle = rng.uniform(0, 2 * np.pi, n)
    offsets = np.column_stack([rad * np.cos(angle), rad * np.sin(angle), z])
    return offsets, np.clip(depth, 0, 1)


def _tree_points(rng: np.random.Generator, tree: dict, terrain: _Terrain, density: float) -> dict:
    """Crown points with multi-return numbers (first on top, later deeper) and a sparse trunk."""
    n_crown = rng.poisson(1.6 * density * np.pi * tree["radius"] ** 2)
    offsets, depth = _crown_points(rng, tree, n_crown)
    n_trunk = rng.poisson(0.15 * density * tree["height"])
    trunk = np.column_stack([rng.normal(0, 0.12, (n_trunk, 2)), rng.uniform(0.3, 0.4 * tree["height"], n_trunk)])
    local = np.vstack([offsets, trunk])
    xy = local[:, :2] + tree["xy"]
    xyz = np.column_stack([xy, terrain.height(tree["xy"][None])[0] + local[:, 2]])
    number = rng.choice(np.arange(1, 5, dtype=np.uint8), len(xyz), p=[0.1, 0.35, 0.35, 0.2])
    depth = np.concatenate([depth, np.ones(n_trunk)])
    first = np.minimum(1 + np.floor(depth * number), number).astype(np.uint8)
    intensity = rng.normal(11000, 4500, len(xyz)) * np.where(first > 1, 0.65, 1.0)
    return _part(xyz + rng.normal(0, 0.05, xyz.shape), HIGH_VEGETATION, intensity, (first, number))


def _ground_points(rng: np.random.Generator, size: float, terrain: _Terrain, density: float,
                   buildings: list[dict], trees: list[dict]) -> dict:
    """Terrain points off the buildings; under crowns they are the last of several returns."""
    xy = rng.uniform(0, size, (rng.poisson(density * size * size), 2))
    xy = xy[~_inside(xy, buildings)]
    z = terrain.height(xy) + rng.normal(0, 0.04, len(xy))
    under = np.zeros(len(xy), bool)
    for tree in trees:
        under |= np.hypot(*(xy - tree["xy"]).T) < tree["radius"]
    number = np.where(under, rng.integers(2, 5, len(xy)), 1).astype(np.uint8)
    patch = 3000 * np.sin(xy[:, 0] / 7.0) * np.cos(xy[:, 1] / 9.0)
    intensity = rng.normal(19000, 4000, len(xy)) + patch - np.where(under, 5000, 0)
    return _part(np.column_stack([xy, z]), GROUND, intensity, (number.copy(), number))


def _noise_points(rng: np.random.Generator, size: float, terrain: _Terrain, n_points: int) -> dict:
    """Isolated outliers: birds and multipath, tens of metres above or below the terrain."""
    n = max(5, int(0.002 * n_points))
    xy = rng.uniform(0, size, (n, 2))
    offset = np.where(rng.random(n) < 0.7, rng.uniform(30, 150, n), -rng.uniform(5, 40, n))
    xyz = np.column_stack([xy, terrain.height(xy) + offset])
    return _part(xyz, NOISE, rng.uniform(0, 8000, n), _single_returns(n))


def make_tile(rng: np.random.Generator, *, size: float = 60.0, density: float = 10.0,
              origin: tuple[float, float, float] | None = None) -> dict[str, np.ndarray]:
    """One tile of ``size`` x ``size`` metres at ``density`` ground points per m^2 (nominal).

    ``origin`` is the tile's south-west corner and base height; by default a UTM-like corner
    (x ~ 5e5, y ~ 5.4e6, z ~ 300) drawn from ``rng``. Returns the arrays of ``TILE_KEYS``,
    points in random order; a 60 m tile at the default density holds about 30-50k points.
    """
    size, density = require_positive("size", size), require_positive("density", density)
    if origin is None:
        origin = (_EAST + size * int(rng.integers(0, 500)), _NORTH + size * int(rng.integers(0, 500)),
                  float(rng.uniform(250.0, 350.0)))
    terrain = _Terrain(rng, float(origin[2]))
    coverage = _coverage(rng, size)
    buildings = _draw_buildings(rng, size)
    trees = _draw_trees(rng, size, buildings)
    parts = [_ground_points(rng, size, terrain, density, buildings, trees)]
    parts += [_building_points(rng, b, terrain, density) for b in buildings]
    parts += [_tree_points(rng, t, terrain, density) for t in trees]
    tile = {key: np.concatenate([p[key] for p in parts]) for key in TILE_KEYS}
    keep = _kept(rng, tile["xyz"][:, :2], coverage)
    keep &= (tile["xyz"][:, :2] >= 0).all(axis=1) & (tile["xyz"][:, :2] < size).all(axis=1)
    noise = _noise_points(rng, size, terrain, int(keep.sum()))
    tile = {key: np.concatenate([tile[key][keep], noise[key]]) for key in TILE_KEYS}
    order = rng.permutation(len(tile["xyz"]))
    tile = {key: value[order] for key, value in tile.items()}
    tile["xyz"] = tile["xyz"] + np.array([origin[0], origin[1], 0.0])
    tile["intensity"] = np.clip(np.round(tile["intensity"]), 0, 65535).astype(np.uint16)
    for key in ("classification", "return_number", "number_of_returns"):
        tile[key] = tile[key].astype(np.uint8)
    return tile


def make_tiles(n: int, seed: int = 0, **tile_kwargs) -> list[dict[str, np.ndarray]]:
    """``n`` tiles, tile ``i`` drawn from its own keyed stream of ``seed`` (so tile 3 is the
    same whether 4 or 40 are made)."""
    n = require_int("n", n, 1)
    seed = require_int("seed", seed, 0)
    return [make_tile(synthetic_tile_rng(seed, i), **tile_kwargs) for i in range(n)]


def write_tiles(folder: str, tiles: list[dict[str, np.ndarray]], suffix: str = ".laz") -> list[str]:
    """Write ``tiles`` as ``folder/tile_<i><suffix>`` (LAS 1.4, millimetre coordinates, the
    tiles' dimensions and ASPRS codes); returns the paths."""
    import os

    from pointseq.pointclouds import PointCloud, write_point_cloud

    os.makedirs(folder, exist_ok=True)
    paths = []
    for i, tile in enumerate(tiles):
        attributes = {key: tile[key] for key in TILE_KEYS if key not in ("xyz", "classification")}
        cloud = PointCloud(tile["xyz"], attributes, tile["classification"])
        paths.append(write_point_cloud(os.path.join(folder, f"tile_{i}{suffix}"), cloud))
    return paths
