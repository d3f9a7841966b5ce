"""read_cloud: each format reads back what a plain writer wrote (plyfile, laspy, hand-written PCD/text),
including odd property orders, ASCII variants and georeferenced float64 coordinates; bad files are
clear errors naming the file."""
from __future__ import annotations

import struct

import numpy as np
import pytest

from pointformer.io.clouds import CloudFormatError, lzf_decompress, read_cloud

GEO = np.array([512_345.678, 4_123_456.789, 231.5])  # UTM-like offsets: float32 would lose centimetres


def _points(n=50, seed=0, offset=GEO):
    rng = np.random.default_rng(seed)
    xyz = offset + rng.random((n, 3)) * [20.0, 15.0, 3.0]
    rgb = rng.integers(0, 256, (n, 3), dtype=np.uint8)
    normals = rng.normal(size=(n, 3)).astype(np.float32)
    intensity = rng.random(n).astype(np.float32) * 1000
    return xyz, rgb, normals, intensity


# ---------------------------------------------------------------------------------------------- PLY

@pytest.mark.parametrize("text,byte_order", [(False, "<"), (False, ">"), (True, "=")])
def test_ply_any_property_order_ascii_and_binary_keeps_float64(tmp_path, text, byte_order):
    import plyfile

    xyz, rgb, normals, intensity = _points()
    layout = [("red", "u1"), ("z", "f8"), ("nx", "f4"), ("x", "f8"), ("intensity", "f4"), ("green", "u1"),
              ("y", "f8"), ("ny", "f4"), ("blue", "u1"), ("nz", "f4"), ("extra_flag", "u1")]
    data = np.empty(len(xyz), dtype=layout)
    for i, c in enumerate("xyz"):
        data[c] = xyz[:, i]
    for i, c in enumerate(("red", "green", "blue")):
        data[c] = rgb[:, i]
    for i, c in enumerate(("nx", "ny", "nz")):
        data[c] = normals[:, i]
    data["intensity"] = intensity
    path = tmp_path / "odd.ply"
    plyfile.PlyData([plyfile.PlyElement.describe(data, "vertex")], text=text, byte_order=byte_order).write(str(path))
    cloud = read_cloud(path)
    assert cloud.format == "ply" and cloud.double and cloud.faces is None
    np.testing.assert_array_equal(cloud.xyz, xyz)  # exact: no float32 round trip
    np.testing.assert_array_equal(cloud.rgb, rgb)
    np.testing.assert_allclose(cloud.normals, normals, rtol=1e-6)
    np.testing.assert_allclose(cloud.intensity, intensity, rtol=1e-6)
    assert cloud.available_features() == ["rgb", "normals", "intensity"]


def test_ply_mesh_float32_without_colour_and_16bit_colour(tmp_path):
    import plyfile

    v = np.zeros(4, dtype=[("x", "f4"), ("y", "f4"), ("z", "f4"), ("red", "u2"), ("green", "u2"), ("blue", "u2")])
    v["x"], v["y"] = [0, 1, 0, 1], [0, 0, 1, 1]
    v["red"], v["green"], v["blue"] = [65535, 256, 0, 32768], 0, 512
    faces = np.zeros(2, dtype=[("vertex_indices", "i4", (3,))])
    faces["vertex_indices"] = [[0, 1, 2], [1, 3, 2]]
    path = tmp_path / "mesh.ply"
    plyfile.PlyData([plyfile.PlyElement.describe(v, "vertex"), plyfile.PlyElement.describe(faces, "face")]).write(
        str(path))
    cloud = read_cloud(path)
    assert not cloud.double and cloud.xyz.dtype == np.float64
    np.testing.assert_array_equal(cloud.faces, [[0, 1, 2], [1, 3, 2]])
    np.testing.assert_array_equal(cloud.rgb[:, 0], [255, 1, 0, 128])  # 16-bit colours keep their high byte
    # other tools' colour names (MeshLab/Blender: diffuse_*, some exporters: r g b as floats in [0, 1])
    for names, values in ((("diffuse_red", "diffuse_green", "diffuse_blue"), np.array([10, 20, 30, 40], "u1")),
                          (("r", "g", "b"), np.array([0.0, 0.5, 1.0, 0.25], "f4"))):
        v = np.zeros(4, dtype=[("x", "f4"), ("y", "f4"), ("z", "f4")] + [(n, values.dtype.str) for n in names])
        for n in names:
            v[n] = values
        plyfile.PlyData([plyfile.PlyElement.describe(v, "vertex")], text=True).write(str(path))
        expected = values if values.dtype == np.uint8 else np.rint(values * 255).astype(np.uint8)
        np.testing.assert_array_equal(read_cloud(path).rgb[:, 1], expected)


# ---------------------------------------------------------------------------------------------- LAS

@pytest.mark.parametrize("suffix", [".las", ".laz"])
def test_las_and_laz_keep_scaled_coordinates_colour_and_intensity(tmp_path, suffix):
    import laspy

    xyz, rgb, _, intensity = _points(n=200)
    header = laspy.LasHeader(point_format=3, version="1.2")
    header.offsets = [512_000.0, 4_123_000.0, 200.0]
    header.scales = [0.001, 0.001, 0.001]
    las = laspy.LasData(header)
    las.x, las.y, las.z = xyz[:, 0], xyz[:, 1], xyz[:, 2]
    las.red, las.green, las.blue = (rgb.astype(np.uint16) * 257).T  # 16-bit colour, the LAS convention
    las.intensity = intensity.astype(np.uint16)
    path = tmp_path / f"scan{suffix}"
    las.write(str(path))
    cloud = read_cloud(path)
    expected = laspy.read(str(path))
    assert cloud.format == "las" and cloud.double and cloud.normals is None
    np.testing.assert_array_equal(cloud.xyz[:, 0], np.asarray(expected.x))
    np.testing.assert_allclose(cloud.xyz, xyz, atol=0.0005 + 1e-9)  # millimetre scale of the file
    np.testing.assert_array_equal(cloud.rgb, rgb)
    np.testing.assert_array_equal(cloud.intensity, intensity.astype(np.uint16).astype(np.float32))


# ---------------------------------------------------------------------------------------------- PCD

def _pcd_header(fields, size, typ, count, n, data):
    return (f"# .PCD v0.7 - Point Cloud Data file format\nVERSION 0.7\nFIELDS {' '.join(fields)}\n"
            f"SIZE {' '.join(map(str, size))}\nTYPE {' '.join(typ)}\nCOUNT {' '.join(map(str, count))}\n"
            f"WIDTH {n}\nHEIGHT 1\nVIEWPOINT 0 0 0 1 0 0 0\nPOINTS {n}\nDATA {data}\n").encode("ascii")


def _packed_rgb(rgb):
    return (rgb[:, 0].astype(np.uint32) << 16) | (rgb[:, 1].astype(np.uint32) << 8) | rgb[:, 2].astype(np.uint32)


def _lzf_literals(data: bytes) -> bytes:
    """A valid LZF stream of literal runs only (runs of up to 32 bytes)."""
    out = bytearray()
    for start in range(0, len(data), 32):
        chunk = data[start:start + 32]
        out.append(len(chunk) - 1)
        out += chunk
    return bytes(out)


def test_pcd_ascii_binary_and_binary_compressed(tmp_path):
    xyz, rgb, normals, intensity = _points(n=30, offset=np.zeros(3))
    xyz = xyz.astype(np.float32)
    packed = _packed_rgb(rgb)
    fields = ["x", "y", "z", "rgb", "normal_x", "normal_y", "normal_z", "intensity"]
    size, typ, count = [4] * 8, ["F", "F", "F", "U", "F", "F", "F", "F"], [1] * 8
    # ascii: the packed colour written as the float with the same bits (what PCL writes)
    as_float = packed.view(np.float32)
    lines = [" ".join([*(f"{v:.9g}" for v in xyz[i]), f"{as_float[i]:.9g}", *(f"{v:.9g}" for v in normals[i]),
                       f"{intensity[i]:.9g}"]) for i in range(len(xyz))]
    ascii_header = _pcd_header(fields, size, ["F"] * 8, count, 30, "ascii")
    (tmp_path / "a.pcd").write_bytes(ascii_header + "\n".join(lines).encode())
    record = np.empty(30, dtype=[("x", "<f4"), ("y", "<f4"), ("z", "<f4"), ("rgb", "<u4"), ("nx", "<f4"),
                                 ("ny", "<f4"), ("nz", "<f4"), ("i", "<f4")])
    for name, values in zip(record.dtype.names, [*xyz.T, packed, *normals.T, intensity]):
        record[name] = values
    (tmp_path / "b.pcd").write_bytes(_pcd_header(fields, size, typ, count, 30, "binary") + record.tobytes())
    soa = b"".join(record[name].tobytes() for name in record.dtype.names)  # field after field
    body = _lzf_literals(soa)
    (tmp_path / "c.pcd").write_bytes(_pcd_header(fields, size, typ, count, 30, "binary_compressed")
                                     + struct.pack("<II", len(body), len(soa)) + body)
    # ascii with the colour as an unsigned integer (TYPE U), and padding fields of 4 bytes
    int_lines = [" ".join([*(f"{v:.9g}" for v in xyz[i]), str(int(packed[i])), "0 0 0 0",
                           *(f"{v:.9g}" for v in normals[i]), f"{intensity[i]:.9g}"]) for i in range(len(xyz))]
    int_header = _pcd_header(fields[:4] + ["_"] + fields[4:], size[:4] + [1] + size[4:],
                             typ[:4] + ["U"] + typ[4:], count[:4] + [4] + count[4:], 30, "ascii")
    (tmp_path / "d.pcd").write_bytes(int_header + "\n".join(int_lines).encode())
    for name in ("a.pcd", "b.pcd", "c.pcd", "d.pcd"):
        cloud = read_cloud(tmp_path / name)
        assert cloud.format == "pcd" and not cloud.double
        # ascii holds the decimal text (9 digits: the float32 value exactly once cast back)
        np.testing.assert_array_equal(cloud.xyz.astype(np.float32), xyz, err_msg=name)
        np.testing.assert_array_equal(cloud.rgb, rgb, err_msg=name)
        np.testing.assert_array_equal(cloud.normals, normals, err_msg=name)
        np.testing.assert_array_equal(cloud.intensity, intensity, err_msg=name)


def test_lzf_back_references_and_corrupt_streams():
    # literal "abc", then a long reference (length 9, offset 3: the extended-length form), then literal "d",
    # then a short overlapping reference (length 5, offset 1)
    stream = bytes([2]) + b"abc" + bytes([0xE0, 0, 2]) + bytes([0]) + b"d" + bytes([0x60, 0])
    assert lzf_decompress(stream, 18) == b"abcabcabcabc" + b"d" + b"ddddd"
    with pytest.raises(ValueError, match="before the start"):
        lzf_decompress(bytes([0x20, 5]), 3)
    with pytest.raises(ValueError, match="truncated"):
        lzf_decompress(bytes([5]) + b"ab", 6)
    with pytest.raises(ValueError, match="declares 7"):
        lzf_decompress(bytes([2]) + b"abc", 7)


# ------------------------------------------------------------------------------------ NPY, NPZ, text

def test_npy_npz_and_column_selection(tmp_path):
    xyz, rgb, normals, intensity = _points(n=40)
    np.save(tmp_path / "a.npy", np.c_[xyz, rgb])
    cloud = read_cloud(tmp_path / "a.npy")
    np.testing.assert_array_equal(cloud.xyz, xyz)
    np.testing.assert_array_equal(cloud.rgb, rgb)
    table = np.c_[intensity, xyz, np.zeros(40), rgb / 255.0]  # colours in [0, 1]
    np.save(tmp_path / "b.npy", table)
    cloud = read_cloud(tmp_path / "b.npy", columns="intensity,x,y,z,_,r,g,b")
    np.testing.assert_array_equal(cloud.xyz, xyz)
    np.testing.assert_array_equal(cloud.rgb, rgb)
    np.testing.assert_allclose(cloud.intensity, intensity, rtol=1e-6)
    with pytest.raises(CloudFormatError, match="b.npy: 8 columns per point"):
        read_cloud(tmp_path / "b.npy")
    np.savez(tmp_path / "c.npz", coord=xyz, colors=rgb, normals=normals)
    cloud = read_cloud(tmp_path / "c.npz")
    np.testing.assert_array_equal(cloud.xyz, xyz)
    np.testing.assert_array_equal(cloud.rgb, rgb)
    assert cloud.intensity is None and cloud.normals.dtype == np.float32


def test_text_variants(tmp_path):
    xyz, rgb, _, intensity = _points(n=25)
    rows = [f"{x:.4f} {y:.4f} {z:.4f}" for x, y, z in xyz]
    (tmp_path / "a.xyz").write_text("\n".join(rows) + "\n")
    np.testing.assert_allclose(read_cloud(tmp_path / "a.xyz").xyz, np.round(xyz, 4), atol=1e-9)
    # a header line, commas, colour
    rows = ["//X,Y,Z,R,G,B"] + [f"{x:.3f},{y:.3f},{z:.3f},{r},{g},{b}" for (x, y, z), (r, g, b) in zip(xyz, rgb)]
    (tmp_path / "b.csv").write_text("\n".join(rows))
    cloud = read_cloud(tmp_path / "b.csv")
    np.testing.assert_array_equal(cloud.rgb, rgb)
    # Semantic3D: x y z intensity r g b, a point count on the first line (.pts)
    rows = [str(len(xyz))] + [f"{x:.3f} {y:.3f} {z:.3f} {int(i)} {r} {g} {b}"
                              for (x, y, z), i, (r, g, b) in zip(xyz, intensity, rgb)]
    (tmp_path / "c.pts").write_text("\n".join(rows))
    cloud = read_cloud(tmp_path / "c.pts")
    assert cloud.num_points == 25
    np.testing.assert_array_equal(cloud.intensity, intensity.astype(int).astype(np.float32))
    np.testing.assert_array_equal(cloud.rgb, rgb)
    # columns chosen by name, one skipped
    cloud = read_cloud(tmp_path / "c.pts", columns="x y z _ red green blue")
    assert cloud.intensity is None and cloud.rgb is not None


@pytest.mark.parametrize("name,content,match", [
    ("bad.ply", b"ply\nformat ascii 1.0\nelement vertex 3\nproperty float x\n", "truncated"),
    ("noxyz.ply", b"ply\nformat ascii 1.0\nelement vertex 1\nproperty float a\nend_header\n1\n", "lacks"),
    ("bad.las", b"LASF" + b"\0" * 50, "not a readable LAS"),
    ("bad.pcd", b"VERSION 0.7\nFIELDS x y z\nSIZE 4 4\nTYPE F F F\nDATA ascii\n1 2 3\n", "3 FIELDS but 2 SIZE"),
    ("short.pcd", _pcd_header(["x", "y", "z"], [4, 4, 4], ["F"] * 3, [1] * 3, 10, "binary") + b"\0" * 12,
     "truncated"),
    ("words.txt", b"x y z\nhello world again\n", "no line of at least 3 numbers"),
    ("ragged.txt", b"1 2 3\n4 5\n", "not a table of numbers"),
    ("nan.txt", b"1 2 3\nnan 2 3\n", "non-finite"),
    ("empty.npy", None, "no points"),
    ("scan.obj", b"v 1 2 3\n", "unsupported file type"),
])
def test_bad_files_are_clear_errors_naming_the_file(tmp_path, name, content, match):
    path = tmp_path / name
    if content is None:
        np.save(path, np.zeros((0, 3)))
    else:
        path.write_bytes(content)
    with pytest.raises(CloudFormatError, match=match) as info:
        read_cloud(path)
    assert str(path) in str(info.value)


def test_missing_file_and_bad_columns(tmp_path):
    with pytest.raises(CloudFormatError, match="nope.las: file not found"):
        read_cloud(tmp_path / "nope.las")
    (tmp_path / "a.txt").write_text("1 2 3 4 5\n")
    with pytest.raises(CloudFormatError, match="name 4 columns but the file has 5"):
        read_cloud(tmp_path / "a.txt", columns="x,y,z,r")
    with pytest.raises(CloudFormatError, match="unknown column name 'w'"):
        read_cloud(tmp_path / "a.txt", columns="x,y,z,w,_")
    with pytest.raises(CloudFormatError, match="not all of"):
        read_cloud(tmp_path / "a.txt", columns="x,y,z,r,g")
