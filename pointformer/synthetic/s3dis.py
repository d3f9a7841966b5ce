"""Synthetic rooms written in the exact S3DIS raw format (Stanford3dDataset_v1.2_Aligned_Version).

``generate_s3dis(out_root, num_rooms=4, seed=0, points_per_room=20000, defects=False)`` writes

    out_root/Stanford3dDataset_v1.2_Aligned_Version/Area_<n>/<room>/<room>.txt
    out_root/Stanford3dDataset_v1.2_Aligned_Version/Area_<n>/<room>/Annotations/<class>_<k>.txt

Rooms are the project's synthetic room layouts (``pointformer.synthetic.rooms``) plus a ceiling, a beam
and a column, so all 13 S3DIS classes occur; points are the mesh vertices (a few mm of noise), written
``x y z r g b`` with 3 decimals as in the release. Rooms go round-robin to ``areas``. With ``defects``
every kind of DEFECTS is injected once (each into one room; "unreadable_room" adds an extra room with no
Annotations folder), and the result lists what was injected where, with file and line.

The returned ground truth (per room, in the reader's point order: annotation files in
``pointformer.io.s3dis.annotation_order``, points in file order) is what preprocessing must reproduce.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from pointformer.io.atomic import atomic_write_bytes
from pointformer.io.labels import S3DIS_NAMES
from pointformer.io.s3dis import RELEASE_NAMES, annotation_order, room_gt_ids, room_scene_id
from pointformer.synthetic import meshes
from pointformer.synthetic.rooms import ROOM_TYPES, mesh_layout, object_colors, plan_room

DEFECTS = ("control_byte_in_number", "nul_fused_colours", "unrepairable_line", "control_byte_room_file",
           "duplicate_file", "room_file_name", "stairs", "crlf", "empty_file", "count_mismatch",
           "unreadable_room")
# Synthetic raw label -> S3DIS class; anything else is clutter.
_S3DIS_CLASS = {
    "floor": "floor", "wall": "wall", "door": "door", "window": "window", "table": "table", "desk": "table",
    "coffee table": "table", "dining table": "table", "chair": "chair", "office chair": "chair",
    "stool": "chair", "couch": "sofa", "sofa": "sofa", "bookshelf": "bookcase", "whiteboard": "board",
    "picture": "board",
}
_ROOM_NAMES = {"Office": "office", "Conference Room": "conferenceRoom", "Kitchen": "pantry",
               "Living room / Lounge": "lounge", "Bathroom": "WC", "Bedroom / Hotel": "storage"}


@dataclass
class SyntheticRoom:
    """Ground truth of one generated room (V points in the reader's order).

    semantic int16 [V]: index into S3DIS_NAMES; instance int32 [V]: 1..K in annotation-file order;
    files [K]: the annotation file of each instance.
    """

    area: str
    room: str
    folder: Path
    semantic: np.ndarray
    instance: np.ndarray
    files: list[str]

    @property
    def scene_id(self) -> str:
        return room_scene_id(self.area, self.room)

    @property
    def gt_ids(self) -> np.ndarray:
        """int32 [V]: (class index + 1) * 1000 + instance."""
        return room_gt_ids(self.semantic, self.instance)


@dataclass
class InjectedDefect:
    """What was injected: ``file`` relative to the release folder, 1-based ``line`` (None: whole file)."""

    kind: str
    scene_id: str
    file: str
    line: int | None = None


@dataclass
class SyntheticS3DIS:
    release: Path
    rooms: dict[str, SyntheticRoom] = field(default_factory=dict)
    defects: list[InjectedDefect] = field(default_factory=list)
    unreadable: list[str] = field(default_factory=list)


def _fmt(points: np.ndarray, rgb: np.ndarray) -> list[bytes]:
    """One ``x y z r g b`` line (no newline) per point: xyz float [N, 3] (3 decimals), rgb uint8 [N, 3]."""
    return [b"%.3f %.3f %.3f %d %d %d" % (*p, *c) for p, c in zip(points.tolist(), rgb.tolist())]


def _room_objects(rng: np.random.Generator, target_points: int) -> tuple[list[str], list[np.ndarray],
                                                                        list[np.ndarray]]:
    """S3DIS class, xyz float64 [n, 3] (rounded to mm) and rgb uint8 [n, 3] of every object of a room."""
    layout = plan_room(rng, str(rng.choice(ROOM_TYPES)))
    W, D, H = layout.width, layout.depth, layout.height
    spacing = 0.1
    for _ in range(2):  # two refinement passes towards the target count (about 1/6 added by the ceiling etc.)
        count = mesh_layout(layout, spacing).vertices.shape[0] * 1.25
        spacing = min(max(spacing * math.sqrt(count / target_points), 0.004), 1.0)
    room = mesh_layout(layout, spacing)
    colors = object_colors(layout, room, rng)
    classes, xyz, rgb = [], [], []
    for i, obj in enumerate(layout.objects):
        mask = room.object_index == i
        if mask.any():
            classes.append(_S3DIS_CLASS.get(obj.raw_label, "clutter"))
            xyz.append(room.vertices[mask])
            rgb.append(colors[mask])
    extras = [("ceiling", meshes.grid((0, 0, H), (0, D, 0), (W, 0, 0), spacing)),
              ("beam", meshes.box((W / 2, D / 2, H - 0.15), (W / 2 - 0.01, 0.12, 0.15), spacing, bottom=True)),
              ("column", meshes.box((0.2, 0.2, H / 2), (0.18, 0.18, H / 2 - 0.01), spacing))]
    for cls, mesh in extras:
        classes.append(cls)
        xyz.append(mesh.vertices)
        base = rng.integers(60, 230, 3)
        rgb.append(np.clip(base + rng.normal(0, 6, mesh.vertices.shape), 0, 255).astype(np.uint8))
    xyz = [np.round(p + rng.normal(0.0, min(0.003, 0.1 * spacing), p.shape), 3) for p in xyz]
    return classes, xyz, rgb


def generate_room(folder: Path, *, area: str, room: str, seed: int, points: int = 20000,
                  defects: tuple[str, ...] = ()) -> tuple[SyntheticRoom, list[InjectedDefect]]:
    """Write one room folder; returns its ground truth and the defects injected (see DEFECTS)."""
    unknown = set(defects) - set(DEFECTS)
    if unknown:
        raise ValueError(f"unknown defects {sorted(unknown)}; choose from {DEFECTS}")
    rng = np.random.default_rng(seed)
    classes, xyz, rgb = _room_objects(rng, points)
    scene_id = f"{area}_{room}"
    injected: list[InjectedDefect] = []
    counts: dict[str, int] = {}
    files: dict[str, tuple[str, list[bytes]]] = {}  # file name -> (class, lines)
    for cls, p, c in zip(classes, xyz, rgb):
        written = "stairs" if "stairs" in defects and cls == "clutter" and "stairs" not in counts else cls
        counts[written] = counts.get(written, 0) + 1
        files[f"{written}_{counts[written]}.txt"] = (cls, _fmt(p, c))
    ann = folder / "Annotations"
    rel = f"{area}/{room}/Annotations"
    names = sorted(files)
    wall = next(n for n in names if n.startswith("wall_"))
    line_ends = {n: b"\n" for n in names}
    raw_lines = {n: list(files[n][1]) for n in names}
    if "stairs" in defects:
        stairs = next(n for n in names if n.startswith("stairs_"))
        injected.append(InjectedDefect("stairs", scene_id, f"{rel}/{stairs}"))
    if "control_byte_in_number" in defects:  # b"1.234 ..." -> b"1.2\x1034 ...": deleting the byte repairs it
        line = raw_lines[wall][5]
        raw_lines[wall][5] = line[:3] + b"\x10" + line[3:]
        injected.append(InjectedDefect("control_byte_in_number", scene_id, f"{rel}/{wall}", 6))
    if "nul_fused_colours" in defects:  # the space between g and b becomes a NUL: five columns
        floor = next(n for n in names if n.startswith("floor_"))
        line = raw_lines[floor][10]
        cut = line.rindex(b" ")
        raw_lines[floor][10] = line[:cut] + b"\x00" + line[cut + 1:]
        injected.append(InjectedDefect("nul_fused_colours", scene_id, f"{rel}/{floor}", 11))
    if "unrepairable_line" in defects:  # an extra truncated line and an extra line of garbage: both dropped
        ceiling = next(n for n in names if n.startswith("ceiling_"))
        raw_lines[ceiling][3:3] = [b"1.250 2.5", b"1.2\x003.4 5.6\x00 7 8 9 10"]
        injected += [InjectedDefect("unrepairable_line", scene_id, f"{rel}/{ceiling}", 4),
                     InjectedDefect("unrepairable_line", scene_id, f"{rel}/{ceiling}", 5)]
    if "crlf" in defects:
        line_ends["column_1.txt"] = b"\r\n"
        injected.append(InjectedDefect("crlf", scene_id, f"{rel}/column_1.txt"))
    for name in names:
        atomic_write_bytes(ann / name, b"".join(line + line_ends[name] for line in raw_lines[name]))
    if "empty_file" in defects:
        empty = f"clutter_{counts.get('clutter', 0) + 1}.txt"
        atomic_write_bytes(ann / empty, b"")
        injected.append(InjectedDefect("empty_file", scene_id, f"{rel}/{empty}"))
    if "duplicate_file" in defects:
        atomic_write_bytes(ann / f"{wall[:-4]} (1).txt", (ann / wall).read_bytes())
        injected.append(InjectedDefect("duplicate_file", scene_id, f"{rel}/{wall[:-4]} (1).txt"))
    # The room file: every point, in a shuffled order (as in the release, not object by object).
    all_lines = [line for n in names for line in files[n][1]]
    all_lines = [all_lines[i] for i in rng.permutation(len(all_lines))]
    if "count_mismatch" in defects:
        del all_lines[:7]
        injected.append(InjectedDefect("count_mismatch", scene_id, f"{area}/{room}/{room}.txt"))
    if "control_byte_room_file" in defects:
        all_lines[2] = all_lines[2][:2] + b"\x16" + all_lines[2][2:]
        injected.append(InjectedDefect("control_byte_room_file", scene_id, f"{area}/{room}/{room}.txt", 3))
    room_name = f"{room[:2]}_{room[2:]}.txt" if "room_file_name" in defects else f"{room}.txt"
    if "room_file_name" in defects:
        injected.append(InjectedDefect("room_file_name", scene_id, f"{area}/{room}/{room_name}"))
    atomic_write_bytes(folder / room_name, b"".join(line + b"\n" for line in all_lines))
    order = annotation_order(names)
    semantic = np.concatenate([np.full(len(files[n][1]), S3DIS_NAMES.index(files[n][0]), np.int16) for n in order])
    instance = np.concatenate([np.full(len(files[n][1]), k, np.int32) for k, n in enumerate(order, start=1)])
    return SyntheticRoom(area, room, folder, semantic, instance, order), injected


def generate_s3dis(out_root: str | Path, *, num_rooms: int = 4, seed: int = 0, points_per_room: int = 20000,
                   defects: bool = False, areas: tuple[int, ...] = (1, 2, 3, 4, 5, 6)) -> SyntheticS3DIS:
    """Write ``num_rooms`` rooms (round-robin over ``areas``) under ``out_root/<aligned release>/``."""
    if num_rooms < 1 or points_per_room < 500:
        raise ValueError(f"need num_rooms >= 1 and points_per_room >= 500, got {num_rooms} and {points_per_room}")
    release = Path(out_root) / RELEASE_NAMES[0]
    result = SyntheticS3DIS(release)
    kinds = [k for k in DEFECTS if k != "unreadable_room"] if defects else []
    room_counts: dict[str, int] = {}
    for i in range(num_rooms):
        area = f"Area_{areas[i % len(areas)]}"
        rng = np.random.default_rng([seed, i])
        base = _ROOM_NAMES[str(rng.choice(ROOM_TYPES))]
        room_counts[f"{area}/{base}"] = room_counts.get(f"{area}/{base}", 0) + 1
        room = f"{base}_{room_counts[f'{area}/{base}']}"
        mine = tuple(k for j, k in enumerate(kinds) if j % num_rooms == i)
        gt, injected = generate_room(release / area / room, area=area, room=room, seed=seed * 1000 + i,
                                     points=points_per_room, defects=mine)
        result.rooms[gt.scene_id] = gt
        result.defects += injected
    if defects:
        area = f"Area_{areas[0]}"
        folder = release / area / "storage_99"
        atomic_write_bytes(folder / "storage_99.txt", b"1.000 2.000 3.000 10 20 30\n")
        result.unreadable.append(f"{area}_storage_99")
        result.defects.append(InjectedDefect("unreadable_room", f"{area}_storage_99", f"{area}/storage_99"))
    return result
