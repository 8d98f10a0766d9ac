"""LAS/LAZ a chunk at a time: the same cloud and the same output file as reading and writing whole."""

import os

import numpy as np
import pytest

from pointseq.pointclouds import PointCloudFileError, read_point_cloud, write_point_cloud
from pointseq.pointclouds.las_stream import read_las_columns, write_las_streaming

laspy = pytest.importorskip("laspy")


def las_file(path, point_format, count=2500, seed=0):
    """A tile far from the origin with intensity, returns, classes and (for format 8) an extra dimension."""
    rng = np.random.default_rng(seed)
    header = laspy.LasHeader(point_format=point_format, version="1.4" if point_format >= 6 else "1.2")
    header.offsets, header.scales = [5e6, 4e6, 100.0], [0.001, 0.001, 0.001]
    if point_format >= 6:
        header.add_extra_dims([laspy.ExtraBytesParams(name="deviation", type=np.int16)])
    las = laspy.LasData(header)
    las.x, las.y = 5e6 + rng.random(count) * 50, 4e6 + rng.random(count) * 50
    las.z = 100 + rng.random(count) * 10
    las.intensity = rng.integers(0, 65535, count)
    las.return_number = rng.integers(1, 4, count)
    las.number_of_returns = np.maximum(las.return_number, 3)
    las.classification = rng.choice([2, 5, 6], count)
    if point_format >= 6:
        las["deviation"] = rng.integers(-100, 100, count)
    las.write(str(path))
    return str(path)


@pytest.mark.parametrize("name,point_format", [("tile.las", 3), ("tile.laz", 8)])
def test_chunks_read_and_write_what_whole_files_do(tmp_path, name, point_format):
    source = las_file(tmp_path / name, point_format)
    whole = read_point_cloud(source, label=None)
    part = read_las_columns(source, ["intensity", "return_number"], chunk_points=600)
    np.testing.assert_array_equal(part.points, whole.points)
    assert set(part.attributes) == {"intensity", "return_number"} and part.labels is None
    for key, values in part.attributes.items():
        np.testing.assert_array_equal(values, whole.attributes[key])
    n = len(whole)
    extra = {"prediction": (np.arange(n) % 7).astype(np.uint8), "prob_ground": np.linspace(0, 1, n, dtype=np.float32)}
    codes = (np.arange(n) % 3 + 1).astype(np.int64)
    expected = laspy.read(write_point_cloud(str(tmp_path / ("whole_" + name)), source, extra=extra,
                                            classification=codes))
    got = laspy.read(write_las_streaming(tmp_path / ("chunks_" + name), source, extra=extra,
                                         classification=codes, chunk_points=700))
    assert list(got.point_format.dimension_names) == list(expected.point_format.dimension_names)
    assert got.header.point_count == n and np.array_equal(got.points.array, expected.points.array)
    np.testing.assert_allclose(got.header.mins, expected.header.mins)
    np.testing.assert_allclose(got.header.maxs, expected.header.maxs)
    assert not [f for f in os.listdir(tmp_path) if ".tmp" in f]


def test_refusals_name_the_problem_and_leave_no_file(tmp_path):
    source = las_file(tmp_path / "tile.las", 3, count=300)
    with pytest.raises(PointCloudFileError, match=r"lacks the dimensions \['nir'\]; its dimensions are"):
        read_las_columns(source, ["intensity", "nir"])
    with pytest.raises(ValueError, match=r"classification must be integer codes of shape \(300,\), got shape \(299,\)"):
        write_las_streaming(tmp_path / "out.las", source, classification=np.zeros(299, dtype=np.int64))
    with pytest.raises(ValueError, match=r"extra\['intensity'\] names a dimension the file already has"):
        write_las_streaming(tmp_path / "out.las", source, extra={"intensity": np.zeros(300)})
    with pytest.raises(ValueError, match=r"classification codes must lie in \[0, 31\]"):
        write_las_streaming(tmp_path / "out.las", source, classification=np.full(300, 40), chunk_points=100)
    with pytest.raises(ValueError, match="path must end in .las or .laz"):
        write_las_streaming(tmp_path / "out.ply", source)
    with pytest.raises(ValueError, match="chunk_points must be an int >= 1, got 0"):
        read_las_columns(source, [], chunk_points=0)
    (tmp_path / "garbage.laz").write_bytes(b"not a LAS file")
    with pytest.raises(PointCloudFileError, match="is not a readable LAS/LAZ file"):
        read_las_columns(tmp_path / "garbage.laz", [])
    assert sorted(os.listdir(tmp_path)) == ["garbage.laz", "tile.las"]  # nothing half-written
