"""Where tokens are, for the decoder: two encodings of position.

* ``"scene"`` (Mask3D): random Fourier features of positions scaled to each scene's bounding box
  (unit cube); the same encoding serves 2D (pixel coordinates, ``pos_dim=2``). Independent of where
  the scene sits in the world, but a token's code depends on the extent of the scene it is in: the
  same chair gets another code in a room, a tile of a building and the whole building.
* ``"relative"``: no absolute code at all; attention and masks see the *distance* between a query's
  seed and a token (:class:`DistanceBias`, a learned penalty per attention head, ALiBi-style), so a
  prediction depends on what is near, not on the extent of the scan — what tiled inference of large
  scans needs (``pointformer.inference.tiling``).
"""
from __future__ import annotations

import math
from typing import Optional

import torch
from torch import Tensor, nn

from pointformer.models.tokens import batch_index_from_offsets

__all__ = ["POSITION_ENCODINGS", "normalize_positions", "FourierPositionEncoding", "DistanceBias"]

POSITION_ENCODINGS = ("scene", "relative")


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


class DistanceBias(nn.Module):
    """A learned penalty linear in distance: ``bias[h] = -slope_h * distance`` (slope_h > 0, one per head).

    Added to attention logits (or mask logits) it makes near tokens weigh more, with a reach each head
    learns; it is a function of distances only, so it does not change when the scene is translated,
    cropped or extended far away. The initial slopes are spread geometrically over
    ``[min_slope, max_slope]`` (per unit of position: per metre in 3D), so heads start with different reaches.

    Args:
        num_heads: independent slopes (1 for a mask-logit bias).
        min_slope, max_slope: initial slope range (equal for one head: ``min_slope``).
    """

    def __init__(self, *, num_heads: int, min_slope: float = 0.25, max_slope: float = 2.0) -> None:
        super().__init__()
        if num_heads < 1:
            raise ValueError(f"DistanceBias: num_heads must be >= 1, got {num_heads}")
        if not 0.0 < min_slope <= max_slope:
            raise ValueError(f"DistanceBias: need 0 < min_slope <= max_slope, got {min_slope}, {max_slope}")
        slopes = torch.logspace(math.log10(min_slope), math.log10(max_slope), num_heads) if num_heads > 1 \
            else torch.tensor([min_slope])
        # softplus^-1 so that softplus(raw) starts at the chosen slopes and stays positive while training
        self.raw_slope = nn.Parameter(slopes + torch.log(-torch.expm1(-slopes)))

    @property
    def slopes(self) -> Tensor:
        """float [num_heads] current slopes (> 0)."""
        return nn.functional.softplus(self.raw_slope)

    def forward(self, distance: Tensor) -> Tensor:
        """float [B, N, T] distances -> float [B, num_heads, N, T] biases (<= 0)."""
        return -self.slopes.to(distance.dtype)[None, :, None, None] * distance[:, None]
