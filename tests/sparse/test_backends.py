"""Backend selection and torch <-> MinkowskiEngine parity (same weights, same outputs and gradients)."""
from __future__ import annotations

import copy
import sys

import pytest
import torch

from pointformer.models.backbone3d import Res16UNet
from pointformer.sparse import (
    BackendUnavailableError,
    DownConv3d,
    SubmanifoldConv3d,
    UpConv3d,
    get_backend,
    minkowski_available,
    set_backend,
    voxelize,
)
from pointformer.sparse import backends as backends_module

needs_me = pytest.mark.skipif(not minkowski_available(), reason="MinkowskiEngine is not importable (make minkowski)")


def test_unknown_backend_is_a_value_error() -> None:
    with pytest.raises(ValueError, match="unknown sparse backend 'spconv'"):
        get_backend("spconv")
    with pytest.raises(ValueError, match="unknown sparse backend"):
        SubmanifoldConv3d(in_channels=1, out_channels=1, backend="cuda")


def test_missing_minkowski_names_make_target(monkeypatch: pytest.MonkeyPatch) -> None:
    # Hide MinkowskiEngine whether or not it is installed.
    monkeypatch.setitem(sys.modules, "MinkowskiEngine", None)
    monkeypatch.delitem(sys.modules, "pointformer.sparse.minkowski", raising=False)
    monkeypatch.delitem(backends_module._INSTANCES, "minkowski", raising=False)
    with pytest.raises(BackendUnavailableError, match="make minkowski"):
        get_backend("minkowski")
    with pytest.raises(BackendUnavailableError, match="make minkowski"):
        Res16UNet(in_channels=3, variant="tiny", backend="minkowski")
    with pytest.raises(BackendUnavailableError, match="make minkowski"):
        set_backend(Res16UNet(in_channels=3, variant="tiny"), "minkowski")
    assert not isinstance(BackendUnavailableError("x"), ValueError) and isinstance(BackendUnavailableError("x"),
                                                                                    ImportError)


def _rel_close(a: torch.Tensor, b: torch.Tensor, rel: float = 1e-4, what: str = "") -> None:
    err = (a - b).abs().max().item()
    scale = max(b.abs().max().item(), 1e-12)
    assert err <= rel * scale, f"{what}: max abs diff {err:.3g} > {rel} x max |ref| {scale:.3g}"


def _scene(seed: int, n: int, dtype: torch.dtype, batch: int = 2) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    xyz = torch.rand((n, 3), generator=gen, dtype=dtype) * torch.tensor([2.0, 1.5, 1.0], dtype=dtype) - 0.5
    # flatten a third of the points onto a floor and a wall: surface-like neighbourhoods
    xyz[: n // 3, 2] = -0.5
    xyz[n // 3: 2 * n // 3, 1] = -0.5
    rgb = torch.rand((n, 3), generator=gen, dtype=dtype)
    b = torch.randint(0, batch, (n,), generator=gen)
    return xyz, rgb, b


@needs_me
@pytest.mark.minkowski
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("kernel_size,dilation", [(3, 1), (3, 2), (5, 1)])
def test_submanifold_parity(dtype: torch.dtype, kernel_size: int, dilation: int) -> None:
    xyz, rgb, b = _scene(1, 3000, dtype)
    x, _ = voxelize(xyz, rgb, b, 0.05)
    conv_t = SubmanifoldConv3d(in_channels=3, out_channels=5, kernel_size=kernel_size, dilation=dilation).to(dtype)
    conv_m = copy.deepcopy(conv_t)
    set_backend(conv_m, "minkowski")
    outs, grads = [], []
    for conv in (conv_t, conv_m):
        f = x.feats.clone().requires_grad_(True)
        y = conv(x.replace_feats(f))
        r = torch.linspace(-1, 1, y.feats.numel(), dtype=dtype).reshape(y.feats.shape)
        (y.feats * r).sum().backward()
        outs.append(y.feats.detach())
        grads.append((f.grad, conv.weight.grad))
    _rel_close(outs[1], outs[0], what="forward")
    _rel_close(grads[1][0], grads[0][0], what="grad features")
    _rel_close(grads[1][1], grads[0][1], what="grad weight")


@needs_me
@pytest.mark.minkowski
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_down_up_parity(dtype: torch.dtype) -> None:
    xyz, rgb, b = _scene(2, 4000, dtype)
    down_t = DownConv3d(in_channels=3, out_channels=4).to(dtype)
    up_t = UpConv3d(in_channels=4, out_channels=2).to(dtype)
    results = []
    for backend in ("torch", "minkowski"):
        x, _ = voxelize(xyz, rgb, b, 0.05)  # a fresh pass per backend
        down, up = copy.deepcopy(down_t), copy.deepcopy(up_t)
        set_backend(down, backend)
        set_backend(up, backend)
        f = x.feats.clone().requires_grad_(True)
        x = x.replace_feats(f)
        c = down(x)
        y = up(c, x)
        assert torch.equal(y.coords, x.coords) and c.stride == 2
        r = torch.cos(torch.arange(y.feats.numel(), dtype=dtype)).reshape(y.feats.shape)
        (y.feats * r).sum().backward()
        results.append((c.feats.detach(), y.feats.detach(), f.grad, down.weight.grad, up.weight.grad))
    for name, a, b_ in zip(("down", "up", "grad features", "grad down weight", "grad up weight"), *results):
        _rel_close(b_, a, what=name)


@needs_me
@pytest.mark.minkowski
@pytest.mark.parametrize("variant", ["tiny", "14A"])
def test_backbone_parity_same_state_dict(variant: str) -> None:
    """One state_dict, two backends: outputs and every parameter gradient within 1e-4 relative."""
    torch.manual_seed(0)
    xyz, rgb, b = _scene(3, 6000, torch.float64)
    net_t = Res16UNet(in_channels=3, variant=variant, out_channels=7).double().train()
    net_m = Res16UNet(in_channels=3, variant=variant, out_channels=7, backend="minkowski").double().train()
    net_m.load_state_dict(net_t.state_dict())
    runs = []
    for net in (net_t, net_m):
        x, p2v = voxelize(xyz, rgb, b, 0.04)
        out = net(x)
        loss = (out.features.feats[p2v] * torch.sin(torch.arange(7, dtype=torch.float64))).sum()
        loss = loss + sum(m.feats.square().mean() for m in out.multiscale)
        loss.backward()
        runs.append((out, {n: p.grad.clone() for n, p in net.named_parameters()}))
    (out_t, g_t), (out_m, g_m) = runs
    _rel_close(out_m.features.feats, out_t.features.feats, what="features")
    for mt, mm in zip(out_t.multiscale, out_m.multiscale):
        assert torch.equal(mt.coords, mm.coords)
        _rel_close(mm.feats, mt.feats, what=f"stride {mt.stride}")
    for name in g_t:
        _rel_close(g_m[name], g_t[name], what=f"grad {name}")
    # and running stats moved identically
    for (n, bt), (_, bm) in zip(net_t.named_buffers(), net_m.named_buffers()):
        if bt.is_floating_point():
            _rel_close(bm, bt, what=n)
