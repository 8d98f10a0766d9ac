"""Point-cloud files as an extra source of cache samples (``offline_pcloud``)."""

from __future__ import annotations

import os
from typing import Any

import numpy as np

from pointseq.offline.fingerprint import files_digest
from pointseq.pointclouds.reading import read_point_cloud
from pointseq.pointclouds.receptive_field import ReceptiveFieldSampler
from pointseq.sequencers.seeding import field_rng


class PointCloudSource:
    """Files read with `read_point_cloud` and cut into fields by a sampler.

    ``X`` is the field points ``(M, P, 3)``, or ``(points, features)`` when the files carry
    features and ``use_features`` is on; ``y`` the per-point labels ``(M, P)`` or None.
    """

    def __init__(self, paths: list[str], sampler: ReceptiveFieldSampler | dict, *,
                 label_column: int | None = None, use_features: bool = True) -> None:
        if isinstance(paths, (str, os.PathLike)):
            paths = [paths]
        paths = [os.fspath(p) for p in paths]
        if not paths:
            raise ValueError("offline_pcloud paths must name at least one file, got []")
        missing = [p for p in paths if not os.path.exists(p)]
        if missing:
            raise FileNotFoundError(f"offline_pcloud files do not exist: {missing}")
        if isinstance(sampler, dict):
            sampler = ReceptiveFieldSampler.from_spec(sampler)
        if not isinstance(sampler, ReceptiveFieldSampler):
            raise TypeError(f"offline_pcloud sampler must be a ReceptiveFieldSampler or its spec dict, "
                            f"got {type(sampler).__name__}")
        self.paths = paths
        self.sampler = sampler
        self.label_column = label_column
        self.use_features = bool(use_features)

    @classmethod
    def from_spec(cls, spec: Any) -> "PointCloudSource":
        """From ``{"paths": [...], "sampler": {...}, "label_column": k, "use_features": b}``."""
        if isinstance(spec, PointCloudSource):
            return spec
        if not isinstance(spec, dict) or "paths" not in spec or "sampler" not in spec:
            raise ValueError(
                "offline_pcloud must be a dict with 'paths' (point-cloud files) and 'sampler' (e.g. "
                "{'type': 'ReceptiveFieldSampler', 'num_points': 1024}), got " + repr(spec)
            )
        unknown = set(spec) - {"paths", "sampler", "label_column", "use_features"}
        if unknown:
            raise ValueError(f"offline_pcloud has unknown keys {sorted(unknown)}; valid keys: "
                             "paths, sampler, label_column, use_features")
        return cls(spec["paths"], spec["sampler"], label_column=spec.get("label_column"),
                   use_features=spec.get("use_features", True))

    def get_config(self) -> dict:
        return {"paths": self.paths, "sampler": self.sampler.get_config(),
                "label_column": self.label_column, "use_features": self.use_features}

    def digest(self) -> str:
        return files_digest(self.paths)

    def arrays(self) -> tuple[Any, np.ndarray | None]:
        """``(X, y)`` of all fields of all files, in file order."""
        points, features, labels = [], [], []
        for i, path in enumerate(self.paths):
            fields = self.sampler(read_point_cloud(path, label_column=self.label_column),
                                  field_rng(self.sampler.seed, i))
            points.append(fields.points)
            features.append(fields.features)
            labels.append(fields.labels)
        for name, parts in (("features", features), ("labels", labels)):
            if len({p is None for p in parts}) > 1:
                raise ValueError(f"offline_pcloud files disagree on {name}: some have them, some not")
        X: Any = np.concatenate(points)
        if self.use_features and features[0] is not None:
            X = (X, np.concatenate(features))
        y = None if labels[0] is None else np.concatenate(labels)
        return X, y
