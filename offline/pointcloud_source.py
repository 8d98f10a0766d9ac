"""Point-cloud files as an extra source of cache samples (``offline_pcloud``).

Files are read and cut one at a time: a first pass checks every file (readable, label and
features present) and collects the point counts and label codes the class map needs, before
any cache file is opened; the second pass reads each file again, cuts it into fields and
hands out batches, so memory is bounded by the largest file.
"""

from __future__ import annotations

import os
import sys
from typing import Any, Callable, Iterator

import numpy as np

from pointseq.offline.fingerprint import files_digest
from pointseq.pointclouds.classes import ClassMap
from pointseq.pointclouds.features import FeatureSpec
from pointseq.pointclouds.reading import FORMAT_DEFAULT, PointCloud, PointCloudFileError, read_point_cloud
from pointseq.pointclouds.receptive_field import ReceptiveFieldSampler
from pointseq.sequencers.seeding import field_rng

SPEC_KEYS = ("paths", "sampler", "label", "label_column", "classes", "features", "use_features")


class PointCloudSource:
    """Files read with `read_point_cloud`, cut into fields by a sampler, labels mapped by a `ClassMap`.

    A batch is ``(x, y)`` or, when the class map can ignore codes, ``(x, y, sample_weight)``
    with weight 0 on ignored points. ``x`` is the field points ``(B, P, 3)`` (float32,
    relative to the field centre), or ``(points, features)`` with named ``features``; ``y``
    the class ids ``(B, P)`` or None for files without labels.
    """

    def __init__(self, paths: list[str], sampler: ReceptiveFieldSampler | dict, *, label: Any = FORMAT_DEFAULT,
                 classes: dict | ClassMap | None = None, features: list | None = None,
                 use_features: bool = True) -> None:
        if isinstance(paths, (str, os.PathLike)):
            paths = [paths]
        paths = [os.fspath(p) for p in paths]
        if not paths:
            raise ValueError("offline_pcloud paths must name at least one file, got []")
        missing = [p for p in paths if not os.path.isfile(p)]
        if missing:
            raise FileNotFoundError(f"offline_pcloud files do not exist: {missing}")
        if isinstance(sampler, dict):
            sampler = ReceptiveFieldSampler.from_spec(sampler)
        if not isinstance(sampler, ReceptiveFieldSampler):
            raise TypeError(f"offline_pcloud sampler must be a ReceptiveFieldSampler or its spec dict, "
                            f"got {type(sampler).__name__}")
        if label is not FORMAT_DEFAULT and label is not None and not isinstance(label, (str, int)):
            raise TypeError(f"offline_pcloud label must be a dimension name, a column index or None, got {label!r}")
        self.paths = paths
        self.sampler = sampler
        self.label = label
        self.classes_spec = classes.get_config() if isinstance(classes, ClassMap) else classes
        ClassMap.from_spec(self.classes_spec, [0])  # checks the spec now
        self.use_features = bool(use_features)
        self.features = FeatureSpec(features if self.use_features else None)
        self.class_map: ClassMap | None = None  # resolved by scan()
        self._counts: list[int] | None = None

    @classmethod
    def from_spec(cls, spec: Any) -> "PointCloudSource":
        """From ``{"paths", "sampler", "label", "classes", "features", "use_features"}``."""
        if isinstance(spec, PointCloudSource):
            return spec
        if not isinstance(spec, dict) or "paths" not in spec or "sampler" not in spec:
            raise ValueError(
                "offline_pcloud must be a dict with 'paths' (point-cloud files) and 'sampler' (e.g. "
                "{'type': 'ReceptiveFieldSampler', 'num_points': 1024}), got " + repr(spec)
            )
        unknown = sorted(k for k in spec if k not in SPEC_KEYS and not str(k).startswith("_"))
        if unknown:
            raise ValueError(f"offline_pcloud has unknown keys {unknown}; valid keys: {', '.join(SPEC_KEYS)}")
        if "label" in spec and "label_column" in spec:
            raise ValueError("offline_pcloud: give 'label' or its alias 'label_column', not both")
        label = spec.get("label", spec.get("label_column", FORMAT_DEFAULT))
        return cls(spec["paths"], spec["sampler"], label=label, classes=spec.get("classes"),
                   features=spec.get("features"), use_features=spec.get("use_features", True))

    def get_config(self) -> dict:
        """The spec (what the fingerprint covers, with the files' bytes)."""
        config = {"paths": self.paths, "sampler": self.sampler.get_config(), "classes": self.classes_spec,
                  "features": self.features.get_config()["features"], "use_features": self.use_features}
        if self.label is not FORMAT_DEFAULT:
            config["label"] = self.label
        return config

    def cache_config(self, progress: Callable[[str], None] | None = None) -> dict:
        """The spec plus the resolved class map and feature normalisation, stored in the cache."""
        self.scan(progress)
        return {**self.get_config(), "class_map": None if self.class_map is None else self.class_map.get_config(),
                "feature_normalisation": self.features.get_config()["features"]}

    def digest(self) -> str:
        return files_digest(self.paths)

    @property
    def sample_weights(self) -> bool:
        """Whether batches carry sample weights: labels that the class map may ignore."""
        spec = self.classes_spec or {}
        return self.label is not None and bool(spec.get("ignore") or spec.get("unknown") == "ignore")

    # -- pass 1 ---------------------------------------------------------------------------
    def _read(self, index: int) -> PointCloud:
        return read_point_cloud(self.paths[index], label=self.label)

    def scan(self, progress: Callable[[str], None] | None = None) -> None:
        """Check every file and resolve the class map; raises `PointCloudFileError` naming a file."""
        if self._counts is not None:
            return
        results = []
        for i, path in enumerate(self.paths):
            results.append(self.scan_file(i))
            if progress is not None:
                progress(f"checked {path} ({results[-1][0]} points)")
        self.adopt_scan(results)

    def scan_file(self, index: int) -> tuple:
        """``(points, has labels, label codes)`` of file ``index``, checked; files scan in parallel."""
        cloud = self._read(index)
        self.features.check(cloud)
        codes = np.unique(cloud.labels) if cloud.labels is not None else None
        return len(cloud), cloud.labels is not None, codes

    def adopt_scan(self, results: list[tuple]) -> None:
        """Resolve the class map from the :meth:`scan_file` results of every file, in file order."""
        counts = [r[0] for r in results]
        has_labels = [r[1] for r in results]
        codes = [r[2] for r in results]
        if len(set(has_labels)) > 1:
            without = [p for p, h in zip(self.paths, has_labels) if not h]
            raise PointCloudFileError(f"offline_pcloud files disagree on labels: {without} have none "
                                      f"(label {self.label!r}), the others have")
        if has_labels[0]:
            self.class_map = ClassMap.from_spec(self.classes_spec, np.unique(np.concatenate(codes)))
            for path, found in zip(self.paths, codes):  # an unknown code fails now, before any writing
                self.class_map.to_ids(found, source=f"point-cloud file {path!r}")
        self._counts = counts

    def file_field_counts(self) -> list[int]:
        """Fields each file gives, in file order (scans the files once)."""
        self.scan()
        return [self.sampler.num_fields(n) for n in self._counts]

    def num_samples(self) -> int:
        """How many fields all files give (scans the files once)."""
        self.scan()
        return sum(self.sampler.num_fields(n) for n in self._counts)

    # -- pass 2 ---------------------------------------------------------------------------
    def file_fields(self, index: int) -> tuple:
        """``(points, features, ids, weights)`` of every field of file ``index`` (None where absent)."""
        self.scan()
        cloud = self._read(index)
        fields = self.sampler(cloud.points, field_rng(self.sampler.seed, index), features=self.features(cloud))
        ids = weights = None
        if cloud.labels is not None:
            ids, weights = self.class_map.to_ids(cloud.labels, source=f"point-cloud file {cloud.path!r}")
            ids, weights = ids[fields.indices], weights[fields.indices]
        return fields.points, fields.features, ids, weights

    def batches(self, batch_size: int, drop_last: bool, start: int = 0,
                progress: Callable[[str], None] | None = None) -> Iterator[tuple]:
        """Batches of ``batch_size`` fields in file order from batch ``start``, one file in memory."""
        self.scan()
        skip = start * batch_size
        held: tuple | None = None  # the fields not yet handed out, fewer than a batch
        for i, count in enumerate(self.sampler.num_fields(n) for n in self._counts):
            if skip >= count:
                skip -= count
                continue
            parts = _rows(self.file_fields(i), skip, count)
            skip = 0
            held = parts if held is None else tuple(None if a is None else np.concatenate([a, b])
                                                     for a, b in zip(held, parts))
            if progress is not None:
                progress(f"cut {self.paths[i]} into {count} fields")
            full = len(held[0]) // batch_size * batch_size
            for first in range(0, full, batch_size):
                yield self._batch(_rows(held, first, first + batch_size))
            held = _rows(held, full, len(held[0]))
        if held is not None and len(held[0]) and not drop_last:
            yield self._batch(held)

    def _batch(self, parts: tuple) -> tuple:
        points, features, ids, weights = parts
        x = points if features is None else (points, features)
        if ids is None:
            return (x, None)
        return (x, ids, weights) if self.sample_weights else (x, ids)


def _rows(parts: tuple, first: int, stop: int) -> tuple:
    return tuple(None if a is None else a[first:stop] for a in parts)


def print_progress(message: str) -> None:
    """Per-file progress of a cache build, on stderr."""
    print(f"offline_pcloud: {message}", file=sys.stderr, flush=True)
