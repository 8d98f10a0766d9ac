"""Point clouds in and out: file readers and writers, class maps, features, receptive fields, sparse grids.

A leaf package: numpy, scipy, laspy and plyfile only, nothing else of pointseq but its argument checks.
"""

from pointseq.pointclouds.classes import ClassMap
from pointseq.pointclouds.features import FeatureSpec
from pointseq.pointclouds.reading import PointCloud, PointCloudFileError, read_point_cloud
from pointseq.pointclouds.receptive_field import Fields, ReceptiveFieldSampler
from pointseq.pointclouds.sparse_grid import SparseGrid, build_sparse_grid
from pointseq.pointclouds.writing import write_point_cloud

__all__ = [
    "ClassMap",
    "FeatureSpec",
    "Fields",
    "PointCloud",
    "PointCloudFileError",
    "ReceptiveFieldSampler",
    "SparseGrid",
    "build_sparse_grid",
    "read_point_cloud",
    "write_point_cloud",
]
