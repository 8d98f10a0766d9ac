"""LAS/LAZ tiles in and out a chunk of points at a time, for tiles larger than memory allows.

`read_las_columns` keeps only the coordinates (float64) and the dimensions asked for, never the
whole point record; `write_las_streaming` copies a source file's points record by record (every
dimension byte for byte, in order) into a new file with extra-bytes dimensions added, so the
output is never held whole. Together with spatial blocks (`pointclouds.blocks`) a tile's
prediction holds its xyz, the features' dimensions, per-point sums and one block's fields.
"""

from __future__ import annotations

import copy
import os
from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np

from pointseq.arguments import require_int
from pointseq.pointclouds.reading import PointCloud, PointCloudFileError, laspy_module, open_las
from pointseq.pointclouds.writing import _check_columns, _check_output, _set_classification, atomic_output, with_vlrs

LAS_CHUNK = 1 << 20  # points per chunk read or written


def read_las_columns(path: str | os.PathLike, names: Iterable[str], *, chunk_points: int = LAS_CHUNK) -> PointCloud:
    """The float64 coordinates and the dimensions ``names`` of a LAS/LAZ file, read
    ``chunk_points`` at a time; no labels. Memory: the result plus one chunk."""
    path = os.fspath(path)
    chunk_points = require_int("chunk_points", chunk_points, 1)
    with open_las(path) as reader:
        count = int(reader.header.point_count)
        wanted = list(dict.fromkeys(names))
        present = list(reader.header.point_format.dimension_names)
        lacking = [n for n in wanted if n not in present]
        if lacking:
            raise PointCloudFileError(f"point-cloud file {path!r} lacks the dimensions {lacking}; "
                                      f"its dimensions are {sorted(present)}")
        points = np.empty((count, 3))
        attributes: dict[str, np.ndarray] = {}
        start = 0
        for chunk in reader.chunk_iterator(chunk_points):
            stop = start + len(chunk)
            points[start:stop] = np.column_stack([chunk.x, chunk.y, chunk.z])
            for name in wanted:
                values = np.asarray(chunk[name])
                attributes.setdefault(name, np.empty(count, dtype=values.dtype))[start:stop] = values
            start = stop
    if start != count:
        raise PointCloudFileError(f"point-cloud file {path!r}: its header states {count} points, {start} were read")
    return PointCloud(points, {n: attributes.get(n, np.empty(0)) for n in wanted}, None, path)


def write_las_streaming(path: str | os.PathLike, source: str | os.PathLike, *, extra: dict[str, Any] | None = None,
                        classification: np.ndarray | None = None, chunk_points: int = LAS_CHUNK,
                        vlrs: Sequence[Any] = ()) -> str:
    """What `write_point_cloud(path, source, extra=..., classification=..., vlrs=...)` writes for
    a LAS/LAZ ``source``, copied ``chunk_points`` at a time (under a temporary name, then renamed)."""
    path, source = os.fspath(path), os.fspath(source)
    _check_output(path)
    chunk_points = require_int("chunk_points", chunk_points, 1)
    laspy = laspy_module(path)
    with open_las(source) as reader, atomic_output(path) as temp:
        count = int(reader.header.point_count)
        columns = _check_columns(extra or {}, count, reader.header)
        if classification is not None and np.shape(classification) != (count,):
            raise ValueError(f"classification must be integer codes of shape ({count},), "
                             f"got shape {np.shape(classification)}")
        header = copy.deepcopy(reader.header)  # the reader keeps its own; the writer resets counts, bounds
        header.add_extra_dims([laspy.ExtraBytesParams(name=k, type=v.dtype) for k, v in columns.items()])
        header.vlrs[:] = with_vlrs(header.vlrs, vlrs)
        with open(temp, "wb") as f, laspy.open(f, mode="w", header=header, closefd=False,
                                               do_compress=path.lower().endswith(".laz")) as writer:
            _copy_points(laspy, reader, writer, columns, classification, chunk_points)
            if reader.evlrs:
                writer.write_evlrs(reader.evlrs)
    return path


def _copy_points(laspy: Any, reader: Any, writer: Any, columns: dict[str, np.ndarray],
                 classification: np.ndarray | None, chunk_points: int) -> None:
    """Each chunk of the source, every stored field byte for byte, plus the new columns."""
    start = 0
    for chunk in reader.chunk_iterator(chunk_points):
        stop = start + len(chunk)
        record = laspy.ScaleAwarePointRecord.zeros(len(chunk), header=writer.header)
        for field in chunk.array.dtype.names:
            record.array[field] = chunk.array[field]
        for name, values in columns.items():
            record[name] = values[start:stop]
        if classification is not None:
            _set_classification(record, np.asarray(classification)[start:stop], len(chunk))
        writer.write_points(record)
        start = stop
