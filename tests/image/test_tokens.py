"""Image tokens (pixel cells and superpixels) and their per-token targets."""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from pointformer.image.tokens import (instance_map, pixel_token_map, pixel_tokens, superpixel_tokens,
                                      token_targets)


def test_pixel_token_map_numbers_cells_row_major():
    token_map = pixel_token_map(5, 7, 4)
    assert token_map.shape == (5, 7)
    assert token_map[0, 0] == 0 and token_map[0, 4] == 1 and token_map[4, 0] == 2 and token_map[4, 6] == 3


def test_pixel_tokens_cover_the_valid_region_only():
    features = torch.arange(2 * 3 * 4 * 5, dtype=torch.float32).view(2, 3, 4, 5)  # [B, D, h, w] at stride 4
    tokens, maps = pixel_tokens(features, [(16, 20), (6, 9)], 4)
    assert tokens.counts.tolist() == [20, 2 * 3]
    # image 1: cells (0..1) x (0..2) of its feature map, row-major
    assert torch.equal(tokens.split()[1], features[1, :, :2, :3].reshape(3, 6).t())
    weights = tokens.split(tokens.weights)[1]
    assert weights.tolist() == [16, 16, 4, 8, 8, 2]  # edge cells hold fewer valid pixels
    assert float(weights.sum()) == 6 * 9
    positions = tokens.split(tokens.positions)[1]
    assert positions[0].tolist() == [2.0, 2.0]  # (x, y) centre of the pixels 0..3
    assert positions[5].tolist() == [8.5, 5.0]  # the last cell holds pixel x=8, y=4..5
    assert maps[1].shape == (6, 9) and int(maps[1].max()) == 5


def test_superpixel_tokens_average_the_upsampled_features_over_each_superpixel():
    torch.manual_seed(0)
    features = torch.randn(1, 4, 2, 3)
    ids = torch.zeros(8, 12, dtype=torch.long)
    ids[:, 6:] = 1
    ids[5:, :3] = 2
    tokens, maps = superpixel_tokens(features, [(8, 12)], 4, [ids])
    full = F.interpolate(features, scale_factor=4, mode="bilinear", align_corners=False)[0]
    for s in range(3):
        assert torch.allclose(tokens.features[s], full[:, ids == s].mean(1), atol=1e-6)
    assert tokens.weights.tolist() == [(ids == s).sum().item() for s in range(3)]
    ys, xs = torch.nonzero(ids == 2, as_tuple=True)
    assert torch.allclose(tokens.positions[2], torch.stack([xs.float().mean() + 0.5, ys.float().mean() + 0.5]))
    assert maps[0] is not None and torch.equal(maps[0], ids)


def test_superpixel_tokens_reject_a_map_of_the_wrong_size():
    with pytest.raises(ValueError, match="superpixels must be integer"):
        superpixel_tokens(torch.randn(1, 4, 2, 3), [(8, 12)], 4, [torch.zeros(8, 11, dtype=torch.long)])


def test_instance_map_puts_the_smaller_instance_on_top():
    masks = torch.zeros(2, 4, 4, dtype=torch.bool)
    masks[0] = True            # large
    masks[1, 1:3, 1:3] = True  # small, inside
    result = instance_map(masks)
    assert result[0, 0] == 1 and result[1, 1] == 2 and int((result == 2).sum()) == 4


def test_token_targets_take_the_majority_and_exclude_crowd_pixels():
    token_map = pixel_token_map(4, 8, 4)  # two tokens: x < 4 and x >= 4
    masks = torch.zeros(1, 4, 8, dtype=torch.bool)
    masks[0, :, :3] = True       # 12 of token 0's 16 pixels
    masks[0, :, 4:5] = True      # 4 of token 1's 16 pixels: background wins there
    ignore = torch.zeros(4, 8, dtype=torch.bool)
    ignore[:2, :] = True         # crowd over the top half
    t = token_targets(token_map, 2, masks, torch.tensor([3]), ignore)
    assert t.token_instance.tolist() == [1, 0]
    assert t.token_weight.tolist() == [8.0, 8.0]
    assert t.instance_class.tolist() == [3]
    ignore[:] = True
    t = token_targets(token_map, 2, masks, torch.tensor([3]), ignore)
    assert t.token_instance.tolist() == [-1, -1] and t.token_weight.tolist() == [0.0, 0.0]
