"""Res16UNet on the torch backend: shapes, strides, gradients, batching, 34C layout, errors."""
from __future__ import annotations

import pytest
import torch

from pointformer.models.backbone3d import VARIANTS, BackboneOutput, Res16UNet
from pointformer.sparse import SparseTensor, voxelize


def room_points(seed: int, n: int) -> tuple[torch.Tensor, torch.Tensor]:
    """A small room: floor, two walls and a box, with colours (surfaces, like a real scan)."""
    gen = torch.Generator().manual_seed(seed)
    parts = []
    k = n // 4
    u = torch.rand((n, 2), generator=gen)
    parts.append(torch.stack([u[:k, 0] * 3, u[:k, 1] * 2.5, torch.zeros(k)], 1))                  # floor
    parts.append(torch.stack([u[k:2 * k, 0] * 3, torch.zeros(k), u[k:2 * k, 1] * 2], 1))          # wall y=0
    parts.append(torch.stack([torch.zeros(k), u[2 * k:3 * k, 0] * 2.5, u[2 * k:3 * k, 1] * 2], 1))  # wall x=0
    m = n - 3 * k
    parts.append(torch.stack([1 + u[3 * k:, 0] * 0.6, 1 + u[3 * k:, 1] * 0.4, torch.full((m,), 0.5)], 1))  # box top
    xyz = torch.cat(parts) + 0.003 * torch.randn((n, 3), generator=gen)
    rgb = torch.rand((n, 3), generator=gen)
    return xyz, rgb


def test_tiny_forward_backward_on_several_thousand_points() -> None:
    torch.manual_seed(0)
    xyz, rgb = room_points(0, 6000)
    x, p2v = voxelize(xyz, rgb, torch.zeros(6000, dtype=torch.long), 0.05)
    net = Res16UNet(in_channels=3, variant="tiny", out_channels=8)
    out = net(x)
    assert isinstance(out, BackboneOutput)
    assert out.features.stride == 1 and out.features.feats.shape == (x.num_voxels, 8)
    assert torch.equal(out.features.coords, x.coords)
    assert [t.stride for t in out.multiscale] == [16, 8, 4, 2, 1]
    assert [t.num_channels for t in out.multiscale] == net.multiscale_channels
    sizes = [t.num_voxels for t in out.multiscale]
    assert sizes == sorted(sizes) and sizes[-1] == x.num_voxels and sizes[0] < sizes[1]
    point_feats = out.features.feats[p2v]
    assert point_feats.shape == (6000, 8) and bool(torch.isfinite(point_feats).all())
    point_feats.square().mean().backward()
    missing = [n for n, p in net.named_parameters() if p.grad is None or not bool(torch.isfinite(p.grad).all())]
    assert not missing
    assert net.conv0p1s1.weight.grad.abs().sum() > 0 and net.down[3].weight.grad.abs().sum() > 0


def test_batch_equals_separate_in_eval_mode() -> None:
    xyz_a, rgb_a = room_points(1, 3000)
    xyz_b, rgb_b = room_points(2, 2500)
    net = Res16UNet(in_channels=3, variant="tiny").double().eval()
    xb, _ = voxelize(torch.cat([xyz_a, xyz_b]).double(), torch.cat([rgb_a, rgb_b]).double(),
                     torch.cat([torch.zeros(3000), torch.ones(2500)]).long(), 0.06)
    with torch.no_grad():
        both = net(xb).features
        for i, (xyz, rgb) in enumerate([(xyz_a, rgb_a), (xyz_b, rgb_b)]):
            xi, _ = voxelize(xyz.double(), rgb.double(), torch.zeros(xyz.shape[0], dtype=torch.long), 0.06)
            single = net(xi).features
            torch.testing.assert_close(both.feats[both.coords[:, 0] == i], single.feats, rtol=1e-9, atol=1e-9)


def test_34c_layout_matches_recipe() -> None:
    net = Res16UNet(in_channels=3, variant="34C")
    spec = VARIANTS["34C"]
    assert spec.blocks == (2, 3, 4, 6, 2, 2, 2, 2)
    assert spec.planes == (32, 64, 128, 256, 256, 128, 96, 96)
    assert [len(s) for s in net.encoder] + [len(s) for s in net.decoder] == list(spec.blocks)
    assert net.conv0p1s1.kernel_size == 5 and net.conv0p1s1.out_channels == 32
    assert net.out_channels == 96
    assert all(m.bn.momentum == 0.02 for m in net.modules() if hasattr(m, "bn"))
    # skip concatenation widths: up-conv output + encoder skip
    assert net.decoder[0][0].conv1.in_channels == 256 + 128
    assert net.decoder[3][0].conv1.in_channels == 96 + 32
    n_params = sum(p.numel() for p in net.parameters())
    assert 37_000_000 < n_params < 38_500_000  # MinkowskiEngine's Res16UNet34C has ~37.8M


@pytest.mark.slow
def test_34c_forward_backward() -> None:
    xyz, rgb = room_points(3, 8000)
    x, _ = voxelize(xyz, rgb, torch.zeros(8000, dtype=torch.long), 0.04)
    net = Res16UNet(in_channels=3, variant="34C")
    out = net(x)
    assert out.features.feats.shape == (x.num_voxels, 96)
    out.features.feats.sum().backward()
    assert all(p.grad is not None for p in net.parameters())


def test_bad_arguments() -> None:
    with pytest.raises(ValueError, match="unknown variant"):
        Res16UNet(in_channels=3, variant="50X")
    with pytest.raises(ValueError, match="unknown sparse backend"):
        Res16UNet(in_channels=3, backend="spconv")
    with pytest.raises(ValueError, match="in_channels"):
        Res16UNet(in_channels=0)
    net = Res16UNet(in_channels=3, variant="tiny")
    x = SparseTensor(torch.zeros((2, 4), dtype=torch.int32) + torch.tensor([[0, 0, 0, 0], [0, 1, 0, 0]],
                                                                              dtype=torch.int32), torch.ones((2, 4)))
    with pytest.raises(ValueError, match="expected 3 input channels, got 4"):
        net(x)
    with pytest.raises(ValueError, match="expected a SparseTensor"):
        net(torch.ones((2, 3)))  # type: ignore[arg-type]
