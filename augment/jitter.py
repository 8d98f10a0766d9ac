"""Random per-point, per-coordinate noise."""

from __future__ import annotations

import math
from collections.abc import Mapping
from numbers import Real
from typing import Any

import numpy as np

from pointseq.arguments import check_spec_keys, pick_alias
from pointseq.augment.gaussian import thread_scratch
from pointseq.augment.distributions import Distribution, Normal, distribution_from_spec
from pointseq.augment.transformation import PointwiseTransformation


_BLOCK = 1 << 16  # values drawn per step; part of the stream's definition, keep it fixed


def _check_clip(clip: Any) -> float | None:
    if clip is None:
        return None
    if isinstance(clip, bool) or not isinstance(clip, Real) or not float(clip) > 0.0:
        raise ValueError(f"Jitter clip must be a number > 0 or None (no clipping), got {clip!r}")
    return None if math.isinf(clip) else float(clip)


class Jitter(PointwiseTransformation):
    """Add noise drawn from ``noise`` to every coordinate of every point.

    Each noise value is clipped to ``[-clip, clip]`` (``clip=None``: no clipping), so a
    heavy tail cannot move a point far from its neighbours.
    """

    type_name = "Jitter"

    def __init__(
        self,
        noise: Distribution | float | Mapping[str, Any] = Normal(0.0, 0.01),
        clip: float | None = 0.05,
        p: float = 1.0,
    ):
        super().__init__(p)
        self.noise = distribution_from_spec(noise)
        self.clip = _check_clip(clip)

    def add_offsets(
        self, rng: np.random.Generator, values: np.ndarray, applied: np.ndarray | None
    ) -> None:
        """Add clipped noise in place to ``values``; rows where ``applied`` is False keep theirs."""
        kept = None
        if applied is not None:
            skipped = ~applied
            kept = values[skipped]
        if not values.flags.c_contiguous:
            raise ValueError("Jitter.add_offsets needs a C-contiguous array to write into")
        flat = values.reshape(-1)
        # Blocks that stay in cache, drawn into this thread's reused scratch: a fresh noise
        # array per block would be a fresh mapping whose pages fault in on every call.
        scratch = thread_scratch("jitter noise", _BLOCK, values.dtype)
        clip = self.clip
        if clip is not None and self.noise.largest_magnitude(values.dtype) <= clip:
            clip = None  # no draw can exceed it: skip a pass
        for start in range(0, flat.size, _BLOCK):
            block = flat[start : start + _BLOCK]
            noise = scratch[: block.size]
            self.noise.sample_into(rng, noise)
            if clip is not None:
                np.clip(noise, -clip, clip, out=noise)
            block += noise
        if kept is not None:
            values[skipped] = kept

    def to_spec(self) -> dict[str, Any]:
        return {
            "type": self.type_name,
            "noise": self.noise.to_spec(),
            "clip": self.clip,
            "p": self.p,
        }

    @classmethod
    def from_spec(cls, spec: Mapping[str, Any]) -> Jitter:
        """Build from ``{"type": "Jitter", "noise" | "noise_distribution", "clip", "p"}``."""
        check_spec_keys(spec, "Jitter", ("type", "noise", "noise_distribution", "clip", "p"))
        kwargs: dict[str, Any] = {key: spec[key] for key in ("clip", "p") if key in spec}
        noise = pick_alias(spec, "Jitter", ("noise", "noise_distribution"), None)
        if noise is not None:
            kwargs["noise"] = noise
        return cls(**kwargs)
