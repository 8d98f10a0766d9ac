"""Per-field predictions back to every point of the cloud.

Each point of a field's neighbourhood takes the mean of the predictions of its k nearest kept
points in that field (``Fields.member_slots``, k = num_encoding_neighbors); a point's result
is the mean over every field whose neighbourhood contains it (each field counts once).
Predictions can be added batch by batch (`PropagationAccumulator`), so a large tile needs
memory for its per-point sums, not for all fields' predictions at once.
"""

from __future__ import annotations

import numpy as np
from scipy.sparse import csc_matrix, csr_matrix

from pointseq.arguments import require_int
from pointseq.pointclouds.receptive_fields import BLOCK_MEMBERS, Fields, field_blocks


class PropagationAccumulator:
    """Sums of propagated field predictions per point; `add` batches of fields, then `result`.

    Every field must be added exactly once, in any order of batches.
    """

    def __init__(self, fields: Fields, num_classes: int) -> None:
        if not isinstance(fields, Fields):
            raise TypeError(f"fields must be a Fields object, got {type(fields).__name__}")
        self.fields = fields
        self.num_classes = require_int("num_classes", num_classes, 1)
        self.sums = np.zeros(fields.num_source_points * self.num_classes, dtype=np.float64)
        self.added = np.zeros(len(fields), dtype=bool)

    def add(self, first_field: int, probabilities: np.ndarray) -> None:
        """Add predictions (B, P, C) of fields ``first_field .. first_field + B - 1``."""
        fields = self.fields
        first = require_int("first_field", first_field, 0)
        expected = (fields.num_points, self.num_classes)
        if not isinstance(probabilities, np.ndarray) or probabilities.ndim != 3 or probabilities.shape[1:] != expected:
            raise ValueError(f"probabilities must be an array (B, {expected[0]}, {expected[1]}), "
                             f"got {getattr(probabilities, 'shape', type(probabilities).__name__)}")
        stop = first + probabilities.shape[0]
        if stop > len(fields):
            raise ValueError(f"fields {first}..{stop - 1} do not exist: there are {len(fields)} fields")
        if self.added[first:stop].any():
            raise ValueError(f"fields {np.flatnonzero(self.added[first:stop])[:5] + first} were already added")
        self.added[first:stop] = True
        rows = slice(fields.member_offsets[first], fields.member_offsets[stop])
        values = self._slot_means(first, stop, probabilities)
        members = fields.member_indices[rows]
        if members.size * self.num_classes * 8 < self.sums.size:  # a small batch: touch only its points
            flat = members[:, None] * self.num_classes + np.arange(self.num_classes)
            np.add.at(self.sums, flat.ravel(), values.ravel())
        else:  # one sparse product adds each member row to its point's sums
            index = sparse_index_dtype(max(members.size, fields.num_source_points) + 1)
            scatter = csc_matrix((np.ones(members.size, dtype=values.dtype), members.astype(index),
                                  np.arange(members.size + 1, dtype=index)), shape=(fields.num_source_points, members.size))
            self.sums += (scatter @ values).ravel()

    def _slot_means(self, first: int, stop: int, probabilities: np.ndarray) -> np.ndarray:
        """For each member row of fields [first, stop): the mean (rows, C) of its k nearest kept points' predictions.

        A sparse matrix (one row per member, 1/k at its k slots) times the batch's predictions (B * P, C).
        """
        fields = self.fields
        rows = slice(fields.member_offsets[first], fields.member_offsets[stop])
        slots = fields.member_slots[rows]
        k = slots.shape[1]
        table = probabilities.reshape(-1, self.num_classes)
        table = table.astype(np.result_type(table.dtype, np.float32), copy=False)
        index = sparse_index_dtype(max(slots.size, table.shape[0]) + 1)
        field_starts = np.arange(stop - first, dtype=index) * index(fields.num_points)
        columns = np.repeat(field_starts, np.diff(fields.member_offsets[first:stop + 1]))[:, None] + slots.astype(index)
        means = csr_matrix((np.full(columns.size, 1.0 / k, dtype=table.dtype), columns.ravel(),
                            np.arange(0, columns.size + 1, k, dtype=index)), shape=(slots.shape[0], table.shape[0]))
        return means @ table

    def result(self) -> np.ndarray:
        """Mean probabilities (N, C) float32 over the fields containing each point."""
        if not self.added.all():
            missing = np.flatnonzero(~self.added)
            raise ValueError(f"{missing.size} fields were never added (first: {missing[:5].tolist()})")
        counts = np.bincount(self.fields.member_indices, minlength=self.fields.num_source_points)
        return mean_over_fields(self.sums.reshape(-1, self.num_classes), counts, "the fields do not cover the cloud")


def mean_over_fields(sums: np.ndarray | None, counts: np.ndarray, uncovered: str) -> np.ndarray:
    """Mean probabilities (N, C) float32: per-point ``sums`` (N, C; None when nothing was added)
    over the ``counts`` (N,) of fields containing each point; a point in no field is a
    ValueError (``uncovered`` says why)."""
    empty = int(np.sum(counts == 0))
    if empty or sums is None:
        raise ValueError(f"{empty} points lie in no field: {uncovered}")
    return (sums / counts[:, None]).astype(np.float32)


def sparse_index_dtype(largest: int) -> type:
    """int32 sparse-matrix indices where they fit (scipy would convert int64 ones), else int64."""
    return np.int32 if largest < np.iinfo(np.int32).max else np.int64


def propagate(fields: Fields, field_probabilities: np.ndarray) -> np.ndarray:
    """Per-point probabilities (N, C) from per-field probabilities (M, P, C), all fields at once."""
    if not isinstance(field_probabilities, np.ndarray) or field_probabilities.ndim != 3:
        raise ValueError(f"field_probabilities must be an array (M, P, C), "
                         f"got {getattr(field_probabilities, 'shape', type(field_probabilities).__name__)}")
    if field_probabilities.shape[0] != len(fields):
        raise ValueError(f"field_probabilities has {field_probabilities.shape[0]} fields, "
                         f"the fields object has {len(fields)}")
    accumulator = PropagationAccumulator(fields, field_probabilities.shape[2])
    for first, stop in field_blocks(fields.member_offsets, BLOCK_MEMBERS):
        accumulator.add(first, field_probabilities[first:stop])
    return accumulator.result()
