"""Which items each batch of an epoch takes: a pure function of the plan and the key.

A pass is one visit of every item (a sample, or a whole cached batch) in an order the
caller derives from ``(seed, pass)``. A plain epoch is one pass cut into batches. With
``epoch_size`` or a shard, epochs are windows of one continuous stream of full batches
that runs across pass boundaries, so shards share it round-robin and nothing is dropped or
repeated.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class BatchPlan:
    """How ``num_items`` items form batches: the shape of every epoch, not its order.

    Attributes:
        num_items: items in one pass.
        batch_size: items per batch.
        drop_last: leave out a pass's last partial batch (plain epochs only).
        epoch_size: batches per epoch, read from the continuous stream; None for one pass.
        shard: ``(num_shards, index)``: this replica's round-robin share of the stream.
    """

    num_items: int
    batch_size: int
    drop_last: bool = False
    epoch_size: int | None = None
    shard: tuple[int, int] | None = None

    @property
    def uses_stream(self) -> bool:
        return self.epoch_size is not None or self.shard is not None

    @property
    def dataset_batches(self) -> int:
        """Batches of one pass in dataset order, the partial last one included."""
        return math.ceil(self.num_items / self.batch_size)

    @property
    def stream_batches_per_pass(self) -> int:
        """Full batches one pass adds to the continuous stream."""
        return self.num_items // self.batch_size

    def training_length(self) -> int:
        if self.epoch_size is not None:
            return self.epoch_size
        if self.shard is not None:
            return self.stream_batches_per_pass // self.shard[0]
        return self.stream_batches_per_pass if self.drop_last else self.dataset_batches

    def predict_length(self) -> int:
        if self.shard is None:
            return self.dataset_batches
        num_shards, index = self.shard
        return len(range(index, self.dataset_batches, num_shards))

    def stream_batch(self, epoch: int, idx: int) -> int:
        """The place of training batch ``idx`` of ``epoch`` in the continuous stream."""
        if self.shard is not None:
            num_shards, index = self.shard
            return (epoch * self.training_length() + idx) * num_shards + index
        return epoch * self.epoch_size + idx

    def training_slots(self, epoch: int, idx: int) -> tuple[np.ndarray, np.ndarray]:
        """``(passes, positions)``: for each item of training batch ``idx`` of ``epoch``,
        the pass it comes from and its position in that pass's order."""
        bs = self.batch_size
        if self.uses_stream:
            start = self.stream_batch(epoch, idx) * bs
            return np.divmod(np.arange(start, start + bs, dtype=np.int64), self.num_items)
        positions = np.arange(idx * bs, min((idx + 1) * bs, self.num_items), dtype=np.int64)
        return np.full(len(positions), epoch, dtype=np.int64), positions

    def predict_items(self, idx: int) -> np.ndarray:
        """Items of predict batch ``idx``: dataset order, this shard's batches only."""
        if self.shard is not None:
            num_shards, index = self.shard
            idx = idx * num_shards + index
        start = idx * self.batch_size
        return np.arange(start, min(start + self.batch_size, self.num_items), dtype=np.int64)

    def augmentation_index(self, idx: int, training: bool) -> int:
        """The key of batch ``idx``'s augmentation: its place in the whole epoch, so shards
        augment together exactly like one unsharded reader."""
        if self.shard is not None and training:
            num_shards, index = self.shard
            return idx * num_shards + index
        return idx


def gather_slots(passes: np.ndarray, positions: np.ndarray, pass_order) -> np.ndarray:
    """Items at ``positions`` of each pass's order; ``pass_order(p)`` gives pass ``p``'s."""
    items = np.empty(len(positions), dtype=np.int64)
    for p in np.unique(passes):
        where = passes == p
        items[where] = pass_order(int(p))[positions[where]]
    return items
