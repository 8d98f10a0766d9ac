"""Model types of the whole-tile workflow: ``"model": {"type": ...}`` -> one registry entry.

An entry says which field encoder turns a tile's fields into the model's inputs (the same
encoder builds the training cache and the prediction batches), which sequencer batches the
encoded fields in the cache (and augments them), how to build the model from a first batch,
and the recipe's defaults for the type. Training, prediction, the `Segmenter` and the
``pointseq`` command use nothing else of a model type, so another type is one
`register_model_type` call.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable

import keras

from pointseq.sequencers.models.pointnet_model import build_pointnet_segmentation_model
from pointseq.sequencers.models.shadow_model import build_shadow_segmentation_model


@dataclass(frozen=True)
class ModelType:
    """One model type.

    ``encoder(settings, unit_metres) -> encoder spec`` (`pointclouds.encoder_from_spec`), with
    sizes in metres divided by the files' coordinate unit; ``backbone(settings) -> sequencer
    spec`` (its ``type`` must batch the encoder's samples); ``build(settings, x, num_classes)
    -> keras.Model`` for first-batch inputs ``x``; ``defaults``: the recipe's settings (at
    least ``width``, ``updates``, ``epochs`` and ``learning_rate``), which a model spec overrides key by key;
    ``augmented``: the recipe's augmentation applies (the backbone names the coordinate inputs).
    """

    name: str
    encoder: Callable[[dict, float], dict]
    backbone: Callable[[dict], dict]
    build: Callable[[dict, Any, int], keras.Model]
    defaults: dict = field(default_factory=dict)
    augmented: bool = False  # whether the backbone says which inputs are coordinates to augment

    @property
    def spec_keys(self) -> tuple[str, ...]:
        """The keys a model spec of this type may hold."""
        return ("type", "num_classes", *self.defaults)

    def settings(self, spec: dict) -> dict:
        """The spec with the recipe's defaults filled in; ValueError naming an unknown key."""
        unknown = sorted(k for k in spec if k not in self.spec_keys and not str(k).startswith("_"))
        if unknown:
            raise ValueError(f"model has unknown keys {unknown} for type {self.name!r}; valid: "
                             f"{', '.join(self.spec_keys)}")
        return {**self.defaults, **{k: v for k, v in spec.items() if not str(k).startswith("_")},
                "type": self.name}


MODEL_TYPES: dict[str, ModelType] = {}


def register_model_type(entry: ModelType) -> ModelType:
    """Add (or replace) a model type; returns it."""
    if not isinstance(entry, ModelType):
        raise TypeError(f"entry must be a ModelType, got {type(entry).__name__}")
    MODEL_TYPES[entry.name.lower()] = entry
    return entry


def model_type(spec: dict | str | None) -> ModelType:
    """The entry of a model spec's ``type`` (default ``pointnet``); ValueError naming the known types."""
    name = spec if isinstance(spec, str) else (spec or {}).get("type", "pointnet")
    entry = MODEL_TYPES.get(str(name).lower())
    if entry is None:
        raise ValueError(f"model type must be one of {sorted(MODEL_TYPES)}, got {name!r}")
    return entry


# ------------------------------------------------------------------------------ pointnet
def _build_pointnet(settings: dict, x: Any, num_classes: int) -> keras.Model:
    if not hasattr(x, "ndim") or x.ndim != 3:
        raise ValueError(f"the pointnet model takes batches of one array (B, N, F); got {getattr(x, 'shape', x)!r}")
    num_points, num_features = x.shape[1:]
    return build_pointnet_segmentation_model(num_points, num_classes, num_features=num_features,
                                             width=int(settings["width"]))


register_model_type(ModelType(
    "pointnet",
    encoder=lambda settings, unit: {"type": "dense"},
    # Field inputs (B, P, 4 + F): x, y, z are augmented, the height stretches with z.
    backbone=lambda settings: {"type": "Sequencer", "coordinate_columns": 3, "height_columns": [3]},
    build=_build_pointnet,
    # Measured on the synthetic tiles (docs/recipe.md): width 64 at 3e-3, at least 150 updates
    # (10 passes over the fields when that is more); ``epochs`` where a spec trains by epochs.
    defaults={"width": 64, "updates": 150, "epochs": 6, "learning_rate": 3e-3},
    augmented=True,
))


# -------------------------------------------------------------------------------- shadow
def _build_shadow(settings: dict, x: dict, num_classes: int) -> keras.Model:
    depth = sum(1 for key in x if key.startswith("coords_"))
    rows = [int(x[f"coords_{t}"].shape[1]) for t in range(depth)]
    return build_shadow_segmentation_model(int(x["features"].shape[-1]), num_classes, depth, rows,
                                           width=int(settings["width"]))


register_model_type(ModelType(
    "shadow",
    encoder=lambda settings, unit: {"type": "sparse_grid", "cell_size": settings["cell_size"] / unit,
                                    "depth": settings["depth"], "max_rows": settings["max_rows"]},
    backbone=lambda settings: {"type": "SparseShadowSequencer"},
    build=_build_shadow,
    # cell_size in metres (divided by the files' unit); the per-cell U-Net underfits at 3e-3 in 6 epochs.
    defaults={"width": 32, "updates": 150, "epochs": 6, "learning_rate": 3e-2, "cell_size": 0.5, "depth": 4,
              "max_rows": None},
    augmented=True,
))


# -------------------------------------------------------------------------------- kpconv
def _build_kpconv(settings: dict, x: dict, num_classes: int) -> keras.Model:
    from pointseq.sequencers.models.kpconv_model import build_kpconv_model

    depth = sum(1 for key in x if key.startswith("X_"))
    points = [int(x[f"X_{t}"].shape[1]) for t in range(1, depth + 1)]
    pwise = [int(x[f"N_{t}"].shape[-1]) for t in range(1, depth + 1)]
    down = [1] + [int(x[f"ND_{t}"].shape[-1]) for t in range(2, depth + 1)]
    up = [1] + [int(x[f"NU_{t}"].shape[-1]) for t in range(2, depth + 1)]
    return build_kpconv_model(int(x["F"].shape[-1]), num_classes, points, pwise, down, up,
                              width=int(settings["width"]))


_KPCONV_DEPTHS = (512, 128, 32)  # depth 1 is the recipe's 512 kept points per field
register_model_type(ModelType(
    "kpconv",
    encoder=lambda settings, unit: {"type": "hierarchical_fps", "num_points_per_depth": list(_KPCONV_DEPTHS),
                                    "num_pwise_neighbors": [16, 16, 8], "num_downsampling_neighbors": [1, 8, 8],
                                    "num_upsampling_neighbors": [1, 1, 1]},
    backbone=lambda settings: {"type": "Sequencer", "augment_inputs": [f"X_{t}" for t in
                                                                       range(1, len(_KPCONV_DEPTHS) + 1)]},
    build=_build_kpconv,
    # Measured on autzen_trim.laz (west 60% / east 40%): width 16, 1e-2, 300 updates: mean IoU 0.585.
    defaults={"width": 16, "updates": 300, "epochs": 6, "learning_rate": 1e-2},
    augmented=True,
))


# --------------------------------------------------------------------------- sparse_unet
def _build_sparse_unet(settings: dict, x: dict, num_classes: int) -> keras.Model:
    from pointseq.sequencers.models.sparse_unet import build_sparse_unet

    depth = sum(1 for key in x if key.startswith("coords_"))
    return build_sparse_unet(int(x["features"].shape[-1]), num_classes, depth, width=int(settings["width"]))


register_model_type(ModelType(
    "sparse_unet",
    encoder=lambda settings, unit: {"type": "sparse_grid", "cell_size": settings["cell_size"] / unit,
                                    "depth": settings["depth"], "max_rows": settings["max_rows"]},
    backbone=lambda settings: {"type": "SparseShadowSequencer"},
    build=_build_sparse_unet,
    # Not yet measured on real tiles: 1 m cells (autzen holds ~1.8 points/m^2), 3e-3.
    defaults={"width": 16, "updates": 300, "epochs": 6, "learning_rate": 3e-3, "cell_size": 1.0, "depth": 4,
              "max_rows": None},
    augmented=True,
))
