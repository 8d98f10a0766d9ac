"""Point-cloud files as an extra source of cache samples (``offline_pcloud``).

Files are cut into receptive fields by a `CoveringFieldSampler` (any spec `sampler_from_spec`
accepts): every point lies in a field, or, with ``training_class_distribution``, fields sit
on class-balanced support points drawn with ``field_rng(seed, file index)``. Labels are
reduced to the kept points with `reduce_labels`; the fields become model inputs through the
model type's field encoder (`pointclouds.field_encoders`: dense field arrays, sparse grids,
...), the same encoder prediction uses.

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
from pointseq.pointclouds.field_encoders import (
    FieldEncoder,
    Samples,
    concat_samples,
    count_samples,
    encoder_from_spec,
    take_samples,
)
from pointseq.pointclouds.field_inputs import GEOMETRY_COLUMNS
from pointseq.pointclouds.reading import FORMAT_DEFAULT, PointCloud, PointCloudFileError, read_point_cloud
from pointseq.pointclouds.receptive_fields import CoveringFieldSampler, Fields, sampler_from_spec
from pointseq.sequencers.seeding import field_rng

SPEC_KEYS = ("paths", "sampler", "encoder", "grid", "label", "label_column", "classes", "features", "use_features",
             "seed")


class PointCloudSource:
    """Files read with `read_point_cloud`, cut into fields by a sampler, labels mapped by a
    `ClassMap`, fields encoded by a `FieldEncoder` (default: ``dense``).

    A batch is ``(x,)`` for files without labels; else ``(x, y)`` or, when the class map can
    ignore codes or the encoder pads, ``(x, y, sample_weight)`` with weight 0 on ignored and
    padded entries. With the dense encoder ``x`` is the `field_inputs` ``(B, P, 4 + F)`` float32
    (x, y, z relative to the field centre over the radius, height, then the named
    ``features``) and ``y`` the reduced class ids ``(B, P)``.
    """

    def __init__(self, paths: list[str], sampler: CoveringFieldSampler | dict,
                 encoder: FieldEncoder | dict | None = None, *, label: Any = FORMAT_DEFAULT,
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
        self.encoder = encoder_from_spec(encoder)
        self.encoder.bind(sampler)
        self.encoder_spec = self.encoder.get_config()  # as given: the first pass settles the encoder's own
        self.label = label
        self.classes_spec = classes.get_config() if isinstance(classes, ClassMap) else classes
        ClassMap.from_spec(self.classes_spec, [0])  # checks the spec now
        self.use_features = bool(use_features)
        self.features = FeatureSpec(features if self.use_features else None)
        self.class_map: ClassMap | None = None  # resolved by scan()
        self.class_counts: list[int] | None = None  # trained points per class id, by scan()
        self._counts: list[int] | None = None  # fields per file
        self.mean_field_points: float | None = None  # by scan()
        self._files_checked = False  # set by adopt_scan (after scan_file of every file)

    @classmethod
    def from_spec(cls, spec: Any) -> "PointCloudSource":
        """From ``{"paths", "sampler", "encoder", "label", "classes", "features", "use_features",
        "seed"}``; ``"grid"`` (a `SparseGridPreProcessor` spec) stands for a sparse-grid encoder."""
        if isinstance(spec, PointCloudSource):
            return spec
        if not isinstance(spec, dict) or "paths" not in spec or "sampler" not in spec:
            raise ValueError(
                "offline_pcloud must be a dict with 'paths' (point-cloud files) and 'sampler' (e.g. "
                "{'type': 'FurthestPointSubsamplingPreProcessor', 'num_points': 1024, 'neighborhood': "
                "{'type': 'cylinder', 'radius': 5.0}}), got " + repr(spec)
            )
        return cls(spec["paths"], spec["sampler"], encoder_spec(spec), **file_options(spec, SPEC_KEYS))

    def check_backbone(self, backbone: Any) -> None:
        """TypeError unless ``backbone`` is a sequencer type that batches this encoder's samples;
        a backbone with padded rows of its own (sparse grids) fixes the encoder's."""
        kind = type(backbone).__name__
        if kind not in self.encoder.backbones:
            raise TypeError(
                f"offline_pcloud's {self.encoder.type_name!r} encoder needs a backbone of type "
                f"{' or '.join(self.encoder.backbones)}, got a {kind} backbone")
        rows = getattr(backbone, "max_rows", None)
        if getattr(backbone, "num_samples", 0) and rows:
            own = getattr(self.encoder, "max_rows", None)
            if own is not None and tuple(own) != tuple(rows):
                raise ValueError(f"grid max_rows {list(own)} differ from the backbone's {list(rows)}: "
                                 "give one value to both")
            self.encoder.grid.max_rows = tuple(rows)
            self.encoder_spec = self.encoder.get_config()

    def get_config(self) -> dict:
        """The spec (what the fingerprint covers, with the files' bytes)."""
        config = {"paths": self.paths, "sampler": self.sampler.get_config(), "encoder": self.encoder_spec,
                  "classes": self.classes_spec, "features": self.features.get_config()["features"],
                  "use_features": self.use_features, "seed": self.seed}
        if self.label is not FORMAT_DEFAULT:
            config["label"] = self.label
        return config

    def cache_config(self, progress: Callable[[str], None] | None = None) -> dict:
        """The spec plus the resolved class map, feature normalisation and the encoder as the
        first pass settled it (e.g. its padded rows), stored in the cache."""
        self.scan(progress)
        return {**self.get_config(), "encoder": self.encoder.get_config(),
                "class_map": None if self.class_map is None else self.class_map.get_config(),
                "feature_normalisation": self.features.get_config()["features"], "class_counts": self.class_counts,
                "inputs": self.input_names}

    @property
    def input_names(self) -> list[str]:
        """The point columns the encoder starts from: the field geometry, then the features."""
        return [*GEOMETRY_COLUMNS, *self.features.names]

    def digest(self) -> str:
        return files_digest(self.paths)

    @property
    def sample_weights(self) -> bool:
        """Whether batches carry sample weights: labels that the class map may ignore, or padding."""
        spec = self.classes_spec or {}
        ignorable = bool(spec.get("ignore") or spec.get("unknown") == "ignore")
        return self.label is not None and (ignorable or self.encoder.type_name != "dense")

    # -- pass 1 ---------------------------------------------------------------------------
    def scan(self, progress: Callable[[str], None] | None = None) -> None:
        """Check every file, resolve the class map, count fields and class points and let the
        encoder see every file's samples; raises `PointCloudFileError` naming a file."""
        if self._counts is not None:
            return
        self.check_files(progress)
        self._count_fields(progress)

    def check_files(self, progress: Callable[[str], None] | None = None) -> None:
        """The first half of `scan`: every file readable, with its label and features, and the
        class map resolved; nothing is cut."""
        if self._files_checked:
            return
        results = []
        for i, path in enumerate(self.paths):
            results.append(self.scan_file(i))
            if progress is not None:
                progress(f"checked {path} ({results[-1][0]} points)")
        self.adopt_scan(results)

    def scan_file(self, index: int) -> tuple:
        """``(points, has labels, label codes)`` of file ``index``, checked; files scan in parallel."""
        cloud = read_point_cloud(self.paths[index], label=self.label)
        if len(cloud) == 0:
            raise PointCloudFileError(f"point-cloud file {self.paths[index]!r} holds no points: "
                                      "leave it out of the training files")
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

    def _count_fields(self, progress: Callable[[str], None] | None) -> None:
        """Cut and encode every file once: its fields, the trained points of each class, and
        what the encoder must see before batches are written (`FieldEncoder.observe`)."""
        counts, class_counts = [], np.zeros(self.class_map.num_classes if self.class_map else 0, np.int64)
        members = 0
        for i, path in enumerate(self.paths):
            cloud, fields, ids = self.cut(i)
            counts.append(len(fields))
            members += int(fields.member_offsets[-1])
            if ids is not None:
                class_counts += np.bincount(ids, minlength=class_counts.size + 1)[:class_counts.size]
            self.encoder.observe(self._encode(cloud, fields))
            if progress is not None:
                progress(f"counted {len(fields)} fields in {path}")
        self.encoder.settle()
        self.class_counts = class_counts.tolist() if self.class_map else None
        self.mean_field_points = members / max(sum(counts), 1)  # points in a field's neighbourhood
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

    def _encode(self, cloud: PointCloud, fields: Fields) -> Samples:
        return self.encoder.encode(cloud.points, fields, self.features(cloud))

    def file_samples(self, index: int) -> Samples:
        """The encoded fields of file ``index``."""
        self.scan()
        cloud, fields, _ = self.cut(index)
        return self._encode(cloud, fields)

    def batches(self, batch_size: int, drop_last: bool, start: int = 0,
                progress: Callable[[str], None] | None = None) -> Iterator[tuple]:
        """Batches of ``batch_size`` fields in file order from batch ``start``, one file in memory."""
        self.scan()
        skip = start * batch_size
        held: Samples | None = None  # the fields not yet handed out, fewer than a batch
        for i, count in enumerate(self._counts):
            if skip >= count:
                skip -= count
                continue
            part = take_samples(self.file_samples(i), slice(skip, count))
            skip = 0
            held = part if held is None else concat_samples([held, part])
            if progress is not None:
                progress(f"writing {count} fields of {self.paths[i]}")
            full = count_samples(held) // batch_size * batch_size
            for first in range(0, full, batch_size):
                yield self._batch(take_samples(held, slice(first, first + batch_size)))
            held = take_samples(held, slice(full, count_samples(held)))
        if held is not None and count_samples(held) and not drop_last:
            yield self._batch(held)

    def _batch(self, samples: Samples) -> tuple:
        x = self.encoder.inputs(samples)
        if self.class_map is None or self.label is None:
            return (x,)
        y, weights = self.encoder.targets(samples, self.class_map.num_classes)
        return (x, y, weights) if self.sample_weights else (x, y)


def encoder_spec(spec: dict) -> dict | None:
    """The ``encoder`` of an ``offline_pcloud`` spec; a ``grid`` pre-processor spec names a
    sparse-grid encoder (the original's key)."""
    if "grid" in spec and "encoder" in spec:
        raise ValueError("offline_pcloud: give 'encoder' or the sparse-grid 'grid', not both")
    if "grid" in spec:
        grid = {k: v for k, v in dict(spec["grid"]).items() if k != "type"}
        return {"type": "sparse_grid", **grid}
    return spec.get("encoder")


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
