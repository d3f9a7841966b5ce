"""Point clouds and meshes of any common format behind one reader: :func:`read_cloud`.

Formats (by file suffix):

- ``.ply``: mesh or cloud, ASCII or binary, any property order (:mod:`pointformer.io.ply`);
- ``.las`` / ``.laz``: LiDAR (laspy; LAZ through the lazrs backend);
- ``.pcd``: the Point Cloud Library format, ``DATA ascii``, ``binary`` or ``binary_compressed`` (LZF);
- ``.npy`` / ``.npz``: an array [N, C] of columns, or named arrays (``xyz``, ``rgb``, ``normals``, ``intensity``);
- ``.txt`` / ``.xyz`` / ``.pts`` / ``.csv`` / ``.asc``: whitespace- (or comma-) separated columns.

Coordinates are returned as float64 exactly as the file stores them (LAS: scaled by the header's scales
and offsets), so georeferenced scans far from the origin lose no precision here; the caller subtracts
a float64 origin before anything is cast to float32. Every problem raises :class:`CloudFormatError`
(a ``ValueError``) whose message names the file and what is wrong.

Columns of text and NPY files: ``columns`` names each column in order, e.g. ``"x,y,z,intensity,r,g,b"``
(``_`` skips a column). Without it the column count decides: 3 ``x y z``, 4 ``x y z intensity``,
6 ``x y z r g b``, 7 ``x y z intensity r g b`` (Semantic3D), 9 ``x y z r g b nx ny nz``.
"""
from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Optional, Sequence, Union

import numpy as np

PLY_SUFFIXES = (".ply",)
LAS_SUFFIXES = (".las", ".laz")
PCD_SUFFIXES = (".pcd",)
NUMPY_SUFFIXES = (".npy", ".npz")
TEXT_SUFFIXES = (".txt", ".xyz", ".pts", ".csv", ".asc")
SUPPORTED_SUFFIXES = PLY_SUFFIXES + LAS_SUFFIXES + PCD_SUFFIXES + NUMPY_SUFFIXES + TEXT_SUFFIXES

# Column names accepted in ``columns`` (aliases of what tools write) -> the field they fill.
_COLUMN_ALIASES = {
    "x": "x", "y": "y", "z": "z",
    "r": "r", "red": "r", "g": "g", "green": "g", "b": "b", "blue": "b",
    "nx": "nx", "ny": "ny", "nz": "nz", "normal_x": "nx", "normal_y": "ny", "normal_z": "nz",
    "i": "intensity", "intensity": "intensity", "_": "_",
}
_DEFAULT_COLUMNS = {3: "x,y,z", 4: "x,y,z,intensity", 6: "x,y,z,r,g,b", 7: "x,y,z,intensity,r,g,b",
                    9: "x,y,z,r,g,b,nx,ny,nz"}
_NPZ_KEYS = {"xyz": ("xyz", "points", "coord", "coords", "vertices"), "rgb": ("rgb", "colors", "color", "colours"),
             "normals": ("normals", "normal"), "intensity": ("intensity",)}


class CloudFormatError(ValueError):
    """A scan file is missing, unsupported, corrupt or lacks coordinates (message names the file)."""


@dataclass
class Cloud:
    """A scan as read from a file (N points).

    xyz       float64 [N, 3] coordinates as stored (no origin subtracted)
    rgb       uint8 [N, 3] or None (16-bit and [0, 1] float colours are rescaled to 0..255)
    normals   float32 [N, 3] or None (as stored; not re-normalised)
    intensity float32 [N] or None (as stored)
    faces     int32 [F, 3] or None (PLY meshes)
    path, format: the file and its format name ("ply", "las", "pcd", "npy", "text")
    double    True when the file stores float64 coordinates (or LAS scaled integers): writers keep them
    """

    xyz: np.ndarray
    rgb: Optional[np.ndarray]
    normals: Optional[np.ndarray]
    intensity: Optional[np.ndarray]
    faces: Optional[np.ndarray]
    path: Path
    format: str
    double: bool

    @property
    def num_points(self) -> int:
        return int(self.xyz.shape[0])

    def available_features(self) -> list[str]:
        """The per-point inputs the file carries: of ``rgb``, ``normals``, ``intensity``."""
        return [name for name in ("rgb", "normals", "intensity") if getattr(self, name) is not None]


def read_cloud(path: Union[str, os.PathLike], *, columns: Optional[Union[str, Sequence[str]]] = None) -> Cloud:
    """Read any supported scan file (module doc) into a :class:`Cloud`.

    columns: names of the columns of a text or NPY file (``"x,y,z,_,r,g,b"``); None: chosen by the column count.
    Raises CloudFormatError naming the file for a missing, unsupported, corrupt or empty file, or one
    with non-finite coordinates.
    """
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix not in SUPPORTED_SUFFIXES:
        raise CloudFormatError(f"{path}: unsupported file type {suffix or '(no suffix)'!r}; "
                               f"supported: {' '.join(SUPPORTED_SUFFIXES)}")
    if not path.is_file():
        raise CloudFormatError(f"{path}: file not found")
    if columns is not None and suffix not in TEXT_SUFFIXES + (".npy",):
        raise CloudFormatError(f"{path}: columns can be chosen only for text and .npy files")
    if suffix in PLY_SUFFIXES:
        cloud = _read_ply_cloud(path)
    elif suffix in LAS_SUFFIXES:
        cloud = _read_las(path)
    elif suffix in PCD_SUFFIXES:
        cloud = _read_pcd(path)
    elif suffix == ".npz":
        cloud = _read_npz(path)
    elif suffix == ".npy":
        cloud = _read_npy(path, columns)
    else:
        cloud = _read_text(path, columns)
    return _checked(cloud)


def _checked(cloud: Cloud) -> Cloud:
    path = cloud.path
    if cloud.xyz.ndim != 2 or cloud.xyz.shape[1] != 3:
        raise CloudFormatError(f"{path}: coordinates must have shape [N, 3], got {cloud.xyz.shape}")
    if cloud.num_points == 0:
        raise CloudFormatError(f"{path}: the file holds no points")
    bad = ~np.isfinite(cloud.xyz).all(axis=1)
    if bad.any():
        raise CloudFormatError(f"{path}: {int(bad.sum())} of {cloud.num_points} points have non-finite (NaN/inf) "
                               f"coordinates (first at point {int(np.argmax(bad))}); remove them before inference")
    n = cloud.num_points
    for name in ("rgb", "normals", "intensity"):
        values = getattr(cloud, name)
        if values is not None and values.shape[0] != n:
            raise CloudFormatError(f"{path}: {name} has {values.shape[0]} rows but there are {n} points")
    return cloud


def _colors_to_uint8(values: np.ndarray, path: Path) -> np.ndarray:
    """uint8 [N, 3] of colours stored as 8-bit, 16-bit (LAS, some PLY) or [0, 1] / [0, 255] floats."""
    values = np.asarray(values)
    if values.size == 0:
        return values.astype(np.uint8).reshape(-1, 3)
    if values.dtype.kind == "f":
        if not np.isfinite(values).all():
            raise CloudFormatError(f"{path}: colours contain NaN or inf")
        top = float(values.max())
        scale = 255.0 if top <= 1.0 else (255.0 / 65535.0 if top > 255.0 else 1.0)
        return np.clip(np.rint(values * scale), 0, 255).astype(np.uint8)
    top = int(values.max())
    if int(values.min()) < 0 or top > 65535:
        raise CloudFormatError(f"{path}: colour values must lie in 0..255 (or 0..65535), found {values.min()}..{top}")
    if top > 255:  # 16-bit colour (the LAS convention): keep the high byte
        return (values.astype(np.uint32) >> 8).astype(np.uint8)
    return values.astype(np.uint8)


# --------------------------------------------------------------------------------------------- PLY

def _read_ply_cloud(path: Path) -> Cloud:
    from pointformer.io.ply import PlyFormatError, read_ply

    try:
        mesh = read_ply(path, keep_double=True)
    except PlyFormatError as exc:
        raise CloudFormatError(str(exc)) from None
    extra = mesh.extra
    normals = None
    for names in (("nx", "ny", "nz"), ("normal_x", "normal_y", "normal_z")):
        if all(n in extra for n in names):
            normals = np.stack([extra[n] for n in names], axis=1).astype(np.float32)
            break
    rgb = mesh.colors
    for names in (("r", "g", "b"), ("diffuse_red", "diffuse_green", "diffuse_blue")):
        if rgb is None and all(n in extra for n in names):  # other tools' colour names
            rgb = _colors_to_uint8(np.stack([extra[n] for n in names], axis=1), path)
    key = next((k for k in ("intensity", "scalar_intensity", "Intensity", "scalar_Intensity") if k in extra), None)
    intensity = None if key is None else np.asarray(extra[key], dtype=np.float32)
    return Cloud(xyz=np.asarray(mesh.vertices, dtype=np.float64), rgb=rgb, normals=normals,
                 intensity=intensity, faces=mesh.faces if mesh.faces is not None and len(mesh.faces) else None,
                 path=path, format="ply", double=mesh.vertices.dtype == np.float64)


# --------------------------------------------------------------------------------------------- LAS

def _read_las(path: Path) -> Cloud:
    try:
        import laspy
    except ImportError:  # pragma: no cover - laspy is a declared dependency
        raise CloudFormatError(f"{path}: reading LAS/LAZ needs laspy (pip install 'laspy[lazrs]')") from None
    try:
        las = laspy.read(path)
    except Exception as exc:  # laspy raises LaspyException, ValueError, struct errors... on a bad file
        raise CloudFormatError(f"{path}: not a readable LAS/LAZ file ({type(exc).__name__}: {exc})") from None
    names = set(las.point_format.dimension_names)
    xyz = np.stack([np.asarray(las.x, dtype=np.float64), np.asarray(las.y, dtype=np.float64),
                    np.asarray(las.z, dtype=np.float64)], axis=1)
    rgb = None
    if {"red", "green", "blue"} <= names:
        rgb = _colors_to_uint8(np.stack([np.asarray(las.red), np.asarray(las.green), np.asarray(las.blue)], axis=1),
                               path)
    intensity = np.asarray(las.intensity, dtype=np.float32) if "intensity" in names else None
    return Cloud(xyz=xyz, rgb=rgb, normals=None, intensity=intensity, faces=None, path=path, format="las",
                 double=True)


# --------------------------------------------------------------------------------------------- PCD

_PCD_TYPES = {("F", 4): "f4", ("F", 8): "f8", ("U", 1): "u1", ("U", 2): "u2", ("U", 4): "u4", ("U", 8): "u8",
              ("I", 1): "i1", ("I", 2): "i2", ("I", 4): "i4", ("I", 8): "i8"}


@dataclass
class _PcdHeader:
    fields: list[str]
    dtypes: list[str]
    counts: list[int]
    points: int
    data: str
    body_offset: int


def _read_pcd_header(path: Path, raw: bytes) -> _PcdHeader:
    values: dict[str, list[str]] = {}
    offset = 0
    while True:
        end = raw.find(b"\n", offset)
        if end < 0:
            raise CloudFormatError(f"{path}: PCD header is truncated (no 'DATA' line)")
        try:
            line = raw[offset:end].decode("ascii").strip()
        except UnicodeDecodeError:
            raise CloudFormatError(f"{path}: not a PCD file (non-ASCII header)") from None
        offset = end + 1
        if not line or line.startswith("#"):
            continue
        key, *rest = line.split()
        values[key.upper()] = rest
        if key.upper() == "DATA":
            break
    for key in ("FIELDS", "SIZE", "TYPE", "DATA"):
        if key not in values:
            raise CloudFormatError(f"{path}: PCD header lacks the {key} line")
    fields = values["FIELDS"]
    counts = [int(c) for c in values.get("COUNT", ["1"] * len(fields))]
    sizes, types = values["SIZE"], values["TYPE"]
    if not (len(fields) == len(sizes) == len(types) == len(counts)):
        raise CloudFormatError(f"{path}: PCD header has {len(fields)} FIELDS but {len(sizes)} SIZE, {len(types)} "
                               f"TYPE and {len(counts)} COUNT entries")
    dtypes = []
    for name, size, kind in zip(fields, sizes, types):
        code = _PCD_TYPES.get((kind.upper(), int(size)))
        if code is None:
            raise CloudFormatError(f"{path}: PCD field {name!r} has an unsupported TYPE {kind} / SIZE {size}")
        dtypes.append(code)
    if "POINTS" in values:
        points = int(values["POINTS"][0])
    else:
        points = int(values.get("WIDTH", ["0"])[0]) * int(values.get("HEIGHT", ["1"])[0])
    data = values["DATA"][0].lower() if values["DATA"] else ""
    if data not in ("ascii", "binary", "binary_compressed"):
        raise CloudFormatError(f"{path}: PCD DATA {data!r} is not ascii, binary or binary_compressed")
    return _PcdHeader(fields=fields, dtypes=dtypes, counts=counts, points=points, data=data, body_offset=offset)


def lzf_decompress(data: bytes, size: int) -> bytes:
    """LZF-decompress ``data`` into exactly ``size`` bytes (the PCD ``binary_compressed`` codec).

    Raises ValueError on corrupt input (a back reference before the start, an overrun, a short result)."""
    out = np.zeros(size, dtype=np.uint8)
    written = _lzf_loop(np.frombuffer(data, dtype=np.uint8), out)
    if written == -1:
        raise ValueError("corrupt LZF stream (a back reference before the start of the output)")
    if written == -2:
        raise ValueError(f"corrupt LZF stream (it decompresses to more than the declared {size} bytes)")
    if written == -3:
        raise ValueError("truncated LZF stream")
    if written != size:
        raise ValueError(f"LZF stream decompresses to {written} bytes, the header declares {size}")
    return out.tobytes()


def _lzf_loop(src: np.ndarray, out: np.ndarray) -> int:
    """Decode LZF tokens from src into out; the bytes written, or -1/-2/-3 for corrupt/overrun/truncated."""
    ip = 0
    op = 0
    n_in = src.shape[0]
    n_out = out.shape[0]
    while ip < n_in:
        ctrl = int(src[ip])
        ip += 1
        if ctrl < 32:  # a literal run of ctrl + 1 bytes
            length = ctrl + 1
            if ip + length > n_in:
                return -3
            if op + length > n_out:
                return -2
            for k in range(length):
                out[op + k] = src[ip + k]
            ip += length
            op += length
        else:  # a back reference: length (3 bits, extended by one byte), offset (5 + 8 bits)
            length = ctrl >> 5
            if length == 7:
                if ip >= n_in:
                    return -3
                length += int(src[ip])
                ip += 1
            if ip >= n_in:
                return -3
            ref = op - ((ctrl & 0x1F) << 8) - int(src[ip]) - 1
            ip += 1
            length += 2
            if ref < 0:
                return -1
            if op + length > n_out:
                return -2
            for k in range(length):  # byte by byte: the source may overlap what is being written
                out[op + k] = out[ref + k]
            op += length
    return op


try:  # numba is a declared dependency (the segmentator); without it the loop runs as plain Python
    import numba

    _lzf_loop = numba.njit(cache=True, nogil=True)(_lzf_loop)
except ImportError:  # pragma: no cover
    pass
except RuntimeError:  # pragma: no cover - no writable cache folder
    _lzf_loop = numba.njit(nogil=True)(_lzf_loop)


def _pcd_columns(header: _PcdHeader, path: Path, body: bytes) -> dict[str, np.ndarray]:
    """Field name -> array [N] or [N, count] of the PCD body."""
    n = header.points
    if header.data == "ascii":
        text = body.decode("ascii", errors="replace")
        width = sum(header.counts)
        try:
            table = np.loadtxt(text.splitlines(), dtype=np.float64, ndmin=2)
        except ValueError as exc:
            raise CloudFormatError(f"{path}: PCD ascii body is not a table of numbers ({exc})") from None
        if table.shape != (n, width) and not (n == 0 and table.size == 0):
            raise CloudFormatError(f"{path}: PCD ascii body has shape {table.shape}, the header declares "
                                   f"{n} points of {width} values")
        out, col = {}, 0
        for name, code, count in zip(header.fields, header.dtypes, header.counts):
            values = table[:, col:col + count]
            if name in ("rgb", "rgba") and code == "f4":  # packed colour written as a float: keep its bits
                values = values.astype(np.float32).view(np.uint32)
            elif code[0] in "ui":  # integers (a packed U4 colour) as integers, not as float64 text values
                values = values.astype(code)
            out[name] = values[:, 0] if count == 1 else values
            col += count
        return out
    record = np.dtype([(f"f{i}", "<" + code, (count,)) for i, (code, count)
                       in enumerate(zip(header.dtypes, header.counts))])
    if header.data == "binary":
        if len(body) < n * record.itemsize:
            raise CloudFormatError(f"{path}: PCD binary body is truncated ({len(body)} bytes for {n} points of "
                                   f"{record.itemsize} bytes)")
        table = np.frombuffer(body, dtype=record, count=n)
        return {name: (table[f"f{i}"][:, 0] if count == 1 else table[f"f{i}"])
                for i, (name, count) in enumerate(zip(header.fields, header.counts))}
    # binary_compressed: uint32 compressed size, uint32 raw size, LZF data of the fields one after another
    if len(body) < 8:
        raise CloudFormatError(f"{path}: PCD binary_compressed body is truncated (no size words)")
    compressed, raw_size = (int(v) for v in np.frombuffer(body[:8], dtype="<u4"))
    if raw_size != n * record.itemsize or len(body) < 8 + compressed:
        raise CloudFormatError(f"{path}: PCD binary_compressed sizes do not fit the header ({raw_size} raw bytes "
                               f"for {n} points of {record.itemsize} bytes; {len(body) - 8} of {compressed} "
                               f"compressed bytes present)")
    try:
        raw = lzf_decompress(body[8:8 + compressed], raw_size)
    except ValueError as exc:
        raise CloudFormatError(f"{path}: PCD binary_compressed body: {exc}") from None
    out, offset = {}, 0
    for name, code, count in zip(header.fields, header.dtypes, header.counts):
        width = np.dtype("<" + code).itemsize * count * n
        values = np.frombuffer(raw, dtype="<" + code, count=n * count, offset=offset).reshape(n, count)
        out[name] = values[:, 0] if count == 1 else values
        offset += width
    return out


def _read_pcd(path: Path) -> Cloud:
    raw = path.read_bytes()
    header = _read_pcd_header(path, raw)
    columns = _pcd_columns(header, path, raw[header.body_offset:])
    missing = [c for c in "xyz" if c not in columns]
    if missing:
        raise CloudFormatError(f"{path}: PCD FIELDS {header.fields} lack {missing}")
    xyz = np.stack([np.asarray(columns[c], dtype=np.float64) for c in "xyz"], axis=1)
    rgb = None
    packed = columns.get("rgb", columns.get("rgba"))
    if packed is not None:
        bits = np.asarray(packed)
        bits = bits.astype(np.float32).view(np.uint32) if bits.dtype.kind == "f" else bits.astype(np.uint32)
        rgb = np.stack([(bits >> 16) & 255, (bits >> 8) & 255, bits & 255], axis=1).astype(np.uint8)
    normals = None
    if all(k in columns for k in ("normal_x", "normal_y", "normal_z")):
        normals = np.stack([columns[k] for k in ("normal_x", "normal_y", "normal_z")], axis=1).astype(np.float32)
    intensity = np.asarray(columns["intensity"], dtype=np.float32) if "intensity" in columns else None
    double = any(code == "f8" for name, code in zip(header.fields, header.dtypes) if name in "xyz")
    return Cloud(xyz=xyz, rgb=rgb, normals=normals, intensity=intensity, faces=None, path=path, format="pcd",
                 double=double)


# ------------------------------------------------------------------------------------ columns (text, NPY)

def parse_columns(columns: Union[str, Sequence[str]], width: int, path: Path) -> list[str]:
    """The field of each of ``width`` columns from a spec like ``"x,y,z,_,r,g,b"`` (``_``: skipped)."""
    names = [c for c in re.split(r"[,\s]+", columns.strip())] if isinstance(columns, str) else list(columns)
    fields = []
    for name in names:
        field = _COLUMN_ALIASES.get(name.strip().lower())
        if field is None:
            raise CloudFormatError(f"{path}: unknown column name {name!r} in columns {columns!r}; "
                                   f"known: {sorted(set(_COLUMN_ALIASES))}")
        fields.append(field)
    if len(fields) != width:
        raise CloudFormatError(f"{path}: columns {columns!r} name {len(fields)} columns but the file has {width}")
    for required in ("x", "y", "z"):
        if fields.count(required) != 1:
            raise CloudFormatError(f"{path}: columns {columns!r} must name {required!r} exactly once")
    named = [f for f in fields if f != "_"]
    if len(set(named)) != len(named):
        raise CloudFormatError(f"{path}: columns {columns!r} name a field twice")
    for group in (("r", "g", "b"), ("nx", "ny", "nz")):
        present = [g for g in group if g in fields]
        if present and len(present) != 3:
            raise CloudFormatError(f"{path}: columns {columns!r} name {present} but not all of {list(group)}")
    return fields


def _from_table(table: np.ndarray, fields: list[str], path: Path, fmt: str) -> Cloud:
    col = {f: i for i, f in enumerate(fields)}
    xyz = np.ascontiguousarray(table[:, [col["x"], col["y"], col["z"]]], dtype=np.float64)
    rgb = _colors_to_uint8(table[:, [col["r"], col["g"], col["b"]]], path) if "r" in col else None
    normals = table[:, [col["nx"], col["ny"], col["nz"]]].astype(np.float32) if "nx" in col else None
    intensity = table[:, col["intensity"]].astype(np.float32) if "intensity" in col else None
    return Cloud(xyz=xyz, rgb=rgb, normals=normals, intensity=intensity, faces=None, path=path, format=fmt,
                 double=table.dtype == np.float64)


def _default_fields(width: int, path: Path) -> list[str]:
    if width not in _DEFAULT_COLUMNS:
        raise CloudFormatError(f"{path}: {width} columns per point; name them with columns (--columns), e.g. "
                               f"'x,y,z,_,r,g,b' ('_' skips a column)")
    return _DEFAULT_COLUMNS[width].split(",")


def _read_npy(path: Path, columns: Optional[Union[str, Sequence[str]]]) -> Cloud:
    try:
        table = np.load(path, allow_pickle=False, mmap_mode="r")
    except (ValueError, OSError, EOFError) as exc:
        raise CloudFormatError(f"{path}: not a readable .npy array ({exc})") from None
    if table.ndim != 2 or table.dtype.kind not in "fiu":
        raise CloudFormatError(f"{path}: expected a numeric array [N, C] (C >= 3 columns), got {table.dtype} "
                               f"{table.shape}")
    fields = parse_columns(columns, table.shape[1], path) if columns is not None else _default_fields(table.shape[1],
                                                                                                      path)
    return _from_table(np.asarray(table), fields, path, "npy")


def _read_npz(path: Path) -> Cloud:
    try:
        archive = np.load(path, allow_pickle=False)
    except (ValueError, OSError, EOFError) as exc:
        raise CloudFormatError(f"{path}: not a readable .npz archive ({exc})") from None
    with archive:
        found = {field: next((archive[k] for k in keys if k in archive.files), None)
                 for field, keys in _NPZ_KEYS.items()}
        if found["xyz"] is None:
            raise CloudFormatError(f"{path}: no coordinates: the archive holds {archive.files}, expected one of "
                                   f"{list(_NPZ_KEYS['xyz'])} [N, 3]")
    xyz = found["xyz"]
    if xyz.ndim != 2 or xyz.shape[1] != 3:
        raise CloudFormatError(f"{path}: coordinates must have shape [N, 3], got {xyz.shape}")
    for field, shape in (("rgb", (len(xyz), 3)), ("normals", (len(xyz), 3)), ("intensity", (len(xyz),))):
        if found[field] is not None and found[field].shape != shape:
            raise CloudFormatError(f"{path}: {field} must have shape {list(shape)}, got {list(found[field].shape)}")
    rgb = None if found["rgb"] is None else _colors_to_uint8(found["rgb"], path)
    normals = None if found["normals"] is None else found["normals"].astype(np.float32)
    intensity = None if found["intensity"] is None else found["intensity"].astype(np.float32)
    return Cloud(xyz=xyz.astype(np.float64), rgb=rgb, normals=normals, intensity=intensity, faces=None, path=path,
                 format="npz", double=xyz.dtype == np.float64)


_NUMBER = re.compile(r"^[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?$")


def _read_text(path: Path, columns: Optional[Union[str, Sequence[str]]]) -> Cloud:
    # Header lines (column names, a point count) are skipped: data starts at the first line of >= 3 numbers.
    skip = 0
    delimiter: Optional[str] = None
    with open(path, "rb") as f:
        for skip, raw in enumerate(f):
            line = raw.decode("utf-8", errors="replace").strip()
            if not line or line.startswith(("#", "//")):
                continue
            delimiter = "," if "," in line else (";" if ";" in line else None)
            words = [w for w in (line.split(delimiter) if delimiter else line.split()) if w.strip()]
            if len(words) >= 3 and all(_NUMBER.match(w.strip()) for w in words):
                break
            if skip >= 100:
                raise CloudFormatError(f"{path}: no line of at least 3 numbers (x y z) in the first 100 lines")
        else:
            raise CloudFormatError(f"{path}: no line of at least 3 numbers (x y z) in the file")
    try:
        table = np.loadtxt(path, dtype=np.float64, delimiter=delimiter, skiprows=skip, comments=("#", "//"),
                           ndmin=2)
    except ValueError as exc:
        raise CloudFormatError(f"{path}: not a table of numbers after line {skip} ({exc})") from None
    fields = parse_columns(columns, table.shape[1], path) if columns is not None else _default_fields(table.shape[1],
                                                                                                      path)
    return _from_table(table, fields, path, "text")
