"""The order in which an epoch visits the batches of a cache: a pure function of its key."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from pointseq.sequencers.seeding import visit_order_rng


@dataclass(frozen=True)
class VisitOrder:
    """One pass over the cache: batch ids in visit order and the chunk sequence they follow.

    ``chunk_rank[p]`` is the position, in ``chunks``, of the chunk that holds the batch
    visited at position ``p``.
    """

    batches: np.ndarray
    chunks: np.ndarray
    chunk_rank: np.ndarray


def visit_order(
    num_batches: int,
    chunk_size: int,
    seed: int,
    pass_index: int,
    *,
    chunk_randomization: bool = False,
    batch_randomization: bool = False,
) -> VisitOrder:
    """Batch ids of pass ``pass_index`` over ``num_batches`` batches grouped in chunks.

    Pass 0 visits chunks and batches in file order. Later passes permute the chunk order
    (``chunk_randomization``) and the batch order inside each chunk
    (``batch_randomization``) with a generator keyed by ``(seed, pass_index)``, so every
    process computes the same order. Batches of one chunk are always visited together.
    """
    num_chunks = -(-num_batches // chunk_size)
    chunks = np.arange(num_chunks, dtype=np.int64)
    shuffle = pass_index > 0 and (chunk_randomization or batch_randomization)
    rng = None
    if shuffle:
        rng = visit_order_rng(seed, pass_index)
        if chunk_randomization:
            chunks = rng.permutation(chunks)
    parts, ranks = [], []
    for rank, c in enumerate(chunks):
        ids = np.arange(c * chunk_size, min((c + 1) * chunk_size, num_batches), dtype=np.int64)
        if rng is not None and batch_randomization:
            ids = rng.permutation(ids)
        parts.append(ids)
        ranks.append(np.full(len(ids), rank, dtype=np.int64))
    batches = np.concatenate(parts) if parts else np.zeros(0, dtype=np.int64)
    chunk_rank = np.concatenate(ranks) if ranks else np.zeros(0, dtype=np.int64)
    return VisitOrder(batches, chunks, chunk_rank)
