"""What a cache holds, for tools (``pointseq cache info``): counts, elements, config, shards."""

from __future__ import annotations

import os

from pointseq.offline import format as fmt
from pointseq.offline.errors import INSPECT_ADVICE, NotACacheError
from pointseq.offline.reader import CacheHeader, CacheReader
from pointseq.offline.sharded_reader import ShardedReader, is_sharded_cache


def open_cache(path: str | os.PathLike) -> CacheReader | ShardedReader:
    """The reader of the cache at ``path``: a cache file, or a sharded cache's folder or manifest.

    For inspecting, not building: a file that is not a cache is refused with advice to give
    a cache, never a new path (nothing is built here).
    """
    path = os.fspath(path)
    try:
        return ShardedReader(path) if is_sharded_cache(path) else CacheReader(path)
    except NotACacheError as exc:
        raise NotACacheError(exc.path, exc.problem, INSPECT_ADVICE) from None


def _header_info(file_bytes: int, header: CacheHeader) -> dict:
    h = header
    return {"file_bytes": file_bytes, "format": fmt.FORMAT_NAME, "format_version": fmt.FORMAT_VERSION,
            "batch_size": h.batch_size, "chunk_size": h.chunk_size, "num_batches": h.num_batches,
            "num_samples": h.num_samples, "num_chunks": h.num_chunks, "fingerprint": h.fingerprint}


def _file_info(reader: CacheReader) -> dict:
    return {**_header_info(os.path.getsize(reader.path), reader.header), "elements": reader.element_info(),
            "config": reader.header.config}


def _sharded_info(reader: ShardedReader) -> dict:
    """The manifest's counts, the elements summed over the shards, and each shard."""
    m = reader.manifest
    shards = [_file_info(reader.shard_reader(index)) for index in range(len(m.shards))]
    elements = [dict(e) for e in shards[0]["elements"]]
    for e, parts in zip(elements, zip(*(info["elements"] for info in shards))):
        for key in ("rows", "bytes", "stored_bytes"):
            e[key] = sum(p[key] for p in parts)
    return {**_header_info(sum(info["file_bytes"] for info in shards), reader.header), "elements": elements,
            "config": m.config,
            "shards": [{"file": s.file, "first_chunk": s.first_chunk, "num_chunks": s.num_chunks,
                        "num_batches": s.num_batches, "num_samples": s.num_samples, "file_bytes": i["file_bytes"]}
                       for s, i in zip(m.shards, shards)]}


def cache_info(path: str | os.PathLike) -> dict:
    """Counts, element shapes/dtypes/sizes and config of the cache at ``path`` (a file, or a sharded
    cache's folder or manifest, whose dict adds ``shards``); OfflineStorageError if it is no sound cache."""
    reader = open_cache(path)
    try:
        info = _sharded_info(reader) if isinstance(reader, ShardedReader) else _file_info(reader)
    finally:
        reader.close()
    return {"file": os.fspath(path), **info}
