"""Synthetic scenes written in the exact ScanNet v2 raw format.

``generate_scannet(out_root, num_scenes=4, num_test_scenes=1, seed=0, target_vertices=20000)`` writes

    out_root/scans/sceneXXXX_00/       _vh_clean_2.ply, _vh_clean_2.labels.ply,
                                       _vh_clean_2.0.010000.segs.json, .aggregation.json, .txt
    out_root/scans_test/sceneYYYY_00/  _vh_clean_2.ply, .txt (no annotations, no alignment)
    out_root/scannetv2-labels.combined.tsv
    out_root/scannetv2_{train,val,test}.txt

``label_set`` decides the tsv's ``id`` column (the raw-category id, ScanNet200's class): "scannet"
(default) numbers the rows 1..N as before; "scannet200" gives every raw category its ScanNet200 class
id (``pointformer.io.labels``) and a few raw categories ids outside the 200 classes (void for
ScanNet200: SCANNET200_VOID_CATEGORIES). Scenes, meshes and annotations are the same for both.

and returns the ground truth it generated (per-vertex object and class), so that tests can check
that preprocessing recovers every object vertex for vertex. Every object is its own connected
mesh, so the segmentator's superpoints never straddle two objects and the segGroups describe the
objects exactly. Deterministic for a given seed and arguments.
"""
from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

import numpy as np

from pointformer.io.atomic import atomic_write_text
from pointformer.io.labels import SCANNET200_IDS, SCANNET200_NAMES
from pointformer.io.ply import write_ply
from pointformer.io.scannet import (
    AGGREGATION_SUFFIX, HIRES_AGGREGATION_SUFFIX, LABEL_MAP_NAME, LABELS_SUFFIX, MESH_SUFFIX, SEGS_SUFFIX,
    SPLIT_FILE_NAMES, write_label_map, write_segs_json,
)
from pointformer.preprocess.segmentator import segment_mesh
from pointformer.synthetic.presets import punch_holes, resolve_preset
from pointformer.synthetic.rooms import (RAW_CATEGORIES, ROOM_TYPES, RoomMesh, mesh_layout, object_colors,
                                         plan_room)

TEST_SCENE_START = 707  # the real test split is scene0707_00 .. scene0806_00
DEFECTS = ("invalid_labels", "duplicate_groups", "hires_aggregation")
LABEL_SETS = ("scannet", "scannet200")
# label_set="scannet200": raw categories whose id lies outside the 200 ScanNet200 classes (void there;
# their nyu40 class is unchanged), and the ScanNet200 class name of every other raw category.
SCANNET200_VOID_CATEGORIES: dict[str, int] = {"sofa": 1300, "counter": 1301}
_SCANNET200_CLASS_OF_RAW: dict[str, str] = {"kitchen cabinets": "kitchen cabinet"}


def label_map_ids(label_set: str = "scannet") -> dict[str, int]:
    """The ``id`` column of the generated label map: raw category -> raw-category id."""
    if label_set not in LABEL_SETS:
        raise ValueError(f"label_set must be one of {LABEL_SETS}, got {label_set!r}")
    if label_set == "scannet":
        return {raw: i for i, raw in enumerate(RAW_CATEGORIES, start=1)}
    id_of_name = dict(zip(SCANNET200_NAMES, SCANNET200_IDS))
    return {raw: SCANNET200_VOID_CATEGORIES.get(raw) or id_of_name[_SCANNET200_CLASS_OF_RAW.get(raw, raw)]
            for raw in RAW_CATEGORIES}


@dataclass
class SyntheticScene:
    """Ground truth of one generated scene.

    instance int32 [V]: objectId + 1 of the vertex's annotated object, 0 = unannotated
    nyu40    int32 [V]: nyu40 id of that object, 0 = unannotated
    raw_id   int32 [V]: the label map's ``id`` of that object's raw category, 0 = unannotated
    objects: (objectId, raw category, nyu40 id) of every annotated object
    """

    scene_id: str
    split: str
    folder: Path
    scene_type: str
    num_vertices: int
    instance: np.ndarray
    nyu40: np.ndarray
    raw_id: np.ndarray
    objects: list[tuple[int, str, int]] = field(default_factory=list)
    defects: list[str] = field(default_factory=list)

    @property
    def scannet200_gt_ids(self) -> np.ndarray:
        """The expected ScanNet200 GT int32 [V]: ``raw_id * 1000 + instance`` where raw_id is one of the
        200 ScanNet200 ids and the vertex annotated, else 0."""
        valid = np.isin(self.raw_id, SCANNET200_IDS) & (self.instance > 0)
        return np.where(valid, self.raw_id * 1000 + self.instance, 0).astype(np.int32)


@dataclass
class SyntheticScanNet:
    """What :func:`generate_scannet` wrote: the root and the scenes by id."""

    root: Path
    scenes: dict[str, SyntheticScene]
    splits: dict[str, list[str]]
    label_map: Path


def _alignment(rng: np.random.Generator) -> np.ndarray:
    """A random axisAlignment (mesh -> aligned frame): rotation about +z and a translation."""
    yaw = float(rng.uniform(-math.pi, math.pi))
    c, s = math.cos(yaw), math.sin(yaw)
    m = np.eye(4)
    m[:2, :2] = [[c, -s], [s, c]]
    m[:3, 3] = [rng.uniform(-3, 3), rng.uniform(-3, 3), rng.uniform(-0.05, 0.05)]
    return m


def _spacing_for(layout, target_vertices: int, spacing_factor: Optional[np.ndarray] = None) -> float:
    """Vertex spacing that gives about ``target_vertices`` (two refinement passes on the layout)."""
    spacing = 0.15
    for _ in range(2):
        count = mesh_layout(layout, spacing, spacing_factor).vertices.shape[0]
        spacing *= math.sqrt(count / target_vertices)
        spacing = min(max(spacing, 0.004), 1.0)
    return spacing


def _scan_artefacts(room: RoomMesh, layout, rng: np.random.Generator, preset) -> RoomMesh:
    """Holes of the preset punched into a meshed room (vertices, their faces and owners removed)."""
    count = int(rng.poisson(preset.holes_per_m2 * layout.width * layout.depth))
    alive = punch_holes(room.vertices, room.object_index, rng, count=count, radius=preset.hole_radius,
                        keep=preset.hole_keep)
    new_index = np.cumsum(alive) - 1
    faces = room.faces[alive[room.faces].all(1)]
    return RoomMesh(room.vertices[alive], new_index[faces], room.object_index[alive])


def generate_scene(folder: str | Path, *, scene_id: str, seed: int, target_vertices: Optional[int] = None,
                   scene_type: Optional[str] = None, annotated: bool = True,
                   defects: tuple[str, ...] = (), split: str = "train",
                   label_set: str = "scannet", preset: str = "basic") -> SyntheticScene:
    """Generate one scene folder (see the module docstring). ``defects``: any of DEFECTS;
    ``label_set`` (LABEL_SETS) only decides the raw-category ids reported in ``raw_id``; ``preset``
    (``pointformer.synthetic.presets.PRESETS``): "basic" (default) or "scannet" (ScanNet-like object
    count and sizes, uneven density, holes); ``target_vertices`` defaults to the preset's."""
    spec = resolve_preset(preset)
    target_vertices = spec.default_vertices if target_vertices is None else target_vertices
    if target_vertices < 500:
        raise ValueError(f"target_vertices must be at least 500, got {target_vertices}")
    unknown = set(defects) - set(DEFECTS)
    if unknown:
        raise ValueError(f"unknown defects {sorted(unknown)}; choose from {DEFECTS}")
    raw_ids = label_map_ids(label_set)
    rng = np.random.default_rng(seed)
    scene_type = scene_type or str(rng.choice(ROOM_TYPES))
    spacing_factor = None
    if spec.name == "basic":
        layout = plan_room(rng, scene_type)
    else:  # the preset's own stream: the basic preset's scenes stay exactly as they were
        preset_rng = np.random.default_rng([seed, 2])
        layout = plan_room(rng, scene_type, clutter_objects=int(preset_rng.integers(spec.objects[0],
                                                                                    spec.objects[1] + 1)),
                           room_scale=float(preset_rng.uniform(*spec.room_scale)))
        if spec.density_jitter > 0:
            j = math.log1p(spec.density_jitter)
            spacing_factor = np.exp(preset_rng.uniform(-j, j, len(layout.objects)))
    spacing = _spacing_for(layout, target_vertices, spacing_factor)
    room = mesh_layout(layout, spacing, spacing_factor)
    if spec.holes_per_m2 > 0:
        room = _scan_artefacts(room, layout, preset_rng, spec)
    noise_rng = np.random.default_rng([seed, 1])
    # Scanner noise: 4 mm, at most 15% of the vertex spacing. At ScanNet's density (~2.8 cm) this gives
    # ScanNet's superpoint count (~1.9k per 150k vertices instead of ~500 for a noise-free mesh).
    vertices = room.vertices + noise_rng.normal(0.0, min(0.004, 0.15 * spacing), room.vertices.shape)
    colors = object_colors(layout, room, noise_rng)
    # Real meshes do not list vertices object by object: shuffle (faces follow).
    perm = noise_rng.permutation(vertices.shape[0])
    inverse = np.empty_like(perm)
    inverse[perm] = np.arange(perm.shape[0])
    vertices, colors, owner = vertices[perm], colors[perm], room.object_index[perm]
    faces = inverse[room.faces]

    alignment = _alignment(noise_rng)
    # The mesh is stored in the scanner's frame; axisAlignment maps it back to the room frame.
    homog = np.concatenate([vertices, np.ones((vertices.shape[0], 1))], axis=1)
    mesh_xyz = (homog @ np.linalg.inv(alignment).T)[:, :3].astype(np.float32)

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    write_ply(folder / f"{scene_id}{MESH_SUFFIX}", mesh_xyz, colors=colors, faces=faces,
              comments=("pointformer synthetic ScanNet scene",))
    meta = []
    if annotated:  # like the release: test scenes carry no axisAlignment
        meta.append("axisAlignment = " + " ".join(f"{v:.17g}" for v in alignment.reshape(-1)))
    meta += ["colorHeight = 968", "colorWidth = 1296", f"numColorFrames = {int(rng.integers(500, 3000))}",
             f"sceneType = {scene_type}"]
    atomic_write_text(folder / f"{scene_id}.txt", "\n".join(meta) + "\n")

    objects = layout.objects
    annotated_objects = [i for i, o in enumerate(objects) if o.annotated]
    object_id = np.full(len(objects), -1, dtype=np.int64)
    object_id[annotated_objects] = np.arange(len(annotated_objects))
    nyu_of_object = np.array([o.nyu40 if o.annotated else 0 for o in objects], dtype=np.int32)
    raw_id_of_object = np.array([raw_ids[o.raw_label] if o.annotated else 0 for o in objects], dtype=np.int32)
    instance = (object_id[owner] + 1).astype(np.int32)
    nyu40 = nyu_of_object[owner]
    truth = SyntheticScene(scene_id=scene_id, split=split, folder=folder, scene_type=scene_type,
                           num_vertices=int(mesh_xyz.shape[0]), instance=instance, nyu40=nyu40,
                           raw_id=raw_id_of_object[owner],
                           objects=[(int(object_id[i]), objects[i].raw_label, objects[i].nyu40)
                                    for i in annotated_objects],
                           defects=list(defects))
    if not annotated:
        truth.instance = np.zeros_like(instance)
        truth.nyu40 = np.zeros_like(nyu40)
        truth.raw_id = np.zeros_like(nyu40)
        truth.objects = []
        return truth

    seg = segment_mesh(mesh_xyz, faces)
    seg_ids, seg_inverse = np.unique(seg, return_inverse=True)
    seg_owner = np.full(seg_ids.shape[0], -1, dtype=np.int64)
    seg_owner[seg_inverse] = owner
    if not np.array_equal(seg_owner[seg_inverse], owner):  # objects are disjoint meshes: cannot happen
        raise RuntimeError(f"{scene_id}: a superpoint straddles two objects")
    write_segs_json(folder / f"{scene_id}{SEGS_SUFFIX}", seg, scene_id=f"{scene_id}_vh_clean_2")

    groups = []
    for i in annotated_objects:
        segments = seg_ids[seg_owner == i].tolist()
        groups.append({"id": int(object_id[i]), "objectId": int(object_id[i]), "segments": segments,
                       "label": objects[i].raw_label})
    if "duplicate_groups" in defects:  # scene0217_00: the second half repeats the first
        k = len(groups)
        groups = groups + [dict(g, id=g["id"] + k, objectId=g["objectId"] + k) for g in groups]
    aggregation = {"sceneId": f"scannet.{scene_id}", "appId": "Annotator.v1.0.0", "segGroups": groups,
                   "segmentsFile": f"scannet.{scene_id}{SEGS_SUFFIX}"}
    atomic_write_text(folder / f"{scene_id}{AGGREGATION_SUFFIX}", json.dumps(aggregation))
    if "hires_aggregation" in defects:
        # The hi-res file annotates another mesh: its segment ids mean nothing for this one.
        bogus = [dict(g, segments=[int(s) + 10_000_000 for s in g["segments"]][::-1]) for g in groups[::-1]]
        atomic_write_text(folder / f"{scene_id}{HIRES_AGGREGATION_SUFFIX}",
                          json.dumps(dict(aggregation, segGroups=bogus)))

    labels = nyu40.astype(np.uint16)
    if "invalid_labels" in defects:  # scene0270_00/02, scene0384_00 carry values 50 and 149
        bad = noise_rng.choice(labels.shape[0], size=max(1, labels.shape[0] // 200), replace=False)
        labels[bad] = noise_rng.choice([50, 149], size=bad.shape[0])
    label_colors = _label_colors(labels)
    write_ply(folder / f"{scene_id}{LABELS_SUFFIX}", mesh_xyz, colors=label_colors, faces=faces,
              extra={"label": labels})
    return truth


def _label_colors(labels: np.ndarray) -> np.ndarray:
    """A fixed pseudo-random colour per label value (labels.ply files are coloured by class)."""
    palette = np.random.default_rng(40).integers(0, 256, (65536, 3)).astype(np.uint8)
    palette[0] = 0
    return palette[labels.astype(np.int64)]


def generate_scannet(out_root: str | Path, *, num_scenes: int = 4, num_test_scenes: int = 1, seed: int = 0,
                     target_vertices: Optional[int] = None, defects: bool = False, val_fraction: float = 0.25,
                     split_files: bool = True, label_set: str = "scannet",
                     preset: str = "basic") -> SyntheticScanNet:
    """Write a synthetic ScanNet release under ``out_root`` and return its ground truth.

    num_scenes annotated scenes go to scans/ (the last ``round(num_scenes * val_fraction)`` form the
    val split, at least one when num_scenes >= 2 and val_fraction > 0); num_test_scenes go to
    scans_test/ without annotations. ``defects=True`` injects the real release's defects: invalid
    label values (first scene), duplicated segGroups (second scene, or the first when alone) and a
    stray hi-res aggregation file (every annotated scene). ``split_files=False`` omits the
    scannetv2_*.txt lists. Room types cycle over ROOM_TYPES so that a few scenes cover all 18 classes.
    ``label_set`` (LABEL_SETS): the label map's ``id`` column, see the module docstring.
    ``preset``: "basic" (default; 20k vertices unless ``target_vertices``) or "scannet" (150k vertices,
    25-50 objects, many small, uneven density and holes; ``pointformer.synthetic.presets``).
    """
    raw_ids = label_map_ids(label_set)
    resolve_preset(preset)
    if num_scenes < 0 or num_test_scenes < 0 or num_scenes + num_test_scenes == 0:
        raise ValueError(f"need at least one scene, got num_scenes={num_scenes}, num_test_scenes={num_test_scenes}")
    if not 0.0 <= val_fraction < 1.0:
        raise ValueError(f"val_fraction must lie in [0, 1), got {val_fraction}")
    if num_test_scenes > 100:
        raise ValueError("at most 100 test scenes (scene0707_00 .. scene0806_00)")
    root = Path(out_root)
    root.mkdir(parents=True, exist_ok=True)
    num_val = int(round(num_scenes * val_fraction))
    if num_scenes >= 2 and val_fraction > 0:
        num_val = max(1, num_val)
    num_val = min(num_val, max(num_scenes - 1, 0))
    splits: dict[str, list[str]] = {"train": [], "val": [], "test": []}
    scenes: dict[str, SyntheticScene] = {}
    for i in range(num_scenes):
        scene_id = f"scene{i:04d}_00"
        split = "val" if i >= num_scenes - num_val else "train"
        injected: tuple[str, ...] = ()
        if defects:
            injected = ("hires_aggregation",)
            if i == 0:
                injected += ("invalid_labels",)
            if i == min(1, num_scenes - 1):
                injected += ("duplicate_groups",)
        scenes[scene_id] = generate_scene(
            root / "scans" / scene_id, scene_id=scene_id, seed=seed * 100_003 + i, target_vertices=target_vertices,
            scene_type=ROOM_TYPES[(seed + i) % len(ROOM_TYPES)], defects=injected, split=split,
            label_set=label_set, preset=preset)
        splits[split].append(scene_id)
    for j in range(num_test_scenes):
        scene_id = f"scene{TEST_SCENE_START + j:04d}_00"
        scenes[scene_id] = generate_scene(
            root / "scans_test" / scene_id, scene_id=scene_id, seed=seed * 100_003 + 50_000 + j,
            target_vertices=target_vertices, annotated=False, split="test", label_set=label_set,
            preset=preset)
        splits["test"].append(scene_id)
    rows = [(raw, category, nyu40) for raw, (category, nyu40) in RAW_CATEGORIES.items()]
    write_label_map(root / LABEL_MAP_NAME, rows, ids=None if label_set == "scannet" else list(raw_ids.values()))
    if split_files:
        for split, name in SPLIT_FILE_NAMES.items():
            atomic_write_text(root / name, "".join(f"{s}\n" for s in splits[split]))
    return SyntheticScanNet(root=root, scenes=scenes, splits=splits, label_map=root / LABEL_MAP_NAME)
