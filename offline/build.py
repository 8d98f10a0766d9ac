"""Build a cache file from a sequencer's un-augmented batches (and point-cloud files)."""

from __future__ import annotations

import copy
import os
import sys
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any, Callable, Iterator

from pointseq.offline import format as fmt
from pointseq.offline.build_lock import build_lock, remove_if_present
from pointseq.offline.errors import NotACacheError, OfflineStorageError
from pointseq.offline.fingerprint import cache_fingerprint, data_digest, data_nbytes
from pointseq.offline.pointcloud_source import PointCloudSource, print_progress
from pointseq.offline.reader import CacheReader
from pointseq.offline.writer import CacheWriter
from pointseq.arguments import without_comment_keys

# Options that change how batches are ordered or augmented at read time, not their content.
READ_TIME_KEYS = frozenset({
    "seed", "shuffle", "random_shuffle_indices", "epoch_size", "augmentor", "augment_inputs",
    "vector_inputs", "workers", "use_multiprocessing", "max_queue_size", "training",
})


def content_config(backbone: Any) -> dict:
    """The backbone's config without the options that do not change stored batches."""
    return {k: v for k, v in backbone.get_config().items() if k not in READ_TIME_KEYS}


def pcloud_source(backbone: Any, spec: Any) -> PointCloudSource:
    """The source of ``offline_pcloud`` samples, checked against ``backbone`` (its encoder's
    samples must be what the backbone batches)."""
    source = PointCloudSource.from_spec(spec if isinstance(spec, PointCloudSource) else without_comment_keys(spec))
    source.check_backbone(backbone)
    return source


# Below this many bytes of data the fingerprint is computed before the build starts: a
# thread would not pay for itself.
_HASH_ASIDE_BYTES = 1 << 23


def _input_data(backbone: Any) -> tuple:
    try:
        return backbone.get_input_data()
    except NotImplementedError:
        raise TypeError(
            f"{type(backbone).__name__} must implement get_input_data() so the offline cache can "
            "fingerprint its data"
        ) from None


def backbone_digest(backbone: Any) -> str:
    """Digest of the backbone's data (``get_input_data()``)."""
    return data_digest(*_input_data(backbone))


def _fingerprint_job(backbone: Any, chunk_size: int, pcloud: PointCloudSource | None) -> tuple[Callable[[], str], int]:
    """Check the backbone now; return the fingerprint computation and the bytes it hashes."""
    config = {"backbone": content_config(backbone)}
    X, y = _input_data(backbone)
    if pcloud is not None:  # the files' bytes count, not where they lie
        config["offline_pcloud"] = {k: v for k, v in pcloud.get_config().items() if k != "paths"}

    def compute() -> str:
        digest = data_digest(X, y)
        if pcloud is not None:
            digest += pcloud.digest()
        return cache_fingerprint(config, digest, chunk_size)

    return compute, data_nbytes(X, y)


def expected_fingerprint(backbone: Any, chunk_size: int, pcloud: PointCloudSource | None = None) -> str:
    """The fingerprint a cache of ``backbone`` (plus ``pcloud``) built with ``chunk_size`` carries."""
    return _fingerprint_job(backbone, chunk_size, pcloud)[0]()


def dataset_batches(sequencer: Any, start: int = 0) -> Iterator[tuple]:
    """Un-augmented training batches of ``sequencer`` in dataset order, from batch ``start``."""
    if sequencer.num_samples == 0:
        return
    view = copy.copy(sequencer)
    view.enable_predict_mode()
    for k in range(start, len(view)):
        indices = view.predict_indices(k)
        if sequencer.drop_last and len(indices) < sequencer.batch_size:
            return
        yield view.load_batch(indices)


def count_dataset_batches(sequencer: Any) -> int:
    n, bs = sequencer.num_samples, sequencer.batch_size
    return n // bs if sequencer.drop_last else -(-n // bs)


def _sources(backbone: Any, pcloud: PointCloudSource | None, progress: bool) -> list[tuple[int, Callable]]:
    """``(batch count, batches from a start batch)`` of the backbone, then of the files."""
    sources: list[tuple[int, Callable]] = []
    if backbone.num_samples:
        sources.append((count_dataset_batches(backbone), lambda start: dataset_batches(backbone, start)))
    if pcloud is not None:  # streamed file by file, never all in memory
        n, bs, drop_last = pcloud.num_samples(), backbone.batch_size, backbone.drop_last
        report = print_progress if progress else None
        sources.append((n // bs if drop_last else -(-n // bs),
                        lambda start: pcloud.batches(bs, drop_last, start, report)))
    return sources


def stored_config(backbone: Any, chunk_size: int, compression: str | None, pcloud: PointCloudSource | None,
                  progress: bool, extra_config: dict | None) -> dict:
    """The config a cache file stores: the backbone's, the cache options, the files' class map."""
    return {
        "backbone": backbone.get_config(),
        "chunk_size": chunk_size,
        "compression": compression,
        # checks every file before the temp file exists: a usage error leaves nothing behind
        "offline_pcloud": None if pcloud is None else pcloud.cache_config(print_progress if progress else None),
        **(extra_config or {}),
    }


def build_cache(
    backbone: Any,
    path: str,
    *,
    chunk_size: int = 8,
    compression: str | None = None,
    offline_pcloud: PointCloudSource | dict | None = None,
    force: bool = False,
    progress: bool = True,
    extra_config: dict | None = None,
) -> str:
    """Write ``backbone``'s un-augmented batches (dataset order) into a cache at ``path``.

    An existing cache with the right fingerprint is kept (``force`` rebuilds it); one
    with another fingerprint is refused. The file is written to ``<path>.tmp`` and renamed
    into place; a build interrupted before that resumes from the temp file's last complete
    chunk, and one that fails before its first complete chunk removes the temp file. Returns the cache's fingerprint, so callers need not hash the data again.

    The data is hashed in a background thread while batches are written (hashlib
    releases the GIL); the temp file gets its fingerprint as soon as it is known, and a
    temp file without one is never resumed.
    """
    path = os.fspath(path)
    fmt.check_chunk_size(chunk_size)
    compression_name = fmt.normalize_compression(compression)
    pcloud = None if offline_pcloud is None else pcloud_source(backbone, offline_pcloud)
    job, nbytes = _fingerprint_job(backbone, chunk_size, pcloud)
    # One builder per cache at a time: a second process (another replica, a second
    # notebook) waits, then finds the finished cache instead of racing on the temp file.
    with build_lock(path):
        if os.path.exists(path) and not force:
            fingerprint = job()
            CacheReader(path, expected_fingerprint=fingerprint).close()
            return fingerprint
        if os.path.exists(path):
            _refuse_foreign_file(path)
        config = stored_config(backbone, chunk_size, compression_name, pcloud, progress, extra_config)
        return _write_cache_file(path, backbone, pcloud, chunk_size, compression_name, config, job, nbytes,
                                 progress)


def _refuse_foreign_file(path: str) -> None:
    """NotACacheError when ``path`` holds someone else's file: ``force`` replaces a cache (stale
    or damaged), never a file that is not one."""
    try:
        CacheReader(path).close()
    except NotACacheError:
        raise
    except (OfflineStorageError, OSError):
        pass  # a damaged or unreadable cache of ours: the rebuild replaces it


def _write_cache_file(path: str, backbone: Any, pcloud: PointCloudSource | None, chunk_size: int,
                      compression: str | None, config: dict, job: Callable[[], str], nbytes: int,
                      progress: bool) -> str:
    """Write (or resume) ``<path>.tmp`` and rename it to ``path``; a build that fails before
    its first complete chunk removes the temp file, leaving nothing behind."""
    hasher, pending = _start_fingerprint(job, nbytes, path)
    writer = None
    resumable = os.path.exists(fmt.temp_path(path))
    try:
        writer = CacheWriter(path, batch_size=backbone.batch_size, chunk_size=chunk_size,
                             fingerprint=pending.result() if pending.done() else None, config=config,
                             compression=compression)
        _write_batches(writer, _sources(backbone, pcloud, progress), pending, progress)
        writer.set_fingerprint(pending.result())
        writer.finalize()
        return pending.result()
    except BaseException:
        if writer is not None:
            writer.close()
        if (writer.batches_done == 0) if writer is not None else not resumable:
            remove_if_present(fmt.temp_path(path))
        raise
    finally:
        if writer is not None:
            writer.close()
        if hasher is not None:
            hasher.shutdown(wait=False)


def _start_fingerprint(job: Any, nbytes: int, path: str) -> tuple[ThreadPoolExecutor | None, Future]:
    """Hash large data in a background thread while writing; resuming needs it first."""
    if nbytes >= _HASH_ASIDE_BYTES and not os.path.exists(fmt.temp_path(path)):
        hasher = ThreadPoolExecutor(max_workers=1, thread_name_prefix="pointseq-fingerprint")
        return hasher, hasher.submit(job)
    pending: Future = Future()
    pending.set_result(job())
    return None, pending


def _write_batches(writer: CacheWriter, sources: list[tuple[int, Callable]], pending: Future,
                   progress: bool) -> None:
    total = sum(count for count, _ in sources)
    bar = None
    if progress:
        import keras

        bar = keras.utils.Progbar(total, unit_name="batch", verbose=1 if sys.stdout.isatty() else 2)  # plain when redirected
    skip = writer.batches_done
    done = 0
    for count, batches in sources:
        if skip >= count:
            skip -= count
            done += count
            continue
        done += skip
        for batch in batches(skip):
            if writer.fingerprint is None and pending.done():
                writer.set_fingerprint(pending.result())
            writer.append(batch)
            done += 1
            if bar is not None:
                bar.update(done)
        skip = 0
    if writer.batches_appended != total:
        raise OfflineStorageError(
            f"offline cache {writer.path!r}: the sources gave {writer.batches_appended} batches, expected {total}")
