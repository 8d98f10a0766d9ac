"""Argument checks shared by the sequencers, callbacks and models."""

from __future__ import annotations

from typing import Any

import numpy as np

from augment import Augmentor


def require_int(name: str, value: Any, minimum: int) -> int:
    """``value`` as an int >= ``minimum``; a bool, a float or a string is a TypeError."""
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, np.integer)):
        raise TypeError(f"{name} must be an int >= {minimum}, got {value!r} ({type(value).__name__})")
    if value < minimum:
        raise ValueError(f"{name} must be an int >= {minimum}, got {value!r}")
    return int(value)


def as_augmentor(value: Any) -> Augmentor | None:
    """An ``augmentor`` argument: an `augment.Augmentor`, its spec dict, or None."""
    if value is None or isinstance(value, Augmentor):
        return value
    if isinstance(value, dict):
        return Augmentor.from_spec(value)
    raise TypeError(f"augmentor must be an augment.Augmentor, its spec dict or None, got {type(value).__name__}")
