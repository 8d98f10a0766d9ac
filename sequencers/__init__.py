"""Keras PyDataset sequencers for point clouds, their registry, callbacks and models."""

from pointseq.sequencers.abstract_sequencer import AbstractSequencer
from pointseq.sequencers.callbacks import (
    DataWaitProfiler,
    EpochSync,
    IntervalEvaluator,
    SequencerCheckpoint,
)
from pointseq.sequencers.models import (
    MaskedDense,
    PoolToParent,
    UnpoolToChild,
    build_pointnet_segmentation_model,
    build_shadow_segmentation_model,
    prebuild_model,
    shadow_input_names,
)
from pointseq.sequencers.registry import build_sequencer, register_sequencer
from pointseq.sequencers.seeding import augmentation_rng
from pointseq.sequencers.sequencer import Sequencer
from pointseq.sequencers.shadow_sequencer import (
    SparseShadowSequencer,
    assemble_shadow_batch,
    assemble_shadow_labels,
)
from pointseq.sequencers.worker_watchdog import WorkerProcessDied, ensure_watchdog

__all__ = [
    "AbstractSequencer",
    "DataWaitProfiler",
    "EpochSync",
    "IntervalEvaluator",
    "MaskedDense",
    "PoolToParent",
    "Sequencer",
    "SequencerCheckpoint",
    "SparseShadowSequencer",
    "UnpoolToChild",
    "WorkerProcessDied",
    "assemble_shadow_batch",
    "assemble_shadow_labels",
    "augmentation_rng",
    "build_pointnet_segmentation_model",
    "build_sequencer",
    "build_shadow_segmentation_model",
    "ensure_watchdog",
    "prebuild_model",
    "register_sequencer",
    "shadow_input_names",
]
