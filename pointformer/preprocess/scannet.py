"""ScanNet v2 raw release -> preprocessed scenes, evaluation ground truth and manifests.

Output layout (see ``pointformer.io.scene`` for the scene contract)::

    OUT_DIR/<split>/<scene>.npz        one preprocessed scene (vertex order of the mesh kept)
    OUT_DIR/<split>/manifest.json      scenes, counts, class map, source checksums, notes
    OUT_DIR/gt/<split>/<scene>.txt     official instance GT: nyu40 * 1000 + instance per vertex
    OUT_DIR/gt200/<split>/<scene>.txt  ScanNet200 GT: raw-category id * 1000 + instance (0 = void)

Splits: ``train`` and ``val`` from the official lists ``scannetv2_{train,val}.txt`` when present
(in the release root or ``split_dir``), otherwise every scene under ``scans/`` goes to ``train``;
``test`` = every scene under ``scans_test/`` (superpoints computed with the mesh segmentator).

Both label sets come from one pass: ScanNet v2 classes from the label map's ``nyu40id`` column,
ScanNet200 classes (``semantic200`` in the scene, the gt200 files) from its ``id`` column.

Re-running resumes: a scene whose manifest entry matches the current source checksums and whose
files load (ScanNet200 labels and GT included) is skipped, so a folder preprocessed before
ScanNet200 support is upgraded by re-running the same command. Everything is written to a
temporary name and renamed, so an interrupted run leaves no half-written scene. One bad scene
never stops the others; the summary lists failures.
"""
from __future__ import annotations

import contextlib
import logging
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator, Mapping, Optional, Sequence

import numpy as np

from pointformer.io.gt import write_gt_file
from pointformer.io.labels import SCANNET200_IDS, SCANNET_SEMANTIC_IDS, SCANNET_SEMANTIC_NAMES
from pointformer.io.scannet import (
    LABEL_MAP_NAME, SPLIT_FILE_NAMES, RawScanNetScene, SceneFiles, ScanNetFormatError, discover_scenes,
    file_sha1, read_label_map, read_scannet200_map, read_scannet_scene, read_split_file,
)
from pointformer.io.scene import Manifest, Scene, SceneFormatError, load_scene, save_scene
from pointformer.preprocess.resume import RunSummary, resume_manifest, run_in_processes
from pointformer.preprocess.segmentator import segment_mesh, vertex_normals

logger = logging.getLogger(__name__)

SPLITS = ("train", "val", "test")
THING_CLASSES = list(range(2, len(SCANNET_SEMANTIC_IDS)))  # the 18 instance classes (indices)
_READER_LOGGER = "pointformer.io.scannet"


# ----------------------------------------------------------------------------------------------
# One scene


def convert_scene(raw: RawScanNetScene) -> tuple[Scene, Optional[np.ndarray]]:
    """Turn a raw scene into the preprocessed contract; returns (scene, gt_ids or None).

    xyz is axis-aligned when the scene gives an alignment; normals are unit vertex normals of the
    aligned mesh; superpoints are the release's segments (annotated scenes) or the segmentator's
    (test scenes), renumbered 0..S-1; semantic indexes SCANNET_SEMANTIC_IDS (-1 otherwise);
    instance = objectId + 1 (0 = none); gt_ids = nyu40 * 1000 + instance (0 = unannotated);
    semantic200 (when the raw scene carries ``raw_id``) = the raw-category id if it is one of the 200
    ScanNet200 ids, else 0 (void).
    """
    xyz = raw.vertices.astype(np.float64)
    if raw.meta.axis_alignment is not None:
        m = raw.meta.axis_alignment
        xyz = xyz @ m[:3, :3].T + m[:3, 3]
    xyz = xyz.astype(np.float32)
    normals = vertex_normals(xyz, raw.faces)
    seg = raw.seg_indices if raw.seg_indices is not None else segment_mesh(raw.vertices, raw.faces)
    _, superpoint = np.unique(seg, return_inverse=True)
    n = raw.num_vertices
    gt_ids: Optional[np.ndarray] = None
    semantic200: Optional[np.ndarray] = None
    if raw.annotated:
        assert raw.instance is not None and raw.nyu40 is not None
        nyu40 = raw.nyu40.astype(np.int64)
        lookup = np.full(max(int(nyu40.max(initial=0)), max(SCANNET_SEMANTIC_IDS)) + 1, -1, dtype=np.int16)
        lookup[list(SCANNET_SEMANTIC_IDS)] = np.arange(len(SCANNET_SEMANTIC_IDS), dtype=np.int16)
        semantic = np.where(nyu40 >= 0, lookup[np.clip(nyu40, 0, None)], -1).astype(np.int16)
        semantic[raw.instance == 0] = -1
        instance = raw.instance.astype(np.int32)
        gt_ids = np.where((instance > 0) & (nyu40 > 0), nyu40 * 1000 + instance, 0).astype(np.int32)
        if raw.raw_id is not None:
            valid = np.isin(raw.raw_id, SCANNET200_IDS) & (instance > 0)
            semantic200 = np.where(valid, raw.raw_id, 0).astype(np.int16)
    else:
        semantic = np.full(n, -1, dtype=np.int16)
        instance = np.zeros(n, dtype=np.int32)
    scene = Scene(scene_id=raw.scene_id, xyz=xyz, rgb=raw.colors.astype(np.uint8), normals=normals,
                  superpoint=superpoint.astype(np.int32).reshape(-1), semantic=semantic, instance=instance,
                  num_mesh_vertices=n, gt_ids=gt_ids, semantic200=semantic200)
    return scene, gt_ids


@dataclass
class SceneTask:
    scene_id: str
    folder: Path
    split: str
    out_dir: Path
    previous: Optional[dict[str, Any]] = None  # the scene's current manifest entry, if any
    force: bool = False


@dataclass
class SceneResult:
    scene_id: str
    split: str
    status: str                       # "done" | "skipped" | "failed"
    entry: Optional[dict[str, Any]] = None
    error: str = ""
    notes: list[str] = field(default_factory=list)
    seconds: float = 0.0


def _scene_paths(task: SceneTask) -> tuple[Path, Path, Path]:
    """The scene's npz, ScanNet v2 GT file and ScanNet200 GT file."""
    name = f"{task.scene_id}.txt"
    return (task.out_dir / task.split / f"{task.scene_id}.npz", task.out_dir / "gt" / task.split / name,
            task.out_dir / "gt200" / task.split / name)


def _line_count(path: Path) -> Optional[int]:
    try:
        with open(path, "rb") as f:
            return f.read().count(b"\n")
    except OSError:
        return None


def _source_files(task: SceneTask) -> list[Path]:
    files = SceneFiles(scene_id=task.scene_id, folder=task.folder)
    paths = [files.mesh, files.meta]
    if task.split != "test":
        paths += [files.labels, files.segs, files.aggregation]
    return [p for p in paths if p.exists()]


def _checksums(task: SceneTask, label_map_sha1: Optional[str]) -> dict[str, str]:
    sums = {p.name: file_sha1(p) for p in _source_files(task)}
    if task.split != "test" and label_map_sha1:
        sums[LABEL_MAP_NAME] = label_map_sha1
    return sums


def _is_finished(task: SceneTask, sums: dict[str, str]) -> bool:
    """Whether the previous output of this scene is complete and made from the same sources."""
    entry = task.previous
    if task.force or not entry or entry.get("source_sha1") != sums:
        return False
    npz, gt, gt200 = _scene_paths(task)
    try:
        scene = load_scene(npz)
    except SceneFormatError:
        return False
    if scene.scene_id != task.scene_id or scene.num_points != entry.get("num_points"):
        return False
    if task.split != "test":
        # A scene preprocessed before ScanNet200 support lacks semantic200 and the gt200 file: redone.
        if scene.semantic200 is None or "gt200_file" not in entry:
            return False
        if _line_count(gt) != scene.num_points or _line_count(gt200) != scene.num_points:
            return False
    return True


_WORKER_LABEL_MAP: Optional[dict[str, int]] = None
_WORKER_LABEL_MAP_SHA1: Optional[str] = None
_WORKER_SCANNET200_MAP: Optional[dict[str, int]] = None


def _init_worker(label_map: Optional[dict[str, int]], label_map_sha1: Optional[str],
                 scannet200_map: Optional[dict[str, int]]) -> None:
    global _WORKER_LABEL_MAP, _WORKER_LABEL_MAP_SHA1, _WORKER_SCANNET200_MAP
    _WORKER_LABEL_MAP, _WORKER_LABEL_MAP_SHA1 = label_map, label_map_sha1
    _WORKER_SCANNET200_MAP = scannet200_map
    # The main process logs every scene's notes once; the reader stays quiet inside workers.
    logging.getLogger(_READER_LOGGER).disabled = True


def process_scene(task: SceneTask, label_map: Optional[Mapping[str, int]],
                  label_map_sha1: Optional[str] = None,
                  scannet200_map: Optional[Mapping[str, int]] = None) -> SceneResult:
    """Convert one scene (or verify and skip it); never raises for a bad scene.

    ``label_map``: raw_category -> nyu40id; ``scannet200_map``: raw_category -> raw-category id
    (:func:`pointformer.io.scannet.read_scannet200_map`), which adds the ScanNet200 labels and GT
    (without it an annotated scene gets the ScanNet v2 labels only and counts as not finished).
    """
    start = time.perf_counter()
    try:
        sums = _checksums(task, label_map_sha1)
        if _is_finished(task, sums):
            return SceneResult(task.scene_id, task.split, "skipped", entry=task.previous,
                               seconds=time.perf_counter() - start)
        raw = read_scannet_scene(task.folder, label_map, require_annotations=task.split != "test",
                                 scannet200_map=scannet200_map)
        scene, gt_ids = convert_scene(raw)
        npz, gt, gt200 = _scene_paths(task)
        save_scene(scene, npz)
        entry: dict[str, Any] = {
            "file": npz.name, "num_points": scene.num_points,
            "num_superpoints": int(scene.superpoint.max()) + 1,
            "num_instances": int(np.unique(scene.instance[scene.instance > 0]).shape[0]),
            "source_sha1": sums, "scene_type": raw.meta.scene_type,
            "axis_aligned": raw.meta.axis_alignment is not None, "notes": list(raw.notes),
        }
        if gt_ids is not None:
            write_gt_file(gt, gt_ids)
            entry["gt_file"] = str(gt.relative_to(task.out_dir))
        gt200_ids = scene.scannet200_gt_ids()
        if gt200_ids is not None:
            write_gt_file(gt200, gt200_ids)
            entry["gt200_file"] = str(gt200.relative_to(task.out_dir))
        return SceneResult(task.scene_id, task.split, "done", entry=entry, notes=list(raw.notes),
                           seconds=time.perf_counter() - start)
    except (ValueError, OSError) as exc:
        # ScanNetFormatError / PlyFormatError / SceneFormatError are ValueErrors naming scene and file.
        message = str(exc)
        if task.scene_id not in message:
            message = f"scene {task.scene_id}: {message}"
        return SceneResult(task.scene_id, task.split, "failed", error=message,
                           seconds=time.perf_counter() - start)
    except Exception as exc:  # a bug must not stop the other scenes either; report it with its type
        return SceneResult(task.scene_id, task.split, "failed",
                           error=f"scene {task.scene_id}: unexpected {type(exc).__name__}: {exc}",
                           seconds=time.perf_counter() - start)


def _process_in_worker(task: SceneTask) -> SceneResult:
    return process_scene(task, _WORKER_LABEL_MAP, _WORKER_LABEL_MAP_SHA1, _WORKER_SCANNET200_MAP)


# ----------------------------------------------------------------------------------------------
# The whole release


@dataclass
class SplitPlan:
    """Scenes per split (id -> folder) and what planning noticed."""

    scenes: dict[str, dict[str, Path]]
    notes: list[str] = field(default_factory=list)
    from_split_files: bool = False


def plan_splits(raw_root: str | os.PathLike, split_dir: Optional[str | os.PathLike] = None) -> SplitPlan:
    """Assign the scenes under ``scans/`` and ``scans_test/`` to train / val / test."""
    raw_root = Path(raw_root)
    split_dir = Path(split_dir) if split_dir is not None else raw_root
    scans = discover_scenes(raw_root / "scans")
    tests = discover_scenes(raw_root / "scans_test")
    plan = SplitPlan(scenes={s: {} for s in SPLITS})
    lists = {s: split_dir / SPLIT_FILE_NAMES[s] for s in SPLITS}
    have = {s: lists[s].exists() for s in ("train", "val")}
    if not any(have.values()):
        plan.scenes["train"] = {s: raw_root / "scans" / s for s in scans}
        if scans:
            plan.notes.append(f"no {SPLIT_FILE_NAMES['train']} / {SPLIT_FILE_NAMES['val']} in {split_dir}: "
                              f"all {len(scans)} scenes under scans/ go to the train split")
    else:
        plan.from_split_files = True
        listed = {s: read_split_file(lists[s]) for s in ("train", "val") if have[s]}
        present = set(scans)
        for s, ids in listed.items():
            missing = [i for i in ids if i not in present]
            if missing:
                plan.notes.append(f"{len(missing)} scenes listed in {lists[s].name} are missing under scans/ "
                                  f"(e.g. {missing[0]})")
            plan.scenes[s] = {i: raw_root / "scans" / i for i in ids if i in present}
        both = set(plan.scenes["train"]) & set(plan.scenes["val"])
        if both:
            raise ScanNetFormatError(f"{split_dir}: scenes listed in both the train and the val split: "
                                     f"{sorted(both)[:5]}")
        for s in ("train", "val"):
            if not have[s]:
                other = "val" if s == "train" else "train"
                plan.scenes[s] = {i: raw_root / "scans" / i for i in scans if i not in plan.scenes[other]}
                if plan.scenes[s]:
                    plan.notes.append(f"{lists[s].name} not found: the {len(plan.scenes[s])} scenes under scans/ "
                                      f"not in {SPLIT_FILE_NAMES[other]} go to {s}")
        unlisted = [i for i in scans if i not in plan.scenes["train"] and i not in plan.scenes["val"]]
        if unlisted:
            plan.notes.append(f"{len(unlisted)} scenes under scans/ are in no split file and are skipped "
                              f"(e.g. {unlisted[0]})")
    plan.scenes["test"] = {s: raw_root / "scans_test" / s for s in tests}
    if lists["test"].exists():
        listed_test = set(read_split_file(lists["test"]))
        missing = sorted(listed_test - set(tests))
        if missing:
            plan.notes.append(f"{len(missing)} scenes listed in {lists['test'].name} are missing under "
                              f"scans_test/ (e.g. {missing[0]})")
    return plan


@dataclass
class PreprocessSummary(RunSummary):
    notes: dict[str, list[str]] = field(default_factory=dict)

    def details(self) -> list[str]:
        return [f"{len(self.notes)} scenes had repaired defects (see the manifests' 'notes')"] if self.notes else []


def _load_manifest(path: Path, split: str) -> Manifest:
    return resume_manifest(path, Manifest(dataset="scannet", split=split, class_names=list(SCANNET_SEMANTIC_NAMES),
                                          class_ids=list(SCANNET_SEMANTIC_IDS), thing_classes=list(THING_CLASSES)))


def _drop_scenes_left_the_split(manifest: Manifest, assigned: Mapping[str, Path], out_dir: Path) -> None:
    """Remove the outputs of scenes a previous run put in this split but the split lists no longer
    do (changed split files): otherwise a scene could be trained on and validated on at once."""
    for scene_id in sorted(set(manifest.scenes) - set(assigned)):
        entry = manifest.scenes.pop(scene_id)
        for path in (out_dir / manifest.split / entry.get("file", f"{scene_id}.npz"),
                     out_dir / "gt" / manifest.split / f"{scene_id}.txt",
                     out_dir / "gt200" / manifest.split / f"{scene_id}.txt"):
            with contextlib.suppress(FileNotFoundError):
                path.unlink()
        logger.warning("scene %s: no longer in the %s split (changed split files?); removed its output "
                       "from %s", scene_id, manifest.split, out_dir / manifest.split)


def _remove_stale_temp_files(folder: Path) -> None:
    """Temporary files of an interrupted run (``.<name>.<random>.tmp``) are never valid output."""
    if folder.is_dir():
        for p in folder.glob(".*.tmp"):
            with contextlib.suppress(OSError):
                p.unlink()


@contextlib.contextmanager
def _quiet_reader() -> Iterator[None]:
    reader = logging.getLogger(_READER_LOGGER)
    before = reader.disabled
    reader.disabled = True
    try:
        yield
    finally:
        reader.disabled = before


def preprocess_scannet(raw_root: str | os.PathLike, out_dir: str | os.PathLike, *, workers: int = 1,
                       splits: Sequence[str] = SPLITS, label_map_path: Optional[str | os.PathLike] = None,
                       split_dir: Optional[str | os.PathLike] = None, scenes: Optional[Sequence[str]] = None,
                       force: bool = False, progress: bool = True) -> PreprocessSummary:
    """Preprocess a ScanNet v2 release (see the module docstring); returns the summary.

    Raises ValueError only for problems of the whole run (no raw root, no label map for annotated
    scenes, bad split names); a bad scene is reported in ``summary.failed`` and the others go on.
    """
    start = time.perf_counter()
    raw_root, out_dir = Path(raw_root), Path(out_dir)
    if not raw_root.is_dir():
        raise ValueError(f"{raw_root}: ScanNet root folder not found")
    unknown = [s for s in splits if s not in SPLITS]
    if unknown:
        raise ValueError(f"unknown splits {unknown}; choose from {list(SPLITS)}")
    if workers < 1:
        raise ValueError(f"workers must be >= 1, got {workers}")
    if not (raw_root / "scans").is_dir() and not (raw_root / "scans_test").is_dir():
        raise ValueError(f"{raw_root}: neither scans/ nor scans_test/ exists (is this the ScanNet v2 root?)")
    plan = plan_splits(raw_root, split_dir)
    for note in plan.notes:
        logger.warning(note)
    wanted = set(scenes) if scenes else None
    per_split = {s: {k: v for k, v in plan.scenes[s].items() if wanted is None or k in wanted} for s in splits}
    if wanted:
        found = set().union(*[set(v) for v in per_split.values()]) if per_split else set()
        for missing in sorted(wanted - found):
            logger.warning("scene %s: not found in the selected splits of %s", missing, raw_root)

    if not any(per_split.values()):
        raise ValueError(f"{raw_root}: no scene folders (scene*) under scans/ or scans_test/ for the splits "
                         f"{list(splits)}" + (f" and scenes {sorted(wanted)[:5]}" if wanted else ""))
    label_map: Optional[dict[str, int]] = None
    scannet200_map: Optional[dict[str, int]] = None
    label_map_sha1: Optional[str] = None
    if any(per_split.get(s) for s in ("train", "val")):
        path = Path(label_map_path) if label_map_path else raw_root / LABEL_MAP_NAME
        label_map = read_label_map(path)
        scannet200_map = read_scannet200_map(path)
        label_map_sha1 = file_sha1(path)

    manifests: dict[str, Manifest] = {}
    tasks: list[SceneTask] = []
    for split in splits:
        folder = out_dir / split
        if not per_split[split] and not (folder / "manifest.json").exists():
            continue
        folder.mkdir(parents=True, exist_ok=True)
        _remove_stale_temp_files(folder)
        _remove_stale_temp_files(out_dir / "gt" / split)
        _remove_stale_temp_files(out_dir / "gt200" / split)
        manifests[split] = _load_manifest(folder / "manifest.json", split)
        if wanted is None:
            _drop_scenes_left_the_split(manifests[split], per_split[split], out_dir)
        for scene_id, scene_folder in sorted(per_split[split].items()):
            tasks.append(SceneTask(scene_id, scene_folder, split, out_dir,
                                   previous=manifests[split].scenes.get(scene_id), force=force))

    summary = PreprocessSummary()
    last_save = time.perf_counter()

    def save_manifests() -> None:
        for split, manifest in manifests.items():
            manifest.save(out_dir / split / "manifest.json")

    def record(result: SceneResult) -> None:
        nonlocal last_save
        manifest = manifests[result.split]
        if result.status == "failed":
            summary.failed[result.scene_id] = result.error
            manifest.scenes.pop(result.scene_id, None)
            logger.error(result.error)
        else:
            (summary.done if result.status == "done" else summary.skipped).append(result.scene_id)
            manifest.scenes[result.scene_id] = result.entry or {}
            for note in result.notes:
                logger.warning("scene %s: %s", result.scene_id, note)
            if result.entry and result.entry.get("notes"):
                summary.notes[result.scene_id] = list(result.entry["notes"])
        if time.perf_counter() - last_save > 2.0:  # bounded cost of a crash: at most 2 s of work
            save_manifests()
            last_save = time.perf_counter()

    with contextlib.ExitStack() as stack:
        stack.callback(save_manifests)  # runs last: also after an interruption or an error
        bar = stack.enter_context(contextlib.closing(_progress_bar(len(tasks), enabled=progress)))
        if progress:
            from tqdm.contrib.logging import logging_redirect_tqdm

            stack.enter_context(logging_redirect_tqdm())  # log lines above the bar, not through it
        if workers == 1 or len(tasks) <= 1:
            stack.enter_context(_quiet_reader())
            results: Iterator[SceneResult] = (process_scene(t, label_map, label_map_sha1, scannet200_map)
                                              for t in tasks)
        else:
            results = _run_parallel(tasks, workers, label_map, label_map_sha1, scannet200_map)
        for result in results:
            record(result)
            bar.update(1)
    summary.seconds = time.perf_counter() - start
    return summary


def _run_parallel(tasks: list[SceneTask], workers: int, label_map: Optional[dict[str, int]],
                  label_map_sha1: Optional[str], scannet200_map: Optional[dict[str, int]]) -> Iterator[SceneResult]:
    """Results in completion order; a dead worker fails its pending scenes instead of hanging the run."""
    return run_in_processes(
        _process_in_worker, tasks, workers, initializer=_init_worker,
        initargs=(label_map, label_map_sha1, scannet200_map),
        on_worker_death=lambda task: SceneResult(
            task.scene_id, task.split, "failed", error=f"scene {task.scene_id}: {task.folder}: a worker process "
                                                       "died while this scene was pending (out of memory?); re-run "
                                                       "to retry it"))


class _NoBar:
    def update(self, n: int) -> None:
        pass

    def close(self) -> None:
        pass


def _progress_bar(total: int, *, enabled: bool):
    if not enabled or total == 0:
        return _NoBar()
    from tqdm import tqdm

    return tqdm(total=total, unit="scene", desc="preprocess scannet", dynamic_ncols=True)
