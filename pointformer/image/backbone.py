"""A small ResNet for images, trained from scratch (no pretrained weights exist offline).

Stem: 3x3 convolution at stride 2. Then one stage per entry of ``channels``: ``blocks[i]`` basic
residual blocks (two 3x3 convolutions), the first of every stage after the first at stride 2. Stage
``i`` therefore has stride ``2 ** (i + 1)``: (2, 4, 8, 16) for four stages.

GroupNorm instead of BatchNorm: batches are a few images, and BatchNorm's running statistics lag
behind a short from-scratch run (the 3D tiny model needed bn_momentum 0.1 for eval mode to match
train mode; docs/model.md); GroupNorm has no running state, so train and eval modes agree.
"""
from __future__ import annotations

from typing import Sequence

from torch import Tensor, nn

__all__ = ["BasicBlock", "ResNet2D"]


def group_norm(channels: int) -> nn.GroupNorm:
    """GroupNorm with up to 8 groups (channels must be divisible: 8 groups when possible)."""
    groups = 8 if channels % 8 == 0 else 1
    return nn.GroupNorm(groups, channels)


class BasicBlock(nn.Module):
    """Two 3x3 convolutions with a residual; a 1x1 projection when the shape changes.

    Args:
        in_channels, out_channels: widths; stride: 1 or 2 (the first convolution's).
    """

    def __init__(self, *, in_channels: int, out_channels: int, stride: int = 1) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, out_channels, 3, stride=stride, padding=1, bias=False)
        self.norm1 = group_norm(out_channels)
        self.conv2 = nn.Conv2d(out_channels, out_channels, 3, padding=1, bias=False)
        self.norm2 = group_norm(out_channels)
        self.relu = nn.ReLU(inplace=True)
        self.shortcut: nn.Module = nn.Identity()
        if stride != 1 or in_channels != out_channels:
            self.shortcut = nn.Sequential(nn.Conv2d(in_channels, out_channels, 1, stride=stride, bias=False),
                                          group_norm(out_channels))

    def forward(self, x: Tensor) -> Tensor:
        """x [B, C_in, H, W] -> [B, C_out, H / stride, W / stride]."""
        y = self.relu(self.norm1(self.conv1(x)))
        y = self.norm2(self.conv2(y))
        return self.relu(y + self.shortcut(x))


class ResNet2D(nn.Module):
    """The image backbone: a stem and ``len(channels)`` residual stages.

    Args:
        in_channels: image channels (3).
        channels: width of every stage, e.g. (32, 64, 128, 256).
        blocks: residual blocks per stage (same length as ``channels``).
        stem_channels: width of the stride-2 stem (default: ``channels[0]``).
    """

    def __init__(self, *, in_channels: int = 3, channels: Sequence[int] = (32, 64, 128, 256),
                 blocks: Sequence[int] = (1, 1, 1, 1), stem_channels: int | None = None) -> None:
        super().__init__()
        channels, blocks = [int(c) for c in channels], [int(b) for b in blocks]
        if not channels or len(channels) != len(blocks):
            raise ValueError(f"backbone: channels {channels} and blocks {blocks} must be non-empty and of one length")
        if min(channels) < 1 or min(blocks) < 1:
            raise ValueError(f"backbone: channels {channels} and blocks {blocks} must be positive")
        stem = int(stem_channels or channels[0])
        self.stem = nn.Sequential(nn.Conv2d(in_channels, stem, 3, stride=2, padding=1, bias=False),
                                  group_norm(stem), nn.ReLU(inplace=True))
        stages = []
        width = stem
        for i, (out, count) in enumerate(zip(channels, blocks)):
            layers = [BasicBlock(in_channels=width, out_channels=out, stride=1 if i == 0 else 2)]
            layers += [BasicBlock(in_channels=out, out_channels=out) for _ in range(count - 1)]
            stages.append(nn.Sequential(*layers))
            width = out
        self.stages = nn.ModuleList(stages)
        self.out_channels: tuple[int, ...] = tuple(channels)
        self.strides: tuple[int, ...] = tuple(2 ** (i + 1) for i in range(len(channels)))

    def forward(self, images: Tensor) -> list[Tensor]:
        """images [B, C, H, W] (H, W divisible by the last stride) -> one map per stage,
        [B, channels[i], H / strides[i], W / strides[i]]."""
        x = self.stem(images)
        features = []
        for stage in self.stages:
            x = stage(x)
            features.append(x)
        return features
