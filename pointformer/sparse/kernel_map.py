"""Kernel maps of the torch backend: which input row feeds which output row through which weight.

A map is stored "grouped": the (input row, output row) pairs of all kernel offsets are concatenated,
offset after offset, and ``segments`` gives each offset's slice; a convolution gathers the input rows
of a slice, multiplies them by that offset's weight and scatter-adds the products into the output
rows (gather-GEMM-scatter). The centre offset of a submanifold convolution is the identity and is
not stored: it is one plain GEMM over all rows.

Weight index of a kernel offset (ox, oy, oz) with h = kernel_size // 2 (odd kernels) or h = 0
(the 2x2x2 stride-2 kernels, offsets in {0, 1}):  k = (ox+h)*K*K + (oy+h)*K + (oz+h)  — z fastest,
the flattening order of a dense ``conv3d`` weight ``[Cout, Cin, K, K, K]``.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import torch

from pointformer.sparse.keys import offset_key, pack_keys, unpack_keys


@dataclass(frozen=True)
class CoordinateLevel:
    """The voxel set of one stride.

    coords: int32 [N, 4] (batch, x, y, z) in voxels of this stride, in row order.
    sorted_keys: int64 [N] ascending keys of ``coords``.
    sorted_rows: int64 [N] row of each sorted key, or None when rows are already in key order.
    """

    stride: int
    coords: torch.Tensor
    sorted_keys: torch.Tensor
    sorted_rows: Optional[torch.Tensor]

    @property
    def num_rows(self) -> int:
        return int(self.coords.shape[0])

    @staticmethod
    def from_coords(stride: int, coords: torch.Tensor, name: str = "coords") -> "CoordinateLevel":
        keys = pack_keys(coords)
        if keys.numel() > 1 and bool((keys[1:] <= keys[:-1]).any()):
            sorted_keys, rows = torch.sort(keys)
            if bool((sorted_keys[1:] == sorted_keys[:-1]).any()):
                raise ValueError(f"{name}: duplicate voxel coordinates (each (batch, x, y, z) must appear once)")
            return CoordinateLevel(stride, coords, sorted_keys, rows)
        return CoordinateLevel(stride, coords, keys, None)

    def lookup(self, query_keys: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Rows holding ``query_keys`` [Q] -> (found mask bool [Q], row int64 [Q] valid where found)."""
        n = self.sorted_keys.shape[0]
        pos = torch.searchsorted(self.sorted_keys, query_keys)
        pos.clamp_(max=n - 1)
        found = self.sorted_keys[pos] == query_keys
        rows = pos if self.sorted_rows is None else self.sorted_rows[pos]
        return found, rows


@dataclass(frozen=True)
class KernelMap:
    """Grouped (input row -> output row) pairs of a convolution.

    in_rows, out_rows: int64 [M] pairs, grouped by kernel offset.
    segments: (weight index, start, end) of each offset's slice of the pairs.
    centre: weight index applied as a plain GEMM on all rows (in == out sets), or None.
    num_in, num_out: row counts of the input and output tensors.
    out_is_permutation / in_is_permutation: every output (input) row appears exactly once in the
        pairs, so the scatter is a copy rather than an accumulation.
    """

    in_rows: torch.Tensor
    out_rows: torch.Tensor
    segments: tuple[tuple[int, int, int], ...]
    centre: Optional[int]
    num_in: int
    num_out: int
    kernel_volume: int
    out_is_permutation: bool = False
    in_is_permutation: bool = False

    def transposed(self) -> "KernelMap":
        """The same pairs read backwards (output -> input): the map of the adjoint operator."""
        return KernelMap(self.out_rows, self.in_rows, self.segments, self.centre, self.num_out, self.num_in,
                         self.kernel_volume, self.in_is_permutation, self.out_is_permutation)

    @property
    def num_pairs(self) -> int:
        return int(self.in_rows.shape[0]) + (self.num_out if self.centre is not None else 0)


def kernel_offsets(kernel_size: int) -> list[tuple[int, int, int]]:
    """Offsets of an odd kernel in weight-index order (z fastest)."""
    h = kernel_size // 2
    r = range(-h, h + 1)
    return [(x, y, z) for x in r for y in r for z in r]


def build_submanifold_map(level: CoordinateLevel, kernel_size: int, dilation: int) -> KernelMap:
    """Map of a submanifold (output set = input set) convolution with an odd kernel.

    Only half of the non-centre offsets are searched: the pairs of offset -o are the pairs of +o with
    input and output swapped.
    """
    offsets = kernel_offsets(kernel_size)
    centre = len(offsets) // 2
    index = {o: k for k, o in enumerate(offsets)}
    keys = level.sorted_keys
    in_parts: list[torch.Tensor] = []
    out_parts: list[torch.Tensor] = []
    found_pairs: dict[int, tuple[torch.Tensor, torch.Tensor]] = {}
    for o in offsets[centre + 1:]:  # lexicographically positive half
        q = keys + offset_key((o[0] * dilation, o[1] * dilation, o[2] * dilation))
        found, rows = level.lookup(q)
        out_pos = found.nonzero().squeeze(1)
        src = rows[out_pos]  # input rows at coord + o
        dst = out_pos if level.sorted_rows is None else level.sorted_rows[out_pos]
        found_pairs[index[o]] = (src, dst)
        found_pairs[index[(-o[0], -o[1], -o[2])]] = (dst, src)
    segments = []
    start = 0
    for k in range(len(offsets)):
        if k == centre:
            continue
        src, dst = found_pairs[k]
        n = int(src.shape[0])
        if n == 0:
            continue
        in_parts.append(src)
        out_parts.append(dst)
        segments.append((k, start, start + n))
        start += n
    device = keys.device
    empty = torch.empty(0, dtype=torch.int64, device=device)
    in_rows = torch.cat(in_parts) if in_parts else empty
    out_rows = torch.cat(out_parts) if out_parts else empty
    n = level.num_rows
    return KernelMap(in_rows, out_rows, tuple(segments), centre, n, n, len(offsets))


def downsample(level: CoordinateLevel) -> tuple[CoordinateLevel, KernelMap]:
    """The stride-2 coarser voxel set of ``level`` and the 2x2x2 stride-2 convolution map onto it.

    A fine voxel c belongs to the coarse voxel floor(c / 2) through offset c - 2 floor(c / 2) in
    {0, 1}^3, so every fine row appears exactly once (the transposed map is a copy, not a sum).
    Coarse rows come out in key order.
    """
    coords = level.coords
    parent = coords.clone()
    parent[:, 1:] = torch.div(coords[:, 1:], 2, rounding_mode="floor")
    off = (coords[:, 1:] - 2 * parent[:, 1:]).to(torch.int64)
    off_id = off[:, 0] * 4 + off[:, 1] * 2 + off[:, 2]
    coarse_keys, inverse = torch.unique(pack_keys(parent), sorted=True, return_inverse=True)
    coarse = CoordinateLevel(level.stride * 2, unpack_keys(coarse_keys), coarse_keys, None)
    order = torch.argsort(off_id, stable=True)
    counts = torch.bincount(off_id, minlength=8).tolist()
    segments = []
    start = 0
    for k, c in enumerate(counts):
        if c:
            segments.append((k, start, start + c))
            start += c
    kmap = KernelMap(order, inverse[order], tuple(segments), None, level.num_rows, coarse.num_rows, 8,
                     out_is_permutation=False, in_is_permutation=True)
    return coarse, kmap
