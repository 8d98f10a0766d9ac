"""``pointseq train SPEC.json``: `pointseq.tiles.train` on a JSON train spec (see its docstring).

Relative paths in the spec are relative to the spec file; ``data`` (``{"X": "x.npy", "y":
"y.npy"}``) and array ``validation`` load ``.npy``/``.npz`` files for a plain sequencer spec.
Ctrl-C stops training with one line saying what was saved and how to resume (exit 130).
"""

from __future__ import annotations

import argparse
import os

from pointseq.cli.spec_file import load_data, read_spec_file, resolve_path, resolve_sequencer_paths
from pointseq.cli.usage_error import UsageError

EXAMPLE = "{'sequencer': {'offline_pcloud': {'paths': ['tile1.laz']}}, 'model': {'type': 'pointnet'}}"


def load_train_spec(path: str) -> tuple[dict, object, object]:
    """The spec with its paths resolved against the spec file's folder, and its arrays loaded."""
    from pointseq.tiles.training import SPEC_KEYS

    spec, base = read_spec_file(path, set(SPEC_KEYS), EXAMPLE)
    spec = {**spec, "sequencer": resolve_sequencer_paths(spec["sequencer"], base),
            "output": resolve_path(base, spec.get("output", "train_output"), "output")}
    X, y = load_data(spec.pop("data", None), base)
    val = spec.get("validation")
    if isinstance(val, dict) and "paths" in val:
        paths = val["paths"] if isinstance(val["paths"], list) else [val["paths"]]
        spec["validation"] = {**val, "paths": [resolve_path(base, p, "validation.paths") for p in paths]}
    elif isinstance(val, dict):
        spec["validation"] = load_data(val, base, "validation")
    return spec, X, y


def run(args: argparse.Namespace) -> int:
    spec, X, y = load_train_spec(args.spec)  # before Keras loads: a bad spec answers at once
    from pointseq.offline.errors import OfflineStorageError
    from pointseq.tiles.training import train

    try:
        train(spec, X=X, y=y, verbose=0 if args.quiet else 1, restart=args.restart)
    except OfflineStorageError as exc:  # a missing or foreign cache the spec names: the spec's fault
        raise UsageError(f"sequencer: {exc}") from None
    except KeyboardInterrupt:
        print(f"\npointseq train: interrupted; the model and sequencer state of the last finished epoch are "
              f"in {spec['output']!r}: run the same command again to resume")
        return 130
    if not os.path.isdir(spec["output"]):
        raise UsageError(f"output {spec['output']!r} was not written")
    print(f"wrote {os.path.join(spec['output'], 'report.json')}")
    return 0
