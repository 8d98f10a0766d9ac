"""Read point-cloud files into float64 points, named raw attributes and raw label codes.

One function, :func:`read_point_cloud`, for ``.npy``, ``.npz``, ``.xyz``/``.txt``/``.csv``,
``.las``, ``.laz`` (laspy with its lazrs LAZ backend, both dependencies) and ``.ply``
(plyfile, ``pip install pointseq[ply]``). Coordinates stay float64: georeferenced tiles sit at
offsets of 1e5-1e7 where a float32 step is up to a metre.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any

import numpy as np

TEXT_SUFFIXES = (".xyz", ".txt", ".csv")
LAS_SUFFIXES = (".las", ".laz")
SUFFIXES = (".npy", ".npz", *TEXT_SUFFIXES, *LAS_SUFFIXES, ".ply")


class PointCloudFileError(ValueError):
    """A point-cloud file cannot be read as asked: wrong, unreadable, lacking a dimension.

    A ``ValueError`` (a usage error: the command line exits 2), never a faulty cache.
    """


class _FormatDefault:
    """The ``label`` default: ``classification`` for LAS, ``labels`` for ``.npz``, none otherwise.

    One instance, compared by identity (``label is FORMAT_DEFAULT``): pickling and copying
    give back the module's instance, so the default survives the trip to a Dask worker.
    """

    def __repr__(self) -> str:
        return "FORMAT_DEFAULT"

    def __reduce__(self) -> str:
        return "FORMAT_DEFAULT"  # pickled by reference: unpickled as this module's FORMAT_DEFAULT


FORMAT_DEFAULT: Any = _FormatDefault()


@dataclass(frozen=True)
class PointCloud:
    """``points`` (N, 3) float64; ``attributes`` every other per-point dimension, raw, by name;
    ``labels`` (N,) int64 raw source codes or None; ``path`` the file it came from or None."""

    points: np.ndarray
    attributes: dict[str, np.ndarray] = field(default_factory=dict)
    labels: np.ndarray | None = None
    path: str | None = None

    def __post_init__(self) -> None:
        n = self.points.shape[0]
        where = f" of {self.path!r}" if self.path else ""
        if self.points.ndim != 2 or self.points.shape[1] != 3:
            raise ValueError(f"points{where} must have shape (N, 3), got {self.points.shape}")
        columns = dict(self.attributes, labels=self.labels) if self.labels is not None else self.attributes
        for name, value in columns.items():
            if value.shape[0] != n:
                raise ValueError(f"{name}{where} must have {n} rows like points, got shape {value.shape}")

    def __len__(self) -> int:
        return int(self.points.shape[0])


def _fail(path: str, problem: str) -> PointCloudFileError:
    return PointCloudFileError(f"point-cloud file {path!r}: {problem}")


def _label_from(path: str, attributes: dict[str, np.ndarray], label: Any, default: str | None) -> np.ndarray | None:
    """The label codes from the attribute ``label`` names (``FORMAT_DEFAULT``: ``default``)."""
    if label is FORMAT_DEFAULT:
        if default is None or default not in attributes:
            return None
        label = default
    if label is None:
        return None
    if not isinstance(label, str) or label not in attributes:
        raise _fail(path, f"has no label dimension {label!r}; its dimensions are {sorted(attributes)}")
    codes = np.asarray(attributes[label])
    if codes.ndim != 1 or not np.all(np.isfinite(codes)) or not np.all(codes == np.round(codes)):
        raise _fail(path, f"label dimension {label!r} must hold one integer code per point")
    return codes.astype(np.int64)


# -- tables: .npy and text ------------------------------------------------------------------
def _column_names(path: str, width: int, header: list[str] | None) -> list[str]:
    if header is not None and len(header) == width:
        return header
    return ["x", "y", "z"] + [f"column_{k}" for k in range(3, width)]


def _from_table(table: np.ndarray, path: str, label: Any, header: list[str] | None = None) -> PointCloud:
    table = np.asarray(table)
    if table.ndim != 2 or table.shape[1] < 3 or not np.issubdtype(table.dtype, np.number):
        raise _fail(path, f"must hold a numeric table of >= 3 columns (x, y, z, ...), got shape {table.shape}")
    names = _column_names(path, table.shape[1], header)
    attributes = {name: table[:, k] for k, name in enumerate(names) if k >= 3}
    if isinstance(label, (int, np.integer)) and not isinstance(label, bool):
        if not -table.shape[1] <= label < table.shape[1] or label % table.shape[1] < 3:
            raise _fail(path, f"label column must index a column after x, y, z ({table.shape[1]} columns), "
                              f"got {label}")
        label = names[label % table.shape[1]]
    labels = _label_from(path, attributes, label, None)
    return PointCloud(table[:, :3].astype(np.float64), attributes, labels, path)


def _read_text(path: str, label: Any) -> PointCloud:
    delimiter = "," if path.lower().endswith(".csv") else None
    with open(path, encoding="utf-8") as f:
        first = f.readline().lstrip("#").strip()
    fields = first.replace(",", " ").split()
    try:
        [float(v) for v in fields]
        header = None
    except ValueError:  # a header line names the columns
        header = fields
    table = np.loadtxt(path, delimiter=delimiter, comments="#", skiprows=0 if header is None else 1, ndmin=2)
    return _from_table(table, path, label, header)


def _read_npz(path: str, label: Any) -> PointCloud:
    with np.load(path) as data:
        if "points" not in data:
            raise _fail(path, f"must hold a 'points' array, got keys {sorted(data.files)}")
        points = np.asarray(data["points"], dtype=np.float64)
        attributes = {k: data[k] for k in data.files if k != "points"}
    return PointCloud(points, attributes, _label_from(path, attributes, label, "labels"), path)


# -- LAS/LAZ ------------------------------------------------------------------------------
def laspy_module(path: str) -> Any:
    try:
        import laspy
    except ImportError:
        raise _fail(path, "reading LAS/LAZ needs laspy: pip install 'pointseq[las]'") from None
    return laspy


def read_las_data(path: str) -> Any:
    """The laspy ``LasData`` of a LAS/LAZ file, every dimension as stored; clear errors naming it."""
    laspy = laspy_module(path)
    if path.lower().endswith(".laz") and not laspy.LazBackend.detect_available():
        raise _fail(path, "reading LAZ needs a LAZ backend (lazrs): pip install 'pointseq[las]'")
    if not os.path.isfile(path):
        raise FileNotFoundError(f"point-cloud file {path!r} does not exist")
    try:
        return laspy.read(path)
    except (laspy.errors.LaspyException, OSError, ValueError) as error:
        raise _fail(path, f"is not a readable LAS/LAZ file ({error})") from None


def _read_las(path: str, label: Any) -> PointCloud:
    las = read_las_data(path)
    attributes = {name: np.asarray(las[name]) for name in las.point_format.dimension_names
                  if name not in ("X", "Y", "Z")}
    points = np.stack([np.asarray(las.x), np.asarray(las.y), np.asarray(las.z)], axis=1).astype(np.float64)
    return PointCloud(points, attributes, _label_from(path, attributes, label, "classification"), path)


def open_las(path: str) -> Any:
    """An open laspy reader of a LAS/LAZ file (its header read, points on demand); clear errors naming it."""
    laspy = laspy_module(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"point-cloud file {path!r} does not exist")
    try:
        return laspy.open(path)
    except (laspy.errors.LaspyException, OSError, ValueError) as error:
        raise _fail(path, f"is not a readable LAS/LAZ file ({error})") from None


def las_point_count(path: str) -> int:
    """The number of points a LAS/LAZ header states, without reading the points."""
    with open_las(path) as reader:
        return int(reader.header.point_count)


# -- PLY ----------------------------------------------------------------------------------
def _read_ply(path: str, label: Any) -> PointCloud:
    try:
        import plyfile
    except ImportError:
        raise _fail(path, "reading PLY needs plyfile: pip install 'pointseq[ply]'") from None
    try:
        ply = plyfile.PlyData.read(path)
        vertex = ply["vertex"].data
    except (plyfile.PlyParseError, KeyError, OSError, ValueError) as error:
        raise _fail(path, f"is not a readable PLY file with a 'vertex' element ({error})") from None
    names = vertex.dtype.names or ()
    if not {"x", "y", "z"} <= set(names):
        raise _fail(path, f"PLY vertices must have x, y, z properties, got {list(names)}")
    points = np.stack([vertex["x"], vertex["y"], vertex["z"]], axis=1).astype(np.float64)
    attributes = {n: np.asarray(vertex[n]) for n in names if n not in ("x", "y", "z") and vertex[n].dtype != object}
    return PointCloud(points, attributes, _label_from(path, attributes, label, None), path)


def read_point_cloud(path: str | os.PathLike, *, label: Any = FORMAT_DEFAULT) -> PointCloud:
    """Read one point-cloud file: float64 points, every per-point dimension raw, label codes.

    ``label`` names the dimension that holds the class codes: any LAS dimension
    (``classification`` by default, extra-bytes dimensions too), a ``.npz`` array
    (``labels`` by default), a PLY property, or a table column by header name or index
    (``.npy``/text columns after x, y, z; header-less columns are named ``column_<k>``).
    ``None``: no labels. A label source that does not exist is an error, never ignored.
    """
    path = os.fspath(path)
    suffix = os.path.splitext(path)[1].lower()
    if suffix not in SUFFIXES:
        raise _fail(path, f"unsupported suffix {suffix!r}; expected one of {SUFFIXES}")
    if not os.path.isfile(path):
        raise FileNotFoundError(f"point-cloud file {path!r} does not exist")
    if suffix in LAS_SUFFIXES:
        return _read_las(path, label)
    if suffix == ".ply":
        return _read_ply(path, label)
    try:
        if suffix == ".npz":
            return _read_npz(path, label)
        if suffix == ".npy":
            return _from_table(np.load(path), path, label)
        return _read_text(path, label)
    except (OSError, EOFError, UnicodeDecodeError) as error:
        raise _fail(path, f"cannot be read ({error})") from None
    except ValueError as error:
        if isinstance(error, PointCloudFileError):
            raise
        raise _fail(path, f"cannot be read ({error})") from None
