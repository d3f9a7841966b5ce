"""Points -> voxels (with the inverse map back to every point)."""
from __future__ import annotations

import math
import numbers
from typing import Literal

import torch

from pointformer.sparse.keys import COORD_LIMIT, MAX_BATCH, pack_keys, unpack_keys
from pointformer.sparse.tensor import KernelMapCache, SparseTensor

Reduction = Literal["mean", "first"]


def voxelize(xyz: torch.Tensor, feats: torch.Tensor, batch_index: torch.Tensor, voxel_size: float,
             reduction: Reduction = "mean") -> tuple[SparseTensor, torch.Tensor]:
    """Quantise points to voxels of edge ``voxel_size``.

    xyz: float [P, 3] point positions; feats: float [P, C] point features;
    batch_index: integer [P] batch item of each point (0..B-1).
    Voxel coordinate = floor(xyz / voxel_size). ``reduction`` = "mean" averages the features of the
    points in a voxel; "first" keeps the features of the voxel's lowest-index point.
    Returns (SparseTensor at stride 1 with voxels sorted by (batch, x, y, z), point_to_voxel int64 [P])
    so that ``tensor.feats[point_to_voxel]`` brings voxel outputs back to every point.
    """
    _check_inputs(xyz, feats, batch_index, voxel_size, reduction)
    grid = torch.floor(xyz.double() / float(voxel_size))
    lo, hi = float(grid.min()), float(grid.max())
    if lo < -COORD_LIMIT or hi > COORD_LIMIT:
        raise ValueError(
            f"voxelize: the points span voxel coordinates [{lo:.0f}, {hi:.0f}] at voxel_size={voxel_size}, "
            f"beyond the supported +-{COORD_LIMIT}; use a larger voxel_size or split the scene"
        )
    coords = torch.cat([batch_index.to(torch.int64)[:, None], grid.to(torch.int64)], dim=1)
    keys, point_to_voxel = torch.unique(pack_keys(coords), sorted=True, return_inverse=True)
    n = keys.shape[0]
    if reduction == "mean":
        counts = torch.bincount(point_to_voxel, minlength=n).to(feats.dtype)
        vfeats = feats.new_zeros((n, feats.shape[1])).index_add_(0, point_to_voxel, feats)
        vfeats = vfeats / counts[:, None]
    else:
        first = torch.full((n,), feats.shape[0], dtype=torch.int64, device=feats.device)
        first.scatter_reduce_(0, point_to_voxel, torch.arange(feats.shape[0], device=feats.device), "amin")
        vfeats = feats[first]
    vcoords = unpack_keys(keys)
    cache = KernelMapCache()
    cache.register(1, vcoords)
    return SparseTensor(vcoords, vfeats, 1, cache, _trusted=True), point_to_voxel


def _check_inputs(xyz: torch.Tensor, feats: torch.Tensor, batch_index: torch.Tensor, voxel_size: float,
                  reduction: str) -> None:
    for name, t in (("xyz", xyz), ("feats", feats), ("batch_index", batch_index)):
        if not isinstance(t, torch.Tensor):
            raise ValueError(f"voxelize: {name} must be a torch.Tensor, got {type(t).__name__}")
    if not xyz.is_floating_point():
        raise ValueError(f"voxelize: xyz must be a floating tensor [P, 3], got dtype {xyz.dtype}")
    if xyz.dim() != 2 or xyz.shape[1] != 3:
        raise ValueError(f"voxelize: xyz must have shape [P, 3], got {tuple(xyz.shape)}")
    if xyz.shape[0] == 0:
        raise ValueError("voxelize: empty point set (xyz has 0 points)")
    if not feats.is_floating_point():
        raise ValueError(f"voxelize: feats must be a floating tensor [P, C], got dtype {feats.dtype}")
    if feats.dim() != 2:
        raise ValueError(f"voxelize: feats must have shape [P, C], got {tuple(feats.shape)}")
    if batch_index.dtype.is_floating_point or batch_index.dtype == torch.bool or batch_index.is_complex():
        raise ValueError(f"voxelize: batch_index must be an integer tensor [P], got dtype {batch_index.dtype}")
    if batch_index.dim() != 1:
        raise ValueError(f"voxelize: batch_index must have shape [P], got {tuple(batch_index.shape)}")
    p = xyz.shape[0]
    if feats.shape[0] != p or batch_index.shape[0] != p:
        raise ValueError(
            f"voxelize: mismatched point counts: xyz {p}, feats {feats.shape[0]}, batch_index {batch_index.shape[0]}"
        )
    if len({xyz.device, feats.device, batch_index.device}) != 1:
        raise ValueError("voxelize: xyz, feats and batch_index must be on the same device")
    bad = ~torch.isfinite(xyz).all(dim=1)
    if bool(bad.any()):
        i = int(bad.nonzero()[0, 0])
        raise ValueError(f"voxelize: xyz has {int(bad.sum())} points with NaN/inf coordinates (first: point {i})")
    if not bool(torch.isfinite(feats).all()):
        raise ValueError("voxelize: feats contain NaN/inf values")
    b_min, b_max = int(batch_index.min()), int(batch_index.max())
    if b_min < 0 or b_max >= MAX_BATCH:
        raise ValueError(f"voxelize: batch_index must be in [0, {MAX_BATCH}), got [{b_min}, {b_max}]")
    if isinstance(voxel_size, bool) or not isinstance(voxel_size, numbers.Real) or not math.isfinite(voxel_size) \
            or voxel_size <= 0:
        raise ValueError(f"voxelize: voxel_size must be a positive finite number, got {voxel_size!r}")
    if reduction not in ("mean", "first"):
        raise ValueError(f"voxelize: reduction must be 'mean' or 'first', got {reduction!r}")
