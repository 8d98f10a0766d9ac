"""Per-point input features by name from a file's dimensions, each with a stated normalisation.

``FeatureSpec(["intensity", "red", "green", "blue"])`` gives an (N, F) float32 array. Rules:

- ``bit_depth``: an integer dimension divided by its type's maximum (LAS intensity and colour
  are 16-bit: / 65535; 8-bit PLY colour: / 255) -> [0, 1]. Default for intensity, red, green,
  blue, nir.
- ``returns``: divided by 15, the largest return number LAS 1.4 stores -> (0, 1]. Default for
  return_number, number_of_returns.
- ``none``: the raw value as float32. Default for any other dimension (extra bytes included).
- ``log1p``: ``log(1 + value)``, for values spanning decades. Default for ``density``.
- ``{"scale": s, "offset": o}``: ``value * s + o`` (e.g. a 12-bit sensor: scale 1/4095).

A spec entry is a name or ``{"name": ..., "normalisation": rule}``. Derived features are
computed from dimensions: ``return_ratio`` = return_number / number_of_returns (in (0, 1]:
first, intermediate or last return of its pulse); ``hue``, ``saturation``, ``value`` from red,
green, blue (`miners.rgb_to_hsv`). Mined features (`miners`) are computed from the coordinates
with one neighbourhood parameter: ``{"name": "planarity", "radius": 1.0}`` (or ``"k": 16``),
``{"name": "height_above_min", "cell_size": 5.0}`` (or an xy ``"radius"``), ``{"name":
"density", "radius": 2.0}``; their columns are named ``planarity_r1``, ``planarity_k16``,
``height_above_min_c5``, ``density_r2``. Eigenvalue features are in [0, 1] as they come
(omnivariance and eigenentropy scaled to it by default); heights default to a scale of 0.1.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from pointseq.arguments import require_int, require_positive
from pointseq.pointclouds import miners
from pointseq.pointclouds.reading import PointCloud, PointCloudFileError

BIT_DEPTH_DEFAULT = ("intensity", "red", "green", "blue", "nir")
RETURNS_DEFAULT = ("return_number", "number_of_returns")
MAX_RETURN = 15.0
RULES = ("bit_depth", "returns", "none", "log1p")
RGB = ("red", "green", "blue")
DERIVED = {"return_ratio": ("return_number", "number_of_returns"),
           **{name: RGB for name in miners.COLOUR_FEATURES}}
# Mined features: the neighbourhood parameters each takes (exactly one), and its column tag.
MINED = {**{name: ("radius", "k") for name in miners.EIGEN_FEATURES},
         **{name: ("cell_size", "radius") for name in miners.HEIGHT_FEATURES},
         **{name: ("radius",) for name in miners.DENSITY_FEATURES}}
PARAMETERS = {"radius": "r", "k": "k", "cell_size": "c"}
# Heights are in the tile's units: / 10 puts a 30 m (or ft) building at 3. Densities span
# decades: log(1 + d). Omnivariance and eigenentropy reach 1/3 and ln 3: scaled to [0, 1].
MINED_DEFAULT = {**{name: {"scale": 0.1, "offset": 0.0} for name in miners.HEIGHT_FEATURES},
                 "density": "log1p",
                 "omnivariance": {"scale": 3.0, "offset": 0.0},
                 "eigenentropy": {"scale": 1.0 / math.log(3.0), "offset": 0.0}}


@dataclass(frozen=True)
class FeatureEntry:
    """One requested feature: its name, normalisation rule and (mined features) its one
    neighbourhood parameter ``(key, value)``."""

    name: str
    rule: Any
    parameter: tuple[str, float | int] | None = None

    @property
    def column(self) -> str:
        """The feature's column name: the name, tagged by its parameter (``planarity_r1``)."""
        if self.parameter is None:
            return self.name
        key, value = self.parameter
        return f"{self.name}_{PARAMETERS[key]}{value:g}"

    def get_config(self) -> dict:
        config: dict[str, Any] = {"name": self.name}
        if self.parameter is not None:
            config[self.parameter[0]] = self.parameter[1]
        config["normalisation"] = self.rule
        return config


def _derived(name: str, attributes: dict, cache: dict) -> np.ndarray:
    """The derived feature ``name`` from the dimensions it needs."""
    if name in miners.COLOUR_FEATURES:
        if "hsv" not in cache:
            cache["hsv"] = miners.rgb_to_hsv(*(attributes[d] for d in RGB))
        return cache["hsv"][name]
    number, count = (np.asarray(attributes[d], dtype=np.float64) for d in DERIVED[name])
    return number / np.maximum(count, 1.0)


def _mined(entry: FeatureEntry, points: np.ndarray, cache: dict) -> np.ndarray:
    """The mined feature ``entry`` of ``points``; what several features share is computed once
    per call into ``cache`` (one neighbourhood's eigenvalues serve all its eigen features)."""
    key, value = entry.parameter
    if entry.name in miners.EIGEN_FEATURES:
        if ("eigen", key, value) not in cache:
            cache["eigen", key, value] = miners.eigen_features(*miners.neighbourhood_eigen(points, **{key: value}))
        return cache["eigen", key, value][entry.name]
    if entry.name in miners.HEIGHT_FEATURES:
        if ("z", key, value) not in cache:
            cache["z", key, value] = miners.local_z_extremes(points, **{key: value})
        low, high = cache["z", key, value]
        return points[:, 2] - low if entry.name == "height_above_min" else high - points[:, 2]
    return miners.point_density(points, value)


def _default_rule(name: str, mined: bool = False) -> Any:
    if mined:
        return MINED_DEFAULT.get(name, "none")
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


def _parameter(name: str, item: dict) -> tuple[str, float | int] | None:
    """The one neighbourhood parameter of a mined feature entry, checked; None for a dimension."""
    given = [key for key in PARAMETERS if key in item]
    if not given:
        return None
    if name not in MINED:
        raise ValueError(f"feature {name!r} takes no {given[0]!r}: only mined features take neighbourhood "
                         f"parameters, and those are {sorted(MINED)}")
    allowed = MINED[name]
    if len(given) != 1 or given[0] not in allowed:
        raise ValueError(f"feature {name!r} takes exactly one of {list(allowed)}, got "
                         f"{ {key: item[key] for key in given} }")
    key = given[0]
    label = f"feature {name!r} {key}"
    return key, (require_int(label, item[key], 3) if key == "k" else require_positive(label, item[key]))


def _entry(item: Any) -> FeatureEntry:
    if isinstance(item, str):
        return FeatureEntry(item, _default_rule(item))
    keys = {"name", "normalisation", *PARAMETERS}
    if isinstance(item, dict) and isinstance(item.get("name"), str):
        unknown = sorted(set(item) - keys, key=str)
        if unknown:
            raise ValueError(f"feature {item['name']!r} has unknown keys {unknown}; valid keys: {sorted(keys)}")
        parameter = _parameter(item["name"], item)
        rule = item.get("normalisation", _default_rule(item["name"], parameter is not None))
        return FeatureEntry(item["name"], _check_rule(item["name"], rule), parameter)
    raise ValueError(f"features entries must be a dimension name, {{'name': ..., 'normalisation': ...}} or a mined "
                     f"feature such as {{'name': 'planarity', 'radius': 1.0}}, got {item!r}")


class FeatureSpec:
    """Named features and their normalisation; ``FeatureSpec([])`` (the default) is none.

    Entries are dimension names, derived features (``return_ratio``, ``hue``, ``saturation``,
    ``value``) or mined features with one neighbourhood parameter (`miners`): their column
    names (`names`) carry the parameter, e.g. ``planarity_r1``, ``height_above_min_c5``.
    """

    def __init__(self, features: list | None = None) -> None:
        if features is None:
            features = []
        if isinstance(features, str) or not isinstance(features, (list, tuple)):
            raise TypeError(f"features must be a list of dimension names, got {features!r}")
        self.entries = [_entry(item) for item in features]
        names = self.names
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
        """The column names, in order."""
        return [e.column for e in self.entries]

    def __len__(self) -> int:
        return len(self.entries)

    def get_config(self) -> dict:
        return {"features": [e.get_config() for e in self.entries]}

    @property
    def dimensions(self) -> list[str]:
        """The stored dimensions these features read (a derived feature's by its sources; a mined
        one reads only the coordinates, which every reader loads)."""
        return self.missing(())

    def missing(self, dimensions: set[str] | list[str]) -> list[str]:
        """The requested dimensions a file with ``dimensions`` lacks."""
        dimensions = set(dimensions)
        stored = [e.name for e in self.entries if e.parameter is None]
        lacking = [d for n in stored if n in DERIVED and n not in dimensions for d in DERIVED[n]]
        return [n for n in stored if n not in dimensions and n not in DERIVED] + \
            [d for d in dict.fromkeys(lacking) if d not in dimensions]

    def check(self, cloud: PointCloud) -> None:
        """Raise `PointCloudFileError` naming the file and the dimensions it lacks."""
        lacking = self.missing(set(cloud.attributes))
        if lacking:
            raise PointCloudFileError(
                f"point-cloud file {cloud.path!r} lacks the feature dimensions {lacking}; "
                f"its dimensions are {sorted(cloud.attributes)}")

    def __call__(self, cloud: PointCloud) -> np.ndarray | None:
        """``(N, F)`` float32 features of ``cloud``, or None when no feature is requested.

        Mined features are computed here, from the whole of ``cloud``, each neighbourhood once.
        """
        if not self.entries:
            return None
        self.check(cloud)
        cache: dict = {}
        columns = [_normalise(self._values(e, cloud, cache), e.column, e.rule, cloud.path) for e in self.entries]
        return np.stack(columns, axis=1).astype(np.float32)

    @staticmethod
    def _values(entry: FeatureEntry, cloud: PointCloud, cache: dict) -> np.ndarray:
        if entry.parameter is not None:
            return _mined(entry, cloud.points, cache)
        if entry.name in cloud.attributes or entry.name not in DERIVED:
            return cloud.attributes[entry.name]
        return _derived(entry.name, cloud.attributes, cache)


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
    if rule == "log1p":
        return np.log1p(values.astype(np.float64))
    return values.astype(np.float64)
