"""S3DIS raw release -> preprocessed scenes (the ScanNet scene contract), evaluation GT, manifests, a report.

Output layout (see ``pointformer.io.scene`` for the scene contract)::

    OUT_DIR/Area_<n>/<room>.npz              scene ``Area_<n>_<room>``: every annotated point, as written
    OUT_DIR/Area_<n>/manifest.json           dataset "s3dis", the 13 classes, one entry per room
    OUT_DIR/gt/Area_<n>/Area_<n>_<room>.txt  evaluation GT: (class index + 1) * 1000 + instance per point
    OUT_DIR/preprocess_report.json           every repair, dropped line and noticed defect, and failures

Each area is a split (``PreprocessedDataset(OUT_DIR, "Area_5", expected_dataset="s3dis")``). ``semantic``
indexes ``S3DIS_NAMES``; ``instance`` is 1..K, one per non-empty annotation file; ``normals`` are zeros
(a bare point cloud has none); superpoints: the kNN point-cloud segmentator by default, or voxel cells
(``superpoints="cells"``, ``cell`` metres).

Re-running resumes: a room whose manifest entry matches the current source checksums, method and whose
files load is skipped. Writes are atomic; one bad room never stops the others.
"""
from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, Iterator, Optional

import numpy as np

from pointformer.io.atomic import atomic_write_json
from pointformer.io.gt import write_gt_file
from pointformer.io.labels import S3DIS_IDS, S3DIS_NAMES
from pointformer.io.s3dis import (
    RawRoom, S3DISFormatError, discover_rooms, read_alignment_angles, read_room, release_root,
)
from pointformer.io.scene import Manifest, Scene, SceneFormatError, load_scene, save_scene
from pointformer.preprocess.cloud_segmentator import cell_superpoints, segment_cloud
from pointformer.preprocess.resume import RunSummary, resume_manifest, run_in_processes

logger = logging.getLogger(__name__)

REPORT_NAME = "preprocess_report.json"
SUPERPOINT_METHODS = ("knn", "cells")
# The kNN segmentator: the purity of 5 cm cells with ~120x fewer superpoints (BENCHMARKS.md, "Superpoints for
# point clouds"); cells (OneFormer3D's 5 cm voxels) stay an option.
DEFAULT_SUPERPOINTS = "knn"
DEFAULT_CELL = 0.05  # metres


def room_superpoints(xyz: np.ndarray, rgb: np.ndarray, method: str, cell: float = DEFAULT_CELL) -> np.ndarray:
    """int32 [V] contiguous superpoint ids of a room (xyz float [V, 3], rgb uint8 [V, 3]).

    ``method``: "knn" (the kNN point-cloud segmentator, :func:`segment_cloud` with its defaults) or
    "cells" (``cell``-metre voxel cells, :func:`cell_superpoints`).
    """
    if method == "knn":
        return segment_cloud(xyz, rgb).astype(np.int32)
    if method == "cells":
        return cell_superpoints(xyz, cell).astype(np.int32)
    raise ValueError(f"unknown superpoint method {method!r}; choose from {SUPERPOINT_METHODS}")


def convert_room(raw: RawRoom, superpoints: str = DEFAULT_SUPERPOINTS, cell: float = DEFAULT_CELL) -> Scene:
    """The scene of a raw room: xyz as written (float32), zero normals, gt_ids = class id * 1000 + instance."""
    xyz = raw.xyz.astype(np.float32)
    return Scene(scene_id=raw.scene_id, xyz=xyz, rgb=raw.rgb, normals=np.zeros_like(xyz),
                 superpoint=room_superpoints(xyz, raw.rgb, superpoints, cell), semantic=raw.semantic,
                 instance=raw.instance, num_mesh_vertices=raw.xyz.shape[0], gt_ids=raw.gt_ids)


@dataclass
class RoomTask:
    release: str
    area: str
    room: str
    out_dir: str
    superpoints: str
    cell: float
    alignment_angle: Optional[float] = None
    previous: Optional[dict[str, Any]] = None
    force: bool = False

    @property
    def scene_id(self) -> str:
        return f"{self.area}_{self.room}"

    def paths(self) -> tuple[Path, Path]:
        """The room's npz and GT file."""
        out = Path(self.out_dir)
        return out / self.area / f"{self.room}.npz", out / "gt" / self.area / f"{self.scene_id}.txt"


@dataclass
class RoomResult:
    scene_id: str
    area: str
    status: str                       # "done" | "skipped" | "failed"
    entry: Optional[dict[str, Any]] = None
    error: str = ""
    seconds: float = 0.0


def _sha1(path: Path) -> str:
    h = hashlib.sha1()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 22), b""):
            h.update(chunk)
    return h.hexdigest()


def _checksums(task: RoomTask) -> dict[str, str]:
    """sha1 of every file of the room folder (annotations, duplicates and the room file), by relative path."""
    folder = Path(task.release) / task.area / task.room
    return {str(p.relative_to(folder)): _sha1(p) for p in sorted(folder.rglob("*")) if p.is_file()}


def _is_finished(task: RoomTask, sums: dict[str, str]) -> bool:
    entry = task.previous
    if task.force or not entry or entry.get("source_sha1") != sums:
        return False
    if entry.get("superpoints") != task.superpoints or entry.get("cell") != task.cell:
        return False
    npz, gt = task.paths()
    try:
        scene = load_scene(npz)
    except SceneFormatError:
        return False
    if scene.scene_id != task.scene_id or scene.num_points != entry.get("num_points") or not gt.is_file():
        return False
    with open(gt, "rb") as f:
        return f.read().count(b"\n") == scene.num_points


def process_room(task: RoomTask) -> RoomResult:
    """Convert one room (or verify and skip it); never raises for a bad room."""
    start = time.perf_counter()
    try:
        sums = _checksums(task)
        if _is_finished(task, sums):
            return RoomResult(task.scene_id, task.area, "skipped", entry=task.previous,
                              seconds=time.perf_counter() - start)
        raw = read_room(Path(task.release), task.area, task.room, alignment_angle=task.alignment_angle)
        scene = convert_room(raw, task.superpoints, task.cell)
        npz, gt = task.paths()
        save_scene(scene, npz)
        write_gt_file(gt, scene.gt_ids)
        entry = {
            "file": npz.name, "num_points": scene.num_points,
            "num_superpoints": int(scene.superpoint.max()) + 1, "num_instances": len(raw.instance_files),
            "instance_files": raw.instance_files, "source_sha1": sums, "superpoints": task.superpoints,
            "cell": task.cell, "alignment_angle": raw.alignment_angle,
            "gt_file": str(gt.relative_to(Path(task.out_dir))), "issues": [i.as_dict() for i in raw.issues],
        }
        return RoomResult(task.scene_id, task.area, "done", entry=entry, seconds=time.perf_counter() - start)
    except (ValueError, OSError) as exc:
        message = str(exc)
        if f"{task.area}/{task.room}" not in message and task.scene_id not in message:
            message = f"room {task.area}/{task.room}: {message}"
        return RoomResult(task.scene_id, task.area, "failed", error=message, seconds=time.perf_counter() - start)
    except Exception as exc:  # a bug must not stop the other rooms either; report it with its type
        return RoomResult(task.scene_id, task.area, "failed", seconds=time.perf_counter() - start,
                          error=f"room {task.area}/{task.room}: unexpected {type(exc).__name__}: {exc}")


@dataclass
class S3DISSummary(RunSummary):
    """Rooms done / skipped / failed (scene id -> reason), points, issue counts and the report's path."""

    num_points: int = 0
    num_issues: int = 0
    report: Optional[Path] = None
    unit: ClassVar[str] = "rooms"

    def counts(self) -> str:
        return f"; {self.num_points} points"

    def details(self) -> list[str]:
        return [f"{self.num_issues} repairs / dropped lines / noticed defects: see {self.report}"]


def _load_manifest(path: Path, area: str) -> Manifest:
    return resume_manifest(path, Manifest(dataset="s3dis", split=area, class_names=list(S3DIS_NAMES),
                                          class_ids=list(S3DIS_IDS), thing_classes=list(range(len(S3DIS_NAMES)))))


def _run_parallel(tasks: list[RoomTask], workers: int) -> Iterator[RoomResult]:
    """Results in completion order; a dead worker fails its pending rooms instead of hanging the run."""
    return run_in_processes(process_room, tasks, workers, on_worker_death=lambda task: RoomResult(
        task.scene_id, task.area, "failed", error=f"room {task.area}/{task.room}: a worker process died while this "
                                                  "room was pending (out of memory?); re-run to retry it"))


def preprocess_s3dis(raw_root: str | os.PathLike, out_dir: str | os.PathLike, *, workers: int = 1,
                     superpoints: str = DEFAULT_SUPERPOINTS, cell: float = DEFAULT_CELL,
                     force: bool = False) -> S3DISSummary:
    """Preprocess an S3DIS release (see the module docstring); returns the summary.

    Raises ValueError (S3DISFormatError) only for problems of the whole run (no release, bad options);
    a bad room is reported in ``summary.failed`` and in the report, and the others go on.
    """
    start = time.perf_counter()
    if workers < 1:
        raise ValueError(f"workers must be >= 1, got {workers}")
    if superpoints not in SUPERPOINT_METHODS:
        raise ValueError(f"unknown superpoint method {superpoints!r}; choose from {SUPERPOINT_METHODS}")
    if not cell > 0:
        raise ValueError(f"cell must be positive, got {cell}")
    release = release_root(raw_root)
    out_dir = Path(out_dir)
    rooms = discover_rooms(release)
    if not any(rooms.values()):
        raise S3DISFormatError(f"{release}: no room folders under the Area_N folders")
    manifests: dict[str, Manifest] = {}
    tasks: list[RoomTask] = []
    for area, names in rooms.items():
        (out_dir / area).mkdir(parents=True, exist_ok=True)
        manifests[area] = _load_manifest(out_dir / area / "manifest.json", area)
        angles = read_alignment_angles(release / area)
        for room in names:
            scene_id = f"{area}_{room}"
            tasks.append(RoomTask(str(release), area, room, str(out_dir), superpoints, float(cell),
                                  alignment_angle=angles.get(room), previous=manifests[area].scenes.get(scene_id),
                                  force=force))
    summary = S3DISSummary(report=out_dir / REPORT_NAME)

    def save() -> None:
        for area, manifest in manifests.items():
            manifest.save(out_dir / area / "manifest.json")
        entries = {sid: e for m in manifests.values() for sid, e in sorted(m.scenes.items())}
        atomic_write_json(out_dir / REPORT_NAME, {
            "release": str(release), "superpoints": superpoints, "cell": cell,
            "rooms_done": len(summary.done), "rooms_skipped": len(summary.skipped),
            "failed": dict(sorted(summary.failed.items())),
            "issues": {sid: e.get("issues", []) for sid, e in entries.items() if e.get("issues")},
        }, indent=1)

    with contextlib.ExitStack() as stack:
        stack.callback(save)  # runs also after an interruption
        results = (process_room(t) for t in tasks) if workers == 1 or len(tasks) <= 1 \
            else _run_parallel(tasks, workers)
        for result in results:
            manifest = manifests[result.area]
            if result.status == "failed":
                summary.failed[result.scene_id] = result.error
                manifest.scenes.pop(result.scene_id, None)
                logger.error(result.error)
                continue
            (summary.done if result.status == "done" else summary.skipped).append(result.scene_id)
            manifest.scenes[result.scene_id] = result.entry or {}
    for manifest in manifests.values():
        for entry in manifest.scenes.values():
            summary.num_points += int(entry.get("num_points", 0))
            summary.num_issues += len(entry.get("issues", []))
    summary.seconds = time.perf_counter() - start
    return summary
