"""Point-cloud files as an extra source of cache samples (``offline_pcloud``).

Files are cut into receptive fields by a `CoveringFieldSampler` (any spec `sampler_from_spec`
accepts): every point lies in a field, or, with ``training_class_distribution``, fields sit
on class-balanced support points drawn with ``field_rng(seed, file index)``. Labels are
reduced to the kept points with `reduce_labels`; inputs are `field_inputs` (normalised field
geometry plus the named features gathered by the fields' source indices).

Files are read and cut one at a time: a first pass checks every file (readable, label and
features present), resolves the class map and counts fields and class points, before any
cache file is opened; the second pass cuts each file again and hands out batches, so memory
is bounded by the largest file.
"""

from __future__ import annotations

import os
import sys
from typing import Any, Callable, Iterator

import numpy as np

from pointseq.arguments import require_int
from pointseq.offline.fingerprint import files_digest
from pointseq.pointclouds.classes import ClassMap
from pointseq.pointclouds.features import FeatureSpec
from pointseq.pointclouds.field_inputs import GEOMETRY_COLUMNS, field_inputs, field_scale
from pointseq.pointclouds.reading import FORMAT_DEFAULT, PointCloud, PointCloudFileError, read_point_cloud
from pointseq.pointclouds.receptive_fields import CoveringFieldSampler, Fields, sampler_from_spec
from pointseq.sequencers.seeding import field_rng

SPEC_KEYS = ("paths", "sampler", "label", "label_column", "classes", "features", "use_features", "seed")


class PointCloudSource:
    """Files read with `read_point_cloud`, cut into fields by a sampler, labels mapped by a `ClassMap`.

    A batch is ``(x, y)`` or, when the class map can ignore codes, ``(x, y, sample_weight)``
    with weight 0 on ignored points. ``x`` is the `field_inputs` ``(B, P, 4 + F)`` float32
    (x, y, z relative to the field centre over the radius, height, then the named
    ``features``); ``y`` the reduced class ids ``(B, P)``, or None for files without labels.
    """

    def __init__(self, paths: list[str], sampler: CoveringFieldSampler | dict, *, label: Any = FORMAT_DEFAULT,
                 classes: dict | ClassMap | None = None, features: list | None = None,
                 use_features: bool = True, seed: int = 0) -> None:
        if isinstance(paths, (str, os.PathLike)):
            paths = [paths]
        paths = [os.fspath(p) for p in paths]
        if not paths:
            raise ValueError("offline_pcloud paths must name at least one file, got []")
        missing = [p for p in paths if not os.path.isfile(p)]
        if missing:
            raise FileNotFoundError(f"offline_pcloud files do not exist: {missing}")
        if isinstance(sampler, dict):
            sampler = sampler_from_spec(sampler)
        if not isinstance(sampler, CoveringFieldSampler):
            raise TypeError(f"offline_pcloud sampler must be a CoveringFieldSampler or its spec dict, "
                            f"got {type(sampler).__name__}")
        self.seed = require_int("offline_pcloud seed", seed, 0)
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
        self.class_counts: list[int] | None = None  # trained points per class id, by scan()
        self._counts: list[int] | None = None  # fields per file
        self._files_checked = False  # set by adopt_scan (after scan_file of every file)

    @classmethod
    def from_spec(cls, spec: Any) -> "PointCloudSource":
        """From ``{"paths", "sampler", "label", "classes", "features", "use_features"}``."""
        if isinstance(spec, PointCloudSource):
            return spec
        if not isinstance(spec, dict) or "paths" not in spec or "sampler" not in spec:
            raise ValueError(
                "offline_pcloud must be a dict with 'paths' (point-cloud files) and 'sampler' (e.g. "
                "{'type': 'FurthestPointSubsamplingPreProcessor', 'num_points': 1024, 'neighborhood': "
                "{'type': 'cylinder', 'radius': 5.0}}), got " + repr(spec)
            )
        return cls(spec["paths"], spec["sampler"], **file_options(spec, SPEC_KEYS))

    def get_config(self) -> dict:
        """The spec (what the fingerprint covers, with the files' bytes)."""
        config = {"paths": self.paths, "sampler": self.sampler.get_config(), "classes": self.classes_spec,
                  "features": self.features.get_config()["features"], "use_features": self.use_features,
                  "seed": self.seed}
        if self.label is not FORMAT_DEFAULT:
            config["label"] = self.label
        return config

    def cache_config(self, progress: Callable[[str], None] | None = None) -> dict:
        """The spec plus the resolved class map and feature normalisation, stored in the cache."""
        self.scan(progress)
        return {**self.get_config(), "class_map": None if self.class_map is None else self.class_map.get_config(),
                "feature_normalisation": self.features.get_config()["features"], "class_counts": self.class_counts,
                "inputs": self.input_names}

    @property
    def input_names(self) -> list[str]:
        """The columns of ``x``: the field geometry, then the features."""
        return [*GEOMETRY_COLUMNS, *self.features.names]

    def digest(self) -> str:
        return files_digest(self.paths)

    @property
    def sample_weights(self) -> bool:
        """Whether batches carry sample weights: labels that the class map may ignore."""
        spec = self.classes_spec or {}
        return self.label is not None and bool(spec.get("ignore") or spec.get("unknown") == "ignore")

    # -- pass 1 ---------------------------------------------------------------------------
    def scan(self, progress: Callable[[str], None] | None = None,
             on_cut: Callable[[int, PointCloud, Fields], None] | None = None) -> None:
        """Check every file, resolve the class map, count fields and class points; raises
        `PointCloudFileError` naming a file. ``on_cut(index, cloud, fields)`` sees each file's
        cut, so a caller that needs more from it does not cut the file again."""
        if self._counts is not None:
            return
        if not self._files_checked:
            results = []
            for i, path in enumerate(self.paths):
                results.append(self.scan_file(i))
                if progress is not None:
                    progress(f"checked {path} ({results[-1][0]} points)")
            self.adopt_scan(results)
        self._count_fields(progress, on_cut)

    def scan_file(self, index: int) -> tuple:
        """``(points, has labels, label codes)`` of file ``index``, checked; files scan in parallel."""
        cloud = read_point_cloud(self.paths[index], label=self.label)
        self.features.check(cloud)
        codes = np.unique(cloud.labels) if cloud.labels is not None else None
        return len(cloud), cloud.labels is not None, codes

    def adopt_scan(self, results: list[tuple]) -> None:
        """Resolve the class map from the :meth:`scan_file` results of every file, in file order."""
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
        self._files_checked = True

    def _count_fields(self, progress: Callable[[str], None] | None,
                      on_cut: Callable[[int, PointCloud, Fields], None] | None) -> None:
        """Cut every file once to count its fields and the trained points of each class."""
        counts, class_counts = [], np.zeros(self.class_map.num_classes if self.class_map else 0, np.int64)
        for i, path in enumerate(self.paths):
            cloud, fields, ids = self.cut(i)
            counts.append(len(fields))
            if ids is not None:
                class_counts += np.bincount(ids, minlength=class_counts.size + 1)[:class_counts.size]
            if on_cut is not None:
                on_cut(i, cloud, fields)
            if progress is not None:
                progress(f"counted {len(fields)} fields in {path}")
        self.class_counts = class_counts.tolist() if self.class_map else None
        self._counts = counts

    def file_field_counts(self) -> list[int]:
        """Fields each file gives, in file order (scans the files once)."""
        self.scan()
        return list(self._counts)

    def num_samples(self) -> int:
        """How many fields all files give (scans the files once)."""
        self.scan()
        return sum(self._counts)

    # -- pass 2 ---------------------------------------------------------------------------
    def cut(self, index: int) -> tuple[PointCloud, Fields, np.ndarray | None]:
        """The cloud, its fields (labels reduced) and its point ids (ignored points: ``num_classes``)."""
        cloud = read_point_cloud(self.paths[index], label=self.label)
        ids = None
        if cloud.labels is not None and self.class_map is not None:
            ids, weights = self.class_map.to_ids(cloud.labels, source=f"point-cloud file {cloud.path!r}")
            ids = np.where(weights > 0, ids, self.class_map.num_classes)
        fields = self.sampler(cloud.points, field_rng(self.seed, index), labels=ids)
        return cloud, fields, ids

    def file_fields(self, index: int) -> tuple:
        """``(inputs, ids, weights)`` of every field of file ``index`` (None where absent)."""
        self.scan()
        cloud, fields, _ = self.cut(index)
        x = field_inputs(fields, self.features(cloud), field_scale(self.sampler))
        if fields.labels is None:
            return x, None, None
        trained = fields.labels < self.class_map.num_classes
        return x, np.where(trained, fields.labels, 0), trained.astype(np.float32)

    def batches(self, batch_size: int, drop_last: bool, start: int = 0,
                progress: Callable[[str], None] | None = None) -> Iterator[tuple]:
        """Batches of ``batch_size`` fields in file order from batch ``start``, one file in memory."""
        self.scan()
        skip = start * batch_size
        held: tuple | None = None  # the fields not yet handed out, fewer than a batch
        for i, count in enumerate(self._counts):
            if skip >= count:
                skip -= count
                continue
            parts = _rows(self.file_fields(i), skip, count)
            skip = 0
            held = parts if held is None else tuple(None if a is None else np.concatenate([a, b])
                                                     for a, b in zip(held, parts))
            if progress is not None:
                progress(f"writing {count} fields of {self.paths[i]}")
            full = len(held[0]) // batch_size * batch_size
            for first in range(0, full, batch_size):
                yield self._batch(_rows(held, first, first + batch_size))
            held = _rows(held, full, len(held[0]))
        if held is not None and len(held[0]) and not drop_last:
            yield self._batch(held)

    def _batch(self, parts: tuple) -> tuple:
        x, ids, weights = parts
        if ids is None:
            return (x, None)
        return (x, ids, weights) if self.sample_weights else (x, ids)


def _rows(parts: tuple, first: int, stop: int) -> tuple:
    return tuple(None if a is None else a[first:stop] for a in parts)


def print_progress(message: str) -> None:
    """Per-file progress of a cache build, on stderr."""
    print(f"offline_pcloud: {message}", file=sys.stderr, flush=True)


def file_options(spec: dict, valid_keys: tuple[str, ...]) -> dict:
    """The keyword arguments an ``offline_pcloud`` spec gives besides paths and sampler, its
    keys checked (``_`` keys ignored) and ``label_column`` read as an alias of ``label``."""
    unknown = sorted(k for k in spec if k not in valid_keys and not str(k).startswith("_"))
    if unknown:
        raise ValueError(f"offline_pcloud has unknown keys {unknown}; valid keys: {', '.join(valid_keys)}")
    if "label" in spec and "label_column" in spec:
        raise ValueError("offline_pcloud: give 'label' or its alias 'label_column', not both")
    return {"label": spec.get("label", spec.get("label_column", FORMAT_DEFAULT)), "classes": spec.get("classes"),
            "features": spec.get("features"), "use_features": spec.get("use_features", True),
            "seed": spec.get("seed", 0)}
