"""Collation: a list of :class:`SceneSample` -> one ragged :class:`SceneBatch` of torch tensors.

Scenes are concatenated point after point; ``point_offsets`` and ``token_offsets`` give each scene's
slice, and superpoint ids are shifted to be unique over the batch (scene b's ids start at
``token_offsets[b]``). Voxelisation is the model's job (it owns the voxel size and the backend), so
the batch carries points, not voxels; the model keeps the voxel inverse map to come back to points.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional, Sequence

import numpy as np
import torch

from pointformer.data.dataset import SceneSample
from pointformer.losses.targets import TokenTargets


@dataclass
class SceneBatch:
    """B scenes, P points and T superpoint tokens in total.

    xyz float [P, 3]; features float [P, C]; batch_index long [P] (scene of each point);
    point_offsets long [B+1]; superpoint long [P] batch-global token id of each point;
    token_offsets long [B+1]; targets: one ``pointformer.losses.TokenTargets`` per scene (the losses' input).
    Host-side (not moved to the device): scene ids, dataset indices, GT ids per point (None for test
    scenes) and mesh vertex counts, for evaluation and export.
    """

    xyz: torch.Tensor
    features: torch.Tensor
    batch_index: torch.Tensor
    point_offsets: torch.Tensor
    superpoint: torch.Tensor
    token_offsets: torch.Tensor
    targets: list[TokenTargets]
    scene_ids: list[str]
    indices: list[int]
    gt_ids: list[Optional[np.ndarray]] = field(default_factory=list)
    num_mesh_vertices: list[int] = field(default_factory=list)

    @property
    def batch_size(self) -> int:
        return len(self.scene_ids)

    @property
    def num_points(self) -> int:
        return int(self.xyz.shape[0])

    def to(self, device: torch.device | str) -> "SceneBatch":
        """A copy with every tensor on ``device`` (host-side metadata shared)."""
        move = lambda t: t.to(device, non_blocking=True)  # noqa: E731
        return SceneBatch(
            xyz=move(self.xyz), features=move(self.features), batch_index=move(self.batch_index),
            point_offsets=move(self.point_offsets), superpoint=move(self.superpoint),
            token_offsets=move(self.token_offsets), targets=[t.to(device) for t in self.targets],
            scene_ids=self.scene_ids, indices=self.indices, gt_ids=self.gt_ids,
            num_mesh_vertices=self.num_mesh_vertices)

    def pin_memory(self) -> "SceneBatch":
        # DataLoader(pin_memory=True) calls this on custom batch types.
        for name in ("xyz", "features", "batch_index", "point_offsets", "superpoint", "token_offsets"):
            setattr(self, name, getattr(self, name).pin_memory())
        return self


def collate_scenes(samples: Sequence[SceneSample]) -> SceneBatch:
    """Concatenate scenes into one batch (see :class:`SceneBatch` for the layout)."""
    if not samples:
        raise ValueError("collate_scenes: empty list of samples")
    num_points = [s.num_points for s in samples]
    num_tokens = [s.num_superpoints for s in samples]
    point_offsets = np.concatenate([[0], np.cumsum(num_points)]).astype(np.int64)
    token_offsets = np.concatenate([[0], np.cumsum(num_tokens)]).astype(np.int64)
    superpoint = np.concatenate([s.superpoint.astype(np.int64) + token_offsets[b] for b, s in enumerate(samples)])
    batch_index = np.repeat(np.arange(len(samples), dtype=np.int64), num_points)
    targets = [TokenTargets(
        token_instance=torch.from_numpy(s.targets.token_instance.astype(np.int64)),
        token_weight=torch.from_numpy(s.targets.token_weight.astype(np.float32)),
        instance_class=torch.from_numpy(s.targets.instance_class.astype(np.int64))) for s in samples]
    return SceneBatch(
        xyz=torch.from_numpy(np.concatenate([s.xyz for s in samples]).astype(np.float32)),
        features=torch.from_numpy(np.concatenate([s.features for s in samples]).astype(np.float32)),
        batch_index=torch.from_numpy(batch_index),
        point_offsets=torch.from_numpy(point_offsets),
        superpoint=torch.from_numpy(superpoint),
        token_offsets=torch.from_numpy(token_offsets),
        targets=targets,
        scene_ids=[s.scene_id for s in samples],
        indices=[s.index for s in samples],
        gt_ids=[s.gt_ids for s in samples],
        num_mesh_vertices=[s.num_mesh_vertices for s in samples],
    )
