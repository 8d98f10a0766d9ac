"""HDF5 offline cache of sequencer batches: format, building, reading, OfflineSequencer, CLI."""

from offline.build import build_cache
from offline.errors import OfflineStorageError
from offline.order import visit_order
from offline.pointcloud_io import PointCloud, read_point_cloud
from offline.pointcloud_source import PointCloudSource
from offline.reader import CacheReader
from offline.receptive_field import ReceptiveFieldSampler
from offline.sequencer import OfflineSequencer
from offline.writer import CacheWriter, write_cache

__all__ = [
    "CacheReader",
    "CacheWriter",
    "OfflineSequencer",
    "OfflineStorageError",
    "PointCloud",
    "PointCloudSource",
    "ReceptiveFieldSampler",
    "build_cache",
    "read_point_cloud",
    "visit_order",
    "write_cache",
]
