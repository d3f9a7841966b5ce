"""Backend selection: one module API, the convolution kernels of either backend.

``torch`` (default): pointformer's own gather-GEMM-scatter in plain PyTorch (CPU and CUDA).
``minkowski``: MinkowskiEngine 0.5.4 (optional; ``make minkowski`` builds it).
Weights are always stored in pointformer's layout, so one state_dict serves both backends.
"""
from __future__ import annotations

import importlib
import warnings
from typing import Protocol

import torch

from pointformer.sparse import functional as F
from pointformer.sparse.tensor import SparseTensor

BACKENDS = ("torch", "minkowski")


class BackendUnavailableError(ImportError):
    """The requested sparse-convolution backend is not installed."""


class SparseBackend(Protocol):
    name: str

    def submanifold_conv3d(self, x: SparseTensor, weight: torch.Tensor, *, kernel_size: int,
                           dilation: int) -> SparseTensor: ...

    def down_conv3d(self, x: SparseTensor, weight: torch.Tensor) -> SparseTensor: ...

    def up_conv3d(self, x: SparseTensor, weight: torch.Tensor, target: SparseTensor) -> SparseTensor: ...


class TorchBackend:
    """The pure-PyTorch backend (see functional.py)."""

    name = "torch"

    def submanifold_conv3d(self, x: SparseTensor, weight: torch.Tensor, *, kernel_size: int,
                           dilation: int) -> SparseTensor:
        return F.submanifold_conv3d(x, weight, kernel_size=kernel_size, dilation=dilation)

    def down_conv3d(self, x: SparseTensor, weight: torch.Tensor) -> SparseTensor:
        return F.down_conv3d(x, weight)

    def up_conv3d(self, x: SparseTensor, weight: torch.Tensor, target: SparseTensor) -> SparseTensor:
        return F.up_conv3d(x, weight, target)


_INSTANCES: dict[str, SparseBackend] = {"torch": TorchBackend()}
# MinkowskiEngine warns on every import of a CPU_ONLY build; a CPU build is a deliberate choice here.
_CPU_ONLY_WARNING = "The MinkowskiEngine was compiled with CPU_ONLY flag"


def minkowski_available() -> bool:
    """True when MinkowskiEngine can be imported."""
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=_CPU_ONLY_WARNING)
            importlib.import_module("MinkowskiEngine")
    except Exception:  # noqa: BLE001 - a broken build raises OSError/AttributeError too
        return False
    return True


def check_backend_name(name: str) -> str:
    if name not in BACKENDS:
        raise ValueError(f"unknown sparse backend {name!r}; choose one of {', '.join(BACKENDS)}")
    return name


def get_backend(name: str) -> SparseBackend:
    """The backend called ``name`` ('torch' or 'minkowski'); a clear error when it is missing."""
    check_backend_name(name)
    backend = _INSTANCES.get(name)
    if backend is None:
        try:
            from pointformer.sparse.minkowski import MinkowskiBackend
        except ImportError as exc:
            raise BackendUnavailableError(
                f"sparse backend 'minkowski' needs MinkowskiEngine 0.5.4, which is not importable ({exc}); "
                "build and install it with `make minkowski` (or use backend='torch')"
            ) from exc
        backend = _INSTANCES[name] = MinkowskiBackend()
    return backend
