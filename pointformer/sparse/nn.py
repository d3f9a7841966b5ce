"""Sparse layers (torch.nn.Module) with a selectable backend.

Convolution weights are stored as ``weight`` [K, Cin, Cout] in pointformer's offset order (z fastest,
see kernel_map.py) whatever the backend, so a state_dict moves between backends unchanged;
``set_backend`` switches a built network.
"""
from __future__ import annotations

import math
from typing import Callable, Optional

import torch
from torch import nn

from pointformer.sparse import functional as F
from pointformer.sparse.backends import check_backend_name, get_backend
from pointformer.sparse.keys import MAX_KERNEL_REACH
from pointformer.sparse.tensor import SparseTensor


def _check_channels(op: str, **values: int) -> None:
    for name, v in values.items():
        if isinstance(v, bool) or not isinstance(v, int) or v <= 0:
            raise ValueError(f"{op}: {name} must be a positive int, got {v!r}")


class _SparseConvBase(nn.Module):
    def __init__(self, *, in_channels: int, out_channels: int, kernel_volume: int, bias: bool,
                 backend: str) -> None:
        super().__init__()
        self.in_channels = in_channels
        self.out_channels = out_channels
        self.backend = check_backend_name(backend)
        self.weight = nn.Parameter(torch.empty(kernel_volume, in_channels, out_channels))
        self.bias = nn.Parameter(torch.zeros(out_channels)) if bias else None
        self.reset_parameters()

    def reset_parameters(self) -> None:
        # Kaiming-normal on the fan-out, as MinkowskiEngine's ResNet initialisation does.
        fan_out = self.weight.shape[0] * self.out_channels
        nn.init.normal_(self.weight, 0.0, math.sqrt(2.0 / fan_out))
        if self.bias is not None:
            nn.init.zeros_(self.bias)

    def _check_input(self, x: SparseTensor) -> None:
        if not isinstance(x, SparseTensor):
            raise ValueError(f"{type(self).__name__}: expected a SparseTensor, got {type(x).__name__}")
        if x.num_channels != self.in_channels:
            raise ValueError(
                f"{type(self).__name__}: expected {self.in_channels} input channels, got {x.num_channels}"
            )

    def _add_bias(self, y: SparseTensor) -> SparseTensor:
        return y if self.bias is None else y.replace_feats(y.feats + self.bias)

    def extra_repr(self) -> str:
        return (f"in_channels={self.in_channels}, out_channels={self.out_channels}, "
                f"bias={self.bias is not None}, backend={self.backend!r}")


class SubmanifoldConv3d(_SparseConvBase):
    """Submanifold convolution with an odd cubic kernel: [N, Cin] -> [N, Cout] on the same voxels.

    ``kernel_size`` 1 is a per-voxel linear map (identical on every backend).
    """

    def __init__(self, *, in_channels: int, out_channels: int, kernel_size: int = 3, dilation: int = 1,
                 bias: bool = False, backend: str = "torch") -> None:
        _check_channels("SubmanifoldConv3d", in_channels=in_channels, out_channels=out_channels,
                        kernel_size=kernel_size, dilation=dilation)
        if kernel_size % 2 == 0:
            raise ValueError(f"SubmanifoldConv3d: kernel_size must be odd, got {kernel_size}")
        if (kernel_size // 2) * dilation > MAX_KERNEL_REACH:
            raise ValueError(f"SubmanifoldConv3d: kernel reach (kernel_size // 2) * dilation must be <= "
                             f"{MAX_KERNEL_REACH}, got {(kernel_size // 2) * dilation}")
        self.kernel_size = kernel_size
        self.dilation = dilation
        super().__init__(in_channels=in_channels, out_channels=out_channels, kernel_volume=kernel_size ** 3,
                         bias=bias, backend=backend)

    def forward(self, x: SparseTensor) -> SparseTensor:
        self._check_input(x)
        if self.kernel_size == 1:
            y = x.replace_feats(x.feats @ self.weight[0])
        else:
            y = get_backend(self.backend).submanifold_conv3d(x, self.weight, kernel_size=self.kernel_size,
                                                             dilation=self.dilation)
        return self._add_bias(y)

    def extra_repr(self) -> str:
        return f"kernel_size={self.kernel_size}, dilation={self.dilation}, " + super().extra_repr()


class DownConv3d(_SparseConvBase):
    """2x2x2 convolution with stride 2: stride s -> stride 2s."""

    def __init__(self, *, in_channels: int, out_channels: int, bias: bool = False, backend: str = "torch") -> None:
        _check_channels("DownConv3d", in_channels=in_channels, out_channels=out_channels)
        super().__init__(in_channels=in_channels, out_channels=out_channels, kernel_volume=8, bias=bias,
                         backend=backend)

    def forward(self, x: SparseTensor) -> SparseTensor:
        self._check_input(x)
        return self._add_bias(get_backend(self.backend).down_conv3d(x, self.weight))


class UpConv3d(_SparseConvBase):
    """Transposed 2x2x2 stride-2 convolution from stride 2s onto the voxels of a stride-s ``target``."""

    def __init__(self, *, in_channels: int, out_channels: int, bias: bool = False, backend: str = "torch") -> None:
        _check_channels("UpConv3d", in_channels=in_channels, out_channels=out_channels)
        super().__init__(in_channels=in_channels, out_channels=out_channels, kernel_volume=8, bias=bias,
                         backend=backend)

    def forward(self, x: SparseTensor, target: SparseTensor) -> SparseTensor:  # type: ignore[override]
        self._check_input(x)
        if not isinstance(target, SparseTensor):
            raise ValueError(f"UpConv3d: target must be a SparseTensor, got {type(target).__name__}")
        return self._add_bias(get_backend(self.backend).up_conv3d(x, self.weight, target))


class SparseBatchNorm(nn.Module):
    """Batch norm over all voxels of the batch: [N, C] -> [N, C]."""

    def __init__(self, *, num_features: int, momentum: float = 0.1, eps: float = 1e-5) -> None:
        super().__init__()
        self.bn = nn.BatchNorm1d(num_features, eps=eps, momentum=momentum)

    def forward(self, x: SparseTensor) -> SparseTensor:
        return x.replace_feats(self.bn(x.feats))


class SparseActivation(nn.Module):
    """Apply an element-wise function to the features."""

    def __init__(self, *, fn: Callable[[torch.Tensor], torch.Tensor]) -> None:
        super().__init__()
        self.fn = fn

    def forward(self, x: SparseTensor) -> SparseTensor:
        return x.replace_feats(self.fn(x.feats))


class SparseReLU(nn.Module):
    def forward(self, x: SparseTensor) -> SparseTensor:
        return x.replace_feats(torch.relu(x.feats))


class SparseGlobalPool(nn.Module):
    """Pool each batch item: SparseTensor [N, C] -> dense [B, C]."""

    def __init__(self, *, mode: str = "mean") -> None:
        super().__init__()
        if mode not in ("mean", "max", "sum"):
            raise ValueError(f"SparseGlobalPool: mode must be 'mean', 'max' or 'sum', got {mode!r}")
        self.mode = mode

    def forward(self, x: SparseTensor, batch_size: Optional[int] = None) -> torch.Tensor:
        return F.global_pool(x, self.mode, batch_size)  # type: ignore[arg-type]


def set_backend(module: nn.Module, backend: str) -> nn.Module:
    """Switch every sparse convolution inside ``module`` to ``backend`` (weights unchanged)."""
    check_backend_name(backend)
    get_backend(backend)  # fail now, with the install hint, rather than in the first forward
    for m in module.modules():
        if isinstance(m, _SparseConvBase):
            m.backend = backend
    return module
