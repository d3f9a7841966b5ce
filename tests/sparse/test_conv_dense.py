"""Every sparse convolution against dense conv3d / conv_transpose3d (float64, values and gradients)."""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as TF

from pointformer.sparse import SparseTensor, down_conv3d, submanifold_conv3d, up_conv3d

DT = torch.float64


def random_occupancy(gen: torch.Generator, batch: int, lo: int, hi: int, fill: float) -> torch.Tensor:
    """int32 [N, 4] random distinct voxels with coordinates in [lo, hi) in `batch` items."""
    size = hi - lo
    occ = torch.rand((batch, size, size, size), generator=gen) < fill
    idx = occ.nonzero()
    idx[:, 1:] += lo
    return idx.to(torch.int32)


def to_dense(coords: torch.Tensor, feats: torch.Tensor, batch: int, lo: int, size: int) -> torch.Tensor:
    c = coords.long()
    out = feats.new_zeros((batch, feats.shape[1], size, size, size))
    out[c[:, 0], :, c[:, 1] - lo, c[:, 2] - lo, c[:, 3] - lo] = feats
    return out


def at_voxels(dense: torch.Tensor, coords: torch.Tensor, lo: int) -> torch.Tensor:
    c = coords.long()
    return dense[c[:, 0], :, c[:, 1] - lo, c[:, 2] - lo, c[:, 3] - lo]


def dense_weight_to_sparse(w: torch.Tensor) -> torch.Tensor:
    """conv3d weight [Cout, Cin, K, K, K] -> [K^3, Cin, Cout] (z fastest)."""
    cout, cin = w.shape[:2]
    return w.permute(2, 3, 4, 1, 0).reshape(-1, cin, cout)


def assert_same_values_and_grads(sparse_out: torch.Tensor, dense_ref: torch.Tensor,
                                 inputs: tuple[torch.Tensor, ...], gen: torch.Generator) -> None:
    """Values equal, and the gradients of a random linear functional of both outputs equal."""
    torch.testing.assert_close(sparse_out, dense_ref, rtol=1e-10, atol=1e-10)
    r = torch.randn(dense_ref.shape, generator=gen, dtype=DT)
    for a, b in zip(torch.autograd.grad((sparse_out * r).sum(), inputs, retain_graph=True),
                    torch.autograd.grad((dense_ref * r).sum(), inputs, retain_graph=True)):
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("kernel_size,dilation", [(3, 1), (3, 2), (5, 1), (1, 1)])
@pytest.mark.parametrize("shuffle", [False, True])
def test_submanifold_matches_dense(kernel_size: int, dilation: int, shuffle: bool) -> None:
    gen = torch.Generator().manual_seed(kernel_size * 10 + dilation + int(shuffle))
    lo, hi, batch, cin, cout = -3, 5, 2, 3, 4
    coords = random_occupancy(gen, batch, lo, hi, 0.35)
    if shuffle:  # rows need not be in key order
        coords = coords[torch.randperm(coords.shape[0], generator=gen)]
    feats = torch.randn((coords.shape[0], cin), generator=gen, dtype=DT, requires_grad=True)
    wd = torch.randn((cout, cin, kernel_size, kernel_size, kernel_size), generator=gen, dtype=DT,
                     requires_grad=True)
    x = SparseTensor(coords, feats, 1)
    y = submanifold_conv3d(x, dense_weight_to_sparse(wd), kernel_size=kernel_size, dilation=dilation)
    dense_in = to_dense(coords, feats, batch, lo, hi - lo)
    pad = (kernel_size // 2) * dilation
    dense_out = TF.conv3d(dense_in, wd, padding=pad, dilation=dilation)
    assert torch.equal(y.coords, coords)
    assert_same_values_and_grads(y.feats, at_voxels(dense_out, coords, lo), (feats, wd), gen)


def test_submanifold_gradcheck() -> None:
    gen = torch.Generator().manual_seed(3)
    coords = random_occupancy(gen, 1, 0, 4, 0.5)
    feats = torch.randn((coords.shape[0], 2), generator=gen, dtype=DT, requires_grad=True)
    w = torch.randn((27, 2, 3), generator=gen, dtype=DT, requires_grad=True)
    x0 = SparseTensor(coords, feats.detach(), 1)

    def f(fe: torch.Tensor, we: torch.Tensor) -> torch.Tensor:
        return submanifold_conv3d(x0.replace_feats(fe), we).feats

    assert torch.autograd.gradcheck(f, (feats, w))


def test_down_conv_matches_dense() -> None:
    gen = torch.Generator().manual_seed(11)
    lo, hi, batch, cin, cout = -4, 6, 2, 3, 5  # lo even: the dense stride-2 grid matches floor(c / 2)
    coords = random_occupancy(gen, batch, lo, hi, 0.3)
    feats = torch.randn((coords.shape[0], cin), generator=gen, dtype=DT, requires_grad=True)
    wd = torch.randn((cout, cin, 2, 2, 2), generator=gen, dtype=DT, requires_grad=True)
    x = SparseTensor(coords, feats, 1)
    y = down_conv3d(x, dense_weight_to_sparse(wd))
    assert y.stride == 2
    # Expected coarse voxels: the distinct floor(c / 2).
    parents = coords.clone()
    parents[:, 1:] = torch.div(coords[:, 1:], 2, rounding_mode="floor")
    assert torch.equal(torch.unique(parents, dim=0), torch.unique(y.coords, dim=0))
    assert y.coords.shape[0] == torch.unique(parents, dim=0).shape[0]
    dense_out = TF.conv3d(to_dense(coords, feats, batch, lo, hi - lo), wd, stride=2)
    assert_same_values_and_grads(y.feats, at_voxels(dense_out, y.coords, lo // 2), (feats, wd), gen)


def test_up_conv_matches_dense_transpose() -> None:
    gen = torch.Generator().manual_seed(12)
    lo, hi, batch, cin, cout = -4, 6, 2, 4, 3
    fine_coords = random_occupancy(gen, batch, lo, hi, 0.3)
    fine = SparseTensor(fine_coords, torch.zeros((fine_coords.shape[0], 1), dtype=DT), 1)
    coarse0 = down_conv3d(fine, torch.zeros((8, 1, cin), dtype=DT))  # creates the stride-2 voxel set
    cfeats = torch.randn((coarse0.num_voxels, cin), generator=gen, dtype=DT, requires_grad=True)
    coarse = coarse0.replace_feats(cfeats)
    wt = torch.randn((cin, cout, 2, 2, 2), generator=gen, dtype=DT, requires_grad=True)
    w_sparse = wt.permute(2, 3, 4, 0, 1).reshape(8, cin, cout)
    y = up_conv3d(coarse, w_sparse, fine)
    assert y.stride == 1 and torch.equal(y.coords, fine_coords)
    size_c = (hi - lo) // 2
    dense_c = to_dense(coarse.coords, cfeats, batch, lo // 2, size_c)
    dense_out = TF.conv_transpose3d(dense_c, wt, stride=2)
    assert_same_values_and_grads(y.feats, at_voxels(dense_out, fine_coords, lo), (cfeats, wt), gen)


def test_strided_chain_matches_dense_at_stride_4() -> None:
    """Two down-convs then a 3x3x3 conv at stride 4 (maps built on coarse, cached levels)."""
    gen = torch.Generator().manual_seed(5)
    lo, hi, batch = -8, 8, 1
    coords = random_occupancy(gen, batch, lo, hi, 0.08)
    feats = torch.randn((coords.shape[0], 2), generator=gen, dtype=DT)
    w1, w2 = (torch.randn((c, 2, 2, 2, 2), generator=gen, dtype=DT) for c in (2, 2))
    w3 = torch.randn((2, 2, 3, 3, 3), generator=gen, dtype=DT)
    x = SparseTensor(coords, feats, 1)
    y = down_conv3d(down_conv3d(x, dense_weight_to_sparse(w1)), dense_weight_to_sparse(w2))
    z = submanifold_conv3d(y, dense_weight_to_sparse(w3))
    d = TF.conv3d(TF.conv3d(to_dense(coords, feats, batch, lo, hi - lo), w1, stride=2), w2, stride=2)
    occ4 = to_dense(y.coords, torch.ones((y.num_voxels, 1), dtype=DT), batch, lo // 4, (hi - lo) // 4)
    d = TF.conv3d(d * occ4, w3, padding=1)
    torch.testing.assert_close(z.feats, at_voxels(d, z.coords, lo // 4), rtol=1e-10, atol=1e-10)
    assert z.stride == 4 and x.cache.strides == [1, 2, 4]
