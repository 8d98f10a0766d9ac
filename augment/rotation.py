"""Random rotations about a fixed or a random axis, as batched rotation matrices."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from pointseq.arguments import check_spec_keys, pick_alias, require_real
from pointseq.augment.distributions import Distribution, Uniform, distribution_from_spec
from pointseq.augment.transformation import LinearMaps, LinearTransformation

RANDOM_AXIS = "random"


def rotation_matrices(axes: np.ndarray, angles: np.ndarray) -> np.ndarray:
    """Rodrigues' formula over a batch: ``(B, 3)`` unit axes and ``(B,)`` angles -> ``(B, 3, 3)``.

    ``R = cos(t) I + sin(t) [k]x + (1 - cos(t)) k k^T`` rotates counter-clockwise (right-hand
    rule) by ``t`` about ``k``; a point is rotated as ``R @ x``.
    """
    axes = np.asarray(axes, dtype=np.float64)
    angles = np.asarray(angles, dtype=np.float64)
    cos, sin = np.cos(angles), np.sin(angles)
    matrices = (1.0 - cos)[:, None, None] * (axes[:, :, None] * axes[:, None, :])
    matrices[:, [0, 1, 2], [0, 1, 2]] += cos[:, None]
    kx, ky, kz = (sin * axes[:, i] for i in range(3))
    matrices[:, 0, 1] -= kz
    matrices[:, 0, 2] += ky
    matrices[:, 1, 0] += kz
    matrices[:, 1, 2] -= kx
    matrices[:, 2, 0] -= ky
    matrices[:, 2, 1] += kx
    return matrices


def random_unit_axes(rng: np.random.Generator, count: int) -> np.ndarray:
    """``(count, 3)`` axes uniform on the unit sphere (uniform height and azimuth)."""
    draws = rng.random((count, 2))
    height = 2.0 * draws[:, 0] - 1.0
    azimuth = 2.0 * math.pi * draws[:, 1]
    ring = np.sqrt(np.maximum(0.0, 1.0 - height * height))
    return np.stack([ring * np.cos(azimuth), ring * np.sin(azimuth), height], axis=1)


def _unit_axis(axis: Any) -> tuple[float, float, float]:
    if isinstance(axis, str) or not isinstance(axis, (Sequence, np.ndarray)) or len(axis) != 3:
        raise ValueError(
            f"Rotation axis must be 3 numbers or {RANDOM_AXIS!r}, got {axis!r}"
        )
    values = [require_real("Rotation axis component", value) for value in axis]
    norm = math.sqrt(sum(v * v for v in values))
    if norm == 0.0:
        raise ValueError(f"Rotation axis must be non-zero, got {list(axis)!r}")
    if abs(norm - 1.0) < 1e-12:
        norm = 1.0  # already unit: keep it bit for bit, so specs round-trip exactly
    return tuple(v / norm for v in values)  # type: ignore[return-value]


class Rotation(LinearTransformation):
    """Rotate each sample by an angle drawn from ``angle`` (radians) about ``axis``.

    ``axis`` is a 3-vector (normalised here) or ``"random"``: an axis uniform on the
    sphere, drawn per sample.
    """

    type_name = "Rotation"

    def __init__(
        self,
        axis: Sequence[float] | str = (0.0, 0.0, 1.0),
        angle: Distribution | float | Mapping[str, Any] = Uniform(-math.pi, math.pi),
        p: float = 1.0,
    ):
        super().__init__(p)
        if isinstance(axis, str) and axis.lower() == RANDOM_AXIS:
            self.axis: tuple[float, float, float] | str = RANDOM_AXIS
        else:
            self.axis = _unit_axis(axis)
        self.angle = distribution_from_spec(angle)

    def matrices(self, rng: np.random.Generator, batch_size: int) -> np.ndarray:
        """``(B, 3, 3)`` float64 rotation matrices; the identity for samples not drawn."""
        applied = self.draw_applied(rng, batch_size)
        if self.axis == RANDOM_AXIS:
            axes = random_unit_axes(rng, batch_size)
        else:
            axes = np.broadcast_to(np.asarray(self.axis), (batch_size, 3))
        angles = self.angle.sample(rng, batch_size)
        if applied is not None:
            angles[~applied] = 0.0
        return rotation_matrices(axes, angles)

    def linear_maps(self, rng: np.random.Generator, batch_size: int) -> LinearMaps:
        matrices = self.matrices(rng, batch_size)
        return LinearMaps(points=matrices, vectors=matrices, vectors_orthogonal=True)

    def to_spec(self) -> dict[str, Any]:
        axis = self.axis if isinstance(self.axis, str) else list(self.axis)
        return {"type": self.type_name, "axis": axis, "angle": self.angle.to_spec(), "p": self.p}

    @classmethod
    def from_spec(cls, spec: Mapping[str, Any]) -> Rotation:
        """Build from ``{"type": "Rotation", "axis", "angle" | "angle_distribution", "p"}``."""
        check_spec_keys(spec, "Rotation", ("type", "axis", "angle", "angle_distribution", "p"))
        kwargs: dict[str, Any] = {
            key: spec[key] for key in ("axis", "p") if key in spec
        }
        angle = pick_alias(spec, "Rotation", ("angle", "angle_distribution"), None)
        if angle is not None:
            kwargs["angle"] = angle
        return cls(**kwargs)
