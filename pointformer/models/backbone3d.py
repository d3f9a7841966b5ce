"""Res16UNet — the sparse-voxel U-Net backbone of Mask3D / SPFormer — on ``pointformer.sparse``.

Layout (MinkowskiEngine's Res16UNetBase, as used by Mask3D):
    conv0 (kernel ``first_kernel_size``, stride 1) -> bn -> relu                        = p1   (stride 1)
    4 x [down-conv 2x2x2 s2 -> bn -> relu -> residual blocks]                           = b1p2, b2p4, b3p8, b4p16
    4 x [up-conv 2x2x2 s2 -> bn -> relu -> cat(up, encoder skip) -> residual blocks]    strides 8, 4, 2, 1
Residual blocks are ResNet BasicBlocks (two 3x3x3 submanifold convs; a 1x1 conv + bn projection on
the shortcut when the width changes). Convolutions have no bias; batch-norm momentum 0.02.
The decoder outputs at strides 16 (the encoder bottom), 8, 4, 2, 1 are the multi-scale maps.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

from torch import nn

from pointformer.sparse import (
    DownConv3d,
    SparseBatchNorm,
    SparseReLU,
    SparseTensor,
    SubmanifoldConv3d,
    UpConv3d,
    cat,
)
from pointformer.sparse.backends import check_backend_name, get_backend


@dataclass(frozen=True)
class Res16UNetVariant:
    """blocks: residual blocks per stage (4 encoder then 4 decoder stages); planes: their widths."""

    blocks: tuple[int, int, int, int, int, int, int, int]
    planes: tuple[int, int, int, int, int, int, int, int]
    init_dim: int
    first_kernel_size: int


VARIANTS: dict[str, Res16UNetVariant] = {
    # Mask3D / SPFormer / OneFormer3D backbone.
    "34C": Res16UNetVariant((2, 3, 4, 6, 2, 2, 2, 2), (32, 64, 128, 256, 256, 128, 96, 96), 32, 5),
    "18A": Res16UNetVariant((2, 2, 2, 2, 2, 2, 2, 2), (32, 64, 128, 256, 128, 128, 96, 96), 32, 3),
    "14A": Res16UNetVariant((1, 1, 1, 1, 1, 1, 1, 1), (32, 64, 128, 256, 128, 128, 96, 96), 32, 3),
    # Narrow and shallow: CPU tests, the demo and smoke runs.
    "tiny": Res16UNetVariant((1, 1, 1, 1, 1, 1, 1, 1), (16, 16, 32, 32, 32, 16, 16, 16), 16, 3),
}


@dataclass
class BackboneOutput:
    """features: stride-1 SparseTensor [Nv, out_channels] on the input voxels.
    multiscale: decoder maps at strides 16, 8, 4, 2, 1 (coarse to fine; the last one is the stride-1
    map before the optional output projection)."""

    features: SparseTensor
    multiscale: list[SparseTensor]


class BasicBlock(nn.Module):
    """relu(bn(conv(relu(bn(conv(x))))) + shortcut(x)), 3x3x3 submanifold convs."""

    def __init__(self, *, in_channels: int, channels: int, dilation: int, bn_momentum: float, backend: str) -> None:
        super().__init__()
        self.conv1 = SubmanifoldConv3d(in_channels=in_channels, out_channels=channels, kernel_size=3,
                                       dilation=dilation, backend=backend)
        self.norm1 = SparseBatchNorm(num_features=channels, momentum=bn_momentum)
        self.conv2 = SubmanifoldConv3d(in_channels=channels, out_channels=channels, kernel_size=3,
                                       dilation=dilation, backend=backend)
        self.norm2 = SparseBatchNorm(num_features=channels, momentum=bn_momentum)
        self.relu = SparseReLU()
        self.downsample: Optional[nn.Sequential] = None
        if in_channels != channels:
            self.downsample = nn.Sequential(
                SubmanifoldConv3d(in_channels=in_channels, out_channels=channels, kernel_size=1, backend=backend),
                SparseBatchNorm(num_features=channels, momentum=bn_momentum),
            )

    def forward(self, x: SparseTensor) -> SparseTensor:
        out = self.relu(self.norm1(self.conv1(x)))
        out = self.norm2(self.conv2(out))
        residual = x if self.downsample is None else self.downsample(x)
        return self.relu(out.replace_feats(out.feats + residual.feats))


def _stage(in_channels: int, channels: int, count: int, bn_momentum: float, backend: str) -> nn.Sequential:
    layers = []
    for i in range(count):
        layers.append(BasicBlock(in_channels=in_channels if i == 0 else channels, channels=channels, dilation=1,
                                 bn_momentum=bn_momentum, backend=backend))
    return nn.Sequential(*layers)


class Res16UNet(nn.Module):
    """Sparse residual U-Net, stride 1 -> 16 -> 1.

    in_channels: input feature channels (e.g. 3 for normalised colours).
    variant: "34C" (Mask3D), "18A", "14A" or "tiny".
    backend: sparse-convolution backend, "torch" or "minkowski" (same state_dict for both).
    out_channels: when given, a 1x1 conv with bias projects the stride-1 features to this width;
        otherwise ``features`` is the last decoder map (planes[7] channels: 96 for 34C).
    first_kernel_size: overrides the variant's first-convolution kernel (odd).
    Input: SparseTensor [Nv, in_channels] at stride 1; output: :class:`BackboneOutput`.
    """

    #: the coarsest stride: a shift of the input by a multiple of it (in voxels) shifts every map by
    #: whole cells, so the features are the same (strided convolutions group voxels by ``coord // stride``)
    max_stride = 16

    def __init__(self, *, in_channels: int, variant: str = "34C", backend: str = "torch",
                 out_channels: Optional[int] = None, first_kernel_size: Optional[int] = None,
                 bn_momentum: float = 0.02) -> None:
        super().__init__()
        if variant not in VARIANTS:
            raise ValueError(f"Res16UNet: unknown variant {variant!r}; choose one of {', '.join(VARIANTS)}")
        if isinstance(in_channels, bool) or not isinstance(in_channels, int) or in_channels <= 0:
            raise ValueError(f"Res16UNet: in_channels must be a positive int, got {in_channels!r}")
        check_backend_name(backend)
        if backend != "torch":
            get_backend(backend)  # raise the install hint at construction time
        spec = VARIANTS[variant]
        self.variant = variant
        self.in_channels = in_channels
        blocks, planes, init = spec.blocks, spec.planes, spec.init_dim
        k0 = spec.first_kernel_size if first_kernel_size is None else first_kernel_size

        def bn(c: int) -> SparseBatchNorm:
            return SparseBatchNorm(num_features=c, momentum=bn_momentum)

        self.conv0p1s1 = SubmanifoldConv3d(in_channels=in_channels, out_channels=init, kernel_size=k0, backend=backend)
        self.bn0 = bn(init)
        # Encoder: each stage halves the resolution then runs its residual blocks.
        self.down = nn.ModuleList()
        self.down_bn = nn.ModuleList()
        self.encoder = nn.ModuleList()
        width = init
        skip_widths = [init]
        for i in range(4):
            self.down.append(DownConv3d(in_channels=width, out_channels=width, backend=backend))
            self.down_bn.append(bn(width))
            self.encoder.append(_stage(width, planes[i], blocks[i], bn_momentum, backend))
            width = planes[i]
            skip_widths.append(width)
        # Decoder: up-conv to the finer voxels, concatenate the encoder skip, residual blocks.
        self.up = nn.ModuleList()
        self.up_bn = nn.ModuleList()
        self.decoder = nn.ModuleList()
        for i in range(4):
            skip = skip_widths[3 - i]
            self.up.append(UpConv3d(in_channels=width, out_channels=planes[4 + i], backend=backend))
            self.up_bn.append(bn(planes[4 + i]))
            self.decoder.append(_stage(planes[4 + i] + skip, planes[4 + i], blocks[4 + i], bn_momentum, backend))
            width = planes[4 + i]
        self.relu = SparseReLU()
        self.final: Optional[SubmanifoldConv3d] = None
        if out_channels is not None:
            self.final = SubmanifoldConv3d(in_channels=width, out_channels=out_channels, kernel_size=1, bias=True,
                                           backend=backend)
        self.out_channels = out_channels if out_channels is not None else width
        #: channels of the multiscale maps, strides 16, 8, 4, 2, 1
        self.multiscale_channels = [planes[3]] + list(planes[4:])
        for m in self.modules():
            if isinstance(m, nn.BatchNorm1d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)

    @property
    def backend(self) -> str:
        """The sparse backend the convolutions use now (``pointformer.sparse.set_backend`` switches it)."""
        return self.conv0p1s1.backend

    def forward(self, x: SparseTensor) -> BackboneOutput:
        if not isinstance(x, SparseTensor):
            raise ValueError(f"Res16UNet: expected a SparseTensor, got {type(x).__name__}")
        if x.stride != 1:
            raise ValueError(f"Res16UNet: input must be at stride 1, got stride {x.stride}")
        if x.num_channels != self.in_channels:
            raise ValueError(f"Res16UNet: expected {self.in_channels} input channels, got {x.num_channels}")
        out = self.relu(self.bn0(self.conv0p1s1(x)))
        skips = [out]
        for down, down_bn, stage in zip(self.down, self.down_bn, self.encoder):
            out = stage(self.relu(down_bn(down(out))))
            skips.append(out)
        multiscale = [out]
        for i, (up, up_bn, stage) in enumerate(zip(self.up, self.up_bn, self.decoder)):
            skip = skips[3 - i]
            out = self.relu(up_bn(up(out, skip)))
            out = stage(cat([out, skip]))
            multiscale.append(out)
        features = out if self.final is None else self.final(out)
        return BackboneOutput(features=features, multiscale=multiscale)
