"""Validation of augmentation parameters, so bad settings fail at construction."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from numbers import Real
from typing import Any


def require_real(name: str, value: Any) -> float:
    """Return ``value`` as a finite float, or raise naming ``name``."""
    if isinstance(value, bool) or not isinstance(value, Real) or not math.isfinite(float(value)):
        raise ValueError(f"{name} must be a finite real number, got {value!r}")
    return float(value)


def require_probability(name: str, value: Any) -> float:
    """Return ``value`` as a float in [0, 1], or raise naming ``name``."""
    if isinstance(value, bool) or not isinstance(value, Real) or not 0.0 <= float(value) <= 1.0:
        raise ValueError(f"{name} must be a probability in [0, 1], got {value!r}")
    return float(value)


def require_bool(name: str, value: Any) -> bool:
    """Return ``value`` if it is a bool, or raise naming ``name``."""
    if not isinstance(value, bool):
        raise ValueError(f"{name} must be True or False, got {value!r}")
    return value


def check_spec_keys(
    spec: Mapping[str, Any],
    what: str,
    valid: Sequence[str],
    required: Sequence[str] = (),
) -> None:
    """Raise if ``spec`` has a key outside ``valid`` or lacks one of ``required``."""
    if not isinstance(spec, Mapping):
        raise ValueError(f"{what} spec must be a dict, got {type(spec).__name__}: {spec!r}")
    unknown = [key for key in spec if key not in valid]
    if unknown:
        raise ValueError(
            f"unknown key(s) {unknown} in {what} spec {dict(spec)!r}; valid keys: {list(valid)}"
        )
    missing = [key for key in required if key not in spec]
    if missing:
        raise ValueError(f"{what} spec {dict(spec)!r} is missing required key(s) {missing}")


def pick_alias(spec: Mapping[str, Any], what: str, names: Sequence[str], default: Any) -> Any:
    """The value stored under one of ``names`` (aliases of one setting), else ``default``."""
    present = [name for name in names if name in spec]
    if len(present) > 1:
        raise ValueError(f"{what} spec sets {present}, which are aliases; give only one")
    return spec[present[0]] if present else default
