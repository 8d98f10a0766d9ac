"""JSON spec files of the ``pointseq`` commands: reading them and loading their data.

Relative paths in a spec file are relative to the file, so a spec and its data can move
together.
"""

from __future__ import annotations

import json
import os
from typing import Any

import numpy as np

from pointseq.arguments import without_comment_keys
from pointseq.cli.usage_error import UsageError


def read_spec_file(path: str, valid_keys: set[str], example: str) -> tuple[dict, str]:
    """The spec object of ``path`` and the folder its relative paths are relative to."""
    if not os.path.exists(path):
        raise UsageError(f"spec file {path!r} does not exist")
    try:
        with open(path, encoding="utf-8") as f:
            spec = json.load(f)
    except json.JSONDecodeError as exc:
        raise UsageError(f"spec file {path!r} is not valid JSON: {exc}") from None
    spec = without_comment_keys(spec)  # keys starting with "_" are commented out
    if not isinstance(spec, dict) or not isinstance(spec.get("sequencer"), dict):
        raise UsageError(f"spec file {path!r} must hold an object with a 'sequencer' object, e.g. {example}")
    unknown = set(spec) - valid_keys
    if unknown:
        raise UsageError(f"spec file {path!r} has unknown keys {sorted(unknown)}; valid: "
                         f"{', '.join(sorted(valid_keys))}")
    return spec, os.path.dirname(os.path.abspath(path))


def resolve_path(base: str, path: Any, what: str) -> str:
    if not isinstance(path, str):
        raise UsageError(f"{what} must be a file path string, got {path!r}")
    return path if os.path.isabs(path) else os.path.join(base, path)


def resolve_sequencer_paths(seq: dict, base: str) -> dict:
    """A copy of a sequencer spec with its cache and point-cloud paths made absolute."""
    seq = dict(seq)
    if "offline_storage" in seq:
        seq["offline_storage"] = resolve_path(base, seq["offline_storage"], "sequencer.offline_storage")
    pcloud = seq.get("offline_pcloud")
    if isinstance(pcloud, dict) and "paths" in pcloud:
        paths = pcloud["paths"] if isinstance(pcloud["paths"], list) else [pcloud["paths"]]
        seq["offline_pcloud"] = {**pcloud, "paths": [resolve_path(base, p, "offline_pcloud.paths") for p in paths]}
    if isinstance(seq.get("backbone"), dict):
        seq["backbone"] = resolve_sequencer_paths(seq["backbone"], base)
    return seq


def _load_array(path: str, what: str) -> np.ndarray:
    if not os.path.exists(path):
        raise UsageError(f"{what} file {path!r} does not exist")
    try:
        data = np.load(path)
    except (OSError, ValueError, EOFError) as exc:  # not an .npy/.npz file, truncated, or pickled objects
        raise UsageError(f"{what} file {path!r} cannot be read as .npy or .npz ({exc})") from None
    if isinstance(data, np.lib.npyio.NpzFile):
        with data:
            if len(data.files) != 1:
                raise UsageError(f"{what} file {path!r} must hold one array, got {data.files}")
            return data[data.files[0]]
    return data


def _load_structure(spec: Any, base: str, what: str) -> Any:
    if spec is None:
        return None
    if isinstance(spec, list):
        return tuple(_load_structure(s, base, f"{what}[{i}]") for i, s in enumerate(spec))
    if isinstance(spec, dict):
        return {k: _load_structure(s, base, f"{what}[{k!r}]") for k, s in spec.items()}
    return _load_array(resolve_path(base, spec, what), what)


def load_data(data: Any, base: str, what: str = "data") -> tuple[Any, Any]:
    """``(X, y)`` of a ``{"X": ..., "y": ...}`` object of ``.npy``/``.npz`` paths.

    ``X`` may be one path, a list (a tuple input) or a dict of paths.
    """
    data = data or {}
    if not isinstance(data, dict) or set(data) - {"X", "y"}:
        raise UsageError(f"{what} must be an object with keys X and optionally y, got {data!r}")
    return (_load_structure(data.get("X"), base, f"{what}.X"),
            _load_structure(data.get("y"), base, f"{what}.y"))
