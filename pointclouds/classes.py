"""Map source class codes (ASPRS classification, any label dimension) to contiguous training ids.

A spec (JSON-friendly dict, all keys optional)::

    {"codes": [2, [3, 4, 5], 6],            # id 0 <- code 2, id 1 <- 3/4/5, id 2 <- 6
     "names": ["ground", "vegetation", "building"],
     "ignore": [0, 7, 18],                  # weight 0, never counted
     "unknown": "error"}                    # or "ignore": a code in neither list

Without ``codes`` the trained codes are the distinct codes found, sorted, minus ``ignore``.
Ignored points get id 0 and sample weight 0, so losses and metrics never see them.
"""

from __future__ import annotations

from typing import Any, Iterable

import numpy as np

SPEC_KEYS = ("codes", "names", "ignore", "unknown")
UNKNOWN_POLICIES = ("error", "ignore")


def _code(value: Any, where: str) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise TypeError(f"classes.{where} must hold integer codes, got {value!r}")
    return int(value)


def _code_groups(codes: Any) -> list[list[int]]:
    if not isinstance(codes, (list, tuple)) or not codes:
        raise ValueError(f"classes.codes must be a non-empty list of codes (or lists of codes), got {codes!r}")
    groups = [[_code(c, "codes") for c in g] if isinstance(g, (list, tuple)) else [_code(g, "codes")]
              for g in codes]
    flat = [c for g in groups for c in g]
    if any(not g for g in groups) or len(set(flat)) != len(flat):
        raise ValueError(f"classes.codes must name every code once, in non-empty groups, got {codes!r}")
    return groups


class ClassMap:
    """Source codes -> contiguous ids ``0..num_classes-1``; ignored codes weigh 0."""

    def __init__(self, codes: list[list[int]] | list[int], *, names: list[str] | None = None,
                 ignore: Iterable[int] = (), unknown: str = "error") -> None:
        self.groups = _code_groups(list(codes))
        self.ignore = sorted({_code(c, "ignore") for c in ignore})
        both = sorted({c for g in self.groups for c in g} & set(self.ignore))
        if both:
            raise ValueError(f"classes: codes {both} are both trained (codes) and ignored (ignore)")
        if unknown not in UNKNOWN_POLICIES:
            raise ValueError(f"classes.unknown must be one of {UNKNOWN_POLICIES}, got {unknown!r}")
        self.unknown = unknown
        if names is None:
            names = ["+".join(str(c) for c in g) for g in self.groups]
        if not isinstance(names, (list, tuple)) or len(names) != len(self.groups) \
                or not all(isinstance(n, str) for n in names):
            raise ValueError(f"classes.names must be {len(self.groups)} strings (one per class), got {names!r}")
        self.names = list(names)
        table = [(c, i) for i, g in enumerate(self.groups) for c in g] + [(c, -1) for c in self.ignore]
        self._codes = np.array([c for c, _ in table], dtype=np.int64)
        self._ids = np.array([i for _, i in table], dtype=np.int64)
        order = np.argsort(self._codes)
        self._codes, self._ids = self._codes[order], self._ids[order]

    @property
    def num_classes(self) -> int:
        return len(self.groups)

    @classmethod
    def from_spec(cls, spec: dict | "ClassMap" | None, observed_codes: Iterable[int] = ()) -> "ClassMap":
        """The map a ``classes`` spec describes; without ``codes``, the ``observed_codes`` sorted."""
        if isinstance(spec, ClassMap):
            return spec
        if spec is None:
            spec = {}
        if not isinstance(spec, dict):
            raise TypeError(f"classes must be a dict with keys {SPEC_KEYS} or None, got {spec!r}")
        unknown_keys = sorted(k for k in spec if k not in SPEC_KEYS and not str(k).startswith("_"))
        if unknown_keys:
            raise ValueError(f"classes has unknown keys {unknown_keys}; valid keys: {', '.join(SPEC_KEYS)}")
        ignore = spec.get("ignore", [])
        if not isinstance(ignore, (list, tuple)):
            raise TypeError(f"classes.ignore must be a list of codes, got {ignore!r}")
        codes = spec.get("codes")
        if codes is None:
            ignored = {_code(c, "ignore") for c in ignore}
            codes = sorted({int(c) for c in observed_codes} - ignored)
            if not codes:
                raise ValueError(f"classes: no trainable codes: found {sorted(set(map(int, observed_codes)))}, "
                                 f"ignoring {sorted(ignored)}")
        return cls(codes, names=spec.get("names"), ignore=ignore, unknown=spec.get("unknown", "error"))

    def get_config(self) -> dict:
        return {"codes": [list(g) for g in self.groups], "names": list(self.names), "ignore": list(self.ignore),
                "unknown": self.unknown}

    from_config = from_spec

    def to_ids(self, codes: np.ndarray, *, source: str = "the labels") -> tuple[np.ndarray, np.ndarray]:
        """``(ids int64, weights float32)`` of source ``codes``: weight 0 for ignored points."""
        codes = np.asarray(codes, dtype=np.int64)
        pos = np.clip(np.searchsorted(self._codes, codes), 0, len(self._codes) - 1)
        known = self._codes[pos] == codes
        if not known.all() and self.unknown == "error":
            found = sorted(set(np.unique(codes[~known]).tolist()))
            raise ValueError(
                f"{source} hold class codes {found} that the class map neither trains nor ignores "
                f"(trained {self.groups}, ignored {self.ignore}); add them to classes.codes or "
                "classes.ignore, or set classes.unknown to 'ignore'")
        ids = np.where(known, self._ids[pos], -1)
        weights = (ids >= 0).astype(np.float32)
        return np.maximum(ids, 0), weights

    def to_codes(self, ids: np.ndarray) -> np.ndarray:
        """Source codes of predicted ``ids`` (a merged group maps back to its first code)."""
        ids = np.asarray(ids, dtype=np.int64)
        if ids.size and (ids.min() < 0 or ids.max() >= self.num_classes):
            raise ValueError(f"class ids must lie in [0, {self.num_classes}), got range "
                             f"[{ids.min()}, {ids.max()}]")
        first = np.array([g[0] for g in self.groups], dtype=np.int64)
        return first[ids]

    def __repr__(self) -> str:
        return f"ClassMap({self.get_config()})"
