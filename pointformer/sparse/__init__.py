"""Sparse voxel tensors and the convolutions of a sparse U-Net, behind selectable backends.

Backends: ``torch`` (default; pure PyTorch, CPU and CUDA) and ``minkowski`` (MinkowskiEngine 0.5.4,
optional). See docs/sparse.md.
"""
from pointformer.sparse.backends import (
    BACKENDS,
    BackendUnavailableError,
    get_backend,
    minkowski_available,
)
from pointformer.sparse.functional import cat, down_conv3d, global_pool, submanifold_conv3d, up_conv3d
from pointformer.sparse.kernel_map import KernelMap, kernel_offsets
from pointformer.sparse.nn import (
    DownConv3d,
    SparseActivation,
    SparseBatchNorm,
    SparseGlobalPool,
    SparseReLU,
    SubmanifoldConv3d,
    UpConv3d,
    set_backend,
)
from pointformer.sparse.tensor import KernelMapCache, SparseTensor
from pointformer.sparse.voxelize import voxelize

__all__ = [
    "BACKENDS", "BackendUnavailableError", "get_backend", "minkowski_available",
    "cat", "down_conv3d", "global_pool", "submanifold_conv3d", "up_conv3d",
    "KernelMap", "kernel_offsets",
    "DownConv3d", "SparseActivation", "SparseBatchNorm", "SparseGlobalPool", "SparseReLU",
    "SubmanifoldConv3d", "UpConv3d", "set_backend",
    "KernelMapCache", "SparseTensor", "voxelize",
]
