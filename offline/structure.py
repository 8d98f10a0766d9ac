"""Flatten nested batches into lists of arrays and rebuild them from a JSON description.

A batch follows the Keras convention: a bare ``x``, or a tuple ``(x,)``, ``(x, y)`` or
``(x, y, sample_weight)``. ``x`` and ``y`` are arrays, tuples of them or dicts of them,
nested freely. Inputs (the leaves of ``x``) and references (the leaves of ``y`` and
``sample_weight``) are stored separately.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import numpy as np

PARTS = ("x", "y", "sample_weight")


def _describe(value: Any, name: str, leaves: list[np.ndarray], names: list[str]) -> Any:
    if value is None:
        return None
    if isinstance(value, tuple):
        return {"tuple": [_describe(v, f"{name}/{i}", leaves, names) for i, v in enumerate(value)]}
    if isinstance(value, dict):
        items = []
        for key, v in value.items():
            if not isinstance(key, str):
                raise TypeError(f"batch dict keys must be str, got {key!r} in {name!r}")
            items.append([key, _describe(v, f"{name}/{key}", leaves, names)])
        return {"dict": items}
    if isinstance(value, list):
        raise TypeError(
            f"batch element {name!r} is a list; use a tuple or a dict for several arrays "
            "(Keras reads a list [x1, x2] as (x, y))"
        )
    array = np.asarray(value)
    if array.ndim == 0:
        raise ValueError(
            f"batch element {name!r} must have a batch axis (ndim >= 1), got a scalar {value!r}"
        )
    if array.dtype.hasobject:
        raise TypeError(f"batch element {name!r} has dtype object; only numeric arrays are stored")
    leaves.append(array)
    names.append(name)
    return {"array": len(leaves) - 1}


def _collect_leaves(node: Any, found: list[int]) -> None:
    """Append the leaf numbers of ``node`` in order; raise on a node of no known kind."""
    if node is None:
        return
    if not isinstance(node, dict) or len(node) != 1:
        raise ValueError(f"node {node!r} is not one of array, tuple, dict")
    kind, value = next(iter(node.items()))
    if kind == "array" and isinstance(value, int) and not isinstance(value, bool):
        found.append(value)
    elif kind == "tuple" and isinstance(value, list):
        for child in value:
            _collect_leaves(child, found)
    elif kind == "dict" and isinstance(value, list):
        for key, child in value:
            if not isinstance(key, str):
                raise ValueError(f"dict key {key!r} is not a str")
            _collect_leaves(child, found)
    else:
        raise ValueError(f"node {node!r} is not one of array, tuple, dict")


def _rebuild(node: Any, leaves: list[np.ndarray]) -> Any:
    if node is None:
        return None
    if "array" in node:
        return leaves[node["array"]]
    if "tuple" in node:
        return tuple(_rebuild(n, leaves) for n in node["tuple"])
    return {key: _rebuild(n, leaves) for key, n in node["dict"]}


@dataclass(frozen=True)
class FlatBatch:
    """One batch split into input leaves and reference leaves."""

    structure: "BatchStructure"
    inputs: list[np.ndarray]
    references: list[np.ndarray]


@dataclass(frozen=True)
class BatchStructure:
    """The nesting of a batch: which parts exist and how leaves are grouped.

    ``arity`` is 0 for a bare ``x`` and the tuple length (1-3) otherwise; the leaves of
    ``x`` are numbered among the inputs, those of ``y`` then ``sample_weight`` among the
    references.
    """

    arity: int
    nodes: tuple  # one node per part in PARTS
    input_names: tuple[str, ...]
    reference_names: tuple[str, ...]

    def to_json(self) -> str:
        return json.dumps(
            {
                "arity": self.arity,
                "x": self.nodes[0],
                "y": self.nodes[1],
                "sample_weight": self.nodes[2],
                "input_names": list(self.input_names),
                "reference_names": list(self.reference_names),
            }
        )

    @classmethod
    def from_json(cls, text: str) -> "BatchStructure":
        """The structure described by ``text``; ValueError if it does not describe a batch."""
        try:
            d = json.loads(text)
            structure = cls(
                arity=int(d["arity"]),
                nodes=(d["x"], d["y"], d["sample_weight"]),
                input_names=tuple(str(n) for n in d["input_names"]),
                reference_names=tuple(str(n) for n in d["reference_names"]),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise ValueError(f"malformed batch structure {text!r}: {exc!r}") from None
        structure._check(text)
        return structure

    def _check(self, text: str) -> None:
        """Every leaf numbered once, in order, and every node of a known kind."""
        inputs, references = [], []
        try:
            _collect_leaves(self.nodes[0], inputs)
            _collect_leaves(self.nodes[1], references)
            _collect_leaves(self.nodes[2], references)
        except (KeyError, TypeError, ValueError) as exc:
            raise ValueError(f"malformed batch structure {text!r}: {exc!r}") from None
        ok = (
            0 <= self.arity <= 3 and self.nodes[0] is not None
            and inputs == list(range(len(self.input_names)))
            and references == list(range(len(self.reference_names)))
            and (self.arity >= 2 or self.nodes[1] is None) and (self.arity == 3 or self.nodes[2] is None)
        )
        if not ok:
            raise ValueError(f"malformed batch structure {text!r}: its leaves or arity are inconsistent")

    def rebuild(self, inputs: list[np.ndarray], references: list[np.ndarray]) -> Any:
        """The nested batch from its leaves, in the nesting it was written with."""
        x = _rebuild(self.nodes[0], inputs)
        if self.arity == 0:
            return x
        parts = [x, _rebuild(self.nodes[1], references), _rebuild(self.nodes[2], references)]
        return tuple(parts[: self.arity])


def flatten_batch(batch: Any) -> FlatBatch:
    """Split ``batch`` (``x`` or ``(x[, y[, sample_weight]])``) into its leaves."""
    if isinstance(batch, tuple):
        if not 1 <= len(batch) <= 3:
            raise ValueError(
                f"a batch tuple must be (x,), (x, y) or (x, y, sample_weight), got length {len(batch)}"
            )
        arity, parts = len(batch), list(batch) + [None] * (3 - len(batch))
    else:
        arity, parts = 0, [batch, None, None]
    if parts[0] is None:
        raise ValueError("batch x must not be None")
    inputs: list[np.ndarray] = []
    input_names: list[str] = []
    x_node = _describe(parts[0], "x", inputs, input_names)
    references: list[np.ndarray] = []
    reference_names: list[str] = []
    y_node = _describe(parts[1], "y", references, reference_names)
    sw_node = _describe(parts[2], "sample_weight", references, reference_names)
    structure = BatchStructure(
        arity=arity,
        nodes=(x_node, y_node, sw_node),
        input_names=tuple(input_names),
        reference_names=tuple(reference_names),
    )
    return FlatBatch(structure, inputs, references)
