"""Keras callbacks for what ``fit`` lacks with sequencers: data-wait profiling, evaluation
every N updates or samples, and sequencer state saved with the model checkpoint."""

from sequencers.callbacks.data_wait_profiler import DataWaitProfiler
from sequencers.callbacks.interval_evaluator import IntervalEvaluator
from sequencers.callbacks.sequencer_checkpoint import SequencerCheckpoint

__all__ = ["DataWaitProfiler", "IntervalEvaluator", "SequencerCheckpoint"]
