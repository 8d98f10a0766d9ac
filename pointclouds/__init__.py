"""Point clouds in and out: file readers, receptive fields and hierarchical sparse grids.

A leaf package: numpy, scipy and laspy only, nothing else of pointseq but its argument checks.
"""

from pointseq.pointclouds.reading import PointCloud, read_point_cloud
from pointseq.pointclouds.receptive_field import Fields, ReceptiveFieldSampler
from pointseq.pointclouds.sparse_grid import SparseGrid, build_sparse_grid

__all__ = [
    "Fields",
    "PointCloud",
    "ReceptiveFieldSampler",
    "SparseGrid",
    "build_sparse_grid",
    "read_point_cloud",
]
