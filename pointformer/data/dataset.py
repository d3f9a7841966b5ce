"""Datasets over preprocessed scenes (``<root>/<split>/manifest.json`` + one ``.npz`` per scene).

Items are addressed by ``(epoch, index)`` keys as well as plain indices: the augmentation generator
is seeded from (seed, epoch, index), so a scene's augmentation is a pure function of its key. That is
what lets a resumed run see exactly the scenes the uninterrupted run would have seen.

Label sets: a folder written by ``pointformer preprocess scannet`` (manifest dataset ``scannet``)
serves two benchmarks. ``expected_dataset="scannet"`` trains on the manifest's classes (the ScanNet v2
``semantic``); ``expected_dataset="scannet200"`` on the scenes' ``semantic200`` with the 198 ScanNet200
instance classes (``pointformer.io.labels``), and its evaluation GT is the ScanNet200 GT.

Several splits: ``split`` may name several folders (S3DIS: one folder per area, training on five of
them); their manifests must agree on the dataset and the classes, and the scenes are concatenated
in the given folder order.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional, Sequence, Union

import numpy as np
from torch.utils.data import Dataset

from pointformer.data.targets import SceneTargets, superpoint_targets
from pointformer.data.transforms import Compose, NeighbourPlacement, PointSample, RandomCuboidCrop
from pointformer.io.labels import SCANNET200_IDS, SCANNET200_INSTANCE_IDS, SCANNET200_NAMES
from pointformer.io.scene import Manifest, Scene, SceneFormatError, load_scene

Key = Union[int, tuple[int, int]]

SCANNET200 = "scannet200"
# Expected dataset -> the manifest dataset whose folders serve it (ScanNet200: the ScanNet folders).
_MANIFEST_DATASET = {SCANNET200: "scannet"}
# ScanNet200 id -> index into SCANNET200_IDS (-1: void), and the indices of the 198 instance classes.
_SCANNET200_INDEX = np.full(max(SCANNET200_IDS) + 1, -1, dtype=np.int16)
_SCANNET200_INDEX[list(SCANNET200_IDS)] = np.arange(len(SCANNET200_IDS), dtype=np.int16)
_SCANNET200_THING_CLASSES = [int(_SCANNET200_INDEX[i]) for i in SCANNET200_INSTANCE_IDS]


class DatasetConfigError(ValueError):
    """The dataset configuration points at missing or inconsistent data (message says what to do)."""


@dataclass
class SceneSample:
    """One (augmented) scene ready for collation (V points, S superpoints).

    xyz float32 [V, 3] (augmented coordinates), features float32 [V, C] (network input: normalised
    colour, optionally normals), superpoint int64 [V] (0..S-1), targets per superpoint, and for
    evaluation the benchmark GT ids int32 [V] (None for test scenes) and the mesh vertex count.
    """

    scene_id: str
    index: int
    xyz: np.ndarray
    features: np.ndarray
    superpoint: np.ndarray
    targets: SceneTargets
    gt_ids: Optional[np.ndarray]
    num_mesh_vertices: int
    meta: dict = field(default_factory=dict)

    @property
    def num_points(self) -> int:
        return int(self.xyz.shape[0])

    @property
    def num_superpoints(self) -> int:
        return int(self.targets.token_weight.shape[0])


def augmentation_rng(seed: int, epoch: int, index: int) -> np.random.Generator:
    """The generator that augments scene ``index`` in ``epoch`` of a run seeded with ``seed``."""
    return np.random.default_rng(np.random.SeedSequence([int(seed) & 0xFFFFFFFF, int(epoch), int(index)]))


class PreprocessedDataset(Dataset):
    """A split of preprocessed scenes, checked against its manifest when constructed.

    Args:
        root: folder holding ``<split>/manifest.json`` (the output of ``pointformer preprocess``).
        split: split name (train, val, test; S3DIS: Area_<n>) or several names (their scenes concatenated).
        transform: augmentation pipeline (see :func:`pointformer.data.transforms.build_transforms`).
        seed: run seed; augmentation of key (epoch, index) draws from ``augmentation_rng(seed, epoch, index)``.
        features: input channels per point, any of ``"rgb"`` (normalised colour) and ``"normals"``.
        expected_dataset: if given, the dataset the config expects: the manifest's dataset name must
            match, except "scannet200", which reads ScanNet folders with the ScanNet200 labels.
        scenes: optional subset of scene ids (in that order); default: every scene of the manifest.
        limit: keep only the first ``limit`` scenes (quick experiments).
        cache: keep loaded scenes in memory (small datasets; avoids re-reading files every epoch).
        crop: optional random crop applied before ``transform`` (training; it drops points, so the
            labels and superpoints of the sample are subset with it).
        neighbours: optional training pairs: a share of the samples get a second scene of the split placed
            beside them (``NeighbourPlacement``), with its own superpoints and instances, before ``transform``.
    """

    def __init__(
        self,
        root: Union[str, os.PathLike],
        split: Union[str, Sequence[str]],
        *,
        transform: Optional[Compose] = None,
        seed: int = 0,
        features: Sequence[str] = ("rgb",),
        expected_dataset: Optional[str] = None,
        scenes: Optional[Sequence[str]] = None,
        limit: Optional[int] = None,
        cache: bool = False,
        crop: Optional[RandomCuboidCrop] = None,
        neighbours: Optional[NeighbourPlacement] = None,
    ) -> None:
        self.root = Path(root)
        splits = [split] if isinstance(split, str) else [str(s) for s in split]
        if not splits:
            raise DatasetConfigError(f"data root {str(self.root)!r}: no split given")
        self.split = split if isinstance(split, str) else "+".join(splits)
        if not self.root.is_dir():
            raise DatasetConfigError(
                f"data root {str(self.root)!r} does not exist; preprocess the dataset first "
                f"(`pointformer preprocess scannet RAW_ROOT {self.root}`) or set data.root=<folder>")
        manifests = [self._load_manifest(name, expected_dataset) for name in splits]
        manifest_path, self.manifest = manifests[0]
        for path, other in manifests[1:]:
            if (other.class_names, other.thing_classes, other.class_ids) != (
                    self.manifest.class_names, self.manifest.thing_classes, self.manifest.class_ids):
                raise DatasetConfigError(f"{path}: classes differ from those of {manifest_path}; the splits "
                                         f"{splits} cannot be trained together (re-run preprocessing)")
        self.scannet200 = expected_dataset == SCANNET200
        unknown_features = [f for f in features if f not in ("rgb", "normals")]
        if unknown_features or not features:
            raise DatasetConfigError(
                f"data.features: unknown or empty feature list {list(features)}; use rgb and/or normals"
            )
        self.features = tuple(features)
        folder_of = {}
        for name, (path, manifest) in zip(splits, manifests):
            for scene_id in manifest.scenes:
                if scene_id in folder_of:
                    raise DatasetConfigError(f"{path}: scene {scene_id!r} is also in split {folder_of[scene_id]!r}")
                folder_of[scene_id] = name
        entry_of = {s: m.scenes[s] for _, m in manifests for s in m.scenes}
        ids = list(folder_of) if scenes is None else list(scenes)
        missing_ids = [s for s in ids if s not in folder_of]
        if missing_ids:
            raise DatasetConfigError(f"{manifest_path}: scenes not in the manifest: {missing_ids[:5]}")
        if limit is not None:
            ids = ids[: int(limit)]
        if not ids:
            raise DatasetConfigError(f"{manifest_path}: split {self.split!r} has no scenes")
        self.scene_ids = ids
        if self.scannet200:
            entries = [(s, entry_of[s]) for s in ids]
            old = [s for s, entry in entries if "gt_file" in entry and "gt200_file" not in entry]
            if old:
                raise DatasetConfigError(
                    f"{manifest_path}: {len(old)} scene(s) have no ScanNet200 labels (e.g. {old[0]}): the folder was "
                    f"preprocessed before ScanNet200 support; re-run `pointformer preprocess scannet RAW_ROOT "
                    f"{self.root}` to add them (only what is missing is redone)")
        self.files = [self.root / folder_of[s] / entry_of[s].get("file", f"{s}.npz") for s in ids]
        missing_files = [str(f) for f in self.files if not f.is_file()]
        if missing_files:
            raise DatasetConfigError(
                f"{manifest_path}: {len(missing_files)} scene file(s) listed in the manifest are missing, "
                f"e.g. {missing_files[0]}; re-run preprocessing")
        self.transform = transform
        self.seed = int(seed)
        self.cache = cache
        self.crop = crop
        self.neighbours = neighbours if len(ids) > 1 else None  # a single scene has no neighbour to take
        self._cache: dict[int, Scene] = {}

    def _load_manifest(self, split: str, expected_dataset: Optional[str]) -> tuple[Path, Manifest]:
        """The manifest of one split folder, checked against the expected dataset."""
        manifest_path = self.root / split / "manifest.json"
        if not manifest_path.is_file():
            available = sorted(p.name for p in self.root.iterdir() if (p / "manifest.json").is_file())
            raise DatasetConfigError(
                f"{manifest_path}: no manifest for split {split!r} under data root {str(self.root)!r} "
                f"(splits found: {available or 'none'})")
        manifest = Manifest.load(manifest_path)
        wanted = _MANIFEST_DATASET.get(expected_dataset or "", expected_dataset)
        if wanted is not None and manifest.dataset != wanted:
            raise DatasetConfigError(
                f"{manifest_path}: dataset is {manifest.dataset!r} but the config expects {expected_dataset!r}"
                + (f" (read from {wanted!r} folders)" if wanted != expected_dataset else ""))
        return manifest_path, manifest

    # --- manifest facts -------------------------------------------------------------------
    @property
    def class_names(self) -> list[str]:
        """Names of the semantic classes (ScanNet200: the 200 names)."""
        return list(SCANNET200_NAMES) if self.scannet200 else list(self.manifest.class_names)

    @property
    def thing_classes(self) -> list[int]:
        """Indices into ``class_names`` of the instance classes, in target index order 0..C-1."""
        return list(_SCANNET200_THING_CLASSES) if self.scannet200 else list(self.manifest.thing_classes)

    @property
    def thing_class_ids(self) -> list[int]:
        """Dataset class ids (ScanNet: nyu40; ScanNet200: raw-category ids) of the thing classes,
        in target index order 0..C-1."""
        if self.scannet200:
            return list(SCANNET200_INSTANCE_IDS)
        return [int(self.manifest.class_ids[c]) for c in self.manifest.thing_classes]

    @property
    def num_features(self) -> int:
        return 3 * len(self.features)

    def __len__(self) -> int:
        return len(self.scene_ids)

    def load(self, index: int) -> Scene:
        """The stored scene ``index`` (validated; cached if ``cache``)."""
        if index in self._cache:
            return self._cache[index]
        scene = load_scene(self.files[index])
        if scene.scene_id != self.scene_ids[index]:
            raise SceneFormatError(
                f"{self.files[index]}: holds scene {scene.scene_id!r}, manifest says {self.scene_ids[index]!r}"
            )
        if self.cache:
            self._cache[index] = scene
        return scene

    def _labelled_points(self, index: int, rng: np.random.Generator) -> "_LabelledPoints":
        """Scene ``index`` as points, superpoints and labels, cropped when a crop is set (no transform)."""
        scene = self.load(index)
        sample = PointSample(xyz=scene.xyz.astype(np.float32, copy=True), rgb=scene.rgb.astype(np.float32),
                             normals=scene.normals.astype(np.float32, copy=True))
        superpoint = scene.superpoint.astype(np.int64)
        semantic, instance, gt_ids = scene.semantic, scene.instance, scene.gt_ids
        if self.scannet200:
            semantic = (np.full(scene.num_points, -1, dtype=np.int16) if scene.semantic200 is None
                        else _SCANNET200_INDEX[scene.semantic200])
            gt_ids = scene.scannet200_gt_ids()
        num_mesh_vertices = scene.num_mesh_vertices
        if self.crop is not None:
            keep = self.crop(sample.xyz, rng)
            sample = PointSample(xyz=sample.xyz[keep], rgb=sample.rgb[keep], normals=sample.normals[keep])
            superpoint = np.unique(superpoint[keep], return_inverse=True)[1].reshape(-1).astype(np.int64)
            semantic, instance = semantic[keep], instance[keep]
            gt_ids = None if gt_ids is None else gt_ids[keep]
            num_mesh_vertices = int(keep.shape[0])
        return _LabelledPoints(scene.scene_id, sample, superpoint, semantic, instance, gt_ids, num_mesh_vertices)

    def __getitem__(self, key: Key) -> SceneSample:
        epoch, index = (0, key) if isinstance(key, (int, np.integer)) else (int(key[0]), int(key[1]))
        if not 0 <= index < len(self):
            raise IndexError(f"scene index {index} out of range for {len(self)} scenes")
        rng = augmentation_rng(self.seed, epoch, index)
        points = self._labelled_points(index, rng)
        meta: dict = {"epoch": epoch}
        if self.neighbours is not None and self.neighbours.wants_neighbour(rng):
            other = int(rng.integers(len(self) - 1))
            other += other >= index  # any other scene of the split
            second = self._labelled_points(other, rng)
            points = points.beside(second, self.neighbours.offset(points.sample.xyz, second.sample.xyz, rng))
            meta["neighbour"] = second.scene_id
        sample = points.sample
        if self.transform is not None:
            sample = self.transform(sample, rng)
        channels = {"rgb": sample.rgb, "normals": sample.normals}
        features = np.concatenate([channels[name] for name in self.features], axis=1).astype(np.float32)
        targets = superpoint_targets(points.superpoint, points.semantic, points.instance,
                                     thing_classes=self.thing_classes)
        return SceneSample(scene_id=points.scene_id, index=index, xyz=sample.xyz, features=features,
                           superpoint=points.superpoint, targets=targets, gt_ids=points.gt_ids,
                           num_mesh_vertices=points.num_mesh_vertices, meta=meta)


@dataclass
class _LabelledPoints:
    """A scene's points before the transform: superpoints 0..S-1, semantic / instance labels, GT ids."""

    scene_id: str
    sample: PointSample
    superpoint: np.ndarray
    semantic: np.ndarray
    instance: np.ndarray
    gt_ids: Optional[np.ndarray]
    num_mesh_vertices: int

    def beside(self, other: "_LabelledPoints", offset: np.ndarray) -> "_LabelledPoints":
        """This scene and ``other`` moved by ``offset`` [3] as one sample: superpoint and instance ids of
        ``other`` follow this scene's, its GT ids keep their class and get new instance numbers."""
        sample = PointSample(xyz=np.concatenate([self.sample.xyz, other.sample.xyz + offset.astype(np.float32)]),
                             rgb=np.concatenate([self.sample.rgb, other.sample.rgb]),
                             normals=np.concatenate([self.sample.normals, other.sample.normals]))
        first_instances = int(self.instance.max(initial=0))
        instance = np.concatenate([self.instance, np.where(other.instance > 0, other.instance + first_instances, 0)])
        gt_ids = None
        if self.gt_ids is not None and other.gt_ids is not None:
            shift = int((self.gt_ids % 1000).max(initial=0))
            if shift + int((other.gt_ids % 1000).max(initial=0)) < 1000:  # instance numbers stay below 1000
                gt_ids = np.concatenate([self.gt_ids, np.where(other.gt_ids % 1000 > 0, other.gt_ids + shift,
                                                               other.gt_ids)]).astype(self.gt_ids.dtype)
        return _LabelledPoints(
            scene_id=self.scene_id, sample=sample,
            superpoint=np.concatenate([self.superpoint, other.superpoint + int(self.superpoint.max()) + 1]),
            semantic=np.concatenate([self.semantic, other.semantic]).astype(self.semantic.dtype),
            instance=instance.astype(self.instance.dtype, copy=False), gt_ids=gt_ids,
            num_mesh_vertices=self.num_mesh_vertices + other.num_mesh_vertices)


def compute_color_stats(
    dataset: PreprocessedDataset, *, max_scenes: Optional[int] = None
) -> tuple[list[float], list[float]]:
    """Per-channel mean and std of rgb / 255 over a split's points (dataset colour normalisation)."""
    total = np.zeros(3)
    total_sq = np.zeros(3)
    count = 0
    for index in range(len(dataset) if max_scenes is None else min(len(dataset), max_scenes)):
        rgb = dataset.load(index).rgb.astype(np.float64) / 255.0
        total += rgb.sum(axis=0)
        total_sq += (rgb ** 2).sum(axis=0)
        count += rgb.shape[0]
    mean = total / count
    std = np.sqrt(np.maximum(total_sq / count - mean ** 2, 1e-12))
    return [float(v) for v in mean], [float(v) for v in std]
