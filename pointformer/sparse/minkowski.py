"""The ``minkowski`` backend: MinkowskiEngine 0.5.4 kernels behind pointformer's SparseTensor API.

pointformer keeps its own voxel sets (one per stride, rows in pointformer's order); each is inserted
once per pass into a MinkowskiEngine CoordinateManager (coordinates scaled to stride-1 units, as ME
expects) and every convolution calls ME's autograd Functions between those coordinate-map keys, so
outputs come back row-aligned with pointformer's coordinates. Weights stay in pointformer's layout
(offset index z fastest); ME orders kernel offsets with x fastest, so the weight rows are permuted
(a differentiable gather) on every call and gradients arrive in pointformer's layout.
"""
from __future__ import annotations

import warnings
from dataclasses import dataclass, field
from functools import lru_cache

import torch

try:
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="The MinkowskiEngine was compiled with CPU_ONLY flag")
        import MinkowskiEngine as ME
    from MinkowskiEngine.MinkowskiConvolution import (
        MinkowskiConvolutionFunction,
        MinkowskiConvolutionTransposeFunction,
    )
    from MinkowskiEngine.MinkowskiKernelGenerator import KernelGenerator
    from MinkowskiEngineBackend._C import ConvolutionMode, CoordinateMapKey
except Exception as exc:  # noqa: BLE001 - a broken build can raise OSError/AttributeError as well
    raise ImportError(f"MinkowskiEngine could not be imported: {exc}") from exc

from pointformer.sparse.tensor import SparseTensor

_STATE = "minkowski"


@lru_cache(maxsize=None)
def me_weight_order(kernel_size: int) -> torch.Tensor:
    """Index ``perm`` with ``weight_me = weight_pointformer[perm]`` (int64 [K^3]).

    pointformer: k = ix*K*K + iy*K + iz (z fastest); MinkowskiEngine: k = ix + iy*K + iz*K*K (x fastest).
    """
    k = kernel_size
    perm = [ix * k * k + iy * k + iz for iz in range(k) for iy in range(k) for ix in range(k)]
    return torch.tensor(perm, dtype=torch.int64)


@dataclass
class _PassState:
    """Per-pass MinkowskiEngine state kept in the KernelMapCache."""

    manager: "ME.CoordinateManager"
    keys: dict[int, "CoordinateMapKey"] = field(default_factory=dict)
    generators: dict[tuple[int, int, int], "KernelGenerator"] = field(default_factory=dict)


def _state(x: SparseTensor) -> _PassState:
    st = x.cache.backend_state.get(_STATE)
    if st is None:
        if x.feats.is_cuda:
            map_type = ME.CoordinateMapType.GPU
        else:
            map_type = ME.CoordinateMapType.CPU
        manager = ME.CoordinateManager(D=3, num_threads=torch.get_num_threads(), coordinate_map_type=map_type)
        st = x.cache.backend_state[_STATE] = _PassState(manager)
    return st


def _key(x: SparseTensor, stride: int) -> "CoordinateMapKey":
    """ME coordinate-map key of the cache's voxel set of ``stride`` (inserted on first use)."""
    st = _state(x)
    key = st.keys.get(stride)
    if key is None:
        coords = x.cache.level(stride).coords
        me_coords = coords.clone()
        me_coords[:, 1:] *= stride  # ME keeps coordinates in stride-1 units
        me_coords = me_coords.contiguous()
        if not x.feats.is_cuda:
            me_coords = me_coords.cpu()
        key, (unique_map, _) = st.manager.insert_and_map(me_coords, [stride] * 3, "")
        n = coords.shape[0]
        if unique_map.numel() != n or not torch.equal(unique_map.long().cpu(), torch.arange(n)):
            raise RuntimeError("MinkowskiEngine reordered unique coordinates on insertion; rows would not align")
        st.keys[stride] = key
    return key


def _generator(x: SparseTensor, kernel_size: int, stride: int, dilation: int) -> "KernelGenerator":
    st = _state(x)
    gen = st.generators.get((kernel_size, stride, dilation))
    if gen is None:
        gen = KernelGenerator(kernel_size=kernel_size, stride=stride, dilation=dilation, dimension=3)
        st.generators[(kernel_size, stride, dilation)] = gen
    return gen


def _me_weight(weight: torch.Tensor, kernel_size: int) -> torch.Tensor:
    return weight.index_select(0, me_weight_order(kernel_size).to(weight.device)).contiguous()


class MinkowskiBackend:
    """Convolutions computed by MinkowskiEngine (CPU_ONLY or CUDA build, matching the tensors)."""

    name = "minkowski"

    def submanifold_conv3d(self, x: SparseTensor, weight: torch.Tensor, *, kernel_size: int,
                           dilation: int) -> SparseTensor:
        key = _key(x, x.stride)
        feats = MinkowskiConvolutionFunction.apply(
            x.feats.contiguous(), _me_weight(weight, kernel_size), _generator(x, kernel_size, 1, dilation),
            ConvolutionMode.DEFAULT, key, key, _state(x).manager)
        return x.replace_feats(feats)

    def down_conv3d(self, x: SparseTensor, weight: torch.Tensor) -> SparseTensor:
        x.cache.down_map(x.stride)  # creates pointformer's coarse voxel set (the output rows)
        in_key, out_key = _key(x, x.stride), _key(x, x.stride * 2)
        feats = MinkowskiConvolutionFunction.apply(
            x.feats.contiguous(), _me_weight(weight, 2), _generator(x, 2, 2, 1), ConvolutionMode.DEFAULT,
            in_key, out_key, _state(x).manager)
        coarse = x.cache.level(x.stride * 2)
        return SparseTensor(coarse.coords, feats, x.stride * 2, x.cache, _trusted=True)

    def up_conv3d(self, x: SparseTensor, weight: torch.Tensor, target: SparseTensor) -> SparseTensor:
        if target.cache is not x.cache or target.stride * 2 != x.stride:
            raise ValueError(
                f"up_conv3d: target must be the stride-{x.stride // 2} tensor of the same pass (same "
                f"KernelMapCache) whose downsampling produced this stride-{x.stride} tensor")
        in_key, out_key = _key(x, x.stride), _key(x, target.stride)
        feats = MinkowskiConvolutionTransposeFunction.apply(
            x.feats.contiguous(), _me_weight(weight, 2), _generator(x, 2, 2, 1), ConvolutionMode.DEFAULT,
            in_key, out_key, _state(x).manager)
        return target.replace_feats(feats)
