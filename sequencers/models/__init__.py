"""Keras layers and reference models for dense and shadow (sparse-grid) batches."""

from pointseq.sequencers.models.losses import WeightedSparseCrossEntropy
from pointseq.sequencers.models.pointnet_model import build_pointnet_segmentation_model
from pointseq.sequencers.models.prebuild import prebuild_model
from pointseq.sequencers.models.shadow_layers import MaskedDense, PoolToParent, UnpoolToChild
from pointseq.sequencers.models.shadow_model import build_shadow_segmentation_model, shadow_input_names

__all__ = [
    "MaskedDense",
    "PoolToParent",
    "UnpoolToChild",
    "WeightedSparseCrossEntropy",
    "build_pointnet_segmentation_model",
    "build_shadow_segmentation_model",
    "prebuild_model",
    "shadow_input_names",
]
