"""InstanceSegmentor2D: the shared QueryDecoder over pixel or superpixel tokens; every parameter learns."""
from __future__ import annotations

import pytest
import torch

from pointformer.image.backbone import ResNet2D
from pointformer.image.model import InstanceSegmentor2D
from pointformer.image.pixel_decoder import PixelDecoder
from pointformer.image.tokens import token_targets
from pointformer.losses import InstanceCriterion
from pointformer.models.decoder import QueryDecoder


def _model(tokens: str, activation: str = "ownership", query_init: str = "seeded") -> InstanceSegmentor2D:
    backbone = ResNet2D(channels=(8, 16, 16, 16))
    pixel_decoder = PixelDecoder(in_channels=backbone.out_channels, strides=backbone.strides, dim=16, output_stride=4)
    decoder = QueryDecoder(token_dim=16, num_classes=2, hidden_dim=16, num_heads=2, ffn_dim=32, num_layers=2,
                           num_queries=6, pos_dim=2, mask_activation=activation, query_init=query_init)
    return InstanceSegmentor2D(backbone=backbone, pixel_decoder=pixel_decoder, decoder=decoder, tokens=tokens)


def _superpixels(h: int, w: int) -> torch.Tensor:
    return (torch.arange(h)[:, None] // 5) * ((w + 4) // 5) + torch.arange(w)[None, :] // 5


@pytest.mark.parametrize("tokens", ["pixel", "superpixel"])
def test_forward_gives_per_token_predictions_for_every_image(tokens):
    torch.manual_seed(0)
    model = _model(tokens)
    images = torch.rand(2, 3, 32, 40)
    sizes = [(32, 40), (21, 30)]
    out = model(images, sizes, [_superpixels(*s) for s in sizes] if tokens == "superpixel" else None)
    expected = [80, 48] if tokens == "pixel" else [7 * 8, 5 * 6]
    assert out.tokens.counts.tolist() == expected
    assert out.tokens.positions.shape[1] == 2
    assert [m.shape for m in out.token_maps] == [torch.Size(s) for s in sizes]
    assert len(out.layers) == 3
    assert [tuple(m.shape) for m in out.final.mask_logits] == [(6, expected[0]), (6, expected[1])]
    assert [tuple(c.shape) for c in out.final.class_logits] == [(6, 3), (6, 3)]
    pixels = out.pixel_values(out.final.mask_logits)
    assert tuple(pixels[1].shape) == (6, 21, 30)


def test_superpixel_tokens_need_superpixels():
    with pytest.raises(ValueError, match="superpixels"):
        _model("superpixel")(torch.rand(1, 3, 16, 16), [(16, 16)])


def test_the_model_rejects_3d_positions():
    backbone = ResNet2D(channels=(8, 8, 8, 8))
    pixel_decoder = PixelDecoder(in_channels=backbone.out_channels, strides=backbone.strides, dim=8)
    decoder = QueryDecoder(token_dim=8, num_classes=2, hidden_dim=8, num_heads=2, pos_dim=3)
    with pytest.raises(ValueError, match="pos_dim=2"):
        InstanceSegmentor2D(backbone=backbone, pixel_decoder=pixel_decoder, decoder=decoder)


@pytest.mark.parametrize("loss,activation,query_init,tokens", [
    ("influencer", "ownership", "seeded", "pixel"),
    ("influencer", "ownership", "seeded", "superpixel"),
    ("hungarian", "sigmoid", "learned", "pixel"),
])
def test_a_backward_step_reaches_every_backbone_pixel_decoder_and_decoder_parameter(loss, activation, query_init,
                                                                                    tokens):
    torch.manual_seed(0)
    model = _model(tokens, activation, query_init)
    sizes = [(32, 32), (24, 32)]
    images = torch.rand(2, 3, 32, 32)
    out = model(images, sizes, [_superpixels(*s) for s in sizes] if tokens == "superpixel" else None)
    targets = []
    for b, (h, w) in enumerate(sizes):
        masks = torch.zeros(2, h, w, dtype=torch.bool)
        masks[0, 2:12, 2:14] = True
        masks[1, 14:22, 16:30] = True
        targets.append(token_targets(out.token_maps[b], int(out.tokens.counts[b]), masks, torch.tensor([0, 1])))
    criterion = InstanceCriterion(loss=loss)
    losses = criterion(out.layers, out.query_seed_token, targets, out.token_objectness)
    assert torch.isfinite(losses["loss"])
    losses["loss"].backward()
    missing = [name for name, p in model.named_parameters() if p.requires_grad and
               (p.grad is None or not bool(p.grad.abs().sum() > 0))]
    assert missing == []
