"""Random isotropic or per-axis scaling."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from pointseq.arguments import check_spec_keys, pick_alias, require_bool
from pointseq.augment.distributions import Constant, Distribution, Uniform, distribution_from_spec
from pointseq.augment.transformation import LinearMaps, LinearTransformation


def _check_nonzero(factor: Distribution) -> None:
    """Refuse factor distributions that reach 0: a zero scale collapses the cloud."""
    reaches_zero = (isinstance(factor, Uniform) and factor.start <= 0.0 <= factor.end) or (
        isinstance(factor, Constant) and factor.value == 0.0
    )
    if reaches_zero:
        raise ValueError(f"Scale factor distribution must not reach 0, got {factor!r}")


def _diagonal(values: np.ndarray) -> np.ndarray:
    """``(B, 3)`` -> ``(B, 3, 3)`` diagonal matrices."""
    matrices = np.zeros(values.shape + (3,), dtype=np.float64)
    matrices[:, [0, 1, 2], [0, 1, 2]] = values
    return matrices


class Scale(LinearTransformation):
    """Multiply each sample's coordinates by a factor drawn from ``factor``.

    Isotropic: one factor per sample. ``anisotropic=True``: one factor per sample and axis
    (x, y, z), which changes shapes; normals then follow the inverse scale.
    """

    type_name = "Scale"

    def __init__(
        self,
        factor: Distribution | float | Mapping[str, Any] = Uniform(0.8, 1.25),
        anisotropic: bool = False,
        p: float = 1.0,
    ):
        super().__init__(p)
        self.factor = distribution_from_spec(factor)
        _check_nonzero(self.factor)
        self.anisotropic = require_bool("Scale anisotropic", anisotropic)

    def factors(self, rng: np.random.Generator, batch_size: int) -> np.ndarray:
        """``(B, 3)`` float64 per-axis factors; 1 for samples not drawn."""
        applied = self.draw_applied(rng, batch_size)
        if self.anisotropic:
            factors = self.factor.sample(rng, (batch_size, 3))
        else:
            factors = np.repeat(self.factor.sample(rng, (batch_size, 1)), 3, axis=1)
        if applied is not None:
            factors[~applied] = 1.0
        return factors

    def linear_maps(self, rng: np.random.Generator, batch_size: int) -> LinearMaps:
        factors = self.factors(rng, batch_size)
        points = _diagonal(factors)
        if self.anisotropic:
            return LinearMaps(points, _diagonal(1.0 / factors), vectors_orthogonal=False)
        # Normals keep their length; only a negative factor (a point reflection) flips them.
        if np.all(factors > 0):
            return LinearMaps(points, None, vectors_orthogonal=True)
        return LinearMaps(points, _diagonal(np.sign(factors)), vectors_orthogonal=True)

    def to_spec(self) -> dict[str, Any]:
        return {
            "type": self.type_name,
            "factor": self.factor.to_spec(),
            "anisotropic": self.anisotropic,
            "p": self.p,
        }

    @classmethod
    def from_spec(cls, spec: Mapping[str, Any]) -> Scale:
        """Build from ``{"type": "Scale", "factor" | "scale_distribution", "anisotropic", "p"}``."""
        check_spec_keys(
            spec, "Scale", ("type", "factor", "scale_distribution", "anisotropic", "p")
        )
        kwargs: dict[str, Any] = {key: spec[key] for key in ("anisotropic", "p") if key in spec}
        factor = pick_alias(spec, "Scale", ("factor", "scale_distribution"), None)
        if factor is not None:
            kwargs["factor"] = factor
        return cls(**kwargs)
