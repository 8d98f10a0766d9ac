"""pointseq: point-cloud data for Keras 3 models.

The short public API is importable from here; each name loads its module on first use, so
``import pointseq`` (and the ``pointseq`` command's ``--help``) does not import Keras.
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.2.0"

_PUBLIC = {
    "Augmentor": "pointseq.augment",
    "Rotation": "pointseq.augment",
    "Scale": "pointseq.augment",
    "Jitter": "pointseq.augment",
    "AbstractSequencer": "pointseq.sequencers",
    "Sequencer": "pointseq.sequencers",
    "SparseShadowSequencer": "pointseq.sequencers",
    "build_sequencer": "pointseq.sequencers",
    "register_sequencer": "pointseq.sequencers",
    "EpochSync": "pointseq.sequencers",
    "DataWaitProfiler": "pointseq.sequencers",
    "IntervalEvaluator": "pointseq.sequencers",
    "SequencerCheckpoint": "pointseq.sequencers",
    "build_pointnet_segmentation_model": "pointseq.sequencers",
    "build_shadow_segmentation_model": "pointseq.sequencers",
    "prebuild_model": "pointseq.sequencers",
    "SparseGrid": "pointseq.pointclouds",
    "build_sparse_grid": "pointseq.pointclouds",
    "PointCloud": "pointseq.pointclouds",
    "read_point_cloud": "pointseq.pointclouds",
    "write_point_cloud": "pointseq.pointclouds",
    "ClassMap": "pointseq.pointclouds",
    "OfflineSequencer": "pointseq.offline",
    "OfflineStorageError": "pointseq.offline",
    "build_cache": "pointseq.offline",
    "Segmenter": "pointseq.tiles",
    "register_model_type": "pointseq.tiles",
}

__all__ = sorted(_PUBLIC) + ["__version__"]


def __getattr__(name: str) -> Any:
    module = _PUBLIC.get(name)
    if module is None:
        raise AttributeError(f"module 'pointseq' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_PUBLIC))
