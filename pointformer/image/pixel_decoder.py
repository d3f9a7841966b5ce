"""FPN-style pixel decoder: the backbone's multi-scale maps -> one map of per-pixel features.

Every stage gets a 1x1 lateral projection to ``dim``; from the coarsest stage down, the running map is
upsampled (nearest) and added to the next lateral, then smoothed by a 3x3 convolution. The output is
the map at ``output_stride`` (one of the backbone's strides), the features the tokens are made of.
"""
from __future__ import annotations

from typing import Sequence

import torch.nn.functional as F
from torch import Tensor, nn

from pointformer.image.backbone import group_norm

__all__ = ["PixelDecoder"]


class PixelDecoder(nn.Module):
    """Top-down feature pyramid ending at ``output_stride``.

    Args:
        in_channels: the backbone's stage widths (``ResNet2D.out_channels``).
        strides: the backbone's stage strides (``ResNet2D.strides``).
        dim: output width D.
        output_stride: stride of the output map (must be one of ``strides``).
    """

    def __init__(self, *, in_channels: Sequence[int], strides: Sequence[int], dim: int = 64,
                 output_stride: int = 4) -> None:
        super().__init__()
        strides = [int(s) for s in strides]
        if output_stride not in strides:
            raise ValueError(f"pixel decoder: output_stride {output_stride} is not a backbone stride {strides}")
        if len(in_channels) != len(strides):
            raise ValueError(f"pixel decoder: {len(in_channels)} stage widths for {len(strides)} strides")
        self.first = strides.index(output_stride)  # the finest stage used
        used = list(in_channels)[self.first:]
        self.lateral = nn.ModuleList(nn.Conv2d(c, dim, 1) for c in used)
        self.smooth = nn.ModuleList(
            nn.Sequential(nn.Conv2d(dim, dim, 3, padding=1, bias=False), group_norm(dim), nn.ReLU(inplace=True))
            for _ in used)
        self.out = nn.Conv2d(dim, dim, 1)
        self.dim = dim
        self.output_stride = output_stride

    def forward(self, features: Sequence[Tensor]) -> Tensor:
        """features: the backbone's maps, finest first -> [B, D, H / output_stride, W / output_stride]."""
        used = list(features)[self.first:]
        x = self.smooth[-1](self.lateral[-1](used[-1]))
        for i in range(len(used) - 2, -1, -1):
            lateral = self.lateral[i](used[i])
            x = self.smooth[i](lateral + F.interpolate(x, size=lateral.shape[-2:], mode="nearest"))
        return self.out(x)
