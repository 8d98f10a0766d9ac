"""Argument checks shared by every package: one rule for every public entry point.

A value of the wrong type raises `TypeError`, a value of the right type outside what is
accepted raises `ValueError`; both name the argument, the value and what was expected.
The module imports nothing else of pointseq, so the leaf packages may use it too.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from numbers import Real
from typing import Any

import numpy as np


def _type_error(name: str, value: Any, expected: str, hint: str = "") -> TypeError:
    return TypeError(f"{name} must be {expected}, got {value!r} ({type(value).__name__}){hint}")


def _is_real(value: Any) -> bool:
    return not isinstance(value, (bool, np.bool_)) and isinstance(value, (Real, np.floating, np.integer))


def require_int(name: str, value: Any, minimum: int) -> int:
    """``value`` as an int >= ``minimum``."""
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, np.integer)):
        raise _type_error(name, value, f"an int >= {minimum}")
    if value < minimum:
        raise ValueError(f"{name} must be an int >= {minimum}, got {value!r}")
    return int(value)


def require_real(name: str, value: Any) -> float:
    """``value`` as a finite float."""
    if not _is_real(value):
        raise _type_error(name, value, "a finite real number")
    if not math.isfinite(float(value)):
        raise ValueError(f"{name} must be a finite real number, got {value!r}")
    return float(value)


def require_positive(name: str, value: Any) -> float:
    """``value`` as a finite float > 0."""
    if not _is_real(value):
        raise _type_error(name, value, "a positive finite number")
    if not (math.isfinite(float(value)) and value > 0):
        raise ValueError(f"{name} must be a positive finite number, got {value!r}")
    return float(value)


def require_probability(name: str, value: Any) -> float:
    """``value`` as a float in [0, 1]."""
    if not _is_real(value):
        raise _type_error(name, value, "a probability in [0, 1]")
    number = float(value)
    if not 0.0 <= number <= 1.0:
        raise ValueError(f"{name} must be a probability in [0, 1], got {value!r}")
    return number


def require_bool(name: str, value: Any) -> bool:
    """``value`` if it is a bool; the string ``"false"`` is refused, not read as True."""
    if isinstance(value, np.bool_):
        return bool(value)
    if not isinstance(value, bool):
        hint = "; in a JSON spec write true or false without quotes" if isinstance(value, str) else ""
        raise _type_error(name, value, "True or False", hint)
    return value


def is_comment_key(key: Any) -> bool:
    """True for a spec key that starts with ``_``: JSON has no comments, so configurations
    switch a key off by prefixing an underscore; such keys are ignored at every spec level."""
    return isinstance(key, str) and key.startswith("_")


def without_comment_keys(spec: Any) -> Any:
    """``spec`` without its comment keys (see `is_comment_key`), in nested dicts and lists too."""
    if isinstance(spec, Mapping):
        return {key: without_comment_keys(value) for key, value in spec.items() if not is_comment_key(key)}
    if isinstance(spec, list):
        return [without_comment_keys(value) for value in spec]
    return spec


def check_spec_keys(
    spec: Mapping[str, Any],
    what: str,
    valid: Sequence[str],
    required: Sequence[str] = (),
) -> None:
    """Raise if ``spec`` is not a dict, has a key outside ``valid`` or lacks one of ``required``.

    Comment keys (starting with ``_``) are ignored.
    """
    if not isinstance(spec, Mapping):
        raise _type_error(f"{what} spec", spec, "a dict")
    unknown = [key for key in spec if key not in valid and not is_comment_key(key)]
    if unknown:
        raise TypeError(
            f"unknown key(s) {unknown} in {what} spec {dict(spec)!r}; valid keys: {list(valid)} "
            "(a key starting with '_' is ignored)"
        )
    missing = [key for key in required if key not in spec]
    if missing:
        raise TypeError(f"{what} spec {dict(spec)!r} is missing required key(s) {missing}")


def pick_alias(spec: Mapping[str, Any], what: str, names: Sequence[str], default: Any) -> Any:
    """The value stored under one of ``names`` (aliases of one setting), else ``default``."""
    present = [name for name in names if name in spec]
    if len(present) > 1:
        raise TypeError(f"{what} spec sets {present}, which are aliases; give only one")
    return spec[present[0]] if present else default
