"""Reader of the S3DIS raw release (Stanford3dDataset_v1.2, aligned or not), tolerant of its known defects.

Layout read::

    <release>/Area_N/<room>/Annotations/<class>_<k>.txt   one instance per file; lines ``x y z r g b``
    <release>/Area_N/<room>/<room>.txt                    all points of the room (only counted, never needed)
    <release>/Area_N/Area_N_alignmentAngle.txt             non-aligned release only: ``<room> <angle>``

``<release>`` is ``Stanford3dDataset_v1.2_Aligned_Version`` or ``Stanford3dDataset_v1.2``; the root given
may be the release folder itself or a folder holding one of them.

Points come from the annotation files only (every annotated point kept, coordinates as written). Defects
the reader survives, each reported as an :class:`Issue` with file and line:

* bytes that cannot occur in the number format (control bytes, letters) inside a line: a line is
  repaired only when exactly one of "delete the bytes" and "read them as a separator" gives six
  numbers with integral colours in 0..255 (a control byte between two digits of one number, a NUL
  fusing two colour values); otherwise the line is dropped;
* lines without six numbers, or with colours outside 0..255: dropped;
* duplicate annotation files such as ``wall_3 (1).txt``: ignored;
* a room file named unlike its folder (``copyRoom_1/copy_Room_1.txt``): found by being the only
  ``.txt`` of the room folder; it is only used to compare point counts;
* the ``stairs`` class: read as clutter; Windows line endings; empty annotation files (no instance);
* annotation point counts that do not add up to the room file's: the difference is reported.

A room that cannot be read raises :class:`S3DISFormatError` naming the room and the file.
"""
from __future__ import annotations

import contextlib
import io
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

import numpy as np

from pointformer.io.labels import S3DIS_NAMES

RELEASE_NAMES = ("Stanford3dDataset_v1.2_Aligned_Version", "Stanford3dDataset_v1.2")
CLASS_ALIASES = {"stairs": "clutter"}
ANNOTATIONS = "Annotations"
_AREA = re.compile(r"^Area_(\d+)$")
_ANNOTATION = re.compile(r"^([A-Za-z]+)_(\d+)\.txt$")
_DUPLICATE = re.compile(r"^([A-Za-z]+_\d+) \(\d+\)\.txt$")
# Bytes of a clean file after CRLF -> LF: digits, sign, point, exponent, space, tab, newline.
_NUMBER_BYTES = b"0123456789+-.eE \t\n"
_CONTROL = re.compile(rb"[\x00-\x08\x0b-\x1f\x7f]")
_CONTROL_RUN = re.compile(rb"[\x00-\x08\x0b-\x1f\x7f]+")


class S3DISFormatError(ValueError):
    """A room of the raw release cannot be read (the message names the room and the file)."""


@dataclass(frozen=True)
class Issue:
    """One repaired, dropped or noticed defect: ``file`` relative to the release, 1-based ``line`` or None."""

    kind: str
    file: str
    line: Optional[int]
    detail: str

    def as_dict(self) -> dict:
        return {"kind": self.kind, "file": self.file, "line": self.line, "detail": self.detail}


@dataclass
class PointFile:
    """Points of one text file: float64 [N, 6] (x y z r g b) and what reading it repaired or dropped."""

    points: np.ndarray
    issues: list[Issue] = field(default_factory=list)


def room_scene_id(area: str, room: str) -> str:
    """The scene id of a room: ``Area_<n>_<room>``."""
    return f"{area}_{room}"


def room_gt_ids(semantic: np.ndarray, instance: np.ndarray) -> np.ndarray:
    """int32 [V] evaluation GT ``(class index + 1) * 1000 + instance`` of semantic [V] (0..12) and instance [V]."""
    return ((semantic.astype(np.int32) + 1) * 1000 + instance).astype(np.int32)


@dataclass
class RawRoom:
    """One room read from its annotation files (V points, K instances).

    xyz float64 [V, 3]; rgb uint8 [V, 3]; semantic int16 [V] (index into S3DIS_NAMES);
    instance int32 [V] (1..K, one per non-empty annotation file in :func:`annotation_order`);
    ``instance_files`` [K]: the file of each instance; ``sources``: every file read (room file included).
    """

    area: str
    room: str
    xyz: np.ndarray
    rgb: np.ndarray
    semantic: np.ndarray
    instance: np.ndarray
    instance_files: list[str]
    sources: list[Path]
    issues: list[Issue] = field(default_factory=list)
    alignment_angle: Optional[float] = None

    @property
    def scene_id(self) -> str:
        return room_scene_id(self.area, self.room)

    @property
    def gt_ids(self) -> np.ndarray:
        """int32 [V]: evaluation GT ``(class index + 1) * 1000 + instance``."""
        return room_gt_ids(self.semantic, self.instance)


def release_root(raw_root: str | Path) -> Path:
    """The folder holding ``Area_N`` folders: ``raw_root`` itself or one of RELEASE_NAMES inside it."""
    raw_root = Path(raw_root)
    if not raw_root.is_dir():
        raise S3DISFormatError(f"{raw_root}: S3DIS root folder not found")
    for candidate in (raw_root, *(raw_root / name for name in RELEASE_NAMES)):
        if candidate.is_dir() and any(_AREA.match(p.name) and p.is_dir() for p in candidate.iterdir()):
            return candidate
    raise S3DISFormatError(f"{raw_root}: no Area_N folders here or in {' / '.join(RELEASE_NAMES)}")


def discover_rooms(release: Path) -> dict[str, list[str]]:
    """Area name -> sorted room folder names (every sub-folder of an area is a room)."""
    areas = sorted((p for p in release.iterdir() if p.is_dir() and _AREA.match(p.name)),
                   key=lambda p: int(_AREA.match(p.name).group(1)))  # type: ignore[union-attr]
    return {a.name: sorted(r.name for r in a.iterdir() if r.is_dir() and not r.name.startswith("."))
            for a in areas}


def read_alignment_angles(area_dir: Path) -> dict[str, float]:
    """Room -> global alignment angle (degrees) from ``Area_N_alignmentAngle.txt`` ({} when absent)."""
    path = area_dir / f"{area_dir.name}_alignmentAngle.txt"
    if not path.is_file():
        return {}
    angles: dict[str, float] = {}
    for number, line in enumerate(path.read_text(errors="replace").splitlines(), start=1):
        fields = line.split()
        if not fields or line.lstrip().startswith("#"):
            continue
        try:
            angles[fields[0]] = float(fields[1])
        except (IndexError, ValueError):
            raise S3DISFormatError(f"{path}:{number}: expected '<room> <angle>', got {line!r}") from None
    return angles


def annotation_order(names: list[str]) -> list[str]:
    """Annotation file names in reading order: by class name, then by the number k of ``<class>_<k>``."""
    def key(name: str) -> tuple[str, int, str]:
        m = _ANNOTATION.match(name)
        return (m.group(1).lower(), int(m.group(2)), name) if m else (name, -1, name)
    return sorted(names, key=key)


def _valid_rows(values: np.ndarray) -> np.ndarray:
    """bool [N]: rows of float [N, 6] with finite numbers and integral colours in 0..255."""
    rgb = values[:, 3:]
    return np.isfinite(values).all(axis=1) & (rgb >= 0).all(axis=1) & (rgb <= 255).all(axis=1) \
        & (rgb == np.round(rgb)).all(axis=1)


def _parse_line(text: bytes) -> Optional[np.ndarray]:
    """float64 [6] of a line when it holds six numbers with valid colours, else None."""
    fields = text.split()
    if len(fields) != 6:
        return None
    try:
        values = np.array([float(f) for f in fields], dtype=np.float64)
    except ValueError:
        return None
    return values if _valid_rows(values[None])[0] else None


def _repair(line: bytes, number: int, rel: str) -> tuple[Optional[bytes], Issue]:
    """A line that is not six clean numbers: (repaired text or None, the issue reporting it)."""
    shown = repr(line[:80])[1:]
    if _CONTROL.search(line):
        deleted, separated = _CONTROL_RUN.sub(b"", line), _CONTROL_RUN.sub(b" ", line)
        readings = [(text, _parse_line(text)) for text in (deleted, separated)]
        valid = [(text, v) for text, v in readings if v is not None]
        if valid and len({tuple(v.tolist()) for _, v in valid}) == 1:
            how = "deleted" if len(valid) == 1 and valid[0][0] is deleted else "read as a separator"
            if len(valid) == 2:
                how = "deleted (both readings agree)"
            return valid[0][0], Issue("repaired", rel, number, f"control byte(s) {how}: {shown} -> "
                                      + " ".join(f"{x:g}" for x in valid[0][1]))
        reason = ("control byte(s) with no single valid reading" if not valid
                  else "control byte(s) with two different valid readings")
    else:
        fields = line.split()
        reason = f"{len(fields)} columns instead of 6" if len(fields) != 6 else "not six numbers"
    return None, Issue("dropped", rel, number, f"{reason}: {shown}")


def _parse_rows(lines: list[bytes]) -> np.ndarray:
    """float64 [N, 6] of lines of six number-byte fields; a row that does not parse is NaN."""
    try:
        return np.loadtxt(io.BytesIO(b"\n".join(lines)), dtype=np.float64, ndmin=2).reshape(len(lines), 6)
    except ValueError:
        rows = np.full((len(lines), 6), np.nan)
        for i, line in enumerate(lines):
            with contextlib.suppress(ValueError):
                rows[i] = [float(f) for f in line.split()]
        return rows


def _read_slow(data: bytes, rel: str) -> PointFile:
    """Line by line: keep clean lines, repair where exactly one reading is valid, drop the rest."""
    issues: list[Issue] = []
    kept: list[bytes] = []
    numbers: list[int] = []  # 1-based line number of every kept line
    for number, line in enumerate(data.split(b"\n"), start=1):
        fields = line.split()
        if not fields and not _CONTROL.search(line):
            continue
        if len(fields) != 6 or line.translate(None, _NUMBER_BYTES):
            fixed, issue = _repair(line, number, rel)
            issues.append(issue)
            if fixed is None:
                continue
            line = fixed
        kept.append(line)
        numbers.append(number)
    values = _parse_rows(kept) if kept else np.zeros((0, 6))
    valid = _valid_rows(values)
    for i in np.flatnonzero(~valid).tolist():
        issues.append(Issue("dropped", rel, numbers[i], "not six numbers with integral colours in 0..255: "
                            + repr(kept[i][:80])[1:]))
    issues.sort(key=lambda issue: issue.line or 0)
    return PointFile(values[valid], issues)


def read_point_file(path: Path, rel: str) -> PointFile:
    """Read an ``x y z r g b`` text file (``rel`` names it in issues); never raises for bad lines.

    Clean files (only number bytes, six numbers a line, valid colours) take the fast vectorised path;
    any other file is read line by line (:func:`_read_slow`).
    """
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise S3DISFormatError(f"{path}: cannot be read ({exc.strerror or exc})") from None
    issues: list[Issue] = []
    if b"\r" in data:
        crlf = data.count(b"\r\n")
        if crlf:
            data = data.replace(b"\r\n", b"\n")
            issues.append(Issue("crlf", rel, None, f"Windows line endings on {crlf} lines: read as plain line ends"))
    if not data.strip():
        return PointFile(np.zeros((0, 6)), issues)
    if not data.translate(None, _NUMBER_BYTES):
        try:
            values = np.loadtxt(io.BytesIO(data), dtype=np.float64, ndmin=2)
        except ValueError:
            values = None
        if values is not None and values.shape[1] == 6 and _valid_rows(values).all():
            return PointFile(values, issues)
    slow = _read_slow(data, rel)
    return PointFile(slow.points, issues + slow.issues)


def _room_file(folder: Path) -> Optional[Path]:
    """The room's all-points file: ``<room>.txt``, else the folder's only ``.txt`` file, else None."""
    exact = folder / f"{folder.name}.txt"
    if exact.is_file():
        return exact
    texts = sorted(p for p in folder.glob("*.txt") if p.is_file())
    return texts[0] if len(texts) == 1 else None


def _count_rows(path: Path) -> int:
    """Number of non-blank lines of a text file (cheap: no number parsing)."""
    with open(path, "rb") as f:
        data = f.read()
    lines = data.count(b"\n") + (0 if data.endswith(b"\n") or not data else 1)
    blank = len(re.findall(rb"(?m)^[ \t\r]*$\n", data))
    return lines - blank


def read_room(release: Path, area: str, room: str, *, alignment_angle: Optional[float] = None) -> RawRoom:
    """Read one room (see the module docstring); raises S3DISFormatError naming the room and file."""
    folder = release / area / room
    where = f"room {area}/{room}"
    ann_dir = folder / ANNOTATIONS
    if not ann_dir.is_dir():
        raise S3DISFormatError(f"{where}: {ann_dir}: no {ANNOTATIONS} folder")
    issues: list[Issue] = []
    names: list[str] = []
    for p in sorted(ann_dir.iterdir()):
        rel = f"{area}/{room}/{ANNOTATIONS}/{p.name}"
        if _ANNOTATION.match(p.name) and p.is_file():
            names.append(p.name)
        elif _DUPLICATE.match(p.name):
            original = _DUPLICATE.match(p.name).group(1) + ".txt"  # type: ignore[union-attr]
            same = (ann_dir / original).is_file() and (ann_dir / original).read_bytes() == p.read_bytes()
            issues.append(Issue("duplicate_ignored", rel, None, f"duplicate of {original} "
                                f"({'identical' if same else 'different content'}): ignored"))
        else:
            issues.append(Issue("ignored_file", rel, None, "not an annotation file <class>_<k>.txt: ignored"))
    if not names:
        raise S3DISFormatError(f"{where}: {ann_dir}: no annotation files <class>_<k>.txt")
    blocks: list[np.ndarray] = []
    semantic: list[np.ndarray] = []
    instance: list[np.ndarray] = []
    instance_files: list[str] = []
    sources: list[Path] = []
    for name in annotation_order(names):
        rel = f"{area}/{room}/{ANNOTATIONS}/{name}"
        cls = _ANNOTATION.match(name).group(1).lower()  # type: ignore[union-attr]
        if cls in CLASS_ALIASES:
            issues.append(Issue("class_alias", rel, None, f"class {cls!r} read as {CLASS_ALIASES[cls]!r}"))
            cls = CLASS_ALIASES[cls]
        if cls not in S3DIS_NAMES:
            raise S3DISFormatError(f"{where}: {ann_dir / name}: unknown class {cls!r} (expected one of "
                                   f"{', '.join(S3DIS_NAMES)} or {', '.join(CLASS_ALIASES)})")
        pf = read_point_file(ann_dir / name, rel)
        sources.append(ann_dir / name)
        issues.extend(pf.issues)
        if pf.points.shape[0] == 0:
            issues.append(Issue("empty_file", rel, None, "no points: no instance"))
            continue
        instance_files.append(name)
        blocks.append(pf.points)
        semantic.append(np.full(pf.points.shape[0], S3DIS_NAMES.index(cls), dtype=np.int16))
        instance.append(np.full(pf.points.shape[0], len(instance_files), dtype=np.int32))
    if not blocks:
        raise S3DISFormatError(f"{where}: {ann_dir}: every annotation file is empty")
    points = np.concatenate(blocks)
    room_file = _room_file(folder)
    if room_file is None:
        issues.append(Issue("no_room_file", f"{area}/{room}", None,
                            "no room file <room>.txt (or single .txt): point counts not compared"))
    else:
        sources.append(room_file)
        rel = f"{area}/{room}/{room_file.name}"
        if room_file.name != f"{room}.txt":
            issues.append(Issue("room_file_name", rel, None, f"room file named unlike its folder ({room}.txt)"))
        rows = _count_rows(room_file)
        if rows != points.shape[0]:
            issues.append(Issue("count_mismatch", rel, None,
                                f"room file has {rows} lines, annotation files {points.shape[0]} points "
                                f"(difference {rows - points.shape[0]:+d})"))
    return RawRoom(area=area, room=room, xyz=points[:, :3], rgb=points[:, 3:].astype(np.uint8),
                   semantic=np.concatenate(semantic), instance=np.concatenate(instance),
                   instance_files=instance_files, sources=sources, issues=issues, alignment_angle=alignment_angle)
