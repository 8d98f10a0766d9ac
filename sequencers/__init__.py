"""Keras PyDataset sequencers for point clouds."""

from sequencers.abstract_sequencer import AbstractSequencer, keyed_rng
from sequencers.registry import build_sequencer, register_sequencer
from sequencers.sequencer import Sequencer

__all__ = [
    "AbstractSequencer",
    "Sequencer",
    "build_sequencer",
    "keyed_rng",
    "register_sequencer",
]
