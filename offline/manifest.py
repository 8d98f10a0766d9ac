"""The manifest of a sharded cache: which shard files hold which chunks of one batch stream.

A sharded cache is a directory of shard files, each a complete cache file (format version
2) holding a contiguous range of whole chunks of the stream a single-file cache of the same
inputs would hold, plus ``manifest.json``::

    {"format": "pointseq-offline-sharded", "manifest_version": 1, "format_version": 2,
     "batch_size": 16, "chunk_size": 8, "num_batches": 900, "num_samples": 14400,
     "num_chunks": 113, "fingerprint": "...", "structure": "<batch nesting JSON>", "config": {...},
     "shards": [{"file": "shard-00000.h5", "first_chunk": 0, "num_chunks": 57,
                 "num_batches": 456, "num_samples": 7296, "fingerprint": "..."}, ...]}

The manifest is written last, to a temporary name renamed into place, so a directory with
a manifest holds every shard it names. A shard's fingerprint ties it to the cache's
fingerprint and its chunk range: a shard left from another config is refused by name.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import asdict, dataclass

from pointseq.offline import format as fmt
from pointseq.offline.errors import NotACacheError, storage_error

MANIFEST_NAME = "manifest.json"
MANIFEST_FORMAT = "pointseq-offline-sharded"
MANIFEST_VERSION = 1


@dataclass(frozen=True)
class ShardEntry:
    """One shard file (relative to the manifest's folder) and the global chunks it holds."""

    file: str
    first_chunk: int
    num_chunks: int
    num_batches: int
    num_samples: int
    fingerprint: str


@dataclass(frozen=True)
class Manifest:
    """The global counts, fingerprint and config of a sharded cache, and its shards in order."""

    batch_size: int
    chunk_size: int
    num_batches: int
    num_samples: int
    num_chunks: int
    fingerprint: str
    structure: str
    config: dict
    shards: tuple[ShardEntry, ...]

    def to_json(self) -> str:
        body = asdict(self)
        body["shards"] = [asdict(s) for s in self.shards]
        return json.dumps({"format": MANIFEST_FORMAT, "manifest_version": MANIFEST_VERSION,
                           "format_version": fmt.FORMAT_VERSION, **body}, indent=1, sort_keys=True,
                          default=repr)


def shard_file_name(index: int) -> str:
    return f"shard-{index:05d}.h5"


def shard_fingerprint(fingerprint: str, first_chunk: int, num_chunks: int) -> str:
    """The fingerprint of the shard holding chunks ``[first_chunk, first_chunk + num_chunks)``."""
    h = hashlib.blake2b(digest_size=20)
    h.update(f"{fingerprint};chunks={int(first_chunk)}+{int(num_chunks)}".encode())
    return h.hexdigest()


def manifest_path(storage: str | os.PathLike) -> str | None:
    """The manifest of a sharded cache at ``storage`` (its folder or the manifest), else None."""
    storage = os.fspath(storage)
    if os.path.isdir(storage):
        return os.path.join(storage, MANIFEST_NAME)
    if os.path.basename(storage) == MANIFEST_NAME:
        return storage
    return None


def write_manifest(folder: str, manifest: Manifest) -> str:
    """Write ``folder/manifest.json`` atomically (temp name, then rename)."""
    path = os.path.join(folder, MANIFEST_NAME)
    temp = fmt.temp_path(path)
    with open(temp, "w", encoding="utf-8") as f:
        f.write(manifest.to_json())
        f.flush()
        os.fsync(f.fileno())
    os.replace(temp, path)
    return path


def _check_shards(manifest: Manifest, path: str) -> None:
    expected = 0
    for shard in manifest.shards:
        if shard.first_chunk != expected or shard.num_chunks < 1:
            raise storage_error(path, f"shard {shard.file!r} holds chunks from {shard.first_chunk} "
                                      f"({shard.num_chunks} of them), expected from {expected}")
        expected += shard.num_chunks
    if expected != manifest.num_chunks or sum(s.num_batches for s in manifest.shards) != manifest.num_batches:
        raise storage_error(path, f"the shards hold {expected} chunks and "
                                  f"{sum(s.num_batches for s in manifest.shards)} batches, the manifest "
                                  f"names {manifest.num_chunks} chunks and {manifest.num_batches} batches")


def read_manifest(path: str) -> Manifest:
    """The manifest at ``path``, checked for its format and a contiguous cover of the chunks."""
    if not os.path.isfile(path):
        folder = os.path.dirname(path)
        if os.path.isdir(folder) and not any(n.startswith("shard-") for n in os.listdir(folder)):
            raise NotACacheError(folder, "a folder with neither a manifest.json nor shard files")
        raise storage_error(path, "the sharded cache has no manifest (its build did not finish); finish it "
                                  "with `pointseq cache build SPEC.json --workers N`, which keeps the complete "
                                  "shards", rebuild=False)
    try:
        with open(path, encoding="utf-8") as f:
            body = json.load(f)
    except (OSError, ValueError) as exc:
        raise storage_error(path, f"the manifest cannot be read as JSON ({exc})") from None
    if not isinstance(body, dict) or body.get("format") != MANIFEST_FORMAT:
        raise storage_error(path, f"format {body.get('format') if isinstance(body, dict) else body!r} "
                                  f"is not {MANIFEST_FORMAT!r}")
    if body.get("manifest_version") != MANIFEST_VERSION or body.get("format_version") != fmt.FORMAT_VERSION:
        raise storage_error(path, f"manifest version {body.get('manifest_version')!r} of format version "
                                  f"{body.get('format_version')!r} is not supported, this pointseq reads "
                                  f"{MANIFEST_VERSION} of {fmt.FORMAT_VERSION}")
    try:
        fields = {k: body[k] for k in ("batch_size", "chunk_size", "num_batches", "num_samples", "num_chunks",
                                       "fingerprint", "structure", "config")}
        manifest = Manifest(**fields, shards=tuple(ShardEntry(**s) for s in body["shards"]))
    except (KeyError, TypeError) as exc:
        raise storage_error(path, f"the manifest is missing or has malformed fields ({exc!r})") from None
    _check_shards(manifest, path)
    return manifest
