"""Point clouds in and out: file readers and writers, class maps, features, receptive fields,
propagation back to points, metrics, sparse grids.

A leaf package: numpy, scipy, laspy and plyfile only, nothing else of pointseq but its argument checks.
"""

from pointseq.pointclouds.classes import ClassMap
from pointseq.pointclouds.features import FeatureSpec
from pointseq.pointclouds.field_inputs import field_inputs
from pointseq.pointclouds.metrics import ClassificationMetrics, classification_metrics, confusion_matrix
from pointseq.pointclouds.neighborhoods import Neighborhood
from pointseq.pointclouds.propagation import PropagationAccumulator, propagate
from pointseq.pointclouds.reading import PointCloud, PointCloudFileError, read_point_cloud
from pointseq.pointclouds.receptive_fields import CoveringFieldSampler, Fields, reduce_labels, sampler_from_spec
from pointseq.pointclouds.sparse_grid import SparseGrid, build_sparse_grid
from pointseq.pointclouds.writing import write_point_cloud

__all__ = [
    "ClassMap",
    "ClassificationMetrics",
    "CoveringFieldSampler",
    "FeatureSpec",
    "Fields",
    "Neighborhood",
    "PointCloud",
    "PointCloudFileError",
    "PropagationAccumulator",
    "SparseGrid",
    "build_sparse_grid",
    "classification_metrics",
    "confusion_matrix",
    "field_inputs",
    "propagate",
    "read_point_cloud",
    "reduce_labels",
    "sampler_from_spec",
    "write_point_cloud",
]
