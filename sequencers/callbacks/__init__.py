"""Keras callbacks for what ``fit`` lacks with sequencers: the epoch kept exact, data-wait
profiling, evaluation every N updates or samples, and sequencer state saved with the model
checkpoint."""

from pointseq.sequencers.callbacks.data_wait_profiler import DataWaitProfiler
from pointseq.sequencers.callbacks.epoch_sync import EpochSync
from pointseq.sequencers.callbacks.interval_evaluator import IntervalEvaluator
from pointseq.sequencers.callbacks.sequencer_checkpoint import SequencerCheckpoint

__all__ = ["DataWaitProfiler", "EpochSync", "IntervalEvaluator", "SequencerCheckpoint"]
