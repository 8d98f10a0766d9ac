"""OfflineSequencer: serve a backbone's batches from an HDF5 chunk cache, augmenting at read time."""

from __future__ import annotations

import copy
import os
from typing import Any

import numpy as np

from pointseq.arguments import require_bool, require_int
from pointseq.offline import format as fmt
from pointseq.offline.build import build_cache, expected_fingerprint, pcloud_source
from pointseq.offline.chunk_cache import ChunkCache
from pointseq.offline.errors import storage_error
from pointseq.offline.order import VisitOrder, visit_order
from pointseq.offline.pointcloud_source import PointCloudSource
from pointseq.offline.manifest import MANIFEST_NAME
from pointseq.offline.reader import CacheReader
from pointseq.offline.sharded_reader import ShardedReader, is_sharded_cache
from pointseq.pointclouds.classes import ClassMap
from pointseq.sequencers.abstract_sequencer import AbstractSequencer
from pointseq.sequencers.batch_plan import BatchPlan
from pointseq.sequencers.keyed_cache import KeyedCache
from pointseq.sequencers.load_clock import LoadClock
from pointseq.sequencers.registry import build_sequencer, register_sequencer


def _has_manifest(folder: str | os.PathLike) -> bool:
    return os.path.exists(os.path.join(folder, MANIFEST_NAME))


# Keywords of every sequencer that an OfflineSequencer leaves to its backbone.
BACKBONE_KWARGS = ("shuffle", "random_shuffle_indices", "batch_size", "drop_last")


@register_sequencer("OfflineSequencer", "DLOfflineSequencer")
class OfflineSequencer(AbstractSequencer):
    """Decorates a backbone sequencer with an offline HDF5 cache of its batches.

    The backbone's un-augmented batches (in dataset order, plus fields cut from
    ``offline_pcloud`` files) are written once to ``offline_storage``; training batches are
    then read from it, whole chunks at a time, and augmented with the backbone's ``augment``
    under the keyed generator ``make_rng(idx)``.

    Args:
        backbone: any `AbstractSequencer`, or its spec dict (built with ``X`` and ``y``).
        offline_storage: path of the cache file; built on construction when missing.
        chunk_size: batches per chunk (the unit of reading; one chunk must fit in memory).
        chunk_randomization: visit the chunks in a new keyed order every pass after the first.
        batch_randomization: likewise for the batches inside a chunk.
        offline_pcloud: ``{"paths": [...], "sampler": {...}, "label": dim, "classes": {...},
            "features": [...]}``: point-cloud files cut into fields and appended to the cache;
            with a `SparseShadowSequencer` backbone also ``"grid": {"type":
            "SparseGridPreProcessor", "cell_size", "depth"}`` (one sparse grid per field).
        disable_offline_storage_writing: never build; a missing cache is an error.
        compression: None, "none", "lzf" or "gzip".
        force_rebuild: rebuild the cache even when a valid one exists.
        max_resident_chunks: chunks held in memory at once, the readahead one included
            (1 disables readahead).
        progress: show a progress bar while building.
        X, y: data for a backbone given as a spec dict.
        **kwargs: `AbstractSequencer` options (seed, training, epoch_size, workers,
            use_multiprocessing, max_queue_size); batch_size and drop_last belong to the
            backbone.

    Predict mode delegates to the backbone (dataset order, no cache).
    """

    def __init__(
        self,
        backbone: AbstractSequencer | dict,
        offline_storage: str | os.PathLike,
        *,
        chunk_size: int = 8,
        chunk_randomization: bool = False,
        batch_randomization: bool = False,
        offline_pcloud: dict | PointCloudSource | None = None,
        disable_offline_storage_writing: bool = False,
        compression: str | None = None,
        force_rebuild: bool = False,
        max_resident_chunks: int = 2,
        progress: bool = True,
        X: Any = None,
        y: Any = None,
        seed: int | None = None,
        **kwargs: Any,
    ) -> None:
        for name in BACKBONE_KWARGS:
            if name in kwargs:
                raise TypeError(
                    f"OfflineSequencer does not take {name}={kwargs[name]!r}: the batches come from "
                    "the backbone, their order from chunk_randomization and batch_randomization"
                )
        if isinstance(backbone, dict):
            spec = dict(backbone)
            spec.setdefault("type", "Sequencer")
            backbone = build_sequencer(spec, X, y)
        elif X is not None or y is not None:
            raise TypeError("X and y are only accepted with a backbone spec dict; give the data to the backbone")
        if not isinstance(backbone, AbstractSequencer):
            raise TypeError(f"backbone must be an AbstractSequencer or its spec dict, got {type(backbone).__name__}")
        if isinstance(offline_storage, bytes) or not isinstance(offline_storage, (str, os.PathLike)):
            raise TypeError(f"offline_storage must be a file path, got {offline_storage!r}")
        if not os.fspath(offline_storage) or (os.path.isdir(offline_storage) and not _has_manifest(offline_storage)):
            raise ValueError(f"offline_storage must be the path of a cache file, got {offline_storage!r}" + (
                " (a directory without manifest.json: not a sharded cache)" if os.fspath(offline_storage) else " (empty)"))
        self.backbone = backbone
        self.offline_storage = os.fspath(offline_storage)
        self.chunk_size = fmt.check_chunk_size(chunk_size)
        self.chunk_randomization = require_bool("chunk_randomization", chunk_randomization)
        self.batch_randomization = require_bool("batch_randomization", batch_randomization)
        self.compression = fmt.normalize_compression(compression)
        self.disable_offline_storage_writing = require_bool("disable_offline_storage_writing",
                                                            disable_offline_storage_writing)
        self.offline_pcloud = None if offline_pcloud is None else pcloud_source(backbone, offline_pcloud)
        self.max_resident_chunks = require_int("max_resident_chunks", max_resident_chunks, 1)
        self._reader: CacheReader | None = None
        self._limit: tuple[int, int] | None = None  # (samples, batches) of a subsample view
        super().__init__(None, None, backbone.batch_size, shuffle=False, seed=seed, **kwargs)
        self._open_cache(force_rebuild=require_bool("force_rebuild", force_rebuild),
                         progress=require_bool("progress", progress))

    KWARGS_NOTE = "; batch_size, drop_last and shuffle belong to the backbone (its spec or constructor)"

    @classmethod
    def valid_kwargs(cls) -> set[str]:
        return super().valid_kwargs() - set(BACKBONE_KWARGS)

    # ---------------------------------------------------------------- cache
    def _open_cache(self, *, force_rebuild: bool, progress: bool) -> None:
        path = self.offline_storage
        if force_rebuild and self.disable_offline_storage_writing:
            raise ValueError(
                "force_rebuild=True and disable_offline_storage_writing=True contradict each other: "
                "the first asks to rebuild the cache, the second forbids writing it; drop one of them")
        if is_sharded_cache(path) and os.path.exists(path):
            if force_rebuild:
                raise ValueError(f"force_rebuild=True cannot rebuild the sharded cache {path!r}; rebuild it with "
                                 "`pointseq cache build SPEC --workers N --force`")
            self._reader = ShardedReader(path, expected_fingerprint=expected_fingerprint(
                self.backbone, self.chunk_size, self.offline_pcloud))
        elif force_rebuild or not os.path.exists(path):
            if self.disable_offline_storage_writing:
                raise storage_error(path, "the file does not exist and disable_offline_storage_writing=True "
                                          "forbids building it")
            fingerprint = build_cache(
                self.backbone, path, chunk_size=self.chunk_size, compression=self.compression,
                offline_pcloud=self.offline_pcloud, force=force_rebuild, progress=progress,
                extra_config={"offline_sequencer": self._offline_config()})
        else:
            fingerprint = expected_fingerprint(self.backbone, self.chunk_size, self.offline_pcloud)
        if self._reader is None:
            self._reader = CacheReader(path, expected_fingerprint=fingerprint)
        self._chunks = ChunkCache(self._reader, self.max_resident_chunks)
        self._visit_orders = KeyedCache()  # chunk and batch visit order per pass
        self._row_starts: np.ndarray | None = None

    def _offline_config(self) -> dict:
        return {
            "offline_storage": self.offline_storage,
            "chunk_size": self.chunk_size,
            "chunk_randomization": self.chunk_randomization,
            "batch_randomization": self.batch_randomization,
            "compression": self.compression,
        }

    def get_config(self) -> dict:
        config = super().get_config()
        for key in ("shuffle", "batch_size"):
            config.pop(key, None)
        config.update(self._offline_config())
        config.update(
            backbone=self.backbone.get_config(),
            offline_pcloud=None if self.offline_pcloud is None else self.offline_pcloud.get_config(),
            disable_offline_storage_writing=self.disable_offline_storage_writing,
            max_resident_chunks=self.max_resident_chunks,
        )
        return config

    @property
    def num_cache_batches(self) -> int:
        """Batches stored in the cache (one pass)."""
        return self._reader.header.num_batches

    def _count_samples(self) -> int:
        if self._limit is not None:
            return self._limit[0]
        return 0 if self._reader is None else self._reader.header.num_samples

    def get_input_data(self) -> tuple:
        return self.backbone.get_input_data()

    def set_input_data(self, X: Any, y: Any = None) -> None:
        raise TypeError("OfflineSequencer serves its cache; give new data to a new backbone and cache file")

    # ---------------------------------------------------------------- order
    def _pass_batches(self) -> int:
        return self._reader.header.num_batches if self._limit is None else self._limit[1]

    def _cache_row_starts(self) -> np.ndarray:
        if self._row_starts is None:
            self._row_starts = self._reader.batch_row_starts()
        return self._row_starts

    def _rows_kept(self, batch: int) -> int | None:
        """Rows of cache batch ``batch`` that a subsample view keeps, None for all of them."""
        if self._limit is None:
            return None
        starts = self._cache_row_starts()
        return None if starts[batch + 1] <= self._limit[0] else int(self._limit[0] - starts[batch])

    def _visit(self, pass_index: int) -> VisitOrder:
        return self._visit_orders.get(
            (self.seed, self._pass_batches(), pass_index),
            lambda: visit_order(self._pass_batches(), self.chunk_size, self.seed, pass_index,
                                chunk_randomization=self.chunk_randomization,
                                batch_randomization=self.batch_randomization))

    def batch_plan(self) -> BatchPlan:
        """Epochs over whole cache batches: a pass visits each stored batch once."""
        return BatchPlan(self._pass_batches(), 1, False, self.epoch_size, self._shard)

    def __len__(self) -> int:
        if not self._training:
            return len(self._predict_view())
        return super().__len__()

    def _pass_order(self, pass_index: int) -> np.ndarray:
        return self._visit(pass_index).batches

    def _slot(self, idx: int) -> tuple[int, int]:
        """(pass, position in that pass) of training batch ``idx`` of the current epoch."""
        passes, positions = self.batch_plan().training_slots(self.epoch, self._check_index(idx))
        return int(passes[0]), int(positions[0])

    def cache_batch_index(self, idx: int) -> int:
        """The cache batch (file order) that training batch ``idx`` of the current epoch reads."""
        pass_index, position = self._slot(idx)
        return int(self._pass_order(pass_index)[position])

    def batch_indices(self, idx: int) -> np.ndarray:
        """The rows of the cache (file order) that training batch ``idx`` holds."""
        batch = self.cache_batch_index(idx)
        starts = self._cache_row_starts()
        stop = starts[batch + 1] if self._limit is None else min(starts[batch + 1], self._limit[0])
        return np.arange(starts[batch], stop, dtype=np.int64)

    # ---------------------------------------------------------------- batches
    def read_cached_batch(self, idx: int) -> Any:
        """The un-augmented batch that training batch ``idx`` reads, as read-only views.

        They are views of a resident chunk, which is not reused while any of them is alive.
        """
        pass_index, position = self._slot(idx)
        order = self._visit(pass_index)
        batch = int(order.batches[position])
        chunk = self._chunks.get(batch // self.chunk_size)
        rank = int(order.chunk_rank[position])
        if rank + 1 < len(order.chunks):
            self._chunks.prefetch(int(order.chunks[rank + 1]))
        else:
            self._chunks.prefetch(int(self._visit(pass_index + 1).chunks[0]))
        return chunk.batch(batch % self.chunk_size, self._reader.structure, self._rows_kept(batch))

    def getitem_training(self, idx: int) -> Any:
        batch = self.read_cached_batch(idx)
        if not isinstance(batch, tuple):
            return self.backbone.augment(batch, self.make_rng(idx))
        x = self.backbone.augment(batch[0], self.make_rng(idx))
        return (x,) + tuple(batch[1:])

    def _predict_view(self) -> AbstractSequencer:
        view = getattr(self, "_predict_backbone", None)
        if view is None:
            view = copy.copy(self._predict_source())
            view.enable_predict_mode()
            if self._shard is not None:
                view = view.shard(*self._shard)
            self._predict_backbone = view
        return view

    def getitem_predict(self, idx: int) -> tuple:
        return self._predict_view()[idx]

    def post_process_output(self, z: Any, idx: int | None = None, **kwargs: Any) -> Any:
        """The backbone's post-processing of a predict-mode output (batch ``idx`` or all).

        Predict mode serves the backbone's batches, so the backbone (in predict mode, with
        this view's shard or subsample) knows which samples an output row belongs to.
        Training batches come from the cache in a randomised order: refused.
        """
        if self.training:
            raise ValueError(
                "post_process_output takes predict-mode outputs of an OfflineSequencer; call "
                "enable_predict_mode() and predict again"
            )
        return self._predict_view().post_process_output(z, idx, **kwargs)

    # ---------------------------------------------------------------- views and pickling
    def shard(self, num_shards: int, index: int) -> "OfflineSequencer":
        view = super().shard(num_shards, index)
        view._predict_backbone = None
        return view

    @property
    def epoch(self) -> int:
        source = self.__dict__.get("_epoch_source")
        return source.epoch if source is not None else self._epoch

    @epoch.setter
    def epoch(self, value: int) -> None:
        self._epoch = value
        self._epoch_source = None  # a view given its own epoch stops following

    def subsample(self, n: int) -> "OfflineSequencer":
        """A view serving the cache batches that hold the first ``n`` samples (file order).

        The last of them is cut to ``n`` samples. The view follows this sequencer's epoch
        (until its own is set) and orders and augments by the same keyed rules: chunk and
        batch randomisation over its own batches, augmentation from ``(seed, epoch, idx)``
        with ``idx`` its own batch index. So it shows these samples transformed as training
        transforms them at that epoch, not the draws of the batch that holds them in the
        full epoch (those are keyed by that batch's position). It shares this sequencer's
        file and resident chunks; use it to inspect or export augmented samples.
        """
        if isinstance(n, (bool, np.bool_)) or not isinstance(n, (int, np.integer)):
            raise TypeError(f"n must be an int >= 1, got {n!r} ({type(n).__name__})")
        if n < 1:
            raise ValueError(f"n must be an int >= 1, got {n!r}")
        if n > self.num_samples:
            raise ValueError(f"n must be <= num_samples={self.num_samples}, got {n}")
        n = int(n)
        batches = int(np.searchsorted(self._cache_row_starts()[:-1], n, side="left"))
        view = copy.copy(self)
        view._epoch_source = self
        view._limit = (n, batches)
        cut = view._rows_kept(batches - 1)
        if cut is not None and not self._chunks.get((batches - 1) // self.chunk_size).rows_are_samples():
            raise ValueError(f"n={n} falls inside cache batch {batches - 1}, whose elements do not share "
                             "row counts; give an n that ends a batch")
        view._visit_orders = KeyedCache()
        view._predict_backbone = None
        view.load_clock = LoadClock()
        return view

    def _predict_source(self) -> AbstractSequencer:
        if self._limit is None or not self.backbone.num_samples:
            return self.backbone
        return self.backbone.subsample(min(self._limit[0], self.backbone.num_samples))

    @property
    def class_map(self) -> ClassMap | None:
        """The class map of the cache's labelled point-cloud files (from the cache config), or None."""
        stored = (self._reader.header.config.get("offline_pcloud") or {}).get("class_map")
        return None if stored is None else ClassMap.from_config(stored)

    @property
    def pcloud_config(self) -> dict | None:
        """The stored ``offline_pcloud`` config of the cache (sampler, features, class map, class
        counts), or None for a cache without point-cloud files."""
        return self._reader.header.config.get("offline_pcloud")

    def close(self) -> None:
        """Stop the readahead thread and close the file (reopened on the next read)."""
        self._chunks.close()
        self._reader.close()

    def __getstate__(self) -> dict:
        state = dict(self.__dict__)
        state["_predict_backbone"] = None  # rebuilt on first use in the new process
        state["_epoch"], state["_epoch_source"] = self.epoch, None  # a copy stops following
        return state
