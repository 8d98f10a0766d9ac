"""The model inputs of receptive fields: per-field normalised geometry plus named point features.

Every field looks alike wherever the tile lies: coordinates relative to the field's centre
divided by the neighbourhood radius (x, y, z), the height above the field's lowest points
(1st percentile of z, robust to noise below the terrain) divided by the radius, then the
`FeatureSpec` features of the kept points, each with its stated normalisation. Training
(`offline_pcloud`) and prediction (`pointseq predict`) build inputs with this one function.
"""

from __future__ import annotations

import numpy as np

from pointseq.pointclouds.field_encoders import FieldEncoder, register_encoder
from pointseq.pointclouds.receptive_fields import CoveringFieldSampler, Fields

GEOMETRY_COLUMNS = ("x", "y", "z", "height")
HEIGHT_PERCENTILE = 1.0


def field_scale(sampler: CoveringFieldSampler) -> float:
    """What field coordinates are divided by: the (largest) neighbourhood radius, or 1 when the
    sampler already scales fields to the unit sphere."""
    if sampler.neighborhood.whole_cloud and not sampler.to_unit_sphere:
        raise ValueError("a neighborhood of radius 0 (one field, the whole cloud) has no radius to scale field "
                         "inputs by: set to_unit_sphere: true")
    return 1.0 if sampler.to_unit_sphere else float(max(sampler.neighborhood.radius))


def field_inputs(fields: Fields, point_features: np.ndarray | None, scale: float,
                 first: int = 0, stop: int | None = None) -> np.ndarray:
    """Inputs (B, P, 4 + F) float32 of fields [first, stop): x, y, z, height, then the features.

    ``point_features`` (N, F) are the cloud's per-point features (already normalised), or None.
    """
    stop = len(fields) if stop is None else stop
    xyz = fields.points[first:stop].astype(np.float64) / scale
    low = np.percentile(xyz[..., 2], HEIGHT_PERCENTILE, axis=1)[:, None]
    columns = [xyz, (xyz[..., 2] - low)[..., None]]
    if point_features is not None:
        columns.append(point_features[fields.indices[first:stop]])
    return np.concatenate(columns, axis=-1).astype(np.float32)


class DenseFieldEncoder(FieldEncoder):
    """Each field as one array ``(P, 4 + F)``: `field_inputs`, divided by the sampler's `field_scale`.

    Samples are ``{"x": (M, P, 4 + F), "labels": (M, P)}`` (labels when the fields have them);
    the model's output ``(B, P, C)`` is already per kept point.
    """

    type_name = "dense"
    backbones = ("Sequencer",)

    def __init__(self, scale: float | None = None) -> None:
        self.scale = None if scale is None else float(scale)

    def get_config(self) -> dict:
        return {"type": self.type_name, "scale": self.scale}

    def bind(self, sampler: CoveringFieldSampler) -> None:
        self.scale = field_scale(sampler)

    def encode(self, points: np.ndarray, fields: Fields, features: np.ndarray | None,
               first: int = 0, stop: int | None = None) -> dict:
        if self.scale is None:
            raise ValueError("the dense encoder needs its field scale: call bind(sampler) first")
        stop = len(fields) if stop is None else stop
        samples = {"x": field_inputs(fields, features, self.scale, first, stop)}
        if fields.labels is not None:
            samples["labels"] = fields.labels[first:stop]
        return samples

    def inputs(self, samples: dict) -> np.ndarray:
        return samples["x"]

    def targets(self, samples: dict, num_classes: int) -> tuple[np.ndarray, np.ndarray]:
        trained = samples["labels"] < num_classes
        return np.where(trained, samples["labels"], 0), trained.astype(np.float32)

    def to_points(self, outputs: np.ndarray, samples: dict) -> np.ndarray:
        return np.asarray(outputs, dtype=np.float32)

    def num_input_features(self, num_point_features: int) -> int:
        return len(GEOMETRY_COLUMNS) + num_point_features


register_encoder("dense", lambda spec: DenseFieldEncoder(**spec))
