"""The whole-tile workflow as a library: train on classified tiles, classify new ones.

`Segmenter` is the entry point; `train` runs a train spec (what ``pointseq train`` reads);
`register_model_type` adds a model type (its field encoder, backbone, builder and defaults);
`save_prediction_preview`, `save_error_map` and `save_training_curves` draw the results.
Each name loads its module on first use, so the command can check a train spec
(`pointseq.tiles.train_spec`) before Keras is imported.
"""

from __future__ import annotations

import importlib
from typing import Any

_PUBLIC = {
    "MODEL_TYPES": "pointseq.tiles.model_types",
    "ModelType": "pointseq.tiles.model_types",
    "model_type": "pointseq.tiles.model_types",
    "register_model_type": "pointseq.tiles.model_types",
    "load_training_output": "pointseq.tiles.pipeline",
    "predict_cloud": "pointseq.tiles.pipeline",
    "Segmenter": "pointseq.tiles.segmenter",
    "train": "pointseq.tiles.training",
    "save_error_map": "pointseq.tiles.pictures",
    "save_prediction_preview": "pointseq.tiles.pictures",
    "save_training_curves": "pointseq.tiles.pictures",
}

__all__ = sorted(_PUBLIC)


def __getattr__(name: str) -> Any:
    module = _PUBLIC.get(name)
    if module is None:
        raise AttributeError(f"module 'pointseq.tiles' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_PUBLIC))
