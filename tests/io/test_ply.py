"""PLY reading/writing in the ScanNet layout and clear errors on bad files."""
from __future__ import annotations

import numpy as np
import pytest

from pointformer.io.ply import PlyFormatError, read_ply, read_ply_header, read_ply_vertex_count, write_ply


def _mesh(n: int = 50, f: int = 80, seed: int = 0):
    rng = np.random.default_rng(seed)
    return (rng.random((n, 3), dtype=np.float32), rng.integers(0, 256, (n, 3)).astype(np.uint8),
            rng.integers(0, n, (f, 3)).astype(np.int32))


def test_round_trip_binary_scannet_layout(tmp_path):
    v, c, f = _mesh()
    path = tmp_path / "m.ply"
    write_ply(path, v, colors=c, faces=f)
    header = read_ply_header(path)
    assert header.format == "binary_little_endian"
    assert header.properties["vertex"] == ["x", "y", "z", "red", "green", "blue", "alpha"]
    assert header.properties["face"] == ["vertex_indices"]
    mesh = read_ply(path, require_faces=True, require_colors=True)
    np.testing.assert_array_equal(mesh.vertices, v)
    np.testing.assert_array_equal(mesh.colors, c)
    np.testing.assert_array_equal(mesh.faces, f)
    assert (mesh.alpha == 255).all()
    assert read_ply_vertex_count(path) == 50


def test_round_trip_ascii_with_label(tmp_path):
    v, c, f = _mesh(12, 5)
    labels = np.arange(12, dtype=np.uint16) * 3
    path = tmp_path / "l.ply"
    write_ply(path, v, colors=c, faces=f, extra={"label": labels}, text=True)
    mesh = read_ply(path)
    assert read_ply_header(path).format == "ascii"
    np.testing.assert_array_equal(mesh.extra["label"], labels)
    np.testing.assert_array_equal(mesh.faces, f)


def test_polygons_are_fan_triangulated(tmp_path):
    path = tmp_path / "quad.ply"
    path.write_text("ply\nformat ascii 1.0\nelement vertex 5\nproperty float x\nproperty float y\n"
                    "property float z\nelement face 2\nproperty list uchar int vertex_index\nend_header\n"
                    "0 0 0\n1 0 0\n1 1 0\n0 1 0\n2 2 0\n4 0 1 2 3\n3 1 4 2\n")
    mesh = read_ply(path)
    np.testing.assert_array_equal(mesh.faces, [[0, 1, 2], [0, 2, 3], [1, 4, 2]])


@pytest.mark.parametrize("content, message", [
    (b"", "not a PLY file"),
    (b"hello world", "not a PLY file"),
    (b"ply\nformat binary_little_endian 1.0\nelement vertex 10\nproperty float x\n", "truncated or corrupt"),
    (b"ply\nformat binary_little_endian 1.0\nelement vertex ten\nend_header\n", "malformed element"),
    (b"ply\nformat weird 1.0\nelement vertex 1\nend_header\n", "invalid format"),
    (b"ply\nformat ascii 1.0\nelement face 1\nproperty list uchar int vertex_indices\nend_header\n3 0 1 2\n",
     "no 'vertex' element"),
])
def test_bad_headers_name_the_file(tmp_path, content, message):
    path = tmp_path / "bad.ply"
    path.write_bytes(content)
    with pytest.raises(PlyFormatError, match=message) as info:
        read_ply_vertex_count(path)
    assert str(path) in str(info.value)


def test_missing_file(tmp_path):
    with pytest.raises(ValueError, match="not found") as info:
        read_ply_vertex_count(tmp_path / "nope.ply")
    assert "nope.ply" in str(info.value)


def test_truncated_body(tmp_path):
    v, c, f = _mesh(500, 800)
    path = tmp_path / "t.ply"
    write_ply(path, v, colors=c, faces=f)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) - 100])
    assert read_ply_vertex_count(path) == 500  # header intact
    with pytest.raises(PlyFormatError, match="truncated") as info:
        read_ply(path)
    assert "t.ply" in str(info.value)


def test_face_index_out_of_range(tmp_path):
    path = tmp_path / "oob.ply"
    path.write_text("ply\nformat ascii 1.0\nelement vertex 3\nproperty float x\nproperty float y\n"
                    "property float z\nelement face 1\nproperty list uchar int vertex_indices\nend_header\n"
                    "0 0 0\n1 0 0\n1 1 0\n3 0 1 7\n")
    with pytest.raises(PlyFormatError, match="face indices"):
        read_ply(path)


def test_required_parts(tmp_path):
    v, _, _ = _mesh(10)
    path = tmp_path / "pts.ply"
    write_ply(path, v)
    with pytest.raises(PlyFormatError, match="not a triangle mesh"):
        read_ply(path, require_faces=True)
    with pytest.raises(PlyFormatError, match="colour"):
        read_ply(path, require_colors=True)
    assert read_ply(path).colors is None


def test_no_temp_files_left(tmp_path):
    v, c, f = _mesh()
    write_ply(tmp_path / "a.ply", v, colors=c, faces=f)
    assert [p.name for p in tmp_path.iterdir()] == ["a.ply"]
