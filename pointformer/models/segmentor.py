"""The 3D instance segmentation model: sparse-voxel backbone -> superpoint tokens -> query decoder.

Data flow for a batch of B scenes with P points in total:

    points (xyz [P,3], features [P,C_in])
      --voxelize(voxel_size)--> SparseTensor (V voxels) + point_to_voxel [P]
      --backbone (Res16UNet)--> voxel features [V, F] at stride 1
      --gather by point_to_voxel--> point features [P, F]
      --mean per superpoint--> Tokens (features [T, F], positions = superpoint centroids, weights)
      --QueryDecoder--> per layer: class logits [N_b, C+1], mask logits [N_b, T_b], background [T_b]

Masks come out per token (superpoint); ``SegmentorOutput.to_points`` broadcasts any per-token
prediction back to every input point (= every mesh vertex, since the preprocessed scene keeps the
mesh vertex order), and ``point_to_voxel`` maps voxel outputs back to points.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Optional, Sequence

import torch
from torch import Tensor, nn

from pointformer.models.decoder import DecoderOutput, LayerPrediction, QueryDecoder
from pointformer.models.tokens import Tokens, batch_index_from_offsets, offsets_from_counts, superpoint_tokens

__all__ = ["PointBatch", "SegmentorOutput", "InstanceSegmentor3D"]


@dataclass
class PointBatch:
    """The model input: B scenes of points, concatenated scene after scene (P points, T superpoints).

    Attributes:
        xyz: float [P, 3] point coordinates in metres (augmented, e.g. centred).
        features: float [P, C_in] network input per point (e.g. normalised colour, normals).
        point_offsets: long [B+1] scene ``b`` owns points ``point_offsets[b]:point_offsets[b+1]``.
        superpoint: long [P] batch-global superpoint (token) id of every point: scene-local id +
            ``token_offsets[b]``.
        token_offsets: long [B+1] scene ``b`` owns tokens ``token_offsets[b]:token_offsets[b+1]``
            (superpoint ids without points, e.g. cropped away, are allowed: empty tokens).

    ``pointformer.data.collate.SceneBatch`` carries these fields; ``from_batch`` accepts it (or any
    object with these attributes), ``from_scenes`` builds a batch from per-scene arrays.
    """

    xyz: Tensor
    features: Tensor
    point_offsets: Tensor
    superpoint: Tensor
    token_offsets: Tensor

    def __post_init__(self) -> None:
        self.validate()

    @property
    def batch_size(self) -> int:
        return int(self.point_offsets.numel()) - 1

    @property
    def num_points(self) -> int:
        return int(self.xyz.shape[0])

    @property
    def device(self) -> torch.device:
        return self.xyz.device

    def batch_index(self) -> Tensor:
        """long [P]: the scene of every point."""
        return batch_index_from_offsets(self.point_offsets)

    def validate(self) -> None:
        """Raise ValueError naming the field when shapes, dtypes or ids are inconsistent."""
        p = self.xyz.shape[0] if self.xyz.dim() == 2 else -1
        if self.xyz.dim() != 2 or self.xyz.shape[1] != 3 or not self.xyz.is_floating_point():
            raise ValueError(f"PointBatch.xyz must be float [P, 3], got {self.xyz.dtype} {tuple(self.xyz.shape)}")
        if self.features.dim() != 2 or self.features.shape[0] != p or not self.features.is_floating_point():
            raise ValueError(
                f"PointBatch.features must be float [P={p}, C], got {self.features.dtype} {tuple(self.features.shape)}"
            )
        if self.superpoint.shape != (p,) or self.superpoint.is_floating_point():
            raise ValueError(
                f"PointBatch.superpoint must be integer [P={p}], "
                f"got {self.superpoint.dtype} {tuple(self.superpoint.shape)}"
            )
        for name in ("point_offsets", "token_offsets"):
            o = getattr(self, name)
            if o.dim() != 1 or o.numel() < 2 or o.is_floating_point() or int(o[0]) != 0 or bool((o[1:] < o[:-1]).any()):
                raise ValueError(
                    f"PointBatch.{name} must be non-decreasing integers [B+1] starting at 0, got {o.tolist()}"
                )
        if self.token_offsets.numel() != self.point_offsets.numel():
            raise ValueError(
                f"PointBatch: point_offsets has {self.point_offsets.numel() - 1} scenes, "
                f"token_offsets {self.token_offsets.numel() - 1}"
            )
        if int(self.point_offsets[-1]) != p:
            raise ValueError(
                f"PointBatch.point_offsets ends at {int(self.point_offsets[-1])}, but there are {p} points"
            )
        counts = self.point_offsets[1:] - self.point_offsets[:-1]
        if bool((counts == 0).any()):
            raise ValueError(f"PointBatch: scene(s) {(counts == 0).nonzero().flatten().tolist()} have no points")
        if not bool(torch.isfinite(self.xyz).all()):
            raise ValueError("PointBatch.xyz contains NaN or inf")
        batch = self.batch_index()
        token_offsets = self.token_offsets.to(self.superpoint.device).long()
        low, high = token_offsets[batch], token_offsets[batch + 1]
        outside = (self.superpoint < low) | (self.superpoint >= high)
        if bool(outside.any()):
            i = int(outside.nonzero()[0, 0])
            raise ValueError(
                f"PointBatch.superpoint: point {i} of scene {int(batch[i])} has token id {int(self.superpoint[i])}, "
                f"outside its scene's range {int(low[i])}..{int(high[i]) - 1} "
                "(ids must be scene-local id + token_offsets[b])"
            )

    def to(self, device: torch.device | str) -> "PointBatch":
        return PointBatch(
            xyz=self.xyz.to(device), features=self.features.to(device), point_offsets=self.point_offsets.to(device),
            superpoint=self.superpoint.to(device), token_offsets=self.token_offsets.to(device),
        )

    @classmethod
    def from_batch(cls, batch: Any) -> "PointBatch":
        """A ``PointBatch`` from any object with the same attributes (e.g. ``SceneBatch``)."""
        if isinstance(batch, cls):
            return batch
        missing = [
            n for n in ("xyz", "features", "point_offsets", "superpoint", "token_offsets") if not hasattr(batch, n)
        ]
        if missing:
            raise ValueError(f"model input {type(batch).__name__} lacks the field(s) {missing} of a PointBatch")
        return cls(
            xyz=batch.xyz, features=batch.features, point_offsets=batch.point_offsets.long(),
            superpoint=batch.superpoint.long(), token_offsets=batch.token_offsets.long(),
        )

    @classmethod
    def from_scenes(cls, scenes: Sequence[tuple[Tensor, Tensor, Tensor]]) -> "PointBatch":
        """Concatenate scenes given as (xyz [P_b, 3], features [P_b, C], superpoint [P_b] scene-local ids
        0..S_b-1); scene b gets S_b = max id + 1 tokens."""
        if not scenes:
            raise ValueError("PointBatch.from_scenes: no scenes")
        num_tokens = []
        for b, (_, _, sp) in enumerate(scenes):
            if sp.numel() == 0 or int(sp.min()) < 0:
                raise ValueError(f"PointBatch.from_scenes: scene {b} has no points or negative superpoint ids")
            num_tokens.append(int(sp.max()) + 1)
        token_offsets = offsets_from_counts(torch.tensor(num_tokens))
        return cls(
            xyz=torch.cat([s[0] for s in scenes]).float(),
            features=torch.cat([s[1] for s in scenes]).float(),
            point_offsets=offsets_from_counts(torch.tensor([s[0].shape[0] for s in scenes])),
            superpoint=torch.cat([s[2].long() + token_offsets[b] for b, s in enumerate(scenes)]),
            token_offsets=token_offsets,
        )


@dataclass
class SegmentorOutput:
    """Predictions of the 3D model and the maps back to every input point.

    Attributes:
        layers: per decoder stage (before each layer and after the last) per scene:
            class_logits [N_b, C+1], mask_logits [N_b, T_b] (per token), background_logits [T_b] or None.
        query_seed_token: B tensors long [N_b], scene-local seed token of each query (-1 learned).
        token_objectness: B tensors [T_b] objectness logits, or None.
        tokens: the superpoint tokens (features [T, F], positions = centroids [T, 3], weights =
            points per token [T], offsets [B+1]).
        point_to_token: long [P] batch-global token of every point (= ``PointBatch.superpoint``).
        point_to_voxel: long [P] row of every point in the stride-1 voxel tensor.
        point_offsets: long [B+1] points of every scene.
        num_voxels: voxels of the batch (stride 1).
    """

    layers: list[LayerPrediction]
    query_seed_token: list[Tensor]
    token_objectness: Optional[list[Tensor]]
    tokens: Tokens
    point_to_token: Tensor
    point_to_voxel: Tensor
    point_offsets: Tensor
    num_voxels: int

    @property
    def final(self) -> LayerPrediction:
        return self.layers[-1]

    @property
    def batch_size(self) -> int:
        return len(self.query_seed_token)

    def scene_point_to_token(self) -> list[Tensor]:
        """B tensors long [P_b]: scene-local token index of each point of scene b."""
        local = self.point_to_token - self.tokens.offsets[batch_index_from_offsets(self.point_offsets)]
        return list(torch.split(local, (self.point_offsets[1:] - self.point_offsets[:-1]).tolist()))

    def to_points(self, per_token: Sequence[Tensor]) -> list[Tensor]:
        """Broadcast per-token values to every point of the scene (last dimension = tokens).

        Args:
            per_token: B tensors [..., T_b] (e.g. mask logits [N_b, T_b] or an owner index [T_b]).
        Returns:
            B tensors [..., P_b].
        """
        if len(per_token) != self.batch_size:
            raise ValueError(f"to_points: got {len(per_token)} scenes, the output has {self.batch_size}")
        return [values[..., index] for values, index in zip(per_token, self.scene_point_to_token())]

    def point_mask_logits(self, layer: int = -1) -> list[Tensor]:
        """B tensors [N_b, P_b]: mask logits of every query at every input point."""
        return self.to_points(self.layers[layer].mask_logits)


class InstanceSegmentor3D(nn.Module):
    """Backbone -> superpoint tokens -> query decoder.

    Args:
        backbone: a sparse 3D network; ``backbone(SparseTensor)`` returns an object whose ``features``
            is the stride-1 ``SparseTensor`` on the input voxels; it has an ``out_channels`` attribute
            (``pointformer.models.backbone3d.Res16UNet``).
        decoder: a ``QueryDecoder`` with ``token_dim == backbone.out_channels``.
        voxel_size: voxel edge in metres (Mask3D: 0.02).
    """

    def __init__(self, *, backbone: nn.Module, decoder: QueryDecoder, voxel_size: float = 0.02) -> None:
        super().__init__()
        if not voxel_size > 0:
            raise ValueError(f"voxel_size must be positive, got {voxel_size}")
        out_channels = getattr(backbone, "out_channels", None)
        if out_channels is not None and out_channels != decoder.token_dim:
            raise ValueError(f"backbone.out_channels={out_channels} differs from decoder token_dim={decoder.token_dim}")
        self.backbone = backbone
        self.decoder = decoder
        self.voxel_size = float(voxel_size)

    @property
    def num_classes(self) -> int:
        return self.decoder.num_classes

    @property
    def translation_period(self) -> float:
        """Metres: moving a scene by a multiple of this (on every axis) moves its voxels by whole cells of
        the backbone's coarsest stride, so the model sees the same voxels and gives the same features
        (``voxel_size`` x the backbone's ``max_stride``; 1 for a backbone that does not say it)."""
        return self.voxel_size * int(getattr(self.backbone, "max_stride", 1))

    @property
    def mask_activation(self) -> str:
        return self.decoder.mask_activation

    def point_features(self, batch: PointBatch) -> tuple[Tensor, Tensor, int]:
        """Backbone features of every point.

        Returns:
            point features [P, F], point_to_voxel long [P], number of voxels.
        """
        from pointformer.sparse.voxelize import voxelize  # sparse sits below models; imported lazily

        sparse, point_to_voxel = voxelize(batch.xyz, batch.features, batch.batch_index(), self.voxel_size)
        out = self.backbone(sparse)
        voxel_features = out.features.feats if hasattr(out, "features") else out.feats
        # index_select: the same gather as voxel_features[point_to_voxel], with a cheaper backward on CPU
        return voxel_features.index_select(0, point_to_voxel), point_to_voxel, int(sparse.coords.shape[0])

    def forward(
        self, batch: Any, *, num_queries: Optional[int] = None, generator: Optional[torch.Generator] = None
    ) -> SegmentorOutput:
        """
        Args:
            batch: a ``PointBatch`` or an object with its fields (``SceneBatch``).
            num_queries: queries per scene (default: the decoder's train / eval count).
            generator: random first FPS seed (see ``QueryDecoder.forward``).
        Returns:
            ``SegmentorOutput``.
        """
        batch = PointBatch.from_batch(batch)
        point_features, point_to_voxel, num_voxels = self.point_features(batch)
        tokens = superpoint_tokens(point_features, batch.xyz, batch.superpoint, batch.token_offsets)
        decoded: DecoderOutput = self.decoder(tokens, num_queries=num_queries, generator=generator)
        return SegmentorOutput(
            layers=decoded.layers,
            query_seed_token=decoded.query_seed_token,
            token_objectness=decoded.token_objectness,
            tokens=tokens,
            point_to_token=batch.superpoint,
            point_to_voxel=point_to_voxel,
            point_offsets=batch.point_offsets,
            num_voxels=num_voxels,
        )
