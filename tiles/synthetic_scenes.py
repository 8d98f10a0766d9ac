"""Synthetic labelled scenes: a noisy ground patch with boxes, cylinders and spheres.

The embedded data of ``pointseq demo`` and the quickstart: no download, reproducible from a
seed, and hard enough that a model must look at local shape (not just height) to tell the
object classes apart.
"""

from __future__ import annotations

import numpy as np

CLASS_NAMES = ("ground", "box", "cylinder", "sphere")
GROUND, BOX, CYLINDER, SPHERE = range(4)


def _box_surface(rng: np.random.Generator, n: int, size: np.ndarray) -> np.ndarray:
    """Points on the five visible faces of an axis-aligned box standing on z=0."""
    face_area = np.array([size[0] * size[1], *(2 * [size[0] * size[2]]), *(2 * [size[1] * size[2]])])
    face = rng.choice(5, size=n, p=face_area / face_area.sum())
    uv = rng.random((n, 2))
    pts = np.empty((n, 3))
    pts[:, 0] = (uv[:, 0] - 0.5) * size[0]
    pts[:, 1] = (uv[:, 1] - 0.5) * size[1]
    pts[:, 2] = size[2]  # top face
    side_xz = (face == 1) | (face == 2)
    pts[side_xz, 1] = np.where(face[side_xz] == 1, -0.5, 0.5) * size[1]
    pts[side_xz, 2] = uv[side_xz, 1] * size[2]
    side_yz = face >= 3
    pts[side_yz, 0] = np.where(face[side_yz] == 3, -0.5, 0.5) * size[0]
    pts[side_yz, 1] = (uv[side_yz, 0] - 0.5) * size[1]
    pts[side_yz, 2] = uv[side_yz, 1] * size[2]
    return pts


def _cylinder_surface(rng: np.random.Generator, n: int, radius: float, height: float) -> np.ndarray:
    angle = rng.uniform(0, 2 * np.pi, n)
    z = rng.uniform(0, height, n)
    return np.stack([radius * np.cos(angle), radius * np.sin(angle), z], axis=1)


def _sphere_surface(rng: np.random.Generator, n: int, radius: float) -> np.ndarray:
    v = rng.normal(size=(n, 3))
    v /= np.linalg.norm(v, axis=1, keepdims=True)
    pts = v * radius
    pts[:, 2] += radius  # resting on the ground
    return pts


def make_scene(
    rng: np.random.Generator, num_points: int = 1024, *, extent: float = 4.0, noise: float = 0.01
) -> tuple[np.ndarray, np.ndarray]:
    """One scene: ``(points (num_points, 3) float32, labels (num_points,) int32)``.

    About 35% of the points fall on the ground; the rest on two to four objects of random
    class, size, position and yaw.
    """
    if num_points < 64:
        raise ValueError(f"num_points must be >= 64 for a scene, got {num_points}")
    num_objects = int(rng.integers(2, 5))
    classes = rng.integers(BOX, SPHERE + 1, size=num_objects)
    n_ground = int(0.35 * num_points)
    counts = np.full(num_objects, (num_points - n_ground) // num_objects)
    counts[: (num_points - n_ground) % num_objects] += 1
    parts = [np.column_stack([rng.uniform(-extent, extent, (n_ground, 2)), np.zeros(n_ground)])]
    labels = [np.full(n_ground, GROUND)]
    centres = rng.uniform(-0.7 * extent, 0.7 * extent, size=(num_objects, 2))
    for cls, n, centre in zip(classes, counts, centres):
        if cls == BOX:
            pts = _box_surface(rng, n, rng.uniform([0.5, 0.5, 0.4], [1.6, 1.6, 1.5]))
        elif cls == CYLINDER:
            pts = _cylinder_surface(rng, n, rng.uniform(0.2, 0.6), rng.uniform(0.8, 2.0))
        else:
            pts = _sphere_surface(rng, n, rng.uniform(0.3, 0.8))
        yaw = rng.uniform(0, 2 * np.pi)
        c, s = np.cos(yaw), np.sin(yaw)
        pts[:, :2] = pts[:, :2] @ np.array([[c, s], [-s, c]]) + centre
        parts.append(pts)
        labels.append(np.full(n, cls))
    points = np.concatenate(parts) + rng.normal(scale=noise, size=(num_points, 3))
    order = rng.permutation(num_points)
    return points[order].astype(np.float32), np.concatenate(labels)[order].astype(np.int32)


def make_scenes(num_scenes: int, num_points: int = 1024, *, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """``num_scenes`` scenes stacked: points ``(n, num_points, 3)``, labels ``(n, num_points)``."""
    if isinstance(num_scenes, bool) or not isinstance(num_scenes, (int, np.integer)) or num_scenes < 1:
        raise ValueError(f"num_scenes must be a positive int, got {num_scenes!r}")
    rng = np.random.default_rng(seed)
    scenes = [make_scene(rng, num_points) for _ in range(num_scenes)]
    return np.stack([p for p, _ in scenes]), np.stack([lab for _, lab in scenes])
