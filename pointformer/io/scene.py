"""The preprocessed scene contract (format version 1): what `preprocess` writes and `data` reads.

One scene = one ``<scene_id>.npz`` file (uncompressed; memory-mapped loading is not needed at these
sizes) inside ``<root>/<split>/``, plus ``<root>/<split>/manifest.json`` describing the split.
Point order is the source mesh vertex order, so per-point predictions are per-vertex predictions.

Arrays (V = vertices/points of the scene):
    xyz        float32 [V, 3]   metres, axis-aligned when the source gives an alignment
    rgb        uint8   [V, 3]
    normals    float32 [V, 3]   unit vertex normals (zeros where undefined)
    superpoint int32   [V]      contiguous ids 0..S-1
    semantic   int16   [V]      index into the manifest's ``class_names``; -1 = unannotated / void
    instance   int32   [V]      1..K per annotated object (all objects, stuff included); 0 = none
    gt_ids     int32   [V]      (ScanNet, optional) evaluation GT ``nyu40*1000 + inst``; 0 = unannotated
    semantic200 int16  [V]      (ScanNet train/val, optional) ScanNet200 class: the raw-category id when it
                                is one of the 200 ScanNet200 ids, else 0 (void: unannotated or outside the 200)
Scalars: ``scene_id`` (str), ``num_mesh_vertices`` (int), ``format_version`` (int).
Test scenes carry semantic = -1 and instance = 0 everywhere and no gt_ids / semantic200.
A scene written before ScanNet200 support has no semantic200; re-running preprocessing adds it.
"""
from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

import numpy as np

from pointformer.io.atomic import atomic_write, atomic_write_json
from pointformer.io.labels import SCANNET200_IDS

FORMAT_VERSION = 1

_REQUIRED: dict[str, tuple[np.dtype, int]] = {
    "xyz": (np.dtype(np.float32), 2),
    "rgb": (np.dtype(np.uint8), 2),
    "normals": (np.dtype(np.float32), 2),
    "superpoint": (np.dtype(np.int32), 1),
    "semantic": (np.dtype(np.int16), 1),
    "instance": (np.dtype(np.int32), 1),
}


class SceneFormatError(ValueError):
    """A preprocessed scene or manifest does not follow the contract (message names the file)."""


@dataclass
class Scene:
    """One preprocessed scene (see the module docstring for shapes and dtypes)."""

    scene_id: str
    xyz: np.ndarray
    rgb: np.ndarray
    normals: np.ndarray
    superpoint: np.ndarray
    semantic: np.ndarray
    instance: np.ndarray
    num_mesh_vertices: int
    gt_ids: Optional[np.ndarray] = None
    semantic200: Optional[np.ndarray] = None

    @property
    def num_points(self) -> int:
        return int(self.xyz.shape[0])

    def validate(self, where: str = "<memory>") -> "Scene":
        """Check dtypes, shapes and invariants; raise SceneFormatError naming ``where``."""
        n = self.num_points
        for name, (dtype, ndim) in _REQUIRED.items():
            arr = getattr(self, name)
            if not isinstance(arr, np.ndarray) or arr.dtype != dtype or arr.ndim != ndim:
                got = f"{getattr(arr, 'dtype', type(arr))} ndim={getattr(arr, 'ndim', '?')}"
                raise SceneFormatError(f"{where}: array {name!r} must be {dtype} with ndim={ndim}, got {got}")
            if arr.shape[0] != n or (ndim == 2 and arr.shape[1] != 3):
                expected = f"({n}, 3)" if ndim == 2 else f"({n},)"
                raise SceneFormatError(f"{where}: array {name!r} has shape {arr.shape}, expected {expected}")
        if n == 0:
            raise SceneFormatError(f"{where}: scene has no points")
        if not np.isfinite(self.xyz).all():
            raise SceneFormatError(f"{where}: xyz contains NaN or inf")
        sp = self.superpoint
        if sp.min() != 0 or len(np.unique(sp)) != int(sp.max()) + 1:
            raise SceneFormatError(f"{where}: superpoint ids must be contiguous 0..S-1")
        if self.gt_ids is not None and (self.gt_ids.dtype != np.int32 or self.gt_ids.shape != (n,)):
            raise SceneFormatError(f"{where}: gt_ids must be int32 [{n}], got {self.gt_ids.dtype} {self.gt_ids.shape}")
        if self.semantic200 is not None:
            s200 = self.semantic200
            if s200.dtype != np.int16 or s200.shape != (n,):
                raise SceneFormatError(f"{where}: semantic200 must be int16 [{n}], got {s200.dtype} {s200.shape}")
            bad = np.setdiff1d(np.unique(s200), (0, *SCANNET200_IDS))
            if bad.size:
                raise SceneFormatError(f"{where}: semantic200 holds ids outside the ScanNet200 classes and 0 "
                                       f"(void): {bad[:5].tolist()}")
        return self

    def scannet200_gt_ids(self) -> Optional[np.ndarray]:
        """ScanNet200 evaluation GT int32 [V]: ``semantic200 * 1000 + instance``, 0 where void or
        unannotated; None when the scene has no ScanNet200 labels (test scenes, older folders)."""
        if self.semantic200 is None:
            return None
        s200 = self.semantic200.astype(np.int32)
        return np.where((s200 > 0) & (self.instance > 0), s200 * 1000 + self.instance, 0).astype(np.int32)


def save_scene(scene: Scene, path: str | os.PathLike) -> None:
    """Validate and write a scene atomically (no half-written file is ever visible under ``path``)."""
    path = Path(path)
    scene.validate(str(path))
    arrays = {name: getattr(scene, name) for name in _REQUIRED}
    if scene.gt_ids is not None:
        arrays["gt_ids"] = scene.gt_ids
    if scene.semantic200 is not None:
        arrays["semantic200"] = scene.semantic200
    arrays["scene_id"] = np.array(scene.scene_id)
    arrays["num_mesh_vertices"] = np.array(scene.num_mesh_vertices, dtype=np.int64)
    arrays["format_version"] = np.array(FORMAT_VERSION, dtype=np.int64)
    atomic_write(path, lambda f: np.savez(f, **arrays))


def load_scene(path: str | os.PathLike) -> Scene:
    """Read and validate a scene file; any defect raises SceneFormatError naming the file."""
    path = Path(path)
    try:
        with np.load(path, allow_pickle=False) as data:
            contents = {k: data[k] for k in data.files}
    except FileNotFoundError:
        raise SceneFormatError(f"{path}: preprocessed scene file not found") from None
    except Exception as exc:  # zip/npy decoding errors come in many types
        raise SceneFormatError(f"{path}: not a readable preprocessed scene ({type(exc).__name__}: {exc})") from None
    missing = [k for k in (*_REQUIRED, "scene_id", "num_mesh_vertices", "format_version") if k not in contents]
    if missing:
        raise SceneFormatError(f"{path}: missing arrays {missing}")
    version = int(contents["format_version"])
    if version != FORMAT_VERSION:
        raise SceneFormatError(f"{path}: format version {version}, this pointformer reads {FORMAT_VERSION}; "
                               "re-run preprocessing")
    scene = Scene(
        scene_id=str(contents["scene_id"]),
        num_mesh_vertices=int(contents["num_mesh_vertices"]),
        gt_ids=contents.get("gt_ids"),
        semantic200=contents.get("semantic200"),
        **{k: contents[k] for k in _REQUIRED},
    )
    return scene.validate(str(path))


@dataclass
class Manifest:
    """Description of one preprocessed split: ``<root>/<split>/manifest.json``.

    ``scenes`` maps scene id -> {"file": relative npz name, "num_points": int, "num_superpoints": int,
    "num_instances": int, "source_sha1": {raw file name: sha1}}; ScanNet train/val entries also name
    their GT files relative to the output root: ``gt_file`` (ScanNet v2) and ``gt200_file`` (ScanNet200).
    """

    dataset: str
    split: str
    class_names: list[str]
    class_ids: list[int]            # dataset ids of class_names (ScanNet: nyu40 ids)
    thing_classes: list[int]        # indices into class_names that have instances
    scenes: dict[str, dict[str, Any]] = field(default_factory=dict)
    format_version: int = FORMAT_VERSION

    def save(self, path: str | os.PathLike) -> None:
        atomic_write_json(path, self.__dict__, indent=1, sort_keys=True)

    @classmethod
    def load(cls, path: str | os.PathLike) -> "Manifest":
        path = Path(path)
        try:
            raw = json.loads(path.read_text())
        except FileNotFoundError:
            raise SceneFormatError(f"{path}: manifest not found (was the split preprocessed?)") from None
        except json.JSONDecodeError as exc:
            raise SceneFormatError(f"{path}: manifest is not valid JSON ({exc})") from None
        try:
            manifest = cls(**raw)
        except TypeError as exc:
            raise SceneFormatError(f"{path}: manifest fields are wrong ({exc})") from None
        if manifest.format_version != FORMAT_VERSION:
            raise SceneFormatError(f"{path}: format version {manifest.format_version}, expected {FORMAT_VERSION}")
        return manifest
