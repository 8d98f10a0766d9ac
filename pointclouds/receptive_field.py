"""Cut point clouds into fixed-size receptive fields around keyed random centres."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.spatial import cKDTree

from pointseq.pointclouds.reading import PointCloud


@dataclass(frozen=True)
class Fields:
    """Receptive fields of a cloud.

    ``points`` (M, P, 3) float32, relative to ``centres`` (M, 3) float64 when centred;
    ``indices`` (M, P) int64 source-point rows, to gather any per-point array with;
    ``features`` (M, P, F) and ``labels`` (M, P) gathered from what the caller gave, or None.
    """

    points: np.ndarray
    features: np.ndarray | None
    labels: np.ndarray | None
    indices: np.ndarray | None = None
    centres: np.ndarray | None = None


class ReceptiveFieldSampler:
    """Blocks of ``num_points`` points around random centres of a cloud.

    Each field holds the ``num_points`` nearest neighbours of its centre; with ``radius``
    only neighbours within that distance count and a sparse neighbourhood is filled by
    repeating its points. Centres are points of the cloud drawn with the generator the
    caller passes in (keyed by ``seed`` and the cloud's index), so fields are reproducible.
    ``fields_per_cloud`` defaults to ``ceil(N / num_points)``. With ``center`` the block
    coordinates are relative to the centre, computed in float64 and only then cast to
    float32: absolute coordinates of georeferenced tiles (1e5-1e7) do not fit float32.
    """

    def __init__(self, num_points: int, *, radius: float | None = None, fields_per_cloud: int | None = None,
                 center: bool = True, seed: int = 0) -> None:
        if isinstance(num_points, bool) or not isinstance(num_points, int) or num_points < 1:
            raise ValueError(f"num_points must be a positive int, got {num_points!r}")
        if radius is not None and not radius > 0:
            raise ValueError(f"radius must be a positive number or None, got {radius!r}")
        if fields_per_cloud is not None and (not isinstance(fields_per_cloud, int) or fields_per_cloud < 1):
            raise ValueError(f"fields_per_cloud must be a positive int or None, got {fields_per_cloud!r}")
        self.num_points = num_points
        self.radius = None if radius is None else float(radius)
        self.fields_per_cloud = fields_per_cloud
        self.center = bool(center)
        self.seed = int(seed)

    def get_config(self) -> dict:
        return {"type": "ReceptiveFieldSampler", "num_points": self.num_points, "radius": self.radius,
                "fields_per_cloud": self.fields_per_cloud, "center": self.center, "seed": self.seed}

    @classmethod
    def from_spec(cls, spec: dict) -> "ReceptiveFieldSampler":
        spec = dict(spec)
        kind = spec.pop("type", "ReceptiveFieldSampler")
        if str(kind).lower() != "receptivefieldsampler":
            raise ValueError(f"sampler type must be 'ReceptiveFieldSampler', got {kind!r}")
        return cls(**spec)

    def num_fields(self, num_points_in_cloud: int) -> int:
        """How many fields a cloud of that many points gives."""
        return self.fields_per_cloud or -(-int(num_points_in_cloud) // self.num_points)

    def __call__(self, cloud: PointCloud | np.ndarray, rng: np.random.Generator, *,
                 features: np.ndarray | None = None) -> Fields:
        """Fields of one cloud (a `PointCloud`, labels from it, or (N, 3) points)."""
        labels = cloud.labels if isinstance(cloud, PointCloud) else None
        points = np.asarray(cloud.points if isinstance(cloud, PointCloud) else cloud, dtype=np.float64)
        n = points.shape[0]
        if n == 0:
            raise ValueError("the cloud has no points")
        m = self.num_fields(n)
        centres = points[rng.integers(0, n, size=m)]
        k = min(self.num_points, n)
        bound = np.inf if self.radius is None else self.radius
        dist, idx = cKDTree(points).query(centres, k=k, distance_upper_bound=bound)
        dist, idx = dist.reshape(m, k), idx.reshape(m, k)
        valid = np.isfinite(dist)  # the centre itself is always valid (distance 0)
        counts = valid.sum(axis=1)
        # positions [0, num_points) map onto the valid neighbours; missing slots repeat them
        picks = np.broadcast_to(np.arange(self.num_points), (m, self.num_points)).copy()
        short = picks >= counts[:, None]
        picks[short] = (rng.random(int(short.sum())) * np.repeat(counts, short.sum(axis=1))).astype(np.int64)
        rows = np.take_along_axis(idx, picks, axis=1).astype(np.int64)
        field_points = points[rows]
        if self.center:
            field_points -= centres[:, None, :]  # float64, before the cast
        return Fields(field_points.astype(np.float32), None if features is None else features[rows],
                      None if labels is None else labels[rows], rows, centres)
