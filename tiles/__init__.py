"""The whole-tile workflow as a library: train on classified tiles, classify new ones.

`Segmenter` is the entry point; `train` runs a train spec (what ``pointseq train`` reads);
`register_model_type` adds a model type (its field encoder, backbone, builder and defaults);
`save_prediction_preview`, `save_error_map` and `save_training_curves` draw the results.
"""

from pointseq.tiles.model_types import MODEL_TYPES, ModelType, model_type, register_model_type
from pointseq.tiles.pictures import save_error_map, save_prediction_preview, save_training_curves
from pointseq.tiles.pipeline import load_training_output, predict_cloud
from pointseq.tiles.segmenter import Segmenter
from pointseq.tiles.training import train

__all__ = ["MODEL_TYPES", "ModelType", "Segmenter", "load_training_output", "model_type", "predict_cloud",
           "register_model_type", "save_error_map", "save_prediction_preview", "save_training_curves", "train"]
