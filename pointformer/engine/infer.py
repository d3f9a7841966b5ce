"""Instances on one custom scan (the work of ``pointformer infer SCAN.ply``): written as a coloured PLY,
a per-vertex instance file and a JSON list of instances.

Superpoints: a triangle mesh goes through the mesh segmentator (as ScanNet scenes do); a bare point
cloud is cut into cubic cells (superpoints need no mesh). The scan should be z-up and in metres,
like ScanNet; colours are used when present (grey otherwise).
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Optional, Sequence

import numpy as np

from pointformer.inference import PointInstances, Predictor
from pointformer.preprocess.cloud_segmentator import cell_superpoints

log = logging.getLogger("pointformer")


def find_default_checkpoint(search: Sequence[Path] = (Path("outputs"), Path("demo_output"))) -> Optional[Path]:
    """The newest best.pt under ./outputs or ./demo_output (what a user who just trained expects)."""
    found = [p for root in search if root.is_dir() for p in root.rglob("best.pt")]
    return max(found, key=lambda p: p.stat().st_mtime) if found else None


@dataclass
class Scan:
    """A scan read for prediction (V points).

    xyz float32 [V, 3]; rgb uint8 [V, 3]; normals float32 [V, 3] (zeros for a bare cloud);
    superpoint int64 [V] contiguous 0..S-1; faces int [F, 3] or None; superpoints: how they were made.
    """

    xyz: np.ndarray
    rgb: np.ndarray
    normals: np.ndarray
    superpoint: np.ndarray
    faces: Optional[np.ndarray]
    superpoints: str


def read_scan(path: Path, *, cell: float = 0.1) -> Scan:
    """A .ply mesh or point cloud with its superpoints (segmentator for a mesh, ``cell``-metre cubes
    for a cloud); ValueError naming the file for an unreadable one."""
    from pointformer.io.ply import read_ply

    mesh = read_ply(path)
    xyz = mesh.vertices.astype(np.float32)
    if mesh.colors is None:
        log.warning("%s has no colours; using grey (the model was trained on coloured scans)", path)
    rgb = mesh.colors if mesh.colors is not None else np.full((len(xyz), 3), 128, np.uint8)
    if mesh.faces is not None and len(mesh.faces):
        from pointformer.preprocess.segmentator import segment_mesh, vertex_normals

        normals = vertex_normals(xyz, mesh.faces)
        superpoint = np.unique(segment_mesh(xyz, mesh.faces), return_inverse=True)[1].reshape(-1)
        source = f"mesh segmentator ({int(superpoint.max()) + 1} superpoints)"
    else:
        normals = np.zeros_like(xyz)
        superpoint = cell_superpoints(xyz, cell)
        source = f"{cell} m cells ({int(superpoint.max()) + 1} superpoints)"
    return Scan(xyz=xyz, rgb=rgb, normals=normals, superpoint=superpoint, faces=mesh.faces, superpoints=source)


def predict_scan_file(predictor: Predictor, scan: Scan, *, min_points: int = 50) -> PointInstances:
    """The instances of a ScanNet-trained model on ``scan`` (ScanNet's 18 instance classes)."""
    from pointformer.io.labels import SCANNET_INSTANCE_IDS, SCANNET_INSTANCE_NAMES

    if predictor.settings.data.dataset != "scannet":
        raise ValueError(f"infer supports ScanNet-trained checkpoints; this one was trained on "
                         f"{predictor.settings.data.dataset}")
    return predictor.predict_scan(scan.xyz, scan.rgb, normals=scan.normals, superpoint=scan.superpoint,
                                  class_ids=SCANNET_INSTANCE_IDS, class_names=SCANNET_INSTANCE_NAMES,
                                  min_points=min_points)


@dataclass
class InferOutputs:
    """The files written for one scan, and the colour of every point uint8 [V, 3]."""

    ply: Path
    txt: Path
    json: Path
    colors: np.ndarray
    instances: list[dict]


def write_scan_instances(out: Path, stem: str, scan: Scan, result: PointInstances, *,
                         meta: dict) -> InferOutputs:
    """``<out>/<stem>_instances.{ply,txt,json}``: coloured PLY, one instance id per vertex (0 = none), and
    the instances (id, class, score, points) with ``meta`` (e.g. scan and checkpoint paths)."""
    from pointformer.io.atomic import atomic_write_json, atomic_write_text
    from pointformer.vis import write_instance_ply

    ply, txt, json_path = (out / f"{stem}_instances.{ext}" for ext in ("ply", "txt", "json"))
    colors = write_instance_ply(ply, scan.xyz, result.instance, faces=scan.faces, base_rgb=scan.rgb)
    atomic_write_text(txt, "".join(f"{int(i)}\n" for i in result.instance))
    instances = [{"id": i + 1, "class_id": int(c), "class": n, "score": float(s), "num_points": int(k)}
                 for i, (c, n, s, k) in enumerate(zip(result.class_ids, result.class_names, result.scores,
                                                      result.num_points))]
    atomic_write_json(json_path, {**meta, "superpoints": scan.superpoints, "num_points": int(len(scan.xyz)),
                                  "instances": instances})
    return InferOutputs(ply=ply, txt=txt, json=json_path, colors=colors, instances=instances)

