"""Tokens: the modality-agnostic ragged batch the query decoder attends to.

In 3D a token is a superpoint (features mean-pooled over its points); in 2D it is a pixel or a patch.
The decoder and the losses see only this structure, never voxels or superpoints.

A batch of B scenes is stored flat, scene after scene: scene ``b`` owns rows
``offsets[b]:offsets[b + 1]`` of every per-token tensor. ``pad`` turns the flat layout into a dense
``[B, Tmax, ...]`` batch with a key-padding mask for attention; ``unpad`` and ``split`` go back.

Pooling uses native torch ops only: ``index_add_`` + ``bincount`` for the weighted mean
(``scatter_reduce(..., "mean")`` has a slow backward on CPU and torch-scatter is not a dependency).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import torch
from torch import Tensor

__all__ = [
    "Tokens",
    "offsets_from_counts",
    "batch_index_from_offsets",
    "pool_superpoints",
    "superpoint_tokens",
]


def offsets_from_counts(counts: Tensor) -> Tensor:
    """``counts`` long [B] -> offsets long [B+1] (``offsets[0] = 0``, cumulative sums after it)."""
    counts = torch.as_tensor(counts, dtype=torch.long)
    return torch.cat([counts.new_zeros(1), torch.cumsum(counts, 0)])


def batch_index_from_offsets(offsets: Tensor) -> Tensor:
    """offsets long [B+1] -> long [T]: the scene index of every row of a flat ragged batch."""
    counts = offsets[1:] - offsets[:-1]
    return torch.repeat_interleave(torch.arange(counts.numel(), device=offsets.device), counts)


@dataclass
class Tokens:
    """A ragged batch of tokens (superpoints in 3D, pixels or patches in 2D).

    Attributes:
        features:  float [T, D]  all tokens of the batch, scene after scene.
        positions: float [T, d]  xyz in metres (3D) or normalised pixel coordinates (2D).
        weights:   float [T]     points (or pixels) per token; the losses weight tokens by it.
        offsets:   long  [B+1]   scene ``b`` owns tokens ``offsets[b]:offsets[b+1]``.
    """

    features: Tensor
    positions: Tensor
    weights: Tensor
    offsets: Tensor

    def __post_init__(self) -> None:
        self.validate()

    # ------------------------------------------------------------------ layout
    @property
    def batch_size(self) -> int:
        return int(self.offsets.numel()) - 1

    @property
    def counts(self) -> Tensor:
        """long [B]: tokens per scene."""
        return self.offsets[1:] - self.offsets[:-1]

    @property
    def num_tokens(self) -> int:
        return int(self.features.shape[0])

    @property
    def device(self) -> torch.device:
        return self.features.device

    def batch_index(self) -> Tensor:
        """long [T]: the scene of every token."""
        return batch_index_from_offsets(self.offsets)

    def local_index(self) -> Tensor:
        """long [T]: the index of every token inside its own scene."""
        batch = self.batch_index()
        return torch.arange(self.num_tokens, device=self.offsets.device) - self.offsets[batch]

    def validate(self) -> None:
        """Raise ValueError when shapes, dtypes or offsets are inconsistent."""
        f, p, w, o = self.features, self.positions, self.weights, self.offsets
        if f.dim() != 2:
            raise ValueError(f"Tokens.features must be [T, D], got shape {tuple(f.shape)}")
        t = f.shape[0]
        if p.dim() != 2 or p.shape[0] != t:
            raise ValueError(f"Tokens.positions must be [T={t}, d], got shape {tuple(p.shape)}")
        if w.dim() != 1 or w.shape[0] != t:
            raise ValueError(f"Tokens.weights must be [T={t}], got shape {tuple(w.shape)}")
        if o.dim() != 1 or o.numel() < 2 or o.dtype != torch.long:
            raise ValueError(f"Tokens.offsets must be long [B+1] with B >= 1, got {o.dtype} shape {tuple(o.shape)}")
        if int(o[0]) != 0 or int(o[-1]) != t:
            raise ValueError(f"Tokens.offsets must start at 0 and end at T={t}, got {o[0].item()}..{o[-1].item()}")
        if bool((o[1:] < o[:-1]).any()):
            raise ValueError("Tokens.offsets must be non-decreasing")

    def to(self, device: torch.device | str) -> "Tokens":
        return Tokens(
            features=self.features.to(device),
            positions=self.positions.to(device),
            weights=self.weights.to(device),
            offsets=self.offsets.to(device),
        )

    # ------------------------------------------------------------- conversions
    def pad(self, x: Optional[Tensor] = None, *, value: float = 0.0) -> tuple[Tensor, Tensor]:
        """Dense batch of a per-token tensor.

        Args:
            x: [T, ...] (default: ``features``).
            value: fill value of the padding rows.
        Returns:
            padded [B, Tmax, ...] and key_padding_mask bool [B, Tmax] (True = padding).
        """
        x = self.features if x is None else x
        if x.shape[0] != self.num_tokens:
            raise ValueError(f"Tokens.pad: tensor has {x.shape[0]} rows, the batch has {self.num_tokens} tokens")
        counts = self.counts
        tmax = int(counts.max()) if counts.numel() else 0
        batch, local = self.batch_index(), self.local_index()
        padded = x.new_full((self.batch_size, tmax, *x.shape[1:]), value)
        padded[batch, local] = x  # index_put keeps the autograd path to x
        positions = torch.arange(tmax, device=self.offsets.device)
        key_padding_mask = positions[None, :] >= counts[:, None]
        return padded, key_padding_mask

    def unpad(self, padded: Tensor) -> Tensor:
        """Inverse of ``pad``: [B, Tmax, ...] -> [T, ...] (the padding rows are dropped)."""
        return padded[self.batch_index(), self.local_index()]

    def split(self, x: Optional[Tensor] = None, dim: int = 0) -> list[Tensor]:
        """Per-scene views of a per-token tensor ([T, ...] along ``dim``) -> B tensors [T_b, ...]."""
        x = self.features if x is None else x
        return list(torch.split(x, self.counts.tolist(), dim=dim))

    @staticmethod
    def cat(scenes: list["Tokens"]) -> "Tokens":
        """Concatenate ragged batches (e.g. single scenes) into one batch."""
        if not scenes:
            raise ValueError("Tokens.cat: empty list")
        counts = torch.cat([s.counts for s in scenes])
        return Tokens(
            features=torch.cat([s.features for s in scenes]),
            positions=torch.cat([s.positions for s in scenes]),
            weights=torch.cat([s.weights for s in scenes]),
            offsets=offsets_from_counts(counts).to(scenes[0].offsets.device),
        )


def pool_superpoints(
    point_features: Tensor, superpoint: Tensor, num_superpoints: int, *, point_weights: Optional[Tensor] = None
) -> Tensor:
    """Mean of the point features of every superpoint.

    Args:
        point_features: float [P, D].
        superpoint: long [P] batch-global superpoint id of every point, in ``0..num_superpoints-1``.
        num_superpoints: S.
        point_weights: optional float [P] per-point weights (default 1).
    Returns:
        float [S, D] (float32, or float64 for float64 input); a superpoint without points gets zeros.
    """
    if point_features.dim() != 2 or superpoint.dim() != 1 or superpoint.shape[0] != point_features.shape[0]:
        raise ValueError(
            f"pool_superpoints: expected point_features [P, D] and superpoint [P], got "
            f"{tuple(point_features.shape)} and {tuple(superpoint.shape)}"
        )
    superpoint = superpoint.long()
    # Sums of thousands of points overflow float16 (AMP): accumulate in float32 at least.
    values = point_features.to(torch.promote_types(point_features.dtype, torch.float32))
    if point_weights is None:
        count = torch.bincount(superpoint, minlength=num_superpoints).to(values.dtype)
    else:
        w = point_weights.to(values.dtype)
        values = values * w[:, None]
        count = values.new_zeros(num_superpoints).index_add_(0, superpoint, w)
    total = values.new_zeros(num_superpoints, values.shape[1]).index_add_(0, superpoint, values)
    return total / count.clamp_min(torch.finfo(count.dtype).tiny)[:, None]


def superpoint_tokens(
    point_features: Tensor, point_positions: Tensor, superpoint: Tensor, token_offsets: Tensor
) -> Tokens:
    """Pool per-point features and positions into superpoint tokens.

    Args:
        point_features: float [P, D] per-point features (e.g. backbone features gathered per point).
        point_positions: float [P, 3] xyz of every point.
        superpoint: long [P] batch-global token id of every point; scene b's superpoints are the ids
            ``token_offsets[b]:token_offsets[b+1]`` (scene-local id + ``token_offsets[b]``).
        token_offsets: long [B+1].
    Returns:
        ``Tokens``: features = mean point feature, positions = mean xyz, weights = point counts.
        A superpoint without points (e.g. cropped away) is an *empty* token: weight 0, zero
        features; the decoder predicts for it but never attends to it or seeds a query on it.
    """
    if point_features.shape[0] != point_positions.shape[0] or superpoint.shape != point_features.shape[:1]:
        raise ValueError(
            f"superpoint_tokens: point_features {tuple(point_features.shape)}, point_positions "
            f"{tuple(point_positions.shape)} and superpoint {tuple(superpoint.shape)} "
            "must have the same number of points"
        )
    num_tokens = int(token_offsets[-1])
    superpoint = superpoint.long()
    if superpoint.numel() and (int(superpoint.min()) < 0 or int(superpoint.max()) >= num_tokens):
        raise ValueError(
            f"superpoint_tokens: superpoint ids must lie in 0..{num_tokens - 1} (token_offsets[-1]={num_tokens}), "
            f"got {int(superpoint.min())}..{int(superpoint.max())}"
        )
    features = pool_superpoints(point_features, superpoint, num_tokens)
    # Positions carry no gradient; pooling them in float32 keeps centroids exact under AMP.
    positions = pool_superpoints(point_positions.detach().float(), superpoint, num_tokens)
    weights = torch.bincount(superpoint, minlength=num_tokens).float()
    return Tokens(features=features, positions=positions, weights=weights, offsets=token_offsets.long())
