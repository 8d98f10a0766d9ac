"""Point clouds in and out: file readers, receptive fields and hierarchical sparse grids.

A leaf package: numpy, scipy and laspy only, nothing else of pointseq but its argument checks.
"""

from pointseq.pointclouds.metrics import ClassificationMetrics, classification_metrics, confusion_matrix
from pointseq.pointclouds.neighborhoods import Neighborhood
from pointseq.pointclouds.propagation import PropagationAccumulator, propagate
from pointseq.pointclouds.reading import PointCloud, read_point_cloud
from pointseq.pointclouds.receptive_field import ReceptiveFieldSampler
from pointseq.pointclouds.receptive_fields import CoveringFieldSampler, Fields, reduce_labels, sampler_from_spec
from pointseq.pointclouds.sparse_grid import SparseGrid, build_sparse_grid

__all__ = [
    "ClassificationMetrics",
    "CoveringFieldSampler",
    "Fields",
    "Neighborhood",
    "PointCloud",
    "PropagationAccumulator",
    "ReceptiveFieldSampler",
    "SparseGrid",
    "build_sparse_grid",
    "classification_metrics",
    "confusion_matrix",
    "propagate",
    "read_point_cloud",
    "reduce_labels",
    "sampler_from_spec",
]
