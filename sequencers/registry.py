"""The kwargs-dict registry: build any sequencer from a JSON-able spec."""

from __future__ import annotations

import json
import os
from importlib import metadata
from typing import Any, Callable

from pointseq.arguments import without_comment_keys

_REGISTRY: dict[str, type] = {}
_NAMES: set[str] = set()

# Packages that import this one (imports run one way) declare their types as entry points
# of this group; a type is loaded the first time a spec names it.
ENTRY_POINT_GROUP = "pointseq.sequencers"


def _entry_points() -> dict[str, metadata.EntryPoint]:
    return {ep.name: ep for ep in metadata.entry_points(group=ENTRY_POINT_GROUP)}


def register_sequencer(name: str, *aliases: str) -> Callable[[type], type]:
    """Class decorator: make ``spec["type"] == name`` (or an alias) build this class."""

    def decorator(cls: type) -> type:
        for key in (name, *aliases):
            _REGISTRY[key.lower()] = cls
            _NAMES.add(key)
        return cls

    return decorator


def known_types() -> list[str]:
    """Every type name a spec may use (matched case-insensitively)."""
    return sorted(_NAMES | set(_entry_points()))


def get_sequencer_class(type_name: str) -> type:
    key = str(type_name).lower()
    if key not in _REGISTRY:
        for name, entry_point in _entry_points().items():
            if name.lower() == key:
                cls = entry_point.load()  # importing its module registers it under every alias
                _REGISTRY.setdefault(key, cls)
    if key not in _REGISTRY:
        raise ValueError(
            f"unknown sequencer type {type_name!r}; known types (case-insensitive): "
            f"{', '.join(known_types())}"
        )
    return _REGISTRY[key]


def load_spec(spec: dict | str | os.PathLike) -> dict:
    """A spec dict, or the path of a JSON file holding one."""
    if isinstance(spec, dict):
        return dict(spec)
    with open(spec, encoding="utf-8") as f:
        loaded = json.load(f)
    if not isinstance(loaded, dict):
        raise ValueError(f"spec file {spec} must hold a JSON object, got {type(loaded).__name__}")
    return loaded


def build_sequencer(spec: dict | str | os.PathLike, X: Any = None, y: Any = None):
    """Build the sequencer ``spec["type"]`` names, with the spec's other keys as kwargs.

    Nested specs (a ``backbone`` dict with its own ``type``) are built recursively and get
    X and y; ``augmentor`` dicts are turned into `augment.Augmentor` by the sequencer itself.
    Keys starting with ``_`` (commented out) are ignored at every level of the spec.
    """
    spec = without_comment_keys(load_spec(spec))
    if "type" not in spec:
        raise ValueError(
            f"spec must have a 'type' key naming the sequencer; known types: "
            f"{', '.join(known_types())}; got keys {sorted(spec)}"
        )
    kwargs = {k: v for k, v in spec.items() if k != "type"}
    cls = get_sequencer_class(spec["type"])
    backbone = kwargs.get("backbone")
    if isinstance(backbone, dict) and "type" in backbone:
        kwargs["backbone"] = build_sequencer(backbone, X, y)
        return cls(**kwargs)
    if X is not None:
        kwargs["X"] = X
    if y is not None:
        kwargs["y"] = y
    return cls(**kwargs)
