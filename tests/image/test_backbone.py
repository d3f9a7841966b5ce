"""The image backbone (ResNet2D) and the FPN pixel decoder."""
from __future__ import annotations

import pytest
import torch

from pointformer.image.backbone import ResNet2D
from pointformer.image.pixel_decoder import PixelDecoder


def test_resnet_stages_have_the_declared_strides_and_widths():
    net = ResNet2D(channels=(8, 16, 24, 32), blocks=(1, 2, 1, 1))
    maps = net(torch.rand(2, 3, 64, 48))
    assert net.strides == (2, 4, 8, 16)
    assert [tuple(m.shape) for m in maps] == [(2, 8, 32, 24), (2, 16, 16, 12), (2, 24, 8, 6), (2, 32, 4, 3)]
    assert len(net.stages[1]) == 2


@pytest.mark.parametrize("output_stride", [2, 4, 8])
def test_pixel_decoder_output_is_at_the_requested_stride(output_stride):
    net = ResNet2D(channels=(8, 16, 16, 16))
    decoder = PixelDecoder(in_channels=net.out_channels, strides=net.strides, dim=12, output_stride=output_stride)
    out = decoder(net(torch.rand(1, 3, 32, 64)))
    assert tuple(out.shape) == (1, 12, 32 // output_stride, 64 // output_stride)


def test_pixel_decoder_uses_every_coarser_stage():
    """A change confined to the coarsest map must reach the fine output (the top-down path exists)."""
    torch.manual_seed(0)
    net = ResNet2D(channels=(8, 8, 8, 8))
    decoder = PixelDecoder(in_channels=net.out_channels, strides=net.strides, dim=8, output_stride=4)
    maps = net(torch.rand(1, 3, 32, 32))
    base = decoder(maps)
    changed = list(maps)
    changed[-1] = changed[-1] + 1.0
    assert not torch.allclose(decoder(changed), base)
    changed = list(maps)
    changed[0] = changed[0] + 1.0  # stride 2 is finer than the output: unused
    assert torch.allclose(decoder(changed), base)


def test_group_norm_gives_the_same_output_in_train_and_eval_mode():
    net = ResNet2D(channels=(8, 16, 16, 16))
    x = torch.rand(2, 3, 32, 32)
    train = [m.detach() for m in net.train()(x)]
    evaluation = net.eval()(x)
    assert all(torch.allclose(a, b, atol=1e-6) for a, b in zip(train, evaluation))


def test_bad_shapes_are_rejected():
    with pytest.raises(ValueError, match="one length"):
        ResNet2D(channels=(8, 16), blocks=(1,))
    net = ResNet2D(channels=(8, 16, 16, 16))
    with pytest.raises(ValueError, match="output_stride 3"):
        PixelDecoder(in_channels=net.out_channels, strides=net.strides, output_stride=3)
