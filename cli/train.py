"""``pointseq train SPEC.json``: `pointseq.tiles.train` on a JSON train spec (see its docstring).

Relative paths in the spec are relative to the spec file; ``data`` (``{"X": "x.npy", "y":
"y.npy"}``) and array ``validation`` load ``.npy``/``.npz`` files for a plain sequencer spec.
The spec's shape, values and paths are checked before Keras is imported, so a usage error
answers at once. Ctrl-C stops training with one line saying what was saved and how to resume
(exit 130).
"""

from __future__ import annotations

import argparse
import os
import sys

from pointseq.cli.spec_file import load_data, read_spec_file, resolve_path, resolve_sequencer_paths
from pointseq.cli.usage_error import UsageError, inputs_as_usage_errors
from pointseq.tiles.train_spec import DEFAULT_OUTPUT, SPEC_KEYS, check_train_spec

EXAMPLE = "{'sequencer': {'offline_pcloud': {'paths': ['tile1.laz']}}, 'model': {'type': 'pointnet'}}"


def load_train_spec(path: str) -> tuple[dict, object, object]:
    """The spec with its paths resolved against the spec file's folder, its arrays loaded, and
    checked (`check_train_spec`: a UsageError naming the spec file)."""
    spec, base = read_spec_file(path, set(SPEC_KEYS), EXAMPLE)
    spec = {**spec, "sequencer": resolve_sequencer_paths(spec["sequencer"], base),
            "output": resolve_path(base, spec.get("output", DEFAULT_OUTPUT), "output")}
    X, y = load_data(spec.pop("data", None), base)
    val = spec.get("validation")
    if isinstance(val, dict) and "paths" in val:
        paths = val["paths"] if isinstance(val["paths"], list) else [val["paths"]]
        spec["validation"] = {**val, "paths": [resolve_path(base, p, "validation.paths") for p in paths]}
    elif isinstance(val, dict):
        spec["validation"] = load_data(val, base, "validation")
    with inputs_as_usage_errors(f"spec file {path!r}"):
        check_train_spec(spec)
    return spec, X, y


def run(args: argparse.Namespace) -> int:
    spec, X, y = load_train_spec(args.spec)  # before Keras loads: a bad spec answers at once
    from pointseq.cli.main import native_stderr_quiet

    with native_stderr_quiet(not args.verbose):
        from pointseq.offline.errors import OfflineStorageError
        from pointseq.tiles.training import train

    try:
        train(spec, X=X, y=y, verbose=0 if args.quiet else 1, restart=args.restart, profile=args.profile)
    except OfflineStorageError as exc:  # a missing or foreign cache the spec names: the spec's fault
        raise UsageError(f"sequencer: {exc}") from None
    except KeyboardInterrupt:
        print(f"\n{interrupted_message(spec['output'])}", file=sys.stderr)
        return 130
    if not os.path.isdir(spec["output"]):
        raise UsageError(f"output {spec['output']!r} was not written")
    print(f"wrote {os.path.join(spec['output'], 'report.json')}")
    return 0


def interrupted_message(output: str) -> str:
    """The one line an interrupted ``pointseq train`` prints: what is saved, how to resume."""
    from pointseq.tiles.training import saved_epochs

    saved = saved_epochs(output)
    if saved is None:
        return ("pointseq train: interrupted before the first epoch finished; no model was saved (a cache "
                "built so far is kept): run the same command again to continue")
    return (f"pointseq train: interrupted; the model and sequencer state after epoch {saved[0]} of {saved[1]} are "
            f"saved in {output!r}: run the same command again to resume")
