"""Fourier positional encoding of token positions, normalised to each scene's bounding box.

Mask3D encodes xyz with random Fourier features after scaling every scene to the unit cube; the same
encoding serves 2D (pixel coordinates, ``pos_dim=2``). Normalising per scene makes the encoding
independent of where the scene sits in the world and of the batch it is in.
"""
from __future__ import annotations

import math
from typing import Optional

import torch
from torch import Tensor, nn

from pointformer.models.tokens import batch_index_from_offsets

__all__ = ["normalize_positions", "FourierPositionEncoding"]


def normalize_positions(
    positions: Tensor, offsets: Tensor, *, valid: Optional[Tensor] = None, eps: float = 1e-6
) -> Tensor:
    """Scale every scene's positions to its bounding box: each axis to [0, 1].

    Args:
        positions: float [T, d] positions of a ragged batch.
        offsets: long [B+1] scene ``b`` owns rows ``offsets[b]:offsets[b+1]``.
        valid: optional bool [T]; only these rows define the bounding box (e.g. non-empty tokens).
        eps: smallest extent (an axis on which a scene is flat maps to 0 instead of dividing by 0).
    Returns:
        float [T, d] in [0, 1].
    """
    if positions.dim() != 2:
        raise ValueError(f"normalize_positions: positions must be [T, d], got {tuple(positions.shape)}")
    positions = positions.float()
    batch_size = offsets.numel() - 1
    batch = batch_index_from_offsets(offsets)
    index = batch[:, None].expand_as(positions)
    inf = positions.new_full((batch_size, positions.shape[1]), math.inf)
    lows, highs = positions, positions
    if valid is not None:
        lows = positions.masked_fill(~valid[:, None], math.inf)
        highs = positions.masked_fill(~valid[:, None], -math.inf)
    low = inf.scatter_reduce(0, index, lows, reduce="amin", include_self=True)
    high = (-inf).scatter_reduce(0, index, highs, reduce="amax", include_self=True)
    low = torch.where(torch.isfinite(low), low, torch.zeros_like(low))  # scenes without valid rows
    extent = (high - low).clamp_min(eps)
    return ((positions - low[batch]) / extent[batch]).clamp(0.0, 1.0)


class FourierPositionEncoding(nn.Module):
    """Random Fourier features ``[sin(2π·x·B), cos(2π·x·B)]`` of positions in [0, 1]^d.

    ``B`` [d, out_dim/2] is drawn once from N(0, scale²) with a fixed seed and stored as a buffer,
    so a checkpoint reproduces the encoding exactly.

    Args:
        pos_dim: d (3 for xyz, 2 for pixels).
        out_dim: encoding width (even).
        scale: standard deviation of the frequencies (Mask3D: 1.0 on unit-cube coordinates).
        seed: seed of the frequency draw.
    """

    def __init__(self, *, pos_dim: int, out_dim: int, scale: float = 1.0, seed: int = 0) -> None:
        super().__init__()
        if out_dim % 2:
            raise ValueError(f"FourierPositionEncoding: out_dim must be even, got {out_dim}")
        if pos_dim < 1:
            raise ValueError(f"FourierPositionEncoding: pos_dim must be >= 1, got {pos_dim}")
        generator = torch.Generator().manual_seed(seed)
        self.pos_dim = pos_dim
        self.out_dim = out_dim
        self.register_buffer("frequencies", torch.randn(pos_dim, out_dim // 2, generator=generator) * scale)

    def forward(self, normalized_positions: Tensor) -> Tensor:
        """[..., d] positions in [0, 1] -> [..., out_dim] float32 features."""
        if normalized_positions.shape[-1] != self.pos_dim:
            raise ValueError(
                f"FourierPositionEncoding: expected positions [..., {self.pos_dim}], "
                f"got {tuple(normalized_positions.shape)}"
            )
        projected = (2.0 * math.pi) * (normalized_positions.float() @ self.frequencies)
        return torch.cat([projected.sin(), projected.cos()], dim=-1)
