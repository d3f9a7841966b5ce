"""Packing of (batch, x, y, z) voxel coordinates into one sortable int64 key.

Layout (most significant first): 12 bits batch | 17 bits x | 17 bits y | 17 bits z, each spatial
component stored with a bias of 2**16. The key is linear in the coordinates as long as no component
leaves its 17-bit field, so the key of a neighbour is ``key + offset_key(offset)``: kernel maps are
built by adding one scalar to a sorted key array and calling ``torch.searchsorted``. Lexicographic
order of (batch, x, y, z) equals the numeric order of the keys.
"""
from __future__ import annotations

from typing import Sequence

import torch

AXIS_BITS = 17
BATCH_BITS = 12
_BIAS = 1 << (AXIS_BITS - 1)
_AXIS_MASK = (1 << AXIS_BITS) - 1
#: Kernel offsets (kernel_size // 2 * dilation, in voxels of the tensor's stride) may reach this far.
MAX_KERNEL_REACH = 255
#: Absolute voxel coordinates must stay below this so that neighbours never leave their field.
COORD_LIMIT = _BIAS - MAX_KERNEL_REACH - 1
#: Batch indices must be in [0, MAX_BATCH).
MAX_BATCH = 1 << BATCH_BITS


def pack_keys(coords: torch.Tensor) -> torch.Tensor:
    """Keys of integer coordinates ``coords`` [N, 4] (batch, x, y, z) -> int64 [N].

    The caller guarantees the ranges (see :func:`check_coordinate_range`).
    """
    c = coords.to(torch.int64)
    key = c[:, 0] << (3 * AXIS_BITS)
    key = key | ((c[:, 1] + _BIAS) << (2 * AXIS_BITS))
    key = key | ((c[:, 2] + _BIAS) << AXIS_BITS)
    return key | (c[:, 3] + _BIAS)


def unpack_keys(keys: torch.Tensor) -> torch.Tensor:
    """Inverse of :func:`pack_keys`: int64 [N] -> int32 [N, 4] (batch, x, y, z)."""
    out = torch.empty((keys.shape[0], 4), dtype=torch.int64, device=keys.device)
    out[:, 0] = keys >> (3 * AXIS_BITS)
    out[:, 1] = ((keys >> (2 * AXIS_BITS)) & _AXIS_MASK) - _BIAS
    out[:, 2] = ((keys >> AXIS_BITS) & _AXIS_MASK) - _BIAS
    out[:, 3] = (keys & _AXIS_MASK) - _BIAS
    return out.to(torch.int32)


def offset_key(offset: Sequence[int]) -> int:
    """Scalar to add to a key to move by ``offset`` = (dx, dy, dz) voxels (same batch)."""
    dx, dy, dz = (int(v) for v in offset)
    return (dx << (2 * AXIS_BITS)) + (dy << AXIS_BITS) + dz


def check_coordinate_range(coords: torch.Tensor, name: str) -> None:
    """Raise ValueError when ``coords`` [N, 4] cannot be keyed (batch or spatial range)."""
    if coords.numel() == 0:
        return
    b_min, b_max = int(coords[:, 0].min()), int(coords[:, 0].max())
    if b_min < 0 or b_max >= MAX_BATCH:
        raise ValueError(f"{name}: batch indices must be in [0, {MAX_BATCH}), got [{b_min}, {b_max}]")
    xyz = coords[:, 1:]
    lo, hi = int(xyz.min()), int(xyz.max())
    if lo < -COORD_LIMIT or hi > COORD_LIMIT:
        raise ValueError(
            f"{name}: voxel coordinates span [{lo}, {hi}], beyond the supported +-{COORD_LIMIT} voxels; "
            "use a larger voxel size or split the scene"
        )
