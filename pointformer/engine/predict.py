"""Prediction with a trained checkpoint: whole splits (evaluation, export) and single scans (infer)."""
from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any, Optional, Sequence

import numpy as np
import torch
from omegaconf import DictConfig

from pointformer.data.collate import collate_scenes
from pointformer.data.dataset import SceneSample
from pointformer.data.targets import superpoint_targets
from pointformer.data.transforms import PointSample
from pointformer.engine.build import build_model, build_task, check_classes, make_dataset
from pointformer.engine.checkpoint import load_checkpoint
from pointformer.engine.config import apply_overrides, load_config_yaml
from pointformer.engine.task import InstanceSegmentationTask


def load_trained(checkpoint: str | os.PathLike, overrides: Sequence[str] = (), *, device: str = "auto"
                 ) -> tuple[DictConfig, torch.nn.Module, dict[str, Any]]:
    """(config, model in eval mode on its device, checkpoint payload) from a checkpoint and plain-key overrides."""
    payload = load_checkpoint(checkpoint)
    cfg = apply_overrides(load_config_yaml(payload["config"]), overrides)
    model = build_model(cfg)
    model.load_state_dict(payload["model"])
    use_cuda = torch.cuda.is_available() and device in ("auto", "cuda")
    return cfg, model.to("cuda" if use_cuda else "cpu").eval(), payload


def predict_split(cfg: DictConfig, model: torch.nn.Module, split: str, *, limit: Optional[int] = None,
                  progress: bool = True) -> tuple[Any, InstanceSegmentationTask, list[tuple]]:
    """Predict every scene of a split: (dataset, task, [(scene_id, gt_ids or None, ScenePrediction, num_mesh_vertices)])."""
    from torch.utils.data import DataLoader

    dataset = make_dataset(cfg, split, train=False, limit=limit)
    task = build_task(cfg, check_classes(cfg, dataset))
    device = next(model.parameters()).device
    loader: Any = DataLoader(dataset, batch_size=1, shuffle=False, collate_fn=collate_scenes)
    if progress:
        from tqdm import tqdm

        loader = tqdm(loader, desc=f"predict {split}", dynamic_ncols=True)
    results = []
    with torch.no_grad():
        for batch in loader:
            predictions = task.predict(model, batch.to(device))
            results.extend(zip(batch.scene_ids, batch.gt_ids, predictions, batch.num_mesh_vertices))
    return dataset, task, results


@dataclass
class ScanInstances:
    """Instances of one scan (V points, M instances, sorted by score, best first).

    instance int32 [V]: 1..M instance of every point, 0 none (overlapping sigmoid masks: the point goes
    to the highest-scoring mask); class_ids int [M] dataset ids; class_names [M]; scores float [M];
    num_points int [M] points each instance finally owns.
    """

    instance: np.ndarray
    class_ids: np.ndarray
    class_names: list[str]
    scores: np.ndarray
    num_points: np.ndarray


def predict_scan(cfg: DictConfig, model: torch.nn.Module, *, xyz: np.ndarray, rgb: np.ndarray, normals: np.ndarray,
                 superpoint: np.ndarray, class_ids: Sequence[int], class_names: Sequence[str],
                 min_points: int = 1) -> ScanInstances:
    """Run the model on one scan given as arrays (xyz float [V,3], rgb uint8 [V,3], normals [V,3],
    superpoint int [V] contiguous 0..S-1) with the evaluation transforms of ``cfg``."""
    from pointformer.data.transforms import build_transforms

    transform = build_transforms(train=False, color_mean=list(cfg.data.color_mean), color_std=list(cfg.data.color_std))
    sample = transform(PointSample(xyz=xyz.astype(np.float32), rgb=rgb.astype(np.float32),
                                   normals=normals.astype(np.float32)), np.random.default_rng(0))
    channels = {"rgb": sample.rgb, "normals": sample.normals}
    features = np.concatenate([channels[f] for f in cfg.data.features], axis=1).astype(np.float32)
    v = xyz.shape[0]
    unlabelled = superpoint_targets(superpoint, np.full(v, -1, np.int16), np.zeros(v, np.int32), thing_classes=[])
    batch = collate_scenes([SceneSample(scene_id="scan", index=0, xyz=sample.xyz, features=features,
                                        superpoint=superpoint.astype(np.int64), targets=unlabelled, gt_ids=None,
                                        num_mesh_vertices=v)])
    task = build_task(cfg, list(class_ids))
    device = next(model.parameters()).device
    instances, point_tokens = task.predict_instances(model, batch.to(device))[0]
    order = torch.argsort(instances.scores.float().cpu(), descending=True)
    masks = instances.to_points(point_tokens.to(instances.masks.device)).masks.cpu()[order].numpy()  # [M, V]
    scores = instances.scores.float().cpu()[order].numpy()
    classes = instances.class_ids(list(class_ids))[order].numpy()
    owner = np.zeros(v, dtype=np.int32)
    if masks.shape[0]:
        covered = masks.any(axis=0)
        owner[covered] = masks[:, covered].argmax(axis=0) + 1  # first = best-scoring covering mask
    counts = np.bincount(owner, minlength=masks.shape[0] + 1)[1:]
    keep = np.flatnonzero(counts >= max(min_points, 1))
    remap = np.zeros(masks.shape[0] + 1, dtype=np.int32)
    remap[keep + 1] = np.arange(1, keep.size + 1)
    name_of = dict(zip(class_ids, class_names))
    return ScanInstances(instance=remap[owner], class_ids=classes[keep], scores=scores[keep],
                         class_names=[name_of.get(int(c), str(c)) for c in classes[keep]], num_points=counts[keep])
