"""Tiny procedural scenes written straight in the preprocessed format (no raw files, no segmentator).

For unit tests, smoke runs and benchmarks of the training machinery, where generating raw ScanNet
files and preprocessing them (``pointformer.synthetic`` + ``pointformer.preprocess``) would cost more
than the test itself. A scene: a floor and two walls (stuff), a few axis-aligned boxes of random
ScanNet thing classes (each box one instance, coloured by class with noise), a patch of unannotated
points, superpoints = cells of a 0.3 m grid taken per object so that no superpoint straddles two
objects. Deterministic per (seed, scene index).
"""
from __future__ import annotations

import os
import zlib
from pathlib import Path
from typing import Union

import numpy as np

from pointformer.io.gt import write_gt_file
from pointformer.io.labels import SCANNET_SEMANTIC_IDS, SCANNET_SEMANTIC_NAMES
from pointformer.io.scene import Manifest, Scene, save_scene

THING_CLASSES = list(range(2, 20))


def _surface_points(rng: np.random.Generator, low: np.ndarray, high: np.ndarray, n: int) -> np.ndarray:
    """n points on the surface of the box [low, high] (faces chosen by area; zero-thickness boxes ok)."""
    size = high - low
    areas = np.array([size[1] * size[2], size[1] * size[2], size[0] * size[2], size[0] * size[2],
                      size[0] * size[1], size[0] * size[1]]) + 1e-9
    face = rng.choice(6, size=n, p=areas / areas.sum())
    pts = low + rng.random((n, 3)) * size
    axis = face // 2
    side = face % 2
    pts[np.arange(n), axis] = np.where(side == 1, high[axis], low[axis])
    return pts


def make_toy_scene(scene_id: str, *, seed: int, num_points: int = 3000, num_objects: int = 4,
                   with_labels: bool = True) -> Scene:
    """One procedural scene with ~``num_points`` points (see the module docstring)."""
    rng = np.random.default_rng(np.random.SeedSequence([seed, zlib.crc32(scene_id.encode())]))
    room = np.array([4.0, 4.0, 2.5])
    parts: list[tuple[np.ndarray, int, int]] = []  # (points, semantic index, instance id)
    n_floor, n_wall = num_points // 4, num_points // 8
    parts.append((_surface_points(rng, np.zeros(3), np.array([room[0], room[1], 0.0]), n_floor), 1, 1))
    parts.append((_surface_points(rng, np.zeros(3), np.array([0.0, room[1], room[2]]), n_wall), 0, 2))
    parts.append((_surface_points(rng, np.zeros(3), np.array([room[0], 0.0, room[2]]), n_wall), 0, 3))
    per_object = (num_points - n_floor - 2 * n_wall - num_points // 20) // max(num_objects, 1)
    slots = rng.permutation(9)[:num_objects]  # objects on a 3x3 grid of slots: never overlapping
    for k, slot in enumerate(slots):
        centre = np.array([0.8 + 1.2 * (slot % 3), 0.8 + 1.2 * (slot // 3)])
        half = rng.uniform(0.2, 0.5, size=2)
        height = rng.uniform(0.4, 1.2)
        low = np.array([*(centre - half), 0.0])
        high = np.array([*(centre + half), height])
        parts.append((_surface_points(rng, low, high, per_object), int(rng.choice(THING_CLASSES)), 4 + k))
    void = rng.random((num_points // 20, 3)) * np.array([0.5, 0.5, 0.3]) + np.array([3.4, 3.4, 0.0])
    parts.append((void, -1, 0))

    xyz_parts, sem_parts, inst_parts, rgb_parts, sp_parts = [], [], [], [], []
    sp_base = 0
    for pts, sem, inst in parts:
        n = len(pts)
        xyz_parts.append(pts)
        sem_parts.append(np.full(n, sem))
        inst_parts.append(np.full(n, inst))
        base_colour = np.array([(37 * (sem + 2)) % 256, (91 * (sem + 3)) % 256, (53 * (sem + 5)) % 256], dtype=float)
        rgb_parts.append(np.clip(base_colour + rng.normal(0, 12, size=(n, 3)), 0, 255))
        cell = np.floor(pts / 0.3).astype(np.int64)
        _, local = np.unique(cell, axis=0, return_inverse=True)
        sp_parts.append(local.reshape(-1) + sp_base)
        sp_base += int(local.max()) + 1
    xyz = np.concatenate(xyz_parts).astype(np.float32)
    semantic = np.concatenate(sem_parts).astype(np.int16)
    instance = np.concatenate(inst_parts).astype(np.int32)
    superpoint = np.unique(np.concatenate(sp_parts), return_inverse=True)[1].reshape(-1).astype(np.int32)
    class_ids = np.asarray(SCANNET_SEMANTIC_IDS)
    gt_ids = np.where(semantic >= 0, class_ids[np.maximum(semantic, 0)] * 1000 + instance, 0).astype(np.int32)
    if not with_labels:
        semantic[:] = -1
        instance[:] = 0
    normals = np.zeros_like(xyz)
    normals[:, 2] = 1.0
    return Scene(scene_id=scene_id, xyz=xyz, rgb=np.concatenate(rgb_parts).astype(np.uint8), normals=normals,
                 superpoint=superpoint, semantic=semantic, instance=instance, num_mesh_vertices=len(xyz),
                 gt_ids=gt_ids if with_labels else None)


def write_toy_split(root: Union[str, os.PathLike], split: str, *, num_scenes: int, seed: int = 0,
                    num_points: int = 3000, num_objects: int = 4) -> Manifest:
    """Write ``num_scenes`` toy scenes + manifest (+ GT txt files for labelled splits) under ``root``."""
    root = Path(root)
    labelled = split != "test"
    manifest = Manifest(dataset="scannet", split=split, class_names=list(SCANNET_SEMANTIC_NAMES),
                        class_ids=list(SCANNET_SEMANTIC_IDS), thing_classes=list(THING_CLASSES))
    for i in range(num_scenes):
        scene_id = (f"scene{9000 + i:04d}_{seed % 100:02d}" if split != "val"
                    else f"scene{9500 + i:04d}_{seed % 100:02d}")
        scene = make_toy_scene(scene_id, seed=seed, num_points=num_points, num_objects=num_objects,
                               with_labels=labelled)
        save_scene(scene, root / split / f"{scene_id}.npz")
        if labelled:
            write_gt_file(root / "gt" / split / f"{scene_id}.txt", scene.gt_ids)
        manifest.scenes[scene_id] = {
            "file": f"{scene_id}.npz", "num_points": scene.num_points,
            "num_superpoints": int(scene.superpoint.max()) + 1,
            "num_instances": int(len(np.unique(scene.instance[scene.instance > 0]))), "source_sha1": {}}
    manifest.save(root / split / "manifest.json")
    return manifest
