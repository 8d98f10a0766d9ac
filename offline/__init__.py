"""The HDF5 offline cache of sequencer batches: format, building, reading, OfflineSequencer."""

from pointseq.offline.build import build_cache
from pointseq.offline.errors import OfflineStorageError
from pointseq.offline.order import visit_order
from pointseq.offline.pointcloud_source import PointCloudSource
from pointseq.offline.reader import CacheReader
from pointseq.offline.sequencer import OfflineSequencer
from pointseq.offline.writer import CacheWriter, write_cache

__all__ = [
    "CacheReader",
    "CacheWriter",
    "OfflineSequencer",
    "OfflineStorageError",
    "PointCloudSource",
    "build_cache",
    "visit_order",
    "write_cache",
]
