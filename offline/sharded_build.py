"""Build a sharded cache in parallel on a Dask cluster (``dask.distributed``).

The batches of a single-file cache form one stream: the backbone's batches, then the
point-cloud files cut into fields and batched across file boundaries. A first parallel
pass checks every file and counts its points (so its fields); the global batch and chunk
boundaries follow, and each task writes a contiguous range of whole chunks into its own
shard file, reading only the files that overlap that range. Reading the shards in order
therefore gives the single-file cache's batches, bit for bit.

Each task writes ``<shard>.tmp`` and renames it when complete (a killed task's temp file
resumes from its last complete chunk); a rerun skips shards already complete and rebuilds
the ones missing, even under a finished manifest; the manifest is written last. Every process reads and writes the same folder: on several machines it
must be a shared filesystem.
"""

from __future__ import annotations

import os
import sys
import time
from dataclasses import dataclass
from itertools import islice
from typing import Any, Callable, Iterator

import numpy as np

from pointseq.offline.build import _sources, expected_fingerprint, stored_config
from pointseq.offline.build_lock import build_lock, remove_if_present
from pointseq.offline.errors import SHARD_REBUILD_HINT, OfflineStorageError, storage_error
from pointseq.offline.manifest import (
    MANIFEST_NAME, Manifest, ShardEntry, read_manifest, shard_file_name, shard_fingerprint, write_manifest)
from pointseq.offline.pointcloud_source import PointCloudSource
from pointseq.offline.sharded_reader import ShardedReader, open_shard
from pointseq.offline.writer import CacheWriter


@dataclass(frozen=True)
class ShardTask:
    """What one task writes: global batches ``[first_batch, stop_batch)`` into ``path``."""

    index: int
    path: str
    first_chunk: int
    num_chunks: int
    first_batch: int
    stop_batch: int
    fingerprint: str
    batch_size: int
    chunk_size: int
    compression: str | None
    config: dict


def shard_ranges(num_chunks: int, shards: int) -> list[tuple[int, int]]:
    """``(first chunk, chunk count)`` of ``shards`` contiguous, near-equal ranges (fewer if chunks are few)."""
    parts = np.array_split(np.arange(num_chunks), min(shards, num_chunks))
    return [(int(p[0]), len(p)) for p in parts]


def _stream_from(sources: list[tuple[int, Callable]], start: int) -> Iterator[Any]:
    """The batches of the whole stream from global batch ``start``, reading nothing before it."""
    for count, batches in sources:
        if start >= count:
            start -= count
            continue
        yield from batches(start)
        start = 0


def _finished_shard(task: ShardTask) -> dict | None:
    """The summary of ``task``'s shard when its file is complete; a stale one is refused by name."""
    if not os.path.exists(task.path):
        return None
    reader = open_shard(task.path, task.fingerprint)
    reader.close()
    h = reader.header
    if h.num_batches != task.stop_batch - task.first_batch or h.num_chunks != task.num_chunks:
        raise storage_error(task.path, f"the shard holds {h.num_batches} batches in {h.num_chunks} chunks, "
                                       f"expected {task.stop_batch - task.first_batch} in {task.num_chunks}; "
                                       f"delete it and {SHARD_REBUILD_HINT}", rebuild=False)
    return {"index": task.index, "num_samples": h.num_samples, "structure": h.structure.to_json(),
            "written": 0, "resumed_from": h.num_batches, "seconds": 0.0}


def write_shard(inputs: tuple, task: ShardTask) -> dict:
    """Write (or resume, or keep) one shard file; runs on a Dask worker."""
    backbone, pcloud = inputs
    started = time.perf_counter()
    with build_lock(task.path):
        done = _finished_shard(task)
        if done is not None:
            return done
        writer = CacheWriter(task.path, batch_size=task.batch_size, chunk_size=task.chunk_size,
                             fingerprint=task.fingerprint, config=task.config, compression=task.compression)
        try:
            resumed = writer.batches_done
            start = task.first_batch + resumed
            for batch in islice(_stream_from(_sources(backbone, pcloud, False), start), task.stop_batch - start):
                writer.append(batch)
            if writer.batches_appended != task.stop_batch - task.first_batch:
                raise OfflineStorageError(f"offline cache shard {task.path!r}: the sources gave "
                                          f"{writer.batches_appended} batches, expected "
                                          f"{task.stop_batch - task.first_batch}")
            structure = writer.structure.to_json()
            writer.finalize()
        finally:
            writer.close()
    return {"index": task.index, "num_samples": writer.num_samples, "structure": structure,
            "written": task.stop_batch - start, "resumed_from": resumed,
            "seconds": time.perf_counter() - started}


def _held(value: Any) -> Any:
    return value


def _shared(client: Any, value: Any) -> Any:
    """A future of ``value`` that tasks share: a task, not scattered data, so the cluster can
    recompute it when the worker holding it dies."""
    return client.submit(_held, value, pure=False)


def _scan(pcloud: PointCloudSource, index: int) -> tuple:
    return pcloud.scan_file(index)


def _scan_files(client: Any, pcloud: PointCloudSource | None) -> None:
    """Check and count every point-cloud file on the cluster, then resolve the class map here."""
    if pcloud is None:
        return
    shipped = _shared(client, pcloud)
    futures = client.map(_scan, [shipped] * len(pcloud.paths), range(len(pcloud.paths)), pure=False)
    pcloud.adopt_scan(client.gather(futures))


def _plan(folder: str, backbone: Any, pcloud: PointCloudSource | None, fingerprint: str, config: dict,
          chunk_size: int, compression: str | None, shards: int | list[tuple[int, int]]) -> list[ShardTask]:
    """One task per shard: ``shards`` near-equal ranges of chunks, or the given ``(first, count)`` ranges."""
    total = sum(count for count, _ in _sources(backbone, pcloud, False))
    if total == 0:
        raise ValueError(f"cannot build offline cache {folder!r}: no batches were given")
    ranges = shard_ranges(-(-total // chunk_size), shards) if isinstance(shards, int) else shards
    tasks = []
    for index, (first, count) in enumerate(ranges):
        tasks.append(ShardTask(
            index=index, path=os.path.join(folder, shard_file_name(index)), first_chunk=first, num_chunks=count,
            first_batch=first * chunk_size, stop_batch=min((first + count) * chunk_size, total),
            fingerprint=shard_fingerprint(fingerprint, first, count), batch_size=backbone.batch_size,
            chunk_size=chunk_size, compression=compression,
            config={**config, "shard": {"index": index, "first_chunk": first, "num_chunks": count}}))
    return tasks


def _report(task: ShardTask, result: dict, total: int) -> None:
    batches = task.stop_batch - task.first_batch
    how = ("kept (complete)" if result["written"] == 0 else
           f"{result['written']} batches written in {result['seconds']:.1f} s"
           + (f", resumed after {result['resumed_from']}" if result["resumed_from"] else ""))
    print(f"shard {task.index + 1}/{total} {os.path.basename(task.path)}: {batches} batches "
          f"(chunks {task.first_chunk}-{task.first_chunk + task.num_chunks - 1}), {how}", file=sys.stderr, flush=True)


def _run_tasks(client: Any, inputs: tuple, tasks: list[ShardTask], progress: bool) -> list[dict]:
    from dask.distributed import as_completed

    shipped = _shared(client, inputs)
    futures = {client.submit(write_shard, shipped, task, pure=False): task for task in tasks}
    results: dict[int, dict] = {}
    for future in as_completed(futures):
        task = futures[future]
        results[task.index] = future.result()
        if progress:
            _report(task, results[task.index], len(tasks))
    return [results[task.index] for task in tasks]


def _existing_manifest(folder: str, fingerprint: str) -> Manifest | None:
    path = os.path.join(folder, MANIFEST_NAME)
    if not os.path.exists(path):
        return None
    manifest = read_manifest(path)
    if manifest.fingerprint != fingerprint:
        raise storage_error(path, "the sharded cache was built from another config or other data "
                                  f"(fingerprint {manifest.fingerprint}, expected {fingerprint}); "
                                  "rebuild it with --force")
    return manifest


def _missing_shards(folder: str) -> list[str]:
    """The shard files the manifest in ``folder`` names that are not there (deleted, or never renamed
    into place); the header of each one there is checked against the manifest, as a single-file
    cache's is on a rerun, so a damaged or stale shard is refused by name."""
    reader = ShardedReader(folder)
    missing = []
    try:
        for index, shard in enumerate(reader.manifest.shards):
            if os.path.exists(reader.shard_path(shard)):
                reader.shard_reader(index)
            else:
                missing.append(shard.file)
    finally:
        reader.close()
    return missing


def _clear(folder: str) -> None:
    """Remove the manifest first (the folder stops being a cache), then the shard files."""
    remove_if_present(os.path.join(folder, MANIFEST_NAME))
    for name in sorted(os.listdir(folder)):
        if name.startswith("shard-") and (name.endswith(".h5") or name.endswith(".h5.tmp")):
            os.remove(os.path.join(folder, name))


def build_sharded(client: Any, backbone: Any, folder: str, *, chunk_size: int = 8, compression: str | None = None,
                  offline_pcloud: PointCloudSource | dict | None = None, shards: int | None = None,
                  force: bool = False, progress: bool = True, extra_config: dict | None = None) -> Manifest:
    """Build the sharded cache of ``backbone`` (plus ``offline_pcloud``) in ``folder`` on ``client``'s cluster.

    ``shards`` defaults to one per worker. An existing complete cache with the right
    fingerprint is kept (each shard's header checked: a damaged or stale one is refused by
    name); shards already complete are kept, incomplete ones resumed. When the manifest
    names shard files that are gone, exactly those are rebuilt, in the manifest's layout
    (``shards`` is then ignored) so the shards kept still fit.
    """
    folder = os.path.abspath(os.fspath(folder))
    if os.path.exists(folder) and not os.path.isdir(folder):
        raise ValueError(f"offline_storage of a sharded cache must be a folder, got the file {folder!r}")
    os.makedirs(folder, exist_ok=True)
    if force:
        _clear(folder)
    pcloud = None if offline_pcloud is None else PointCloudSource.from_spec(offline_pcloud)
    _scan_files(client, pcloud)
    fingerprint = expected_fingerprint(backbone, chunk_size, pcloud)
    manifest = _existing_manifest(folder, fingerprint)
    if manifest is not None:
        if not _missing_shards(folder):
            return manifest
        config = manifest.config
        shards = [(s.first_chunk, s.num_chunks) for s in manifest.shards]
    else:
        config = stored_config(backbone, chunk_size, compression, pcloud, False, extra_config)
        shards = shards or max(1, len(client.scheduler_info()["workers"]))
    tasks = _plan(folder, backbone, pcloud, fingerprint, config, chunk_size, compression, shards)
    results = _run_tasks(client, (backbone, pcloud), tasks, progress)
    manifest = Manifest(
        batch_size=backbone.batch_size, chunk_size=chunk_size, num_batches=tasks[-1].stop_batch,
        num_samples=sum(r["num_samples"] for r in results), num_chunks=sum(t.num_chunks for t in tasks),
        fingerprint=fingerprint, structure=results[0]["structure"], config=config,
        shards=tuple(ShardEntry(file=os.path.basename(t.path), first_chunk=t.first_chunk, num_chunks=t.num_chunks,
                                num_batches=t.stop_batch - t.first_batch, num_samples=r["num_samples"],
                                fingerprint=t.fingerprint) for t, r in zip(tasks, results)))
    write_manifest(folder, manifest)
    return manifest


def _verify(storage: str, index: int) -> list[str]:
    return ShardedReader(storage).verify_shard(index)


def verify_sharded(storage: str, client: Any = None) -> list[str]:
    """Faults of every shard of a sharded cache, each shard verified by a task when ``client`` is given."""
    reader = ShardedReader(storage)
    count = len(reader.manifest.shards)
    if client is None:
        return reader.verify()
    futures = client.map(_verify, [reader.path] * count, range(count), pure=False)
    return [fault for faults in client.gather(futures) for fault in faults]
