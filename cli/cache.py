"""``pointseq cache build|info|verify``.

A build spec is a JSON file::

    {
      "sequencer": {"type": "OfflineSequencer",
                    "backbone": {"type": "Sequencer", "batch_size": 16, ...},
                    "offline_storage": "cache.h5", "chunk_size": 8, "compression": "lzf",
                    "offline_pcloud": {"paths": ["scene.las"], "sampler": {...}}},
      "data": {"X": "x.npy", "y": "y.npy"}
    }

``data.X`` is one file or a list (a tuple input) or dict of files; ``.npy``, or ``.npz``
holding one array. ``data`` may be left out when ``offline_pcloud`` supplies the samples.
Relative paths are relative to the spec file.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from typing import Any

from pointseq.offline import format as fmt
from pointseq.cli.usage_error import UsageError, inputs_as_usage_errors
from pointseq.offline.errors import OfflineStorageError
from pointseq.offline.info import cache_info, open_cache
from pointseq.offline.sharded_reader import is_sharded_cache
from pointseq.cli.dask_cluster import dask_client, wants_cluster
from pointseq.cli.spec_file import load_data, read_spec_file, resolve_sequencer_paths

OFFLINE_TYPES = ("offlinesequencer", "dlofflinesequencer")


# ---------------------------------------------------------------------------- build
def load_build_spec(path: str) -> tuple[dict, Any, Any]:
    """The sequencer spec (paths resolved) and the X, y data of a build spec file."""
    spec, base = read_spec_file(
        path, {"sequencer", "data"},
        "{'sequencer': {'type': 'OfflineSequencer', ...}, 'data': {'X': 'x.npy'}}")
    seq = spec["sequencer"]
    if str(seq.get("type", "")).lower() not in OFFLINE_TYPES:
        raise UsageError(f"sequencer.type must be 'OfflineSequencer', got {seq.get('type')!r}")
    if "offline_storage" not in seq:
        raise UsageError("sequencer.offline_storage must name the cache file")
    X, y = load_data(spec.get("data"), base)
    return resolve_sequencer_paths(seq, base), X, y


def run_build(args: argparse.Namespace) -> int:
    seq, X, y = load_build_spec(args.spec)
    if wants_cluster(args):
        return run_sharded_build(args, seq, X, y)
    if args.shards is not None:
        raise UsageError(f"--shards {args.shards} needs --workers or --scheduler (a sharded build)")
    from pointseq.offline.sequencer import OfflineSequencer

    seq.pop("type")
    backbone = seq.pop("backbone", None)
    if not isinstance(backbone, dict):
        raise UsageError(f"sequencer.backbone must be a spec object, got {backbone!r}")
    seq.update(force_rebuild=args.force or seq.get("force_rebuild", False), progress=not args.quiet)
    try:
        with inputs_as_usage_errors("sequencer"):
            sequencer = OfflineSequencer(backbone, X=X, y=y, **seq)
    except OfflineStorageError as exc:
        print(f"pointseq cache build: {exc}", file=sys.stderr)
        return 1
    header = sequencer._reader.header
    sequencer.close()
    print(f"{seq['offline_storage']}: {header.num_batches} batches, {header.num_samples} samples, "
          f"{header.num_chunks} chunks")
    return 0


def run_sharded_build(args: argparse.Namespace, seq: dict, X: Any, y: Any) -> int:
    """Build the shards of ``offline_storage`` (a folder) on a Dask cluster, then its manifest."""
    from pointseq.offline.sharded_build import build_sharded
    from pointseq.sequencers.registry import build_sequencer

    if args.shards is not None and args.shards < 1:
        raise UsageError(f"--shards must be >= 1, got {args.shards}")
    backbone = seq.get("backbone")
    if not isinstance(backbone, dict):
        raise UsageError(f"sequencer.backbone must be a spec object, got {backbone!r}")
    options = {k: seq.get(k, default) for k, default in (("chunk_size", 8), ("chunk_randomization", False),
                                                          ("batch_randomization", False), ("compression", None))}
    with inputs_as_usage_errors("sequencer"):
        backbone = build_sequencer({"type": "Sequencer", **backbone}, X, y)
        options["compression"] = fmt.normalize_compression(options["compression"])
        fmt.check_chunk_size(options["chunk_size"])
    with dask_client(args.workers, args.scheduler) as client:
        try:
            with inputs_as_usage_errors("sequencer"):
                manifest = build_sharded(
                    client, backbone, seq["offline_storage"], chunk_size=options["chunk_size"],
                    compression=options["compression"], offline_pcloud=seq.get("offline_pcloud"),
                    shards=args.shards, force=args.force or seq.get("force_rebuild", False), progress=not args.quiet,
                    extra_config={"offline_sequencer": {"offline_storage": seq["offline_storage"], **options}})
        except OfflineStorageError as exc:
            print(f"pointseq cache build: {exc}", file=sys.stderr)
            return 1
    print(f"{seq['offline_storage']}: {manifest.num_batches} batches, {manifest.num_samples} samples, "
          f"{manifest.num_chunks} chunks in {len(manifest.shards)} shards")
    return 0


# ---------------------------------------------------------------------------- info / verify
def _check_exists(path: str) -> None:
    if not os.path.exists(path):
        raise UsageError(f"file {path!r} does not exist")


def run_info(args: argparse.Namespace) -> int:
    _check_exists(args.file)
    try:
        info = cache_info(args.file)
    except OfflineStorageError as exc:
        print(f"pointseq cache info: {exc}", file=sys.stderr)
        return 1
    except (OSError, RuntimeError, KeyError, ValueError, TypeError, AttributeError) as exc:  # a damaged manifest
        print(f"pointseq cache info: offline cache {args.file!r} cannot be read ({type(exc).__name__}: {exc}); "
              "run `pointseq cache verify` on it", file=sys.stderr)
        return 1
    if args.json:
        print(json.dumps(info, indent=2))
        return 0
    print(f"{info['file']}: {info['format']} v{info['format_version']}, {info['file_bytes']} bytes")
    print(f"  batches {info['num_batches']} (batch_size {info['batch_size']}), samples {info['num_samples']}, "
          f"chunks {info['num_chunks']} (chunk_size {info['chunk_size']})")
    print(f"  fingerprint {info['fingerprint']}")
    for e in info["elements"]:
        print(f"  {e['name']:<24} {e['dataset']:<4} {e['dtype']:<8} rows {e['rows']} x {tuple(e['row_shape'])}  "
              f"{e['bytes']} bytes ({e['stored_bytes']} stored, compression {e['compression']})")
    for shard in info.get("shards", []):
        print(f"  shard {shard['file']}: chunks {shard['first_chunk']}-{shard['first_chunk'] + shard['num_chunks'] - 1}, "
              f"{shard['num_batches']} batches, {shard['num_samples']} samples, {shard['file_bytes']} bytes")
    print("  config " + json.dumps(info["config"], sort_keys=True))
    return 0


def _verify_sharded(args: argparse.Namespace) -> tuple[list[str], Any]:
    from pointseq.offline.sharded_build import verify_sharded

    header = open_cache(args.file).header
    if not wants_cluster(args):
        return verify_sharded(args.file), header
    with dask_client(args.workers, args.scheduler) as client:
        return verify_sharded(args.file, client), header


def run_verify(args: argparse.Namespace) -> int:
    _check_exists(args.file)
    try:
        if is_sharded_cache(args.file):
            faults, header = _verify_sharded(args)
        else:
            if wants_cluster(args):
                raise UsageError(f"{args.file!r} is a single cache file: verify it without --workers/--scheduler")
            reader = open_cache(args.file)
            faults = reader.verify()
            header = reader.header
            reader.close()
    except OfflineStorageError as exc:
        faults, header = [str(exc)], None
    if faults:
        for fault in faults:
            print(f"FAULT {fault}", file=sys.stderr)
        print(f"{args.file}: {len(faults)} fault(s)", file=sys.stderr)
        return 1
    print(f"{args.file}: OK, {header.num_chunks} chunks, {header.num_batches} batches, "
          f"{header.num_samples} samples verified")
    return 0
