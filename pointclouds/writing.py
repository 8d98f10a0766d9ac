"""Write LAS/LAZ files: predictions added to a source file, or a new cloud.

A source file keeps every point in its order and every dimension it had; the arrays of
``extra`` are added as extra-bytes dimensions (``prediction``, per-class probabilities, ...)
and ``classification`` optionally overwrites the classification. The file is written to a
temporary name beside ``path`` and renamed into place, so a crash never leaves half a file.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import numpy as np

from pointseq.pointclouds.reading import LAS_SUFFIXES, PointCloud, laspy_module, read_las_data

NEW_CLOUD_POINT_FORMAT = 6
NEW_CLOUD_SCALE = 0.001  # millimetres: coordinates of new clouds round to this


def _check_output(path: str) -> None:
    if os.path.splitext(path)[1].lower() not in LAS_SUFFIXES:
        raise ValueError(f"write_point_cloud path must end in .las or .laz, got {path!r}")


def _check_columns(extra: dict[str, Any], n: int, las: Any) -> dict[str, np.ndarray]:
    if not isinstance(extra, dict):
        raise TypeError(f"extra must be a dict of per-point arrays by name, got {type(extra).__name__}")
    columns = {}
    for name, values in extra.items():
        values = np.asarray(values)
        if not isinstance(name, str) or not name or len(name) > 32:
            raise ValueError(f"extra dimension names must be strings of 1-32 characters, got {name!r}")
        if values.shape != (n,) or values.dtype.kind not in "biuf":
            raise ValueError(f"extra[{name!r}] must be a numeric array of shape ({n},), got "
                             f"{values.dtype} {values.shape}")
        if name in las.point_format.dimension_names:
            raise ValueError(f"extra[{name!r}] names a dimension the file already has; choose another name")
        columns[name] = values.astype(np.uint8) if values.dtype == bool else values
    return columns


def _new_las(cloud: PointCloud) -> Any:
    """A LAS of point format 6 holding ``cloud``: its coordinates and any standard dimension it names."""
    laspy = laspy_module(cloud.path or "<new cloud>")
    header = laspy.LasHeader(point_format=NEW_CLOUD_POINT_FORMAT, version="1.4")
    header.offsets = np.floor(cloud.points.min(axis=0)) if len(cloud) else np.zeros(3)
    header.scales = np.full(3, NEW_CLOUD_SCALE)
    las = laspy.LasData(header)
    las.x, las.y, las.z = cloud.points[:, 0], cloud.points[:, 1], cloud.points[:, 2]
    standard = set(las.point_format.dimension_names)
    for name, values in cloud.attributes.items():
        if name in standard:
            las[name] = values
    if cloud.labels is not None:
        las.classification = cloud.labels
    return las


def write_point_cloud(path: str | os.PathLike, source: str | os.PathLike | PointCloud, *,
                      extra: dict[str, Any] | None = None, classification: np.ndarray | None = None,
                      vlrs: Sequence[Any] = ()) -> str:
    """Write ``source`` (a LAS/LAZ path, or a `PointCloud`) to ``path`` with ``extra`` dimensions added.

    ``classification`` (N,) replaces the classification codes (e.g. predictions mapped back
    with `ClassMap.to_codes`). ``vlrs``: laspy VLRs to add (`with_vlrs`). ``.laz`` paths are
    compressed. Returns ``path``.
    """
    path = os.fspath(path)
    _check_output(path)
    if isinstance(source, PointCloud):
        las = _new_las(source)
    else:
        las = read_las_data(os.fspath(source))
    laspy = laspy_module(path)
    n = len(las.points)
    columns = _check_columns(extra or {}, n, las)
    if columns:
        las.add_extra_dims([laspy.ExtraBytesParams(name=k, type=v.dtype) for k, v in columns.items()])
        for name, values in columns.items():
            las[name] = values
    if classification is not None:
        _set_classification(las, np.asarray(classification), n)
    las.header.vlrs[:] = with_vlrs(las.header.vlrs, vlrs)
    with atomic_output(path) as temp, open(temp, "wb") as f:  # a path would pick compression from the temp name
        las.write(f, do_compress=path.lower().endswith(".laz"))
    return path


def with_vlrs(existing: Sequence[Any], added: Sequence[Any]) -> list:
    """``existing`` VLRs plus ``added``; an added one replaces one of the same user id and record id."""
    keys = {(v.user_id, v.record_id) for v in added}
    return [v for v in existing if (v.user_id, v.record_id) not in keys] + list(added)


@contextmanager
def atomic_output(path: str) -> Iterator[str]:
    """A temporary name beside ``path`` to write to; renamed to ``path`` when the block succeeds,
    removed when it fails, so a crash never leaves half a file where a good one is expected."""
    temp = f"{path}.tmp{os.getpid()}"
    try:
        yield temp
        os.replace(temp, path)
    except BaseException:
        if os.path.exists(temp):
            os.remove(temp)
        raise


def write_json_atomic(path: str, obj: Any) -> None:
    """Write ``obj`` as indented JSON to ``path`` through `atomic_output`: ``path`` is either the
    old or the new file, with the permissions the umask gives any new file."""
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    with atomic_output(path) as temp:
        with open(temp, "w", encoding="utf-8") as f:
            json.dump(obj, f, indent=1, sort_keys=True, default=_jsonable)
            f.flush()
            os.fsync(f.fileno())


def _jsonable(value: Any) -> Any:
    if isinstance(value, np.integer):
        return int(value)
    if isinstance(value, np.floating):
        return float(value)
    if isinstance(value, np.bool_):
        return bool(value)
    if isinstance(value, np.ndarray):
        return value.tolist()
    raise TypeError(f"{value!r} ({type(value).__name__}) is not JSON-serialisable")


def _set_classification(las: Any, codes: np.ndarray, n: int) -> None:
    limit = 255 if las.point_format.id >= 6 else 31
    if codes.shape != (n,) or codes.dtype.kind not in "iu":
        raise ValueError(f"classification must be integer codes of shape ({n},), got {codes.dtype} {codes.shape}")
    if n and (codes.min() < 0 or codes.max() > limit):
        raise ValueError(f"classification codes must lie in [0, {limit}] for point format {las.point_format.id}, "
                         f"got range [{codes.min()}, {codes.max()}]")
    las.classification = codes.astype(np.uint8)

