"""The shadow (sparse-grid U-Net) model type of ``pointseq train`` / ``predict``: build, train data, predict.

Training reads point-cloud files through an `OfflineSequencer` whose backbone is a
`SparseShadowSequencer`: every covering field of every file becomes a hierarchical sparse
grid in the cache. Prediction cuts a tile the same way, predicts the grids block by block
with the training's padded rows (``max_rows``, stored with the model so shapes never
change), takes the cells back to the fields' points (``post_process_output(...,
to_points=True)``) and the fields back to every source point with the dense path's
`PropagationAccumulator`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import keras
import numpy as np

from pointseq.arguments import check_spec_keys, require_int
from pointseq.cli.recipe import BATCH_SIZE, SHADOW
from pointseq.pointclouds.field_grids import SparseGridPreProcessor
from pointseq.pointclouds.propagation import PropagationAccumulator
from pointseq.pointclouds.receptive_fields import Fields
from pointseq.sequencers.models.shadow_model import build_shadow_segmentation_model
from pointseq.sequencers.shadow_sequencer import SparseShadowSequencer

MODEL_KEYS = ("type", "width", "cell_size", "depth", "max_rows", "epochs")
FILE_KEYS = ("paths", "sampler", "label", "label_column", "classes", "features", "use_features", "seed")


def shadow_model_settings(model_spec: dict) -> dict:
    """``{"type": "shadow", "width", "cell_size", "depth", "max_rows", "epochs"}`` with the
    recipe's defaults (width 32, 0.5 m cells, depth 4, 6 epochs) filled in."""
    check_spec_keys(model_spec, "shadow model", MODEL_KEYS)
    if str(model_spec.get("type", "shadow")).lower() != "shadow":
        raise ValueError(f"model type must be 'shadow' here, got {model_spec.get('type')!r}")
    settings = {**SHADOW, "max_rows": None, **{k: v for k, v in model_spec.items() if k != "type"}}
    SparseGridPreProcessor(settings["cell_size"], settings["depth"], max_rows=settings["max_rows"])  # checks now
    require_int("width", settings["width"], 1)
    return settings


def grid_spec(settings: dict) -> dict:
    """The sparse-grid pre-processor spec of a shadow model's settings."""
    return {"type": "SparseGridPreProcessor", "cell_size": settings["cell_size"], "depth": settings["depth"],
            "max_rows": settings["max_rows"]}


def shadow_training_spec(files: dict, model_spec: dict, cache_path: str, *,
                         batch_size: int = BATCH_SIZE, seed: int = 0) -> dict:
    """The `OfflineSequencer` spec that trains a shadow model on ``files`` (``{"paths",
    "sampler", "label", "classes", "features", ...}``, as ``offline_pcloud`` takes them)."""
    check_spec_keys(files, "training files", FILE_KEYS, ("paths", "sampler"))
    settings = shadow_model_settings(model_spec)
    return {"type": "OfflineSequencer", "offline_storage": str(cache_path), "seed": seed,
            "backbone": {"type": "SparseShadowSequencer", "batch_size": batch_size, "seed": seed},
            "offline_pcloud": {"seed": seed, **files, "grid": grid_spec(settings)}}


def shadow_shapes(sequencer: Any) -> dict:
    """``{"max_rows", "num_features"}`` of a shadow training sequencer, from its first batch:
    store them in the training output so prediction pads exactly like training."""
    x = sequencer[0][0]
    depth = sum(1 for key in x if key.startswith("coords_"))
    return {"max_rows": [int(x[f"coords_{t}"].shape[1]) for t in range(depth)],
            "num_features": int(x["features"].shape[-1])}


def build_shadow_model(num_features: int, num_classes: int, max_rows: Sequence[int], *,
                       width: int = SHADOW["width"]) -> keras.Model:
    """The shadow U-Net with the recipe's width; compile it with `recipe.compile_for_recipe`
    (inverse-frequency `WeightedSparseCrossEntropy`, ignored label ``num_classes``)."""
    return build_shadow_segmentation_model(num_features, num_classes, len(max_rows), max_rows, width=width)


def predict_fields(model: keras.Model, points: np.ndarray, fields: Fields, features: np.ndarray | None,
                   grid: SparseGridPreProcessor | dict, max_rows: Sequence[int], first: int = 0,
                   stop: int | None = None, *, batch_size: int = BATCH_SIZE) -> np.ndarray:
    """Probabilities ``(stop - first, P, C)`` of the kept points of fields ``[first, stop)``.

    Every model call sees ``batch_size`` grids padded to ``max_rows`` (the last batch is
    filled with repeats), so the model is traced once whatever the block.
    """
    grids = SparseGridPreProcessor.from_spec(grid)(points, fields, features, first, stop)
    count = len(grids)
    grids += [grids[-1]] * (-count % batch_size)
    sequencer = SparseShadowSequencer(grids, batch_size=batch_size, max_rows=list(max_rows), shuffle=False)
    sequencer.enable_predict_mode()
    per_point = []
    for k in range(len(sequencer)):
        x = sequencer[k][0]
        z = keras.ops.convert_to_numpy(model.predict_on_batch(x))
        per_point += sequencer.post_process_output(z, k, to_points=True)
    return np.stack(per_point[:count]).astype(np.float32)


def predict_cloud(model: keras.Model, points: np.ndarray, fields: Fields, features: np.ndarray | None,
                  grid: SparseGridPreProcessor | dict, max_rows: Sequence[int], *,
                  batch_size: int = BATCH_SIZE, fields_per_block: int = 256) -> np.ndarray:
    """Probabilities ``(N, C)`` of every source point of a cloud: `predict_fields` block by
    block into a `PropagationAccumulator` (memory: one block's grids and the per-point sums)."""
    fields_per_block = require_int("fields_per_block", fields_per_block, 1)
    accumulator = PropagationAccumulator(fields, int(model.output.shape[-1]))
    for first in range(0, len(fields), fields_per_block):
        stop = min(first + fields_per_block, len(fields))
        accumulator.add(first, predict_fields(model, points, fields, features, grid, max_rows, first, stop,
                                              batch_size=batch_size))
    return accumulator.result()
