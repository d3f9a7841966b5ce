"""ScanNet v2 raw files: one scene folder, the label map, the split lists.

A scene folder ``scans/<scene>/`` (train/val) or ``scans_test/<scene>/`` (test) holds

    <scene>_vh_clean_2.ply                   mesh; evaluation is defined on its vertices, in order
    <scene>_vh_clean_2.labels.ply            same vertices + ``label`` (nyu40 id)         (annotated)
    <scene>_vh_clean_2.0.010000.segs.json    per-vertex segment ids (superpoints)       (annotated)
    <scene>.aggregation.json                 segGroups: objectId, raw category, segments (annotated)
    <scene>.txt                              ``axisAlignment = 16 floats``, ``sceneType = ...``

The hi-res ``<scene>_vh_clean.aggregation.json`` refers to another mesh and is never read (a loose
``*.aggregation.json`` glob picks it up: a known bug of other toolkits).

Annotation semantics follow ScanNet's own export script: the instance of a vertex is the segGroup
whose segments contain the vertex's segment (``objectId + 1``; 0 = unannotated), its class is the
label map's nyu40 id of the group's raw category. ``labels.ply`` is checked against that (vertex
count, coordinates, agreement) but is not the source of truth.

Known defects of the real release are repaired with a logged note (never silently): invalid label
values in labels.ply (scene0270_00/02, scene0384_00), duplicated segGroups (scene0217_00). Every
error is a :class:`ScanNetFormatError` (a ``ValueError``) whose message names the scene and the file.
"""
from __future__ import annotations

import csv
import hashlib
import json
import logging
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, Optional, Sequence

import numpy as np

from pointformer.io.atomic import atomic_write_text
from pointformer.io.ply import PlyFormatError, read_ply

logger = logging.getLogger(__name__)

LABEL_MAP_NAME = "scannetv2-labels.combined.tsv"
SPLIT_FILE_NAMES = {"train": "scannetv2_train.txt", "val": "scannetv2_val.txt", "test": "scannetv2_test.txt"}
SEGS_SUFFIX = "_vh_clean_2.0.010000.segs.json"
MESH_SUFFIX = "_vh_clean_2.ply"
LABELS_SUFFIX = "_vh_clean_2.labels.ply"
AGGREGATION_SUFFIX = ".aggregation.json"
HIRES_AGGREGATION_SUFFIX = "_vh_clean.aggregation.json"
MAX_NYU40_ID = 40
# Coordinates of labels.ply must equal the mesh's; float32 text round trips stay well below this.
_COORD_TOLERANCE = 1e-4
# Share of annotated vertices whose labels.ply label may disagree with the aggregation before a note.
_LABEL_DISAGREEMENT_NOTE = 0.01


class ScanNetFormatError(ValueError):
    """A raw ScanNet file is missing or malformed; the message names the scene and the file."""


@dataclass(frozen=True)
class SceneFiles:
    """Paths of the raw files of one scene folder (the annotation files may not exist)."""

    scene_id: str
    folder: Path

    @property
    def mesh(self) -> Path:
        return self.folder / f"{self.scene_id}{MESH_SUFFIX}"

    @property
    def labels(self) -> Path:
        return self.folder / f"{self.scene_id}{LABELS_SUFFIX}"

    @property
    def segs(self) -> Path:
        return self.folder / f"{self.scene_id}{SEGS_SUFFIX}"

    @property
    def aggregation(self) -> Path:
        return self.folder / f"{self.scene_id}{AGGREGATION_SUFFIX}"

    @property
    def hires_aggregation(self) -> Path:
        return self.folder / f"{self.scene_id}{HIRES_AGGREGATION_SUFFIX}"

    @property
    def meta(self) -> Path:
        return self.folder / f"{self.scene_id}.txt"

    @classmethod
    def of(cls, folder: str | os.PathLike) -> "SceneFiles":
        folder = Path(folder)
        return cls(scene_id=folder.name, folder=folder)


@dataclass
class SegGroup:
    """One annotated object of ``<scene>.aggregation.json``."""

    object_id: int
    label: str              # raw category
    segments: list[int]


@dataclass
class SceneMeta:
    """``<scene>.txt``: the axis alignment (4x4, maps mesh coordinates to the aligned frame) and type."""

    axis_alignment: Optional[np.ndarray] = None
    scene_type: Optional[str] = None
    fields: dict[str, str] = field(default_factory=dict)


@dataclass
class RawScanNetScene:
    """Everything read from one scene folder.

    vertices  float32 [V, 3] (mesh frame, not aligned)  colors uint8 [V, 3]  faces int32 [F, 3]
    seg_indices int64 [V] or None     official segment id per vertex (None for test scenes)
    instance    int32 [V] or None     objectId + 1 of the vertex's segGroup, 0 = unannotated
    nyu40       int32 [V] or None     nyu40 id of the vertex's segGroup class, 0 = unannotated
    raw_id      int32 [V] or None     label-map ``id`` (raw-category id, ScanNet200's class id) of the
                                      vertex's segGroup, 0 = unannotated (None: no ScanNet200 map given)
    labels_ply  int32 [V] or None     the ``label`` of labels.ply (checked, not used for classes)
    objects     the segGroups kept (duplicates dropped), in file order
    notes       repaired defects (each also logged as a warning)
    """

    scene_id: str
    files: SceneFiles
    vertices: np.ndarray
    colors: np.ndarray
    faces: np.ndarray
    meta: SceneMeta
    seg_indices: Optional[np.ndarray] = None
    instance: Optional[np.ndarray] = None
    nyu40: Optional[np.ndarray] = None
    raw_id: Optional[np.ndarray] = None
    labels_ply: Optional[np.ndarray] = None
    objects: list[SegGroup] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    @property
    def annotated(self) -> bool:
        return self.instance is not None

    @property
    def num_vertices(self) -> int:
        return int(self.vertices.shape[0])

    def source_paths(self) -> list[Path]:
        """The raw files this scene was read from (for checksums)."""
        f = self.files
        paths = [f.mesh] + ([f.meta] if f.meta.exists() else [])
        if self.annotated:
            paths += [f.labels, f.segs, f.aggregation]
        return paths


def _fail(scene: str, path: Path, message: str) -> ScanNetFormatError:
    return ScanNetFormatError(f"scene {scene}: {path}: {message}")


def _note(raw_notes: list[str], scene: str, message: str) -> None:
    raw_notes.append(message)
    logger.warning("scene %s: %s", scene, message)


def _read_json(path: Path, scene: str) -> Any:
    try:
        with open(path, "rb") as f:
            return json.load(f)
    except FileNotFoundError:
        raise _fail(scene, path, "file not found") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise _fail(scene, path, f"not valid JSON ({exc})") from None


# ----------------------------------------------------------------------------------------------
# Release-level files


def _read_label_rows(path: Path, column: str) -> list[tuple[int, str, int]]:
    """(line number, raw_category, integer ``column``) of every row whose ``column`` is not empty."""
    try:
        with open(path, newline="", encoding="utf-8") as f:
            reader = csv.DictReader(f, delimiter="\t")
            columns = reader.fieldnames or []
            if "raw_category" not in columns or column not in columns:
                raise ScanNetFormatError(
                    f"{path}: label map needs tab-separated columns 'raw_category' and {column!r}, "
                    f"found {columns[:6]}")
            rows: list[tuple[int, str, int]] = []
            for lineno, row in enumerate(reader, start=2):
                value = (row.get(column) or "").strip()
                if not value:
                    continue
                try:
                    rows.append((lineno, row["raw_category"], int(value)))
                except ValueError:
                    raise ScanNetFormatError(f"{path}: line {lineno}: {column} {value!r} is not an integer") from None
    except FileNotFoundError:
        raise ScanNetFormatError(f"{path}: label map not found (it ships with the ScanNet release as "
                                 f"{LABEL_MAP_NAME})") from None
    if not rows:
        raise ScanNetFormatError(f"{path}: label map holds no rows")
    return rows


def read_label_map(path: str | os.PathLike, *, label_to: str = "nyu40id") -> dict[str, int]:
    """``scannetv2-labels.combined.tsv`` -> {raw_category: id} (``label_to``: nyu40id or id).

    Rows with an empty target id are skipped. Raises ScanNetFormatError naming the file when it is
    missing, lacks the columns, or holds a non-integer id.
    """
    return {raw: value for _, raw, value in _read_label_rows(Path(path), label_to)}


def read_scannet200_map(path: str | os.PathLike) -> dict[str, int]:
    """``scannetv2-labels.combined.tsv`` -> {raw_category: raw-category ``id``}: ScanNet200's label map.

    ScanNet200 classes are raw-category ids (the ``id`` column), not nyu40 ids. Every row must carry
    a positive integer id and a raw category may not be listed twice with different ids; anything else
    raises ScanNetFormatError naming the file and the line.
    """
    path = Path(path)
    mapping: dict[str, int] = {}
    first_line: dict[str, int] = {}
    for lineno, raw, value in _read_label_rows(path, "id"):
        if value <= 0:
            raise ScanNetFormatError(f"{path}: line {lineno}: id {value} of raw category {raw!r} must be a "
                                     "positive integer")
        if raw in mapping and mapping[raw] != value:
            raise ScanNetFormatError(f"{path}: line {lineno}: raw category {raw!r} has id {value} but line "
                                     f"{first_line[raw]} gives it id {mapping[raw]}")
        mapping.setdefault(raw, value)
        first_line.setdefault(raw, lineno)
    return mapping


def read_split_file(path: str | os.PathLike) -> list[str]:
    """Scene ids of an official split list (one per line, blank lines ignored)."""
    path = Path(path)
    try:
        lines = path.read_text().split()
    except FileNotFoundError:
        raise ScanNetFormatError(f"{path}: split file not found") from None
    bad = [s for s in lines if not s.startswith("scene")]
    if bad:
        raise ScanNetFormatError(f"{path}: split file holds entries that are not scene ids, e.g. {bad[0]!r}")
    return lines


def file_sha1(path: str | os.PathLike) -> str:
    """Hex SHA-1 of a file's bytes (the manifest's source checksum)."""
    digest = hashlib.sha1()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


# ----------------------------------------------------------------------------------------------
# Per-scene files


def read_scene_meta(path: str | os.PathLike, scene: str = "?") -> SceneMeta:
    """Parse ``<scene>.txt`` (``key = value`` lines); a missing file gives an empty SceneMeta."""
    path = Path(path)
    if not path.exists():
        return SceneMeta()
    fields: dict[str, str] = {}
    for line in path.read_text(errors="replace").splitlines():
        if "=" in line:
            key, value = line.split("=", 1)
            fields[key.strip()] = value.strip()
    alignment = None
    if "axisAlignment" in fields:
        try:
            values = [float(x) for x in fields["axisAlignment"].split()]
        except ValueError:
            raise _fail(scene, path, "axisAlignment holds a non-numeric value") from None
        if len(values) != 16 or not np.isfinite(values).all():
            raise _fail(scene, path, f"axisAlignment must be 16 finite numbers, found {len(values)}")
        alignment = np.asarray(values, dtype=np.float64).reshape(4, 4)
    return SceneMeta(axis_alignment=alignment, scene_type=fields.get("sceneType"), fields=fields)


def read_segs_json(path: str | os.PathLike, scene: str = "?") -> np.ndarray:
    """``segIndices`` of a segs.json file as int64 [V]."""
    path = Path(path)
    data = _read_json(path, scene)
    if not isinstance(data, dict) or "segIndices" not in data:
        raise _fail(scene, path, "no 'segIndices' list (not a ScanNet segs.json file)")
    try:
        seg = np.asarray(data["segIndices"], dtype=np.int64)
    except (TypeError, ValueError, OverflowError):
        raise _fail(scene, path, "segIndices must be a list of integers") from None
    if seg.ndim != 1:
        raise _fail(scene, path, "segIndices must be a flat list of integers")
    return seg


def write_segs_json(path: str | os.PathLike, seg_indices: np.ndarray, *, scene_id: str,
                    k_thresh: float = 0.01, seg_min_verts: int = 20) -> None:
    """Write the official segs.json layout atomically: ``{"params", "sceneId", "segIndices"}``."""
    path = Path(path)
    seg = np.asarray(seg_indices)
    if seg.ndim != 1 or not np.issubdtype(seg.dtype, np.integer):
        raise ValueError(f"{path}: seg_indices must be a 1-D integer array, got {seg.dtype} {seg.shape}")
    # The C++ tool writes the JSON by hand with no spaces; so do we (json.dumps of 150k ints is slow).
    text = ('{"params":{"kThresh":%s,"segMinVerts":%d},"sceneId":%s,"segIndices":[%s]}'
            % (json.dumps(float(k_thresh)), int(seg_min_verts), json.dumps(scene_id),
               ",".join(map(str, seg.tolist()))))
    atomic_write_text(path, text)


def read_aggregation(path: str | os.PathLike, scene: str = "?") -> list[SegGroup]:
    """segGroups of ``<scene>.aggregation.json`` in file order (no de-duplication here)."""
    path = Path(path)
    data = _read_json(path, scene)
    if not isinstance(data, dict) or not isinstance(data.get("segGroups"), list):
        raise _fail(scene, path, "no 'segGroups' list (not a ScanNet aggregation file)")
    groups: list[SegGroup] = []
    for i, g in enumerate(data["segGroups"]):
        if not isinstance(g, dict) or not {"objectId", "label", "segments"} <= set(g):
            raise _fail(scene, path, f"segGroup {i} lacks one of 'objectId', 'label', 'segments'")
        segments = g["segments"]
        if (not isinstance(g["objectId"], int) or not isinstance(g["label"], str)
                or not isinstance(segments, list) or not all(isinstance(s, int) for s in segments)):
            raise _fail(scene, path, f"segGroup {i} (objectId {g.get('objectId')!r}) has malformed "
                                     "objectId/label/segments")
        if g["objectId"] < 0:
            raise _fail(scene, path, f"segGroup {i} has a negative objectId {g['objectId']}")
        groups.append(SegGroup(object_id=g["objectId"], label=g["label"], segments=list(segments)))
    return groups


def _drop_duplicate_groups(groups: list[SegGroup], scene: str, path: Path, notes: list[str]) -> list[SegGroup]:
    """Drop segGroups repeating an earlier group's label and segments (scene0217_00's defect)."""
    seen: dict[tuple[str, tuple[int, ...]], int] = {}
    kept: list[SegGroup] = []
    dropped: list[int] = []
    for g in groups:
        key = (g.label, tuple(sorted(g.segments)))
        if key in seen:
            dropped.append(g.object_id)
            continue
        seen[key] = g.object_id
        kept.append(g)
    if dropped:
        _note(notes, scene, f"{path.name}: dropped {len(dropped)} segGroups that repeat earlier groups "
                            f"(objectIds {dropped[:5]}{'...' if len(dropped) > 5 else ''}); known defect of "
                            "the release (scene0217_00)")
    ids = [g.object_id for g in kept]
    if len(set(ids)) != len(ids):
        dup = sorted({i for i in ids if ids.count(i) > 1})
        raise _fail(scene, path, f"objectIds {dup[:5]} name more than one different segGroup")
    return kept


def read_scannet_scene(folder: str | os.PathLike, label_map: Optional[Mapping[str, int]] = None, *,
                       require_annotations: Optional[bool] = None,
                       scannet200_map: Optional[Mapping[str, int]] = None) -> RawScanNetScene:
    """Read one scene folder.

    ``require_annotations``: True for ``scans/`` (labels, segs and aggregation must exist), False for
    ``scans_test/`` (they are ignored), None = read them when the aggregation file exists.
    ``label_map`` (raw_category -> nyu40id) is needed for annotated scenes; with ``scannet200_map``
    (raw_category -> raw-category id, :func:`read_scannet200_map`) ``raw_id`` is filled too.
    Raises ScanNetFormatError naming the scene and the file for every defect that cannot be
    repaired; repairable release defects are logged and listed in ``notes``.
    """
    files = SceneFiles.of(folder)
    scene = files.scene_id
    if not files.folder.is_dir():
        raise ScanNetFormatError(f"scene {scene}: {files.folder}: scene folder not found")
    notes: list[str] = []
    if not files.mesh.exists():
        raise _fail(scene, files.mesh, "mesh file not found")
    try:
        mesh = read_ply(files.mesh, require_faces=True, require_colors=True)
    except PlyFormatError as exc:
        raise ScanNetFormatError(f"scene {scene}: {exc}") from None
    if mesh.num_vertices == 0 or mesh.faces is None or mesh.faces.shape[0] == 0:
        raise _fail(scene, files.mesh, f"mesh is empty ({mesh.num_vertices} vertices, "
                                       f"{0 if mesh.faces is None else mesh.faces.shape[0]} faces)")
    meta = read_scene_meta(files.meta, scene)
    raw = RawScanNetScene(scene_id=scene, files=files, vertices=mesh.vertices, colors=mesh.colors,
                          faces=mesh.faces, meta=meta, notes=notes)
    if files.hires_aggregation.exists():
        logger.info("scene %s: ignoring %s (it annotates the hi-res mesh)", scene, files.hires_aggregation.name)

    annotated = files.aggregation.exists() if require_annotations is None else require_annotations
    if not annotated:
        return raw
    for path in (files.aggregation, files.segs, files.labels):
        if not path.exists():
            hint = ""
            if path == files.aggregation and files.hires_aggregation.exists():
                hint = f" ({files.hires_aggregation.name} annotates the hi-res mesh and cannot replace it)"
            raise _fail(scene, path, "annotation file not found" + hint)
    if label_map is None:
        raise ValueError(f"scene {scene}: a label map (raw_category -> nyu40id) is needed to read annotations")

    nv = mesh.num_vertices
    seg = read_segs_json(files.segs, scene)
    if seg.shape[0] != nv:
        raise _fail(scene, files.segs, f"segIndices has {seg.shape[0]} entries but the mesh "
                                       f"{files.mesh.name} has {nv} vertices")
    groups = _drop_duplicate_groups(read_aggregation(files.aggregation, scene), scene, files.aggregation, notes)

    unknown = sorted({g.label for g in groups if g.label not in label_map})
    if unknown:
        raise _fail(scene, files.aggregation, f"raw categories not in the label map: {unknown[:8]}")
    if scannet200_map is not None:
        no_id = sorted({g.label for g in groups if g.label not in scannet200_map})
        if no_id:
            raise _fail(scene, files.aggregation, f"raw categories without an 'id' in the label map: {no_id[:8]}")
    seg_ids, seg_inverse = np.unique(seg, return_inverse=True)
    seg_instance = np.zeros(seg_ids.shape[0], dtype=np.int32)
    seg_nyu40 = np.zeros(seg_ids.shape[0], dtype=np.int32)
    seg_raw_id = np.zeros(seg_ids.shape[0], dtype=np.int32)
    overlapping = 0
    for g in groups:
        segs = np.asarray(g.segments, dtype=np.int64)
        pos = np.searchsorted(seg_ids, segs)
        pos = np.minimum(pos, seg_ids.shape[0] - 1)
        missing = segs[seg_ids[pos] != segs]
        if missing.size:
            raise _fail(scene, files.aggregation,
                        f"segGroup objectId {g.object_id} ({g.label!r}) names segments absent from "
                        f"{files.segs.name}: {missing[:5].tolist()}")
        overlapping += int(np.count_nonzero(seg_instance[pos]))
        # Like ScanNet's export script, a later group wins a segment claimed twice.
        seg_instance[pos] = g.object_id + 1
        seg_nyu40[pos] = label_map[g.label]
        if scannet200_map is not None:
            seg_raw_id[pos] = scannet200_map[g.label]
    if overlapping:
        _note(notes, scene, f"{files.aggregation.name}: {overlapping} segments belong to more than one "
                            "segGroup; the later group keeps them (as ScanNet's export script does)")
    raw.seg_indices = seg
    raw.objects = groups
    raw.instance = seg_instance[seg_inverse]
    raw.nyu40 = seg_nyu40[seg_inverse]
    if scannet200_map is not None:
        raw.raw_id = seg_raw_id[seg_inverse]

    try:
        labels = read_ply(files.labels)
    except PlyFormatError as exc:
        raise ScanNetFormatError(f"scene {scene}: {exc}") from None
    if labels.num_vertices != nv:
        raise _fail(scene, files.labels, f"has {labels.num_vertices} vertices but the mesh "
                                         f"{files.mesh.name} has {nv}")
    if "label" not in labels.extra:
        raise _fail(scene, files.labels, "vertex element has no 'label' property")
    delta = float(np.abs(labels.vertices - mesh.vertices).max()) if nv else 0.0
    if delta > _COORD_TOLERANCE:
        raise _fail(scene, files.labels, f"vertex coordinates differ from {files.mesh.name} "
                                         f"(max difference {delta:.3g}); the files belong to different meshes")
    label_values = labels.extra["label"].astype(np.int64)
    invalid = (label_values < 0) | (label_values > MAX_NYU40_ID)
    if invalid.any():
        values = np.unique(label_values[invalid])
        _note(notes, scene, f"{files.labels.name}: {int(invalid.sum())} vertices carry invalid nyu40 label "
                            f"values {values[:5].tolist()}; ignored (classes come from the aggregation), "
                            "known defect of the release (scene0270_00/02, scene0384_00)")
    raw.labels_ply = label_values.astype(np.int32)
    annotated_mask = (raw.instance > 0) & ~invalid
    if annotated_mask.any():
        disagree = float(np.mean(label_values[annotated_mask] != raw.nyu40[annotated_mask]))
        if disagree > _LABEL_DISAGREEMENT_NOTE:
            _note(notes, scene, f"{files.labels.name}: {disagree:.1%} of annotated vertices disagree with the "
                                f"aggregation's class; the aggregation is used")
    return raw


def discover_scenes(folder: str | os.PathLike) -> list[str]:
    """Scene ids (sorted) of the scene folders directly under ``folder`` (scans/ or scans_test/)."""
    folder = Path(folder)
    if not folder.is_dir():
        return []
    return sorted(p.name for p in folder.iterdir() if p.is_dir() and p.name.startswith("scene"))


def write_label_map(path: str | os.PathLike, rows: Sequence[tuple[str, str, int]],
                    ids: Optional[Sequence[int]] = None) -> None:
    """Write a ``scannetv2-labels.combined.tsv`` with the release's columns.

    rows: (raw_category, category, nyu40id). ``ids``: the ``id`` column (raw-category ids, ScanNet200's
    classes), one per row; default the row numbers 1..N. Only the columns the readers use carry values
    beyond these (nyu40class from the nyu40 name table when known).
    """
    if ids is not None and len(ids) != len(rows):
        raise ValueError(f"{path}: {len(ids)} ids for {len(rows)} label map rows")
    header = ["id", "raw_category", "category", "count", "nyu40id", "eigen13id", "nyuClass", "nyu40class",
              "eigen13class", "ModelNet40", "ModelNet10", "ShapeNetCore55", "synsetoffset", "wnsynsetid",
              "wnsynsetkey", "mpcat40", "mpcat40index"]
    lines = ["\t".join(header)]
    row_ids = range(1, len(rows) + 1) if ids is None else ids
    for i, (raw_category, category, nyu40) in zip(row_ids, rows):
        name = NYU40_NAMES.get(nyu40, "")
        values = [str(i), raw_category, category, "1", str(nyu40), "", "", name, "", "", "", "", "", "", "",
                  name, ""]
        lines.append("\t".join(values))
    atomic_write_text(path, "\n".join(lines) + "\n")


# The NYU40 class names (ids 1..40), used for readable label tables.
NYU40_NAMES: dict[int, str] = dict(enumerate((
    "wall", "floor", "cabinet", "bed", "chair", "sofa", "table", "door", "window", "bookshelf",
    "picture", "counter", "blinds", "desk", "shelves", "curtain", "dresser", "pillow", "mirror",
    "floor mat", "clothes", "ceiling", "books", "refridgerator", "television", "paper", "towel",
    "shower curtain", "box", "whiteboard", "person", "night stand", "toilet", "sink", "lamp",
    "bathtub", "bag", "otherstructure", "otherfurniture", "otherprop"), start=1))
