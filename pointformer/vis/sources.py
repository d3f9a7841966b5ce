"""What ``pointformer show`` reads: a scene (scan file or preprocessed scene), predictions, ground truth.

Scene: any scan file :func:`pointformer.io.clouds.read_cloud` reads (PLY mesh or cloud, LAS/LAZ, PCD,
NPY/NPZ, text), or a preprocessed scene ``<scene_id>.npz`` of the 3D dataset contract
(:mod:`pointformer.io.scene`), which brings its own ground truth.
Predictions: the files ``pointformer infer`` writes (:mod:`pointformer.io.predictions`).
Ground truth (``--gt``), one of:

- a preprocessed scene ``.npz`` (its ``instance`` ids; classes from ``gt_ids`` or the split's manifest);
- a ScanNet GT ``.txt``: ``label_id * 1000 + instance`` per vertex, 0 = unannotated (``pointformer.io.gt``);
- a per-point instance-id ``.npy`` (int [N], -1 = none, as ``S.instance_ids.npy``), with the per-point class
  ids in a second ``.npy`` (``gt_classes``), e.g. another run's infer outputs.

GT instances are restricted to the classes the predictions can have (their ``classes``), so walls and
floors of a ScanNet GT do not count as missed objects; without such a list, a preprocessed scene's
manifest ``thing_classes`` decide, and otherwise every GT instance is shown.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Mapping, Optional

import numpy as np

from pointformer.io.predictions import InstancePredictions
from pointformer.io.scene import Manifest, Scene, SceneFormatError, load_scene
from pointformer.vis.show import ShowScene


@dataclass
class GroundTruth:
    """GT instances of N points: ids int64 [N] (0..G-1, -1 = none) and class ids int64 [G]."""

    ids: np.ndarray
    classes: np.ndarray
    source: str


@dataclass
class ScenePoints:
    """The scene's points: xyz float [N, 3], rgb uint8 [N, 3] or None, faces int [F, 3] or None; ``scene``
    is the preprocessed scene when the file was one (it carries GT)."""

    xyz: np.ndarray
    rgb: Optional[np.ndarray]
    faces: Optional[np.ndarray]
    name: str
    scene: Optional[Scene] = None
    path: Optional[Path] = None
    double: bool = False  # the file stores float64 (or LAS scaled integer) coordinates


def is_preprocessed_scene(path: Path) -> bool:
    """Whether ``path`` is a preprocessed scene ``.npz`` (it has ``format_version`` and ``superpoint``)."""
    if path.suffix.lower() != ".npz" or not path.is_file():
        return False
    try:
        with np.load(path, allow_pickle=False) as data:
            return {"format_version", "superpoint", "xyz"} <= set(data.files)
    except (ValueError, OSError, EOFError):
        return False


def load_scene_points(path: str | os.PathLike) -> ScenePoints:
    """Read the scene (see the module docstring); errors name the file."""
    from pointformer.io.clouds import read_cloud

    path = Path(path)
    if is_preprocessed_scene(path):
        scene = load_scene(path)
        return ScenePoints(xyz=scene.xyz, rgb=scene.rgb, faces=None, name=scene.scene_id, scene=scene, path=path)
    cloud = read_cloud(path)
    return ScenePoints(xyz=cloud.xyz, rgb=cloud.rgb, faces=cloud.faces, name=path.stem, path=path,
                       double=cloud.double)


def _instances_from_labels(labels: np.ndarray, none_value: int) -> tuple[np.ndarray, np.ndarray]:
    """Contiguous ids int64 [N] (0..G-1, -1 = none) for arbitrary per-point labels, and the label of each."""
    member = labels != none_value
    values, inverse = np.unique(labels[member], return_inverse=True)
    ids = np.full(labels.shape, -1, dtype=np.int64)
    ids[member] = inverse.reshape(-1)
    return ids, values


def ground_truth_from_gt_ids(gt_ids: np.ndarray, source: str) -> GroundTruth:
    """GT from ScanNet evaluation ids int [N] (``label_id * 1000 + instance``, 0 = unannotated)."""
    ids, values = _instances_from_labels(np.asarray(gt_ids, dtype=np.int64), 0)
    return GroundTruth(ids=ids, classes=values // 1000, source=source)


def scene_ground_truth(scene: Scene, manifest: Optional[Manifest], where: str) -> GroundTruth:
    """GT of a preprocessed scene: its ``instance`` ids, classes from ``gt_ids`` (label*1000+inst) or the
    manifest's class ids of ``semantic`` (else the semantic index)."""
    ids, values = _instances_from_labels(scene.instance.astype(np.int64), 0)
    if scene.gt_ids is not None:
        point_class = scene.gt_ids.astype(np.int64) // 1000
    elif manifest is not None:
        lut = np.asarray(manifest.class_ids, dtype=np.int64)
        semantic = scene.semantic.astype(np.int64)
        point_class = np.where(semantic >= 0, lut[np.clip(semantic, 0, len(lut) - 1)], -1)
    else:
        point_class = scene.semantic.astype(np.int64)
    return GroundTruth(ids=ids, classes=_majority_class(ids, point_class, len(values)), source=where)


def _majority_class(ids: np.ndarray, point_class: np.ndarray, count: int) -> np.ndarray:
    """int64 [G]: the most frequent class among each instance's points (-1 when all are unlabelled)."""
    classes = np.full(count, -1, dtype=np.int64)
    member = (ids >= 0) & (point_class >= 0)
    if not member.any():
        return classes
    offset = int(point_class[member].max()) + 1
    pairs = np.unique(ids[member] * offset + point_class[member], return_counts=True)
    instance, label, votes = pairs[0] // offset, pairs[0] % offset, pairs[1]
    order = np.lexsort((-votes, instance))  # per instance, most votes first
    first = np.ones(len(order), dtype=bool)
    first[1:] = instance[order][1:] != instance[order][:-1]
    classes[instance[order][first]] = label[order][first]
    return classes


def _load_npy_ids(path: Path, num_points: int, what: str) -> np.ndarray:
    try:
        ids = np.load(path, allow_pickle=False)
    except FileNotFoundError:
        raise ValueError(f"{path}: {what} file not found") from None
    except Exception as exc:  # numpy raises several types for a corrupt file
        raise ValueError(f"{path}: not a readable .npy file ({type(exc).__name__}: {exc})") from None
    if ids.shape != (num_points,) or not np.issubdtype(ids.dtype, np.integer):
        raise ValueError(f"{path}: {what} must be integers [{num_points}] (one per point of the scene), "
                         f"got {ids.dtype} {ids.shape}")
    return ids.astype(np.int64)


def load_ground_truth(path: str | os.PathLike, num_points: int, *,
                      class_path: Optional[str | os.PathLike] = None) -> GroundTruth:
    """GT from ``path`` (see the module docstring) for a scene of ``num_points`` points; errors name the file."""
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix == ".npz":
        if not is_preprocessed_scene(path):
            raise ValueError(f"{path}: not a preprocessed scene (GT .npz files are preprocessed scenes)")
        scene = load_scene(path)
        gt = scene_ground_truth(scene, find_manifest(path), str(path))
    elif suffix == ".txt":
        from pointformer.evaluation.files import read_gt_ids

        labels = read_gt_ids(path)
        if labels.shape[0] != num_points:
            raise ValueError(f"{path}: {labels.shape[0]} GT lines but the scene has {num_points} points")
        gt = ground_truth_from_gt_ids(labels, str(path))
    elif suffix == ".npy":
        labels = _load_npy_ids(path, num_points, "GT instance ids")
        ids, values = _instances_from_labels(np.where(labels < 0, -1, labels), -1)
        point_class = (_load_npy_ids(Path(class_path), num_points, "GT class ids") if class_path
                       else np.full(num_points, -1, dtype=np.int64))
        gt = GroundTruth(ids=ids, classes=_majority_class(ids, point_class, len(values)), source=str(path))
    else:
        raise ValueError(f"{path}: unsupported GT file (a preprocessed scene .npz, a ScanNet GT .txt or an "
                         "instance-id .npy)")
    if gt.ids.shape[0] != num_points:
        raise ValueError(f"{path}: GT for {gt.ids.shape[0]} points but the scene has {num_points}")
    return gt


def find_manifest(scene_path: Path) -> Optional[Manifest]:
    """The split's manifest next to a preprocessed scene file, or None when there is none."""
    candidate = scene_path.parent / "manifest.json"
    if not candidate.is_file():
        return None
    try:
        return Manifest.load(candidate)
    except SceneFormatError:
        return None


def restrict_classes(gt: GroundTruth, allowed: Optional[set[int]]) -> GroundTruth:
    """Keep the GT instances of ``allowed`` classes (all when None), renumbered 0..G'-1."""
    if allowed is None:
        return gt
    keep = np.isin(gt.classes, sorted(allowed))
    renumber = np.full(len(gt.classes) + 1, -1, dtype=np.int64)
    renumber[np.flatnonzero(keep)] = np.arange(int(keep.sum()))
    return GroundTruth(ids=renumber[gt.ids], classes=gt.classes[keep], source=gt.source)


def build_show_scene(points: ScenePoints, predictions: InstancePredictions, gt: Optional[GroundTruth], *,
                     class_names: Optional[Mapping[int, str]] = None, min_score: float = 0.0) -> ShowScene:
    """The :class:`ShowScene` of a scene, its predictions (instances scoring below ``min_score`` are not
    shown) and optional GT; raises ValueError when the point counts disagree."""
    n = len(points.xyz)
    if predictions.num_points != n:
        raise ValueError(f"the predictions ({predictions.stem}) have {predictions.num_points} points but the scene "
                         f"{points.path or points.name} has {n}; were they made from this scan?")
    names = dict(predictions.classes)
    names.update(class_names or {})
    shown = [inst for inst in predictions.instances if inst.score >= min_score]
    renumber = np.full(len(predictions.instances) + 1, -1, dtype=np.int64)
    renumber[[inst.id for inst in shown]] = np.arange(len(shown))
    pred_ids = renumber[predictions.instance_ids]
    names.update({inst.class_id: inst.class_name for inst in predictions.instances if inst.class_id not in names})
    return ShowScene(xyz=np.asarray(points.xyz), rgb=points.rgb, faces=points.faces, pred_ids=pred_ids,
                     pred_classes=np.array([inst.class_id for inst in shown], dtype=np.int64),
                     pred_scores=np.array([inst.score for inst in shown], dtype=np.float64), class_names=names,
                     gt_ids=None if gt is None else gt.ids, gt_classes=None if gt is None else gt.classes,
                     name=points.name, double=points.double)
