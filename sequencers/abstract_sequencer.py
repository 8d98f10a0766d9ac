"""AbstractSequencer: a `keras.utils.PyDataset` whose batches are pure functions.

A batch depends only on ``(seed, epoch, idx)``: Keras fetches ``seq[0]`` and ``seq[1]`` in
the main process to infer tensor specs, serves indices out of order with ``workers > 1`` and
forks worker processes, so nothing may change inside ``__getitem__``. The epoch is explicit
state, advanced by the epoch hooks (or set with ``set_epoch``), never by fetching batches.
"""

from __future__ import annotations

import copy
import inspect
import math
import time
import warnings
from typing import Any

import keras
import numpy as np

from pointseq.arguments import require_bool, require_int
from pointseq.sequencers.batch_plan import BatchPlan, gather_slots
from pointseq.sequencers.keyed_cache import KeyedCache
from pointseq.sequencers.load_clock import LoadClock
from pointseq.sequencers.read_ahead import ReadAhead
from pointseq.sequencers.seeding import augmentation_rng, draw_seed, shuffle_rng
from pointseq.sequencers.structure import Structure
from pointseq.sequencers.worker_watchdog import ensure_watchdog

# Original keyword names accepted for compatibility.
KWARG_ALIASES = {"random_shuffle_indices": "shuffle"}


class AbstractSequencer(keras.utils.PyDataset):
    """Base class of every pointseq sequencer.

    Args:
        X: the inputs: an array, a list/tuple of arrays or a dict of arrays, one row per sample.
        y: the references, an array with one row per sample, or None.
        batch_size: samples per batch.
        shuffle: draw a new sample order every epoch from ``(seed, epoch)``.
        seed: the seed of shuffling and augmentation; None draws one once and keeps it.
        training: start in training mode (``(x, y)`` batches) or predict mode (``(x,)``).
        drop_last: leave out the last, partial batch of each epoch.
        epoch_size: a fixed number of batches per epoch; the sample order continues across
            the end of the data instead of restarting.
        workers: batches built at once. In threads (the default) they are the sequencer's own:
            it builds the next ``min(max_queue_size, 2 * workers)`` batches ahead in index
            order and tells Keras ``workers=1``, so tf.data keeps the prefetching Keras turns
            off when it runs worker threads itself (``worker_threads`` says how many).
        use_multiprocessing, max_queue_size: passed to `keras.utils.PyDataset` (with
            ``use_multiprocessing``, ``workers`` processes of Keras' pool).

    Subclasses implement ``_count_samples`` and ``extract_input_batch`` (and usually
    ``extract_reference_batch``); everything else has a working default.
    """

    def __init__(
        self,
        X: Structure = None,
        y: np.ndarray | None = None,
        batch_size: int = 16,
        *,
        shuffle: bool = True,
        seed: int | None = None,
        training: bool = True,
        drop_last: bool = False,
        epoch_size: int | None = None,
        workers: int = 1,
        use_multiprocessing: bool = False,
        max_queue_size: int = 10,
        **kwargs: Any,
    ) -> None:
        for old, new in KWARG_ALIASES.items():
            if old in kwargs:
                if new == "shuffle":
                    shuffle = require_bool(old, kwargs.pop(old))
        if kwargs:
            unknown = ", ".join(sorted(kwargs))
            valid = ", ".join(sorted(self.valid_kwargs()))
            raise TypeError(
                f"{type(self).__name__} got unknown keyword argument(s): {unknown}. "
                f"Valid keyword arguments are: {valid}{self.KWARGS_NOTE}"
            )
        self._init_workers(require_int("workers", workers, 1), require_bool("use_multiprocessing", use_multiprocessing),
                           require_int("max_queue_size", max_queue_size, 1))
        if use_multiprocessing:
            # Keras creates the worker pool before it calls on_epoch_begin.
            ensure_watchdog()
        self.batch_size = require_int("batch_size", batch_size, 1)
        self.shuffle = require_bool("shuffle", shuffle)
        self.drop_last = require_bool("drop_last", drop_last)
        self.epoch_size = None if epoch_size is None else require_int("epoch_size", epoch_size, 1)
        if seed is None:
            seed = draw_seed()
        self.seed = require_int("seed", seed, 0)
        self.epoch = 0
        self._training = require_bool("training", training)
        self._epoch_begun = False
        self._epoch_set = False  # set_epoch called since the last epoch hook
        self._batches_at_hook = 0  # load_clock's batch count at the last epoch hook
        self._unbegun_end_after_batches = False
        self._own_loop_warned = False
        self.opened_epochs = 0  # on_epoch_begin calls: lets callbacks see a pass outside training
        self._sample_ids: np.ndarray | None = None  # set by subsample()
        self._shard: tuple[int, int] | None = None  # (num_shards, index), set by shard()
        self._sample_orders = KeyedCache()  # sample order per pass
        self.load_clock = LoadClock()  # read by DataWaitProfiler
        if X is not None:
            self.set_input_data(X, y)
        elif y is not None:
            raise ValueError(f"y was given without X; give the inputs X too (got X=None, y of type "
                             f"{type(y).__name__})")

    def _init_workers(self, workers: int, use_multiprocessing: bool, max_queue_size: int) -> None:
        """Worker threads are the sequencer's own (see read_ahead.py): Keras gets one worker."""
        threads = workers if workers > 1 and not use_multiprocessing else 0
        super().__init__(workers=1 if threads else workers, use_multiprocessing=use_multiprocessing,
                         max_queue_size=max_queue_size)
        self.worker_threads = threads
        self._read_ahead = ReadAhead(threads, min(max_queue_size, 2 * threads)) if threads else None

    # ---------------------------------------------------------------- kwargs and config
    KWARGS_NOTE = ""  # appended to the unknown-keyword message (where other keywords go)

    @classmethod
    def valid_kwargs(cls) -> set[str]:
        """Keyword arguments accepted by this class's constructor (its own and inherited)."""
        names: set[str] = set(KWARG_ALIASES)
        for klass in cls.__mro__:
            init = klass.__dict__.get("__init__")
            if init is None or klass is keras.utils.PyDataset:
                continue
            for p in inspect.signature(init).parameters.values():
                if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY) and p.name != "self":
                    names.add(p.name)
        return names

    def get_config(self) -> dict:
        """The JSON-able keyword arguments that rebuild this sequencer (without its data)."""
        return {
            "type": type(self).__name__,
            "batch_size": self.batch_size,
            "shuffle": self.shuffle,
            "seed": self.seed,
            "drop_last": self.drop_last,
            "epoch_size": self.epoch_size,
        }

    # ---------------------------------------------------------------- data
    def set_input_data(self, X: Structure, y: np.ndarray | None = None) -> None:
        """Replace the data; subclasses validate and store it, then call this."""
        self._sample_ids = None
        if self._read_ahead is not None:
            self._read_ahead.close()  # batches built from the old data
        if self.num_samples == 0:
            raise ValueError(f"X must hold at least one sample, got 0 ({type(self).__name__})")
        self._check_some_batches()

    def _check_some_batches(self) -> None:
        if self.drop_last and self.epoch_size is None and self.num_samples < self.batch_size:
            raise ValueError(
                f"drop_last=True with batch_size={self.batch_size} leaves no batch of "
                f"{self.num_samples} samples; use a smaller batch_size or drop_last=False"
            )

    def get_input_data(self) -> tuple[Structure, np.ndarray | None]:
        raise NotImplementedError(f"{type(self).__name__} does not implement get_input_data()")

    def _count_samples(self) -> int:
        raise NotImplementedError(f"{type(self).__name__} must implement _count_samples()")

    @property
    def num_samples(self) -> int:
        """Samples per pass over the data (after ``subsample``)."""
        if self._sample_ids is not None:
            return len(self._sample_ids)
        return self._count_samples()

    # ---------------------------------------------------------------- modes
    @property
    def training(self) -> bool:
        return self._training

    def enable_training_mode(self) -> None:
        """Serve shuffled, augmented ``(x, y)`` batches."""
        self._training = True

    def enable_predict_mode(self) -> None:
        """Serve ``(x,)`` batches in dataset order, never shuffled or augmented."""
        self._training = False

    # ---------------------------------------------------------------- epochs and state
    def set_epoch(self, epoch: int) -> None:
        self.epoch = require_int("epoch", epoch, 0)
        self._epoch_begun = False
        self._epoch_set = True

    def state_dict(self) -> dict:
        """What a resumed run needs to serve the same batches: the seed and the epoch."""
        return {"seed": self.seed, "epoch": self.epoch}

    def load_state_dict(self, state: dict) -> None:
        missing = {"seed", "epoch"} - set(state)
        if missing:
            raise KeyError(f"state dict lacks {sorted(missing)}; got keys {sorted(state)}")
        self.seed = require_int("state['seed']", state["seed"], 0)
        self.set_epoch(state["epoch"])

    def on_epoch_begin(self) -> None:
        if self.use_multiprocessing:
            ensure_watchdog()
        self._epoch_begun = True
        self.opened_epochs += 1
        self._batches_since_hook()
        self._unbegun_end_after_batches = self._epoch_set = False

    def on_epoch_end(self) -> None:
        # Keras also calls this before the first epoch and around validation, each time just
        # before an on_epoch_begin; only an end that closes a begun epoch advances it.
        served = self._batches_since_hook()
        if self._epoch_begun and self._training:
            self.epoch += 1
        elif self._training:
            self._notice_end_without_begin(served)
        self._epoch_begun = self._epoch_set = False

    def _batches_since_hook(self) -> int:
        """Batches built in this process since the last epoch hook."""
        done = self.load_clock.read()[1]
        served, self._batches_at_hook = done - self._batches_at_hook, done
        return served

    def _notice_end_without_begin(self, served: int) -> None:
        """Warn once when ``on_epoch_end`` closes epochs no ``on_epoch_begin`` opened.

        That is a training loop of one's own, where the epoch would never advance. Keras'
        extra ends come just before an ``on_epoch_begin``; a loop's come in a row, each
        after batches were served (so the warning comes at the end of its second epoch).
        """
        own_loop = served > 0 and not self._epoch_set and self._unbegun_end_after_batches
        self._unbegun_end_after_batches = served > 0
        if own_loop and not self._own_loop_warned:
            self._own_loop_warned = True
            warnings.warn(
                f"{type(self).__name__}.on_epoch_end() was called without on_epoch_begin() after "
                f"{served} training batches, so the epoch stays {self.epoch} and every epoch repeats "
                "its shuffle and augmentation. In a training loop of your own, call "
                "seq.set_epoch(epoch) at the start of each epoch.", RuntimeWarning, stacklevel=3)

    # ---------------------------------------------------------------- batch layout
    def batch_plan(self) -> BatchPlan:
        """The shape of every epoch: items, batch size, epoch size, shard."""
        return BatchPlan(self.num_samples, self.batch_size, self.drop_last, self.epoch_size, self._shard)

    @property
    def num_dataset_batches(self) -> int:
        """Batches in one pass over the data in dataset order (predict mode's length)."""
        return math.ceil(self.num_samples / self.batch_size)

    def __len__(self) -> int:
        plan = self.batch_plan()
        return plan.training_length() if self._training else plan.predict_length()

    def _pass_order(self, pass_index: int) -> np.ndarray:
        """The sample order of one pass over the data: keyed by ``(seed, pass)``."""
        n = self.num_samples
        if not self.shuffle:
            return np.arange(n, dtype=np.int64)
        return self._sample_orders.get(
            (self.seed, n, pass_index),
            lambda: shuffle_rng(self.seed, pass_index).permutation(n).astype(np.int64))

    def _check_index(self, idx: int) -> int:
        length = len(self)
        if isinstance(idx, (bool, np.bool_)) or not isinstance(idx, (int, np.integer)):
            raise TypeError(f"batch index must be an int, got {idx!r}")
        idx = int(idx)
        if idx < 0:
            idx += length
        if not 0 <= idx < length:
            raise IndexError(f"batch index {idx} out of range for {length} batches")
        return idx

    def batch_indices(self, idx: int) -> np.ndarray:
        """The sample indices (into X) of training batch ``idx`` in the current epoch."""
        idx = self._check_index(idx)
        passes, positions = self.batch_plan().training_slots(self.epoch, idx)
        return self._to_data_ids(gather_slots(passes, positions, self._pass_order))

    def predict_indices(self, idx: int) -> np.ndarray:
        """The sample indices of predict batch ``idx``: dataset order."""
        idx = self._check_index(idx)
        return self._to_data_ids(self.batch_plan().predict_items(idx))

    def _to_data_ids(self, ids: np.ndarray) -> np.ndarray:
        return ids if self._sample_ids is None else self._sample_ids[ids]

    def make_rng(self, idx: int) -> np.random.Generator:
        """The augmentation generator of training batch ``idx`` in the current epoch."""
        key = self.batch_plan().augmentation_index(int(idx), self._training)
        return augmentation_rng(self.seed, self.epoch, key)

    # ---------------------------------------------------------------- batches
    def extract_input_batch(self, indices: np.ndarray) -> Structure:
        raise NotImplementedError(f"{type(self).__name__} must implement extract_input_batch()")

    def extract_reference_batch(self, indices: np.ndarray) -> np.ndarray | None:
        return None

    def extract_sample_weight_batch(self, indices: np.ndarray) -> np.ndarray | None:
        return None

    def load_batch(self, indices: np.ndarray) -> tuple:
        """The un-augmented training batch of these samples: ``(x, y)`` or ``(x, y, sw)``."""
        x = self.extract_input_batch(indices)
        y = self.extract_reference_batch(indices)
        sw = self.extract_sample_weight_batch(indices)
        if sw is not None:
            return (x, y, sw)
        return (x, y)

    def augment(self, batch_x: Structure, rng: np.random.Generator) -> Structure:
        """Return an augmented copy of ``batch_x``; the identity here."""
        return batch_x

    def getitem_training(self, idx: int) -> tuple:
        batch = self.load_batch(self.batch_indices(idx))
        x = self.augment(batch[0], self.make_rng(idx))
        return (x,) + tuple(batch[1:])

    def getitem_predict(self, idx: int) -> tuple:
        return (self.extract_input_batch(self.predict_indices(idx)),)

    def __getitem__(self, idx: int) -> tuple:
        idx = self._check_index(idx)
        if self._read_ahead is not None:
            return self._read_ahead.get((self.epoch, self._training), idx, len(self), self._build_item)
        return self._build_item(idx)

    def _build_item(self, idx: int) -> tuple:
        start = time.perf_counter()
        try:
            if self._training:
                return self.getitem_training(idx)
            return self.getitem_predict(idx)
        except Exception as error:
            # Keep the type (callers catch it) and name the batch in the message, which
            # survives the trip back from a worker thread or process. A copy, because one
            # exception object may reach several threads (a chunk read they all waited on).
            mode = "training" if self._training else "predict"
            where = f"{type(self).__name__}[{idx}] ({mode}, epoch {self.epoch}) failed: "
            if error.args and isinstance(error.args[0], str):
                try:
                    named = copy.copy(error)
                    named.args = (where + error.args[0],) + error.args[1:]
                except Exception:  # an exception type that cannot be copied
                    named = None
                if named is not None:
                    raise named.with_traceback(error.__traceback__) from error
            error.add_note(where.rstrip(": "))
            raise
        finally:
            self.load_clock.add(time.perf_counter() - start)

    def post_process_output(self, z: Any, idx: int | None = None) -> Any:
        """Turn a model output back into per-sample results; the identity here."""
        return z

    # ---------------------------------------------------------------- views
    def __copy__(self) -> "AbstractSequencer":
        """A shallow copy whose batches built ahead are its own (views serve other batches)."""
        view = type(self).__new__(type(self))
        view.__dict__.update(self.__dict__)
        if self._read_ahead is not None:
            view._read_ahead = self._read_ahead.fresh()
        return view

    def shard(self, num_shards: int, index: int) -> "AbstractSequencer":
        """A copy serving replica ``index`` of ``num_shards``: disjoint batches, equal counts.

        Replicas read one continuous stream of full batches round-robin, so every replica
        runs ``len(self)`` steps per epoch and a remainder carries into the next epoch rather
        than being dropped or repeated.
        """
        num_shards = require_int("num_shards", num_shards, 1)
        index = require_int("index", index, 0)
        if index >= num_shards:
            raise ValueError(f"index must be in [0, {num_shards}), got {index}")
        if self._shard is not None:
            raise ValueError("this sequencer is already a shard; shard the original instead")
        per_pass = self.batch_plan().stream_batches_per_pass
        if self.epoch_size is None and per_pass < num_shards:
            raise ValueError(
                f"num_shards={num_shards} exceeds the {per_pass} batches one "
                f"pass over {self.num_samples} samples gives at batch_size={self.batch_size}; "
                "use fewer shards, a smaller batch_size or epoch_size"
            )
        view = copy.copy(self)
        view._shard = (num_shards, index)
        view._sample_orders = KeyedCache()
        view.load_clock = LoadClock()
        return view

    def subsample(self, n: int) -> "AbstractSequencer":
        """A copy over the first ``n`` samples, e.g. to look at a few augmented batches."""
        n = require_int("n", n, 1)
        if n > self.num_samples:
            raise ValueError(f"n must be <= num_samples={self.num_samples}, got {n}")
        view = copy.copy(self)
        view._sample_ids = self._to_data_ids(np.arange(n, dtype=np.int64))
        view._sample_orders = KeyedCache()
        view.load_clock = LoadClock()
        view._check_some_batches()
        return view

    def __repr__(self) -> str:
        mode = "training" if self._training else "predict"
        return (
            f"{type(self).__name__}(num_samples={self.num_samples}, batch_size={self.batch_size}, "
            f"batches={len(self)}, epoch={self.epoch}, seed={self.seed}, mode={mode})"
        )
