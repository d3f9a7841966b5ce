"""Pre-upload check of a benchmark submission zip: finds every problem, not just the first.

``validate_submission`` (the command ``pointformer validate-submission SUBMISSION.zip --scans
RAW_ROOT/scans_test``) checks

- the archive: readable zip, safe relative entry names, scene files at the ROOT (an enclosing folder
  is reported, and the rest is still checked relative to that folder);
- the scenes: exactly one ``<scene>.txt`` per scene folder of ``--scans`` (or per name of
  ``--scene-list``), nothing else at the root;
- every line: exactly three fields separated by single spaces, a relative mask path inside the
  archive, an integer benchmark class id, a finite confidence; no mask listed twice;
- every mask: present, one 0/1 value per line, exactly as many lines as the scene's
  ``<scene>_vh_clean_2.ply`` has vertices (read from the PLY header).

Problems make the command exit 1; warnings (harmless oddities) do not.
"""
from __future__ import annotations

import math
import os
import posixpath
import re
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

import numpy as np

from pointformer.evaluation.protocol import ClassSet, class_set
from pointformer.io.ply import read_ply_vertex_count

SCANNET_TEST_SCENES = 100
_INT = re.compile(r"^[0-9]+$")
_MESH_SUFFIX = "_vh_clean_2.ply"


@dataclass(frozen=True)
class Problem:
    """One finding: where (archive entry, optionally ':line') and what is wrong."""

    where: str
    message: str

    def __str__(self) -> str:
        return f"{self.where}: {self.message}"


@dataclass
class ValidationReport:
    """Everything :func:`validate_submission` found."""

    zip_path: Path
    problems: list[Problem] = field(default_factory=list)
    warnings: list[Problem] = field(default_factory=list)
    expected_scenes: int = 0
    scene_files: int = 0
    masks_checked: int = 0

    @property
    def ok(self) -> bool:
        return not self.problems

    def summary(self) -> str:
        verdict = "OK: ready to upload" if self.ok else f"{len(self.problems)} problem(s): fix before uploading"
        return (f"{self.zip_path}: {self.scene_files}/{self.expected_scenes} scene files, "
                f"{self.masks_checked} masks checked, {len(self.warnings)} warning(s); {verdict}")


def expected_scene_names(scans_dir: str | os.PathLike, scene_list: Optional[str | os.PathLike] = None) -> list[str]:
    """Scene names the submission must cover: the lines of ``scene_list``, else the scene folders of ``scans_dir``."""
    scans_dir = Path(scans_dir)
    if not scans_dir.is_dir():
        raise ValueError(f"--scans {scans_dir}: folder not found "
                         "(expected RAW_ROOT/scans_test with one folder per scene)")
    if scene_list is not None:
        path = Path(scene_list)
        if not path.is_file():
            raise ValueError(f"--scene-list {path}: file not found")
        names = [ln.strip() for ln in path.read_text(encoding="utf-8").splitlines() if ln.strip()]
    else:
        names = sorted(d.name for d in scans_dir.iterdir() if d.is_dir() and not d.name.startswith("."))
    if not names:
        raise ValueError(f"--scans {scans_dir}: no scene folders found")
    return names


def validate_submission(zip_path: str | os.PathLike, scans_dir: str | os.PathLike, *, dataset: str = "scannet",
                        scene_list: Optional[str | os.PathLike] = None) -> ValidationReport:
    """Check a submission zip against the meshes under ``scans_dir``; returns every problem found.

    Raises ValueError only for unusable arguments (no scans folder, unknown dataset); everything
    wrong with the submission itself is reported in the returned :class:`ValidationReport`.
    """
    classes = class_set(dataset)
    expected = expected_scene_names(scans_dir, scene_list)
    report = ValidationReport(Path(zip_path), expected_scenes=len(expected))
    if dataset in ("scannet", "scannet200") and len(expected) != SCANNET_TEST_SCENES:
        report.warnings.append(Problem(str(scans_dir), f"{len(expected)} scenes expected; the ScanNet test split "
                                                       f"has {SCANNET_TEST_SCENES}"))
    zip_path = Path(zip_path)
    if not zip_path.is_file():
        report.problems.append(Problem(str(zip_path), "file not found"))
        return report
    try:
        zf = zipfile.ZipFile(zip_path)
    except (zipfile.BadZipFile, OSError) as exc:
        report.problems.append(Problem(str(zip_path), f"not a readable zip archive ({exc})"))
        return report
    with zf:
        _validate_archive(zf, Path(scans_dir), expected, classes, report)
    return report


def _validate_archive(zf: zipfile.ZipFile, scans_dir: Path, expected: list[str], classes: ClassSet,
                      report: ValidationReport) -> None:
    problems, warnings = report.problems, report.warnings
    files = [i.filename for i in zf.infolist() if not i.is_dir()]
    if not files:
        problems.append(Problem(str(report.zip_path), "the archive is empty"))
    for name in files:
        parts = name.split("/")
        if name.startswith("/") or "\\" in name or ".." in parts or re.match(r"^[A-Za-z]:", name):
            problems.append(Problem(name, "unsafe entry name (absolute, backslashes or '..'): "
                                          "use plain relative paths"))

    # Root: the scene files must be at the archive root; detect one enclosing folder and check inside it.
    root = ""
    root_txt = [n for n in files if "/" not in n and n.endswith(".txt")]
    if not root_txt:
        tops = {n.split("/", 1)[0] for n in files if "/" in n}
        inner = [t for t in sorted(tops) if any(n.count("/") == 1 and n.startswith(t + "/") and n.endswith(".txt")
                                                 and posixpath.basename(n)[:-4] in expected for n in files)]
        if inner:
            root = inner[0] + "/"
            problems.append(Problem(inner[0] + "/", "the scene files are inside this folder; they must be at the "
                                                    "archive ROOT (zip the folder's contents, not the folder)"))
    in_root = {n[len(root):]: n for n in files if n.startswith(root)}
    scene_files = {rel[:-4]: full for rel, full in in_root.items() if "/" not in rel and rel.endswith(".txt")}
    for rel, full in in_root.items():
        if "/" not in rel and not rel.endswith(".txt"):
            problems.append(Problem(full, "unexpected file at the archive root (only <scene>.txt files belong there)"))
    expected_set = set(expected)
    for scene in sorted(set(scene_files) - expected_set):
        problems.append(Problem(scene_files[scene], f"'{scene}' is not one of the {len(expected)} expected scenes"))
    for scene in expected:
        if scene not in scene_files:
            problems.append(Problem(f"{root}{scene}.txt", "missing: every test scene needs a prediction file "
                                                          "(an empty file when nothing was predicted)"))
    report.scene_files = len(set(scene_files) & expected_set)

    referenced: dict[str, str] = {}   # archive entry -> where it was first referenced
    vertex_counts: dict[str, Optional[int]] = {}
    for scene in sorted(set(scene_files) & expected_set):
        full = scene_files[scene]
        if scene not in vertex_counts:
            mesh = scans_dir / scene / f"{scene}{_MESH_SUFFIX}"
            try:
                vertex_counts[scene] = read_ply_vertex_count(mesh)
            except ValueError as exc:
                vertex_counts[scene] = None
                problems.append(Problem(full, f"cannot check mask lengths: {exc}"))
        _validate_scene_file(zf, full, root, in_root, vertex_counts[scene], classes, referenced, report)

    for rel, full in sorted(in_root.items()):
        if "/" in rel and full not in referenced:
            warnings.append(Problem(full, "not referenced by any scene file (ignored by the benchmark)"))


def _validate_scene_file(zf: zipfile.ZipFile, full: str, root: str, in_root: dict[str, str],
                         num_vertices: Optional[int], classes: ClassSet,
                         referenced: dict[str, str], report: ValidationReport) -> None:
    problems = report.problems
    try:
        text = zf.read(full).decode("ascii")
    except UnicodeDecodeError:
        problems.append(Problem(full, "not an ASCII text file"))
        return
    except (zipfile.BadZipFile, OSError) as exc:
        problems.append(Problem(full, f"cannot be read from the archive ({exc})"))
        return
    if "\r" in text:
        report.warnings.append(Problem(full, "Windows line endings (\\r\\n); plain \\n is safer"))
        text = text.replace("\r\n", "\n")
    lines = text.split("\n")
    if lines[-1] == "":
        lines.pop()
    if not lines:
        report.warnings.append(Problem(full, "no predicted instances for this scene"))
    for number, line in enumerate(lines, start=1):
        where = f"{full}:{number}"
        fields = line.split(" ")
        if len(fields) != 3 or "" in fields:
            problems.append(Problem(where, _describe_field_problem(line)))
            fields = line.split()
            if len(fields) != 3:
                continue  # nothing more can be read from this line
        rel, class_text, score_text = fields
        if rel.startswith(("/", "\\")) or re.match(r"^[A-Za-z]:", rel):
            problems.append(Problem(where, f"mask path {rel!r} is absolute; it must be relative to the archive root"))
        elif "\\" in rel:
            problems.append(Problem(where, f"mask path {rel!r} uses backslashes; use '/'"))
        else:
            norm = posixpath.normpath(rel)
            if norm.startswith("../") or norm == "..":
                problems.append(Problem(where, f"mask path {rel!r} points outside the archive"))
            elif norm not in in_root:
                problems.append(Problem(where, f"mask file {rel!r} is not in the archive"))
            elif "/" not in norm:
                problems.append(Problem(where, f"mask file {rel!r} sits at the archive root; masks belong in a "
                                               "subfolder (e.g. predicted_masks/)"))
            else:
                entry = in_root[norm]
                if entry in referenced:
                    problems.append(Problem(where, f"mask {rel!r} is already used at {referenced[entry]}"))
                else:
                    referenced[entry] = where
                    _validate_mask(zf, entry, where, num_vertices, report)
        if not _INT.match(class_text):
            problems.append(Problem(where, f"class id {class_text!r} is not a non-negative integer"))
        elif int(class_text) not in classes.ids:
            problems.append(Problem(where, f"class id {class_text} is not a {classes.dataset} benchmark class id "
                                           f"(allowed: {classes.ids_text()})"))
        try:
            score = float(score_text)
        except ValueError:
            problems.append(Problem(where, f"confidence {score_text!r} is not a number"))
        else:
            if not math.isfinite(score):
                problems.append(Problem(where, f"confidence {score_text!r} is not finite"))


def _describe_field_problem(line: str) -> str:
    expected = "expected '<relative mask path> <class id> <confidence>' separated by single spaces"
    if not line.strip():
        return f"empty line; {expected}"
    if "\t" in line:
        return f"tab character in the line; {expected}"
    if "  " in line:
        return f"two consecutive spaces; {expected}"
    if line != line.strip():
        return f"leading or trailing space; {expected}"
    return f"{len(line.split())} fields; {expected}"


def _validate_mask(zf: zipfile.ZipFile, entry: str, where: str, num_vertices: Optional[int],
                   report: ValidationReport) -> None:
    """One 0/1 per line and exactly ``num_vertices`` lines (when the mesh could be read)."""
    report.masks_checked += 1
    try:
        data = zf.read(entry)
    except (zipfile.BadZipFile, OSError) as exc:
        report.problems.append(Problem(entry, f"cannot be read from the archive ({exc}); listed at {where}"))
        return
    # The common, well-formed layout "0\n" / "1\n" per vertex, checked as little-endian uint16 pairs
    # ("d\n" = 0x0A30 + d): one subtraction and one comparison over the whole file.
    if len(data) % 2 == 0 and ((np.frombuffer(data, "<u2") - np.uint16(0x0A30)) < 2).all():
        count = len(data) // 2
    else:
        lines = data.split(b"\n")
        if lines and lines[-1] == b"":
            lines.pop()
        values = np.array([ln.rstrip(b"\r") for ln in lines], dtype=object)
        bad = np.flatnonzero((values != b"0") & (values != b"1")) if len(lines) else np.zeros(0, np.int64)
        count = len(lines)
        if bad.size:
            first = int(bad[0])
            shown = lines[first][:20].decode("ascii", "replace")
            report.problems.append(Problem(f"{entry}:{first + 1}", f"value {shown!r} is not 0 or 1 "
                                           f"({bad.size} such line(s)); listed at {where}"))
    if num_vertices is not None and count != num_vertices:
        report.problems.append(Problem(entry, f"{count} lines but the scene's mesh has {num_vertices} vertices; "
                                              f"listed at {where}"))
