"""Voxelisation round trip, batching, pooling, caching and bad-input errors."""
from __future__ import annotations

import math

import pytest
import torch

from pointformer.sparse import (
    KernelMapCache,
    SparseTensor,
    cat,
    down_conv3d,
    global_pool,
    submanifold_conv3d,
    up_conv3d,
    voxelize,
)
from pointformer.sparse.keys import COORD_LIMIT, pack_keys, unpack_keys


def scene_points(seed: int, n: int = 2000) -> torch.Tensor:
    gen = torch.Generator().manual_seed(seed)
    return torch.rand((n, 3), generator=gen, dtype=torch.float64) * torch.tensor([4.0, 3.0, 2.5]) - 1.0


def test_keys_round_trip_and_order() -> None:
    gen = torch.Generator().manual_seed(0)
    c = torch.randint(-COORD_LIMIT, COORD_LIMIT + 1, (500, 4), generator=gen, dtype=torch.int32)
    c[:, 0] = torch.randint(0, 4095, (500,), generator=gen, dtype=torch.int32)
    keys = pack_keys(c)
    assert torch.equal(unpack_keys(keys), c)
    order = torch.argsort(keys)
    lex = sorted(range(500), key=lambda i: tuple(c[i].tolist()))
    assert order.tolist() == lex


def test_voxelize_mean_round_trip() -> None:
    xyz = scene_points(1)
    feats = torch.randn((xyz.shape[0], 4), dtype=torch.float64)
    batch = torch.zeros(xyz.shape[0], dtype=torch.long)
    voxel = 0.25
    x, p2v = voxelize(xyz, feats, batch, voxel)
    # every point lies in its voxel
    vox_of_point = x.coords[p2v].long()
    assert torch.equal(vox_of_point[:, 1:], torch.floor(xyz / voxel).long())
    # voxels are distinct, sorted and all used
    keys = pack_keys(x.coords)
    assert bool((keys[1:] > keys[:-1]).all())
    assert torch.equal(torch.unique(p2v), torch.arange(x.num_voxels))
    # mean reduction
    for v in [0, x.num_voxels // 2, x.num_voxels - 1]:
        torch.testing.assert_close(x.feats[v], feats[p2v == v].mean(0))
    # the inverse map brings voxel values back to every point: a per-voxel id survives the trip
    ids = x.replace_feats(torch.arange(x.num_voxels, dtype=torch.float64)[:, None])
    assert torch.equal(ids.feats[p2v, 0].long(), p2v)


def test_voxelize_first_reduction_and_negative_coordinates() -> None:
    xyz = torch.tensor([[-0.05, 0.0, 0.0], [-0.01, 0.02, 0.03], [0.3, 0.3, 0.3], [-0.35, -0.35, -0.35]])
    feats = torch.tensor([[1.0], [2.0], [3.0], [4.0]])
    x, p2v = voxelize(xyz, feats, torch.zeros(4, dtype=torch.long), 0.1, reduction="first")
    assert x.num_voxels == 3
    assert p2v[0] == p2v[1]
    assert x.feats[p2v[0], 0] == 1.0  # lowest-index point of the shared voxel
    assert x.coords[p2v[3]].tolist() == [0, -4, -4, -4]
    assert x.coords[p2v[0]].tolist() == [0, -1, 0, 0]


def test_batched_equals_separate() -> None:
    """Two scenes in one batch give the same conv/down/up outputs as each scene alone."""
    gen = torch.Generator().manual_seed(7)
    scenes = [scene_points(2, 1500), scene_points(3, 1200) + 0.3]
    feats = [torch.randn((s.shape[0], 3), generator=gen, dtype=torch.float64) for s in scenes]
    w_sub = torch.randn((27, 3, 4), generator=gen, dtype=torch.float64)
    w_down = torch.randn((8, 4, 5), generator=gen, dtype=torch.float64)
    w_up = torch.randn((8, 5, 2), generator=gen, dtype=torch.float64)

    def run(x: SparseTensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        a = submanifold_conv3d(x, w_sub)
        b = down_conv3d(a, w_down)
        b2 = submanifold_conv3d(b, torch.randn((27, 5, 5), generator=torch.Generator().manual_seed(9),
                                               dtype=torch.float64))
        c = up_conv3d(b2, w_up, a)
        return a.feats, global_pool(b2, "max"), c.feats

    xs = torch.cat(scenes)
    fs = torch.cat(feats)
    bi = torch.cat([torch.full((s.shape[0],), i, dtype=torch.long) for i, s in enumerate(scenes)])
    xb, p2v_b = voxelize(xs, fs, bi, 0.1)
    batched = run(xb)
    offset = 0
    for i, (s, f) in enumerate(zip(scenes, feats)):
        xi, p2v_i = voxelize(s, f, torch.zeros(s.shape[0], dtype=torch.long), 0.1)
        single = run(xi)
        rows = xb.coords[:, 0] == i
        torch.testing.assert_close(batched[0][rows], single[0], rtol=1e-12, atol=1e-12)
        torch.testing.assert_close(batched[2][rows], single[2], rtol=1e-12, atol=1e-12)
        torch.testing.assert_close(batched[1][i], single[1][0], rtol=1e-12, atol=1e-12)
        # per-point values agree too
        torch.testing.assert_close(batched[0][p2v_b[offset:offset + s.shape[0]]], single[0][p2v_i])
        offset += s.shape[0]


def test_global_pool_modes() -> None:
    coords = torch.tensor([[0, 0, 0, 0], [0, 1, 0, 0], [1, 0, 0, 0], [1, 5, 5, 5], [1, 2, 2, 2]], dtype=torch.int32)
    feats = torch.tensor([[1.0, -1.0], [3.0, -5.0], [2.0, 0.0], [4.0, 1.0], [0.0, 2.0]])
    x = SparseTensor(coords, feats)
    torch.testing.assert_close(global_pool(x, "mean"), torch.tensor([[2.0, -3.0], [2.0, 1.0]]))
    torch.testing.assert_close(global_pool(x, "max"), torch.tensor([[3.0, -1.0], [4.0, 2.0]]))
    torch.testing.assert_close(global_pool(x, "sum"), torch.tensor([[4.0, -6.0], [6.0, 3.0]]))
    assert global_pool(x, "mean", batch_size=3)[2].abs().sum() == 0


def test_dense_view_and_activations() -> None:
    coords = torch.tensor([[0, 1, 0, 0], [0, 0, 2, 1], [1, 1, 1, 1]], dtype=torch.int32)
    x = SparseTensor(coords, torch.tensor([[1.0, -2.0], [3.0, 4.0], [-5.0, 6.0]]))
    d = x.dense()
    assert d.shape == (2, 2, 2, 3, 2)
    assert d[0, :, 1, 0, 0].tolist() == [1.0, -2.0] and d[1, :, 1, 1, 1].tolist() == [-5.0, 6.0]
    assert d.abs().sum() == x.feats.abs().sum()
    from pointformer.sparse import SparseActivation, SparseReLU

    assert SparseReLU()(x).feats.min() == 0 and SparseReLU()(x).same_voxels(x)
    torch.testing.assert_close(SparseActivation(fn=torch.tanh)(x).feats, torch.tanh(x.feats))


def test_cat_and_cache_reuse() -> None:
    xyz = scene_points(4, 800)
    x, _ = voxelize(xyz, torch.ones((800, 2)), torch.zeros(800, dtype=torch.long), 0.2)
    w = torch.randn((27, 2, 2))
    a = submanifold_conv3d(x, w)
    b = submanifold_conv3d(a, w)
    # one map per (stride, kernel, dilation), shared by both layers
    assert len(x.cache._submanifold) == 1
    assert x.cache.submanifold_map(1, 3, 1) is x.cache.submanifold_map(1, 3, 1)
    c = cat([a, b])
    assert c.num_channels == 4 and torch.equal(c.feats[:, 2:], b.feats)
    other, _ = voxelize(xyz, torch.ones((800, 2)), torch.zeros(800, dtype=torch.long), 0.2)
    with pytest.raises(ValueError, match="share their voxel set"):
        cat([a, other])
    with pytest.raises(ValueError, match="same pass"):
        up_conv3d(down_conv3d(a, torch.randn((8, 2, 2))), torch.randn((8, 2, 2)), other)


# ----------------------------------------------------------------------------- bad input
def _ok_inputs(n: int = 10) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    return torch.rand((n, 3)), torch.rand((n, 2)), torch.zeros(n, dtype=torch.long)


@pytest.mark.parametrize("case,pattern", [
    ("empty", "empty point set"),
    ("nan", "NaN/inf coordinates"),
    ("inf", "NaN/inf coordinates"),
    ("count", "mismatched point counts"),
    ("xyz_int", "xyz must be a floating"),
    ("xyz_shape", r"xyz must have shape \[P, 3\]"),
    ("feat_int", "feats must be a floating"),
    ("batch_float", "batch_index must be an integer"),
    ("batch_negative", "batch_index must be in"),
    ("voxel_zero", "voxel_size must be a positive"),
    ("voxel_nan", "voxel_size must be a positive"),
    ("reduction", "reduction must be"),
    ("too_far", "beyond the supported"),
    ("feat_nan", "feats contain NaN"),
])
def test_voxelize_bad_input(case: str, pattern: str) -> None:
    xyz, feats, batch = _ok_inputs()
    voxel, reduction = 0.1, "mean"
    if case == "empty":
        xyz, feats, batch = _ok_inputs(0)
    elif case == "nan":
        xyz[3, 1] = math.nan
    elif case == "inf":
        xyz[0, 0] = math.inf
    elif case == "count":
        feats = feats[:-1]
    elif case == "xyz_int":
        xyz = xyz.long()
    elif case == "xyz_shape":
        xyz = xyz[:, :2]
    elif case == "feat_int":
        feats = feats.long()
    elif case == "batch_float":
        batch = batch.float()
    elif case == "batch_negative":
        batch[2] = -1
    elif case == "voxel_zero":
        voxel = 0.0
    elif case == "voxel_nan":
        voxel = math.nan
    elif case == "reduction":
        reduction = "median"
    elif case == "too_far":
        xyz[0, 0] = 1e6
    elif case == "feat_nan":
        feats[1, 1] = math.nan
    with pytest.raises(ValueError, match=pattern):
        voxelize(xyz, feats, batch, voxel, reduction=reduction)  # type: ignore[arg-type]


@pytest.mark.parametrize("case,pattern", [
    ("coords_dtype", "coords must be int32"),
    ("coords_shape", r"coords must be \[N, 4\]"),
    ("feats_int", "feats must be floating"),
    ("count", "3 coordinates but 2 feature rows"),
    ("empty", "empty voxel set"),
    ("duplicate", "duplicate voxel coordinates"),
    ("stride", "stride must be a positive power of two"),
    ("batch", "batch indices must be in"),
])
def test_sparse_tensor_bad_input(case: str, pattern: str) -> None:
    coords = torch.tensor([[0, 0, 0, 0], [0, 1, 0, 0], [0, 0, 2, 0]], dtype=torch.int32)
    feats = torch.ones((3, 2))
    stride = 1
    if case == "coords_dtype":
        coords = coords.long()
    elif case == "coords_shape":
        coords = coords[:, :3]
    elif case == "feats_int":
        feats = feats.long()
    elif case == "count":
        feats = feats[:2]
    elif case == "empty":
        coords, feats = coords[:0], feats[:0]
    elif case == "duplicate":
        coords[2] = coords[0]
    elif case == "stride":
        stride = 3
    elif case == "batch":
        coords[0, 0] = -2
    with pytest.raises(ValueError, match=pattern):
        SparseTensor(coords, feats, stride)


def test_conv_weight_errors() -> None:
    x = SparseTensor(torch.zeros((1, 4), dtype=torch.int32), torch.ones((1, 2)))
    with pytest.raises(ValueError, match=r"weight must be \[27, 2, Cout\]"):
        submanifold_conv3d(x, torch.ones((27, 3, 4)))
    with pytest.raises(ValueError, match="dtype"):
        submanifold_conv3d(x, torch.ones((27, 2, 4), dtype=torch.float64))
    cache = KernelMapCache()
    SparseTensor(torch.zeros((1, 4), dtype=torch.int32), torch.ones((1, 2)), 1, cache)
    with pytest.raises(ValueError, match="different voxel set"):
        SparseTensor(torch.ones((1, 4), dtype=torch.int32), torch.ones((1, 2)), 1, cache)
