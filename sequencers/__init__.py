"""Keras PyDataset sequencers for point clouds."""

from sequencers.abstract_sequencer import AbstractSequencer, keyed_rng
from sequencers.callbacks import DataWaitProfiler, IntervalEvaluator, SequencerCheckpoint
from sequencers.epoch_sync import EpochSync
from sequencers.pointnet_model import build_pointnet_segmentation_model
from sequencers.prebuild import prebuild_model
from sequencers.registry import build_sequencer, register_sequencer
from sequencers.sequencer import Sequencer
from sequencers.shadow_layers import MaskedDense, PoolToParent, UnpoolToChild
from sequencers.shadow_model import build_shadow_segmentation_model, shadow_input_names
from sequencers.shadow_sequencer import (
    SparseShadowSequencer,
    assemble_shadow_batch,
    assemble_shadow_labels,
)
from sequencers.sparse_grid import SparseGrid, build_sparse_grid
from sequencers.worker_watchdog import WorkerProcessDied, ensure_watchdog

__all__ = [
    "AbstractSequencer",
    "DataWaitProfiler",
    "IntervalEvaluator",
    "SequencerCheckpoint",
    "WorkerProcessDied",
    "ensure_watchdog",
    "MaskedDense",
    "PoolToParent",
    "Sequencer",
    "SparseGrid",
    "SparseShadowSequencer",
    "UnpoolToChild",
    "assemble_shadow_batch",
    "assemble_shadow_labels",
    "build_shadow_segmentation_model",
    "build_sparse_grid",
    "shadow_input_names",
    "EpochSync",
    "build_pointnet_segmentation_model",
    "build_sequencer",
    "keyed_rng",
    "prebuild_model",
    "register_sequencer",
]
