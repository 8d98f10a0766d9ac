"""The base of augmentation transformations: a probability of being applied per sample."""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Any, NamedTuple

import numpy as np

from pointseq.arguments import require_probability


class Transformation(ABC):
    """A random transformation applied to each sample of a batch with probability ``p``."""

    #: The ``"type"`` of its spec dict.
    type_name: str = ""

    def __init__(self, p: float = 1.0):
        self.p = require_probability(f"{type(self).__name__} p", p)

    def draw_applied(self, rng: np.random.Generator, batch_size: int) -> np.ndarray | None:
        """Which samples get the transformation: a bool mask, or None for all of them.

        The coin is only thrown when 0 < p < 1, so p=1 draws nothing extra from ``rng``.
        """
        if self.p >= 1.0:
            return None
        return rng.random(batch_size) < self.p

    @property
    def is_identity(self) -> bool:
        """True when the transformation never changes anything (p=0)."""
        return self.p == 0.0

    @abstractmethod
    def to_spec(self) -> dict[str, Any]:
        """A JSON-able dict that ``Augmentor.from_spec`` turns back into this transformation."""

    def __eq__(self, other: object) -> bool:
        return type(other) is type(self) and other.to_spec() == self.to_spec()

    def __hash__(self) -> int:
        return hash(repr(self.to_spec()))

    def __repr__(self) -> str:
        keys = [key for key in self.to_spec() if key != "type"]
        args = ", ".join(f"{key}={getattr(self, key)!r}" for key in keys)
        return f"{type(self).__name__}({args})"


class LinearMaps(NamedTuple):
    """Per-sample linear maps of one transformation.

    ``points``: ``(B, 3, 3)``, a point moves to ``points[b] @ x``. ``vectors``: ``(B, 3, 3)``
    or None for the identity, the map of normals (the inverse transpose of ``points`` up to
    a positive factor per sample). ``vectors_orthogonal``: whether ``vectors`` keeps lengths,
    so no renormalisation is needed.
    """

    points: np.ndarray
    vectors: np.ndarray | None
    vectors_orthogonal: bool


class LinearTransformation(Transformation):
    """A transformation that is one linear map per sample, so consecutive ones compose."""

    @abstractmethod
    def linear_maps(self, rng: np.random.Generator, batch_size: int) -> LinearMaps:
        """Draw this batch's maps; samples not drawn (see ``p``) get the identity."""


class PointwiseTransformation(Transformation):
    """A transformation that adds an independent random offset to every coordinate."""

    @abstractmethod
    def add_offsets(
        self, rng: np.random.Generator, values: np.ndarray, applied: np.ndarray | None
    ) -> None:
        """Add offsets in place to ``values`` (batch first, float32 or float64, contiguous),
        leaving the samples where ``applied`` is False unchanged."""
