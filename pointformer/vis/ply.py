"""Coloured PLY of predicted instances (opens in MeshLab, CloudCompare, Open3D, Blender)."""
from __future__ import annotations

import os
from typing import Optional

import numpy as np

from pointformer.io.ply import write_ply
from pointformer.vis.colors import color_instances


def write_instance_ply(path: str | os.PathLike, xyz: np.ndarray, instance: np.ndarray, *,
                       faces: Optional[np.ndarray] = None, base_rgb: Optional[np.ndarray] = None,
                       semantic: Optional[np.ndarray] = None) -> np.ndarray:
    """Write vertices coloured by instance (plus an ``instance`` int32 property, and ``label`` when
    ``semantic`` class ids are given); faces are kept so meshes stay meshes. Returns the colours.

    xyz float [V, 3]; instance int [V] (0 = none); faces int [F, 3] or None; base_rgb uint8 [V, 3].
    """
    xyz = np.asarray(xyz, dtype=np.float32)
    instance = np.asarray(instance)
    if xyz.ndim != 2 or xyz.shape[1] != 3 or instance.shape != (xyz.shape[0],):
        raise ValueError(
            f"write_instance_ply({path}): need xyz [V, 3] and instance [V], got {xyz.shape} and {instance.shape}"
        )
    colors = color_instances(instance, base_rgb=base_rgb)
    extra = {"instance": instance.astype(np.int32)}
    if semantic is not None:
        extra["label"] = np.asarray(semantic).astype(np.int32)
    write_ply(path, xyz, colors=colors, faces=faces, extra=extra)
    return colors
