"""Instances on one custom scan (the work of ``pointformer infer SCAN``): read any format, predict tile by
tile, write the output files of :mod:`pointformer.io.instances_out`.

Reading: :func:`pointformer.io.clouds.read_cloud` (PLY, LAS/LAZ, PCD, NPY/NPZ, text). Superpoints: a
triangle mesh goes through the mesh segmentator (as ScanNet scenes do); a bare point cloud gets the
kNN-graph segmentator per tile (or cubic cells). Prediction: :meth:`Predictor.predict` (tiles, merging,
the checkpoint's input features). The scan should be z-up and in metres, like the training data.
"""
from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional, Sequence, Union

import numpy as np

from pointformer.evaluation import class_set
from pointformer.inference import Predictor
from pointformer.inference.predictor import ScanInstances
from pointformer.io.clouds import LAS_SUFFIXES, Cloud, read_cloud
from pointformer.io.instances_out import InstanceFiles, write_instance_files

log = logging.getLogger("pointformer")


def find_default_checkpoint(search: Sequence[Path] = (Path("outputs"), Path("demo_output"))) -> Optional[Path]:
    """The newest best.pt under ./outputs or ./demo_output (what a user who just trained expects)."""
    found = [p for root in search if root.is_dir() for p in root.rglob("best.pt")]
    return max(found, key=lambda p: p.stat().st_mtime) if found else None


@dataclass(frozen=True)
class InferOptions:
    """How a scan file is read and predicted (the ``pointformer infer`` options).

    columns: text/NPY column names (None: by count); tile_size / overlap: metres (tile_size None: one pass);
    superpoints: "knn" or "cells" (clouds); cell: cell size in metres; min_points: smallest instance kept;
    merge_iou: band IoU that joins instances across tiles; query_radius: metres an instance reaches from its
    query's seed (None: no limit, "auto": the model's attention radius; ``Predictor.predict``); num_queries:
    queries per tile (None: the model's evaluation count, "all": one per superpoint, "auto": all for models with
    seed-relative positions; ``Predictor.predict``); progress: a progress bar over tiles.
    """

    columns: Optional[str] = None
    tile_size: Optional[float] = 12.0
    overlap: float = 4.0
    superpoints: str = "knn"
    cell: float = 0.1
    min_points: int = 50
    merge_iou: float = 0.5
    query_radius: Union[float, str, None] = "auto"
    num_queries: Optional[Union[int, str]] = "auto"
    progress: bool = True


@dataclass
class InferResult:
    """A predicted scan file: the cloud as read, the instances, the files written, the point colours uint8 [N, 3]
    and the wall seconds of each stage (read, predict, write)."""

    cloud: Cloud
    prediction: ScanInstances
    files: InstanceFiles
    colors: np.ndarray
    seconds: dict[str, float] = field(default_factory=dict)


def mesh_superpoints(cloud: Cloud) -> Optional[np.ndarray]:
    """int64 [N] segmentator superpoints of a triangle mesh (None for a bare cloud)."""
    if cloud.faces is None:
        return None
    from pointformer.preprocess.segmentator import segment_mesh

    # the segmentator works on scan-local float32 coordinates (a float64 origin keeps georeferenced meshes exact)
    local = (cloud.xyz - cloud.xyz.min(axis=0)).astype(np.float32)
    return np.unique(segment_mesh(local, cloud.faces), return_inverse=True)[1].reshape(-1)


def mesh_normals(cloud: Cloud) -> Optional[np.ndarray]:
    """float32 [N, 3] area-weighted vertex normals of a mesh (the preprocessing's), else the file's (or None)."""
    if cloud.faces is None:
        return cloud.normals
    from pointformer.preprocess.segmentator import vertex_normals

    return vertex_normals((cloud.xyz - cloud.xyz.min(axis=0)).astype(np.float32), cloud.faces)


def infer_file(predictor: Predictor, scan: Union[str, Path], out: Union[str, Path],
               options: InferOptions = InferOptions()) -> InferResult:
    """Read ``scan``, predict its instances and write the files of :mod:`pointformer.io.instances_out` to ``out``.

    Raises CloudFormatError (bad file), MissingFeatureError (the scan lacks a feature the model reads)
    or ValueError (bad options); each names the file."""
    from pointformer.vis.colors import color_instances

    scan = Path(scan)
    start = time.perf_counter()
    cloud = read_cloud(scan, columns=options.columns)
    read = time.perf_counter()
    predictor.check_features(cloud.available_features(), str(scan))  # before the (slow) segmentator
    prediction = predictor.predict(
        cloud.xyz, cloud.rgb, normals=mesh_normals(cloud), superpoint=mesh_superpoints(cloud),
        tile_size=options.tile_size, overlap=options.overlap, superpoints=options.superpoints, cell=options.cell,
        min_points=options.min_points, merge_iou=options.merge_iou, progress=options.progress, source=str(scan),
        superpoint_name="mesh segmentator", query_radius=options.query_radius,
        num_queries=options.num_queries)
    predicted = time.perf_counter()
    colors = color_instances(prediction.instance_ids + 1, base_rgb=cloud.rgb)
    classes = class_set(predictor.settings.data.dataset)
    meta = {"source": str(scan), "checkpoint": str(predictor.checkpoint), "dataset": predictor.settings.data.dataset,
            "features": list(prediction.features), "tiles": prediction.tiles, "format": cloud.format,
            "superpoints": prediction.superpoints}
    files = write_instance_files(
        out, scan.stem, xyz=cloud.xyz, colors=colors, instance_ids=prediction.instance_ids,
        class_ids=prediction.class_ids, meta=meta, instances=[vars(inst) for inst in prediction.instances],
        classes=dict(zip(classes.ids, classes.names)), faces=cloud.faces, double=cloud.double,
        las_source=scan if scan.suffix.lower() in LAS_SUFFIXES else None)
    seconds = {"read": read - start, "predict": predicted - read, "write": time.perf_counter() - predicted}
    return InferResult(cloud=cloud, prediction=prediction, files=files, colors=colors, seconds=seconds)
