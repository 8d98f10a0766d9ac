"""The train spec's shape, values and paths, checked without Keras: ``pointseq train`` answers a
bad spec at once, and a rerun is compared with the spec its output folder holds.

`check_train_spec` checks what needs no model type nor file content (keys, lengths, rates,
the seed, the output folder, that the named files exist); `training.resolve_train_spec`
checks the rest and fills in the recipe.
"""

from __future__ import annotations

import json
import os
from typing import Any

SPEC_KEYS = ("sequencer", "data", "validation", "model", "epochs", "updates", "learning_rate", "seed", "output")
DEFAULT_OUTPUT = "train_output"


def check_train_spec(spec: Any) -> None:
    """TypeError/ValueError/FileNotFoundError naming the first thing wrong with ``spec``."""
    if not isinstance(spec, dict):
        raise TypeError(f"spec must be a dict, got {type(spec).__name__}")
    unknown = sorted(k for k in spec if k not in SPEC_KEYS and not str(k).startswith("_"))
    if unknown:
        raise ValueError(f"train spec has unknown keys {unknown}; valid: {', '.join(SPEC_KEYS)}")
    sequencer = spec.get("sequencer")
    if not isinstance(sequencer, dict):
        raise ValueError(f"train spec 'sequencer' must be a sequencer spec object, got {sequencer!r}")
    model = spec.get("model", {"type": "pointnet"})
    if not isinstance(model, dict):
        raise ValueError(f"model must be an object like {{'type': 'pointnet'}}, got {model!r}")
    seed = spec.get("seed", sequencer.get("seed", 0))
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise ValueError(f"seed must be an int >= 0, got {seed!r}")
    if "epochs" in spec and "updates" in spec:
        raise ValueError("give the training length as epochs or as updates, not both")
    for key, kind in (("epochs", int), ("updates", int), ("learning_rate", float)):
        if key in spec:
            positive(spec[key], key, kind)
    output = spec.get("output", DEFAULT_OUTPUT)
    if not isinstance(output, (str, os.PathLike)):
        raise ValueError(f"output must be a folder path, got {output!r}")
    if os.path.exists(output) and not os.path.isdir(output):
        raise ValueError(f"output {os.fspath(output)!r} is a file, expected a folder (or a path that does not exist yet)")
    pcloud = sequencer.get("offline_pcloud")
    if isinstance(pcloud, dict) and "paths" in pcloud:
        paths = pcloud["paths"] if isinstance(pcloud["paths"], list) else [pcloud["paths"]]
        missing = [p for p in paths if not isinstance(p, (str, os.PathLike)) or not os.path.isfile(p)]
        if missing:
            raise FileNotFoundError(f"offline_pcloud.paths: files do not exist: {missing}")
    validation_paths(spec.get("validation"), pcloud)


def positive(value: Any, key: str, kind: type) -> Any:
    """``value`` when it is a positive ``kind`` (an int counts as a float); ValueError naming ``key``."""
    if isinstance(value, bool) or not isinstance(value, (int, float) if kind is float else int) or value <= 0:
        raise ValueError(f"{key} must be a positive {kind.__name__}, got {value!r}")
    return value


def validation_paths(val: Any, pcloud: Any) -> Any:
    """``{"paths": [...]}`` of existing point-cloud files, ``(X, y)`` arrays, or None."""
    if val is None:
        return None
    if isinstance(val, dict) and "paths" in val:
        paths = val["paths"] if isinstance(val["paths"], list) else [val["paths"]]
        if set(val) != {"paths"} or not paths:
            raise ValueError(f"validation must be {{'paths': [point-cloud files]}} or (X, y), got {val!r}")
        if not isinstance(pcloud, dict):
            raise ValueError("validation paths need a sequencer with offline_pcloud files (the same fields and features)")
        missing = [p for p in paths if not isinstance(p, (str, os.PathLike)) or not os.path.isfile(p)]
        if missing:
            raise FileNotFoundError(f"validation files do not exist: {missing}")
        return {"paths": [os.fspath(p) for p in paths]}
    if isinstance(val, (tuple, list)) and len(val) == 2:
        return tuple(val)
    raise ValueError(f"validation must be {{'paths': [point-cloud files]}} or (X, y) arrays, got {val!r}")


def stored_spec(spec: dict) -> dict:
    """What a rerun must match to resume: everything but the output folder and array data."""
    return json.loads(json.dumps({k: v for k, v in spec.items() if k not in ("X", "y", "output")}, default=str))


def spec_changes(old: dict, new: dict, prefix: str = "") -> list[str]:
    """The dotted keys whose values differ between two stored specs, with both values."""
    changes = []
    for key in sorted(set(old) | set(new)):
        a, b = old.get(key), new.get(key)
        if isinstance(a, dict) and isinstance(b, dict):
            changes += spec_changes(a, b, f"{prefix}{key}.")
        elif a != b:
            changes.append(f"{prefix}{key} ({a!r} -> {b!r})")
    return changes
