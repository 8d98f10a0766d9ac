"""Random distributions of augmentation parameters (angles, scale factors, noise)."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping
from numbers import Real
from typing import Any

import numpy as np

from pointseq.arguments import check_spec_keys, require_real
from pointseq.augment.gaussian import fill_normal_float32, normal_float32, quantile_table

Size = int | tuple[int, ...]


class Distribution(ABC):
    """A distribution of real values, sampled from a caller-provided generator."""

    @abstractmethod
    def sample(self, rng: np.random.Generator, size: Size, dtype: Any = np.float64) -> np.ndarray:
        """An array of shape ``size`` and type ``dtype`` (float32 or float64) of draws."""

    def sample_into(self, rng: np.random.Generator, out: np.ndarray) -> None:
        """Overwrite ``out`` (float32 or float64) with draws; the same values as `sample`."""
        out[...] = self.sample(rng, out.shape, dtype=out.dtype)

    def largest_magnitude(self, dtype: Any = np.float64) -> float:
        """The largest ``abs`` a draw of ``dtype`` can have (``inf`` when unbounded)."""
        return float("inf")

    @abstractmethod
    def to_spec(self) -> dict[str, Any]:
        """A JSON-able dict that `distribution_from_spec` turns back into this distribution."""

    def __eq__(self, other: object) -> bool:
        return type(other) is type(self) and other.to_spec() == self.to_spec()

    def __hash__(self) -> int:
        return hash(tuple(sorted(self.to_spec().items())))

    def __repr__(self) -> str:
        spec = self.to_spec()
        args = ", ".join(f"{k}={v!r}" for k, v in spec.items() if k != "type")
        return f"{type(self).__name__}({args})"


def _float_dtype(dtype: Any) -> np.dtype:
    dtype = np.dtype(dtype)
    if dtype not in (np.float32, np.float64):
        raise ValueError(f"dtype must be float32 or float64, got {dtype}")
    return dtype


class Uniform(Distribution):
    """Uniform on ``[start, end)``."""

    def __init__(self, start: float, end: float):
        self.start = require_real("Uniform start", start)
        self.end = require_real("Uniform end", end)
        if self.start > self.end:
            raise ValueError(f"Uniform start must be <= end, got start={start!r} > end={end!r}")

    def sample(self, rng: np.random.Generator, size: Size, dtype: Any = np.float64) -> np.ndarray:
        dtype = _float_dtype(dtype)
        values = rng.random(size, dtype=dtype)
        values *= dtype.type(self.end - self.start)
        values += dtype.type(self.start)
        return values

    def largest_magnitude(self, dtype: Any = np.float64) -> float:
        return max(abs(self.start), abs(self.end))

    def to_spec(self) -> dict[str, Any]:
        return {"type": "uniform", "start": self.start, "end": self.end}


class Normal(Distribution):
    """Gaussian with mean ``mean`` and standard deviation ``stdev``."""

    def __init__(self, mean: float, stdev: float):
        self.mean = require_real("Normal mean", mean)
        self.stdev = require_real("Normal stdev", stdev)
        if self.stdev < 0:
            raise ValueError(f"Normal stdev must be >= 0, got {stdev!r}")

    def sample(self, rng: np.random.Generator, size: Size, dtype: Any = np.float64) -> np.ndarray:
        dtype = _float_dtype(dtype)
        if dtype == np.float32:
            values = normal_float32(rng, size, self.stdev)
        else:
            values = rng.standard_normal(size)
            values *= self.stdev
        if self.mean != 0.0:
            values += dtype.type(self.mean)
        return values

    def sample_into(self, rng: np.random.Generator, out: np.ndarray) -> None:
        if out.dtype != np.float32 or not out.flags.c_contiguous:
            super().sample_into(rng, out)
            return
        fill_normal_float32(rng, out, self.stdev)
        if self.mean != 0.0:
            out += np.float32(self.mean)

    def largest_magnitude(self, dtype: Any = np.float64) -> float:
        if _float_dtype(dtype) != np.float32:
            return float("inf")
        return abs(self.mean) + float(quantile_table(self.stdev)[-1])  # the table ascends, symmetric about 0

    def to_spec(self) -> dict[str, Any]:
        return {"type": "normal", "mean": self.mean, "stdev": self.stdev}


class Constant(Distribution):
    """Always ``value``."""

    def __init__(self, value: float):
        self.value = require_real("Constant value", value)

    def sample(self, rng: np.random.Generator, size: Size, dtype: Any = np.float64) -> np.ndarray:
        return np.full(size, self.value, dtype=_float_dtype(dtype))

    def largest_magnitude(self, dtype: Any = np.float64) -> float:
        return abs(self.value)

    def to_spec(self) -> dict[str, Any]:
        return {"type": "constant", "value": self.value}


_KEYS = {
    "uniform": (Uniform, ("start", "end")),
    "normal": (Normal, ("mean", "stdev")),
    "gaussian": (Normal, ("mean", "stdev")),
    "constant": (Constant, ("value",)),
}


def distribution_from_spec(spec: Distribution | float | Mapping[str, Any]) -> Distribution:
    """Build a distribution from itself, a number (a `Constant`) or a spec dict.

    Spec dicts: ``{"type": "uniform", "start": a, "end": b}``,
    ``{"type": "normal" | "gaussian", "mean": m, "stdev": s}``,
    ``{"type": "constant", "value": v}``; the type is case-insensitive.
    """
    if isinstance(spec, Distribution):
        return spec
    if isinstance(spec, Real) and not isinstance(spec, bool):
        return Constant(spec)
    if not isinstance(spec, Mapping):
        raise TypeError(
            "distribution spec must be a Distribution, a number or a dict with a 'type', "
            f"got {type(spec).__name__}: {spec!r}"
        )
    kind = spec.get("type")
    if not isinstance(kind, str) or kind.lower() not in _KEYS:
        raise ValueError(
            f"distribution spec {dict(spec)!r} has unknown type {kind!r}; "
            f"known types: {sorted(_KEYS)}"
        )
    cls, params = _KEYS[kind.lower()]
    check_spec_keys(spec, f"{kind!r} distribution", ("type", *params), required=params)
    return cls(*(spec[name] for name in params))
