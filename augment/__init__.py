"""Point-cloud augmentation with numpy: random rotations, scaling and jitter over batches."""

from .augmentor import Augmentor, transformation_from_spec
from .distributions import Constant, Distribution, Normal, Uniform, distribution_from_spec
from .jitter import Jitter
from .rotation import Rotation, random_unit_axes, rotation_matrices
from .scale import Scale
from .transformation import (
    LinearMaps,
    LinearTransformation,
    PointwiseTransformation,
    Transformation,
)

__all__ = [
    "Augmentor",
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
