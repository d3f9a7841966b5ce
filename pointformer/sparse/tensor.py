"""`SparseTensor` — voxel features on a sparse set of integer coordinates — and the `KernelMapCache`
shared by every tensor of one network pass."""
from __future__ import annotations

from typing import Any, Optional

import torch

from pointformer.sparse.kernel_map import CoordinateLevel, KernelMap, build_submanifold_map, downsample
from pointformer.sparse.keys import check_coordinate_range


class KernelMapCache:
    """Coordinate sets (one per stride) and kernel maps of one network pass.

    Maps are built on first use and reused by every layer with the same (stride, kernel, dilation);
    the stride-2 down map of stride s is reused, read backwards, by the transposed up-convolution
    back onto stride s. Backends keep their own per-pass state in ``backend_state``.
    """

    def __init__(self) -> None:
        self._levels: dict[int, CoordinateLevel] = {}
        self._submanifold: dict[tuple[int, int, int], KernelMap] = {}
        self._down: dict[int, KernelMap] = {}
        self.backend_state: dict[str, Any] = {}

    def level(self, stride: int) -> CoordinateLevel:
        try:
            return self._levels[stride]
        except KeyError:
            raise ValueError(f"no voxel set of stride {stride} in this cache (have {sorted(self._levels)})") from None

    def register(self, stride: int, coords: torch.Tensor, name: str = "coords") -> CoordinateLevel:
        """Register the voxel set of ``stride``; an existing one must be identical."""
        if stride in self._levels:
            known = self._levels[stride].coords
            if known is not coords and not (known.shape == coords.shape and torch.equal(known, coords)):
                raise ValueError(f"{name}: a different voxel set of stride {stride} is already in this cache")
            return self._levels[stride]
        level = CoordinateLevel.from_coords(stride, coords, name)
        self._levels[stride] = level
        return level

    def submanifold_map(self, stride: int, kernel_size: int, dilation: int) -> KernelMap:
        key = (stride, kernel_size, dilation)
        kmap = self._submanifold.get(key)
        if kmap is None:
            kmap = build_submanifold_map(self.level(stride), kernel_size, dilation)
            self._submanifold[key] = kmap
        return kmap

    def down_map(self, stride: int) -> KernelMap:
        """Map of the 2x2x2 stride-2 convolution from stride ``stride`` to ``2 * stride``."""
        kmap = self._down.get(stride)
        if kmap is None:
            coarse, kmap = downsample(self.level(stride))
            if stride * 2 in self._levels:
                self.register(stride * 2, coarse.coords, name=f"stride-{stride * 2} coordinates")
            else:
                self._levels[stride * 2] = coarse
            self._down[stride] = kmap
        return kmap

    @property
    def strides(self) -> list[int]:
        """The strides whose voxel sets this cache holds, ascending."""
        return sorted(self._levels)


def _is_power_of_two(v: int) -> bool:
    return v > 0 and (v & (v - 1)) == 0


class SparseTensor:
    """Features on a sparse voxel grid, several scenes batched.

    coords: int32 [N, 4] = (batch, x, y, z) in voxels of this tensor's stride (a stride-s voxel
        covers s x s x s stride-1 voxels; its coordinate is floor(fine coordinate / s)).
    feats: floating [N, C] features, row i belongs to coords[i].
    stride: power of two.
    cache: the KernelMapCache shared by all tensors of the pass (a new one when omitted).
    """

    __slots__ = ("coords", "feats", "stride", "cache")

    def __init__(self, coords: torch.Tensor, feats: torch.Tensor, stride: int = 1,
                 cache: Optional[KernelMapCache] = None, *, _trusted: bool = False) -> None:
        if not _trusted:
            _validate(coords, feats, stride)
            cache = cache if cache is not None else KernelMapCache()
            cache.register(int(stride), coords)
        elif cache is None:
            raise ValueError("a trusted SparseTensor needs its cache")
        self.coords = coords
        self.feats = feats
        self.stride = int(stride)
        self.cache = cache

    # ------------------------------------------------------------------ views
    def replace_feats(self, feats: torch.Tensor) -> "SparseTensor":
        """Same coordinates, new features [N, C'] (e.g. after batch norm or an activation)."""
        if feats.dim() != 2 or feats.shape[0] != self.coords.shape[0]:
            raise ValueError(f"replace_feats: expected [{self.coords.shape[0]}, C] features, got {tuple(feats.shape)}")
        return SparseTensor(self.coords, feats, self.stride, self.cache, _trusted=True)

    @property
    def num_voxels(self) -> int:
        return int(self.coords.shape[0])

    @property
    def num_channels(self) -> int:
        return int(self.feats.shape[1])

    @property
    def batch_index(self) -> torch.Tensor:
        """int64 [N] batch item of each voxel."""
        return self.coords[:, 0].long()

    @property
    def batch_size(self) -> int:
        """Number of batch items (max batch index + 1)."""
        return int(self.coords[:, 0].max()) + 1 if self.num_voxels else 0

    @property
    def device(self) -> torch.device:
        return self.feats.device

    def same_voxels(self, other: "SparseTensor") -> bool:
        """True when both tensors live on the same voxel set (same cache and stride)."""
        return self.cache is other.cache and self.stride == other.stride

    def dense(self, shape: Optional[tuple[int, int, int]] = None,
              origin: Optional[tuple[int, int, int]] = None) -> torch.Tensor:
        """Dense [B, C, X, Y, Z] copy (zeros where empty), for tests and small grids.

        ``origin`` is the coordinate of voxel (0, 0, 0) (default: the minimum coordinate).
        """
        c = self.coords.long()
        o = c[:, 1:].min(0).values if origin is None else torch.tensor(origin, device=c.device)
        rel = c[:, 1:] - o
        if shape is None:
            shape = tuple(int(v) + 1 for v in rel.max(0).values)
        out = self.feats.new_zeros((self.batch_size, self.num_channels) + tuple(shape))
        out[c[:, 0], :, rel[:, 0], rel[:, 1], rel[:, 2]] = self.feats
        return out

    def __repr__(self) -> str:
        return (f"SparseTensor(voxels={self.num_voxels}, channels={self.num_channels}, stride={self.stride}, "
                f"batch={self.batch_size}, dtype={self.feats.dtype}, device={self.feats.device})")


def _validate(coords: torch.Tensor, feats: torch.Tensor, stride: int) -> None:
    if not isinstance(coords, torch.Tensor) or not isinstance(feats, torch.Tensor):
        raise ValueError("SparseTensor: coords and feats must be torch tensors")
    if coords.dtype != torch.int32:
        raise ValueError(f"SparseTensor: coords must be int32 [N, 4], got dtype {coords.dtype}")
    if coords.dim() != 2 or coords.shape[1] != 4:
        raise ValueError(f"SparseTensor: coords must be [N, 4] (batch, x, y, z), got shape {tuple(coords.shape)}")
    if not feats.is_floating_point():
        raise ValueError(f"SparseTensor: feats must be floating point [N, C], got dtype {feats.dtype}")
    if feats.dim() != 2:
        raise ValueError(f"SparseTensor: feats must be [N, C], got shape {tuple(feats.shape)}")
    if feats.shape[0] != coords.shape[0]:
        raise ValueError(f"SparseTensor: {coords.shape[0]} coordinates but {feats.shape[0]} feature rows")
    if coords.shape[0] == 0:
        raise ValueError("SparseTensor: empty voxel set (no coordinates)")
    if coords.device != feats.device:
        raise ValueError(f"SparseTensor: coords on {coords.device} but feats on {feats.device}")
    if isinstance(stride, bool) or not isinstance(stride, int) or not _is_power_of_two(stride):
        raise ValueError(f"SparseTensor: stride must be a positive power of two, got {stride!r}")
    check_coordinate_range(coords, "SparseTensor coords")
