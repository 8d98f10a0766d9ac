"""Per-point input features by name from a file's dimensions, each with a stated normalisation.

``FeatureSpec(["intensity", "red", "green", "blue"])`` gives an (N, F) float32 array. Rules:

- ``bit_depth``: an integer dimension divided by its type's maximum (LAS intensity and colour
  are 16-bit: / 65535; 8-bit PLY colour: / 255) -> [0, 1]. Default for intensity, red, green,
  blue, nir.
- ``returns``: divided by 15, the largest return number LAS 1.4 stores -> (0, 1]. Default for
  return_number, number_of_returns.
- ``none``: the raw value as float32. Default for any other dimension (extra bytes included).
- ``{"scale": s, "offset": o}``: ``value * s + o`` (e.g. a 12-bit sensor: scale 1/4095).

A spec entry is a name or ``{"name": ..., "normalisation": rule}``. Derived features are
computed from dimensions: ``return_ratio`` = return_number / number_of_returns (in (0, 1]:
first, intermediate or last return of its pulse).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from pointseq.pointclouds.reading import PointCloud, PointCloudFileError

BIT_DEPTH_DEFAULT = ("intensity", "red", "green", "blue", "nir")
RETURNS_DEFAULT = ("return_number", "number_of_returns")
MAX_RETURN = 15.0
RULES = ("bit_depth", "returns", "none")
DERIVED = {"return_ratio": ("return_number", "number_of_returns")}


def _derived(name: str, attributes: dict) -> np.ndarray:
    """The derived feature ``name`` from the dimensions it needs."""
    number, count = (np.asarray(attributes[d], dtype=np.float64) for d in DERIVED[name])
    return number / np.maximum(count, 1.0)


def _default_rule(name: str) -> str:
    if name in BIT_DEPTH_DEFAULT:
        return "bit_depth"
    return "returns" if name in RETURNS_DEFAULT else "none"


def _check_rule(name: str, rule: Any) -> Any:
    if isinstance(rule, dict):
        if set(rule) != {"scale", "offset"} or not all(
                isinstance(v, (int, float)) and not isinstance(v, bool) for v in rule.values()):
            raise ValueError(f"feature {name!r}: a normalisation dict must be {{'scale': s, 'offset': o}} "
                             f"with numbers, got {rule!r}")
        return {"scale": float(rule["scale"]), "offset": float(rule["offset"])}
    if rule not in RULES:
        raise ValueError(f"feature {name!r}: normalisation must be one of {RULES} or "
                         f"{{'scale': s, 'offset': o}}, got {rule!r}")
    return rule


def _entry(item: Any) -> tuple[str, Any]:
    if isinstance(item, str):
        return item, _default_rule(item)
    if isinstance(item, dict) and isinstance(item.get("name"), str) and set(item) <= {"name", "normalisation"}:
        return item["name"], _check_rule(item["name"], item.get("normalisation", _default_rule(item["name"])))
    raise ValueError(f"features entries must be a dimension name or {{'name': ..., 'normalisation': ...}}, "
                     f"got {item!r}")


class FeatureSpec:
    """Named features and their normalisation; ``FeatureSpec([])`` (the default) is none."""

    def __init__(self, features: list | None = None) -> None:
        if features is None:
            features = []
        if isinstance(features, str) or not isinstance(features, (list, tuple)):
            raise TypeError(f"features must be a list of dimension names, got {features!r}")
        self.entries = [_entry(item) for item in features]
        names = [n for n, _ in self.entries]
        if len(set(names)) != len(names):
            raise ValueError(f"features must name each dimension once, got {names}")

    @classmethod
    def from_spec(cls, spec: Any) -> "FeatureSpec":
        if isinstance(spec, FeatureSpec):
            return spec
        if isinstance(spec, dict):  # a stored config
            spec = spec.get("features")
        return cls(spec)

    @property
    def names(self) -> list[str]:
        return [n for n, _ in self.entries]

    def __len__(self) -> int:
        return len(self.entries)

    def get_config(self) -> dict:
        return {"features": [{"name": n, "normalisation": r} for n, r in self.entries]}

    @property
    def dimensions(self) -> list[str]:
        """The stored dimensions these features read (a derived feature's by its sources)."""
        return self.missing(())

    def missing(self, dimensions: set[str] | list[str]) -> list[str]:
        """The requested dimensions a file with ``dimensions`` lacks."""
        dimensions = set(dimensions)
        lacking = [d for n in self.names if n in DERIVED and n not in dimensions for d in DERIVED[n]]
        return [n for n in self.names if n not in dimensions and n not in DERIVED] + \
            [d for d in dict.fromkeys(lacking) if d not in dimensions]

    def check(self, cloud: PointCloud) -> None:
        """Raise `PointCloudFileError` naming the file and the dimensions it lacks."""
        lacking = self.missing(set(cloud.attributes))
        if lacking:
            raise PointCloudFileError(
                f"point-cloud file {cloud.path!r} lacks the feature dimensions {lacking}; "
                f"its dimensions are {sorted(cloud.attributes)}")

    def __call__(self, cloud: PointCloud) -> np.ndarray | None:
        """``(N, F)`` float32 features of ``cloud``, or None when no feature is requested."""
        if not self.entries:
            return None
        self.check(cloud)
        columns = [_normalise(cloud.attributes[n] if n in cloud.attributes or n not in DERIVED
                              else _derived(n, cloud.attributes), n, r, cloud.path) for n, r in self.entries]
        return np.stack(columns, axis=1).astype(np.float32)


def _normalise(values: np.ndarray, name: str, rule: Any, path: str | None) -> np.ndarray:
    values = np.asarray(values)
    if values.ndim != 1:
        raise PointCloudFileError(f"point-cloud file {path!r}: feature {name!r} must be one value per point, "
                                  f"got shape {values.shape}")
    if isinstance(rule, dict):
        return values.astype(np.float64) * rule["scale"] + rule["offset"]
    if rule == "bit_depth":
        if not np.issubdtype(values.dtype, np.integer):
            raise PointCloudFileError(f"point-cloud file {path!r}: feature {name!r} is {values.dtype}, not an "
                                      "integer type with a bit depth; give it a normalisation")
        return values.astype(np.float64) / float(np.iinfo(values.dtype).max)
    if rule == "returns":
        return values.astype(np.float64) / MAX_RETURN
    return values.astype(np.float64)
