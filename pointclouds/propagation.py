"""Per-field predictions back to every point of the cloud.

Each point of a field's neighbourhood takes the mean of the predictions of its k nearest kept
points in that field (``Fields.member_slots``, k = num_encoding_neighbors); a point's result
is the mean over every field whose neighbourhood contains it (each field counts once).
Predictions can be added batch by batch (`PropagationAccumulator`), so a large tile needs
memory for its per-point sums, not for all fields' predictions at once.
"""

from __future__ import annotations

import numpy as np

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
        offsets = fields.member_offsets
        rows = slice(offsets[first], offsets[stop])
        flat_slots = (fields.member_fields(first, stop) - first)[:, None] * fields.num_points + fields.member_slots[rows]
        table = probabilities.reshape(-1, self.num_classes)
        values = table[flat_slots[:, 0]].astype(np.float64)
        for column in range(1, flat_slots.shape[1]):
            values += table[flat_slots[:, column]]
        values /= flat_slots.shape[1]  # mean over the k nearest kept points
        flat = fields.member_indices[rows, None] * self.num_classes + np.arange(self.num_classes)
        if flat.size * 8 < self.sums.size:  # a small batch: touch only its points, not all N x C sums
            np.add.at(self.sums, flat.ravel(), values.ravel())
        else:
            self.sums += np.bincount(flat.ravel(), weights=values.ravel(), minlength=self.sums.size)

    def result(self) -> np.ndarray:
        """Mean probabilities (N, C) float32 over the fields containing each point."""
        if not self.added.all():
            missing = np.flatnonzero(~self.added)
            raise ValueError(f"{missing.size} fields were never added (first: {missing[:5].tolist()})")
        counts = np.bincount(self.fields.member_indices, minlength=self.fields.num_source_points)
        if np.any(counts == 0):
            raise ValueError(f"{int(np.sum(counts == 0))} points lie in no field: the fields do not cover the cloud")
        sums = self.sums.reshape(-1, self.num_classes)
        return (sums / counts[:, None]).astype(np.float32)


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
