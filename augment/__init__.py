"""Point-cloud augmentation with numpy: random rotations, scaling and jitter over batches."""

from pointseq.augment.augmentor import Augmentor, as_augmentor, transformation_from_spec
from pointseq.augment.distributions import Constant, Distribution, Normal, Uniform, distribution_from_spec
from pointseq.augment.jitter import Jitter
from pointseq.augment.rotation import Rotation, random_unit_axes, rotation_matrices
from pointseq.augment.scale import Scale
from pointseq.augment.transformation import (
    LinearMaps,
    LinearTransformation,
    PointwiseTransformation,
    Transformation,
)

__all__ = [
    "Augmentor",
    "as_augmentor",
    "Constant",
    "Distribution",
    "Jitter",
    "LinearMaps",
    "LinearTransformation",
    "Normal",
    "PointwiseTransformation",
    "Rotation",
    "Scale",
    "Transformation",
    "Uniform",
    "distribution_from_spec",
    "random_unit_axes",
    "rotation_matrices",
    "transformation_from_spec",
]
