"""Tokens (ragged batches), superpoint pooling, FPS seeding and the positional encoding."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from pointformer.models.position_encoding import FourierPositionEncoding, normalize_positions
from pointformer.models.sampling import farthest_point_sampling
from pointformer.models.tokens import Tokens, offsets_from_counts, pool_superpoints, superpoint_tokens

torch.set_num_threads(1)


def ragged(counts: list[int], dim: int = 4) -> Tokens:
    total = sum(counts)
    g = torch.Generator().manual_seed(0)
    return Tokens(features=torch.randn(total, dim, generator=g), positions=torch.randn(total, 3, generator=g),
                  weights=torch.ones(total), offsets=offsets_from_counts(torch.tensor(counts)))


def test_pad_unpad_split_roundtrip() -> None:
    tokens = ragged([3, 0, 5, 1])
    padded, key_pad = tokens.pad(value=-7.0)
    assert padded.shape == (4, 5, 4) and key_pad.shape == (4, 5)
    assert key_pad.sum(1).tolist() == [2, 5, 0, 4]
    assert (padded[key_pad] == -7.0).all()
    torch.testing.assert_close(padded[2], tokens.features[3:8])
    torch.testing.assert_close(tokens.unpad(padded), tokens.features)
    parts = tokens.split()
    assert [p.shape[0] for p in parts] == [3, 0, 5, 1]
    torch.testing.assert_close(parts[3], tokens.features[8:])
    w, _ = tokens.pad(tokens.weights)
    assert w.shape == (4, 5)
    assert tokens.local_index().tolist() == [0, 1, 2, 0, 1, 2, 3, 4, 0]


def test_pad_keeps_gradient() -> None:
    tokens = ragged([2, 3])
    tokens.features.requires_grad_(True)
    padded, _ = tokens.pad()
    (padded * 2).sum().backward()
    assert (tokens.features.grad == 2).all()


def test_cat_and_validation() -> None:
    a, b = ragged([2]), ragged([3, 1])
    both = Tokens.cat([a, b])
    assert both.offsets.tolist() == [0, 2, 5, 6]
    with pytest.raises(ValueError, match="offsets"):
        Tokens(features=torch.zeros(4, 2), positions=torch.zeros(4, 3), weights=torch.ones(4),
               offsets=torch.tensor([0, 3]))
    with pytest.raises(ValueError, match="positions"):
        Tokens(features=torch.zeros(4, 2), positions=torch.zeros(3, 3), weights=torch.ones(4),
               offsets=torch.tensor([0, 4]))
    with pytest.raises(ValueError, match="non-decreasing"):
        Tokens(features=torch.zeros(4, 2), positions=torch.zeros(4, 3), weights=torch.ones(4),
               offsets=torch.tensor([0, 3, 2, 4]))
    with pytest.raises(ValueError, match="rows"):
        a.pad(torch.zeros(5))


def test_pool_superpoints_matches_a_loop_and_backpropagates() -> None:
    g = torch.Generator().manual_seed(1)
    feats = torch.randn(50, 6, generator=g, requires_grad=True)
    sp = torch.randint(0, 8, (50,), generator=g)
    sp[sp == 5] = 6  # superpoint 5 has no points
    pooled = pool_superpoints(feats, sp, 9)
    for s in range(9):
        members = sp == s
        expected = feats[members].mean(0) if members.any() else torch.zeros(6)
        torch.testing.assert_close(pooled[s], expected)
    pooled.sum().backward()
    counts = torch.bincount(sp, minlength=9).float()
    torch.testing.assert_close(feats.grad[:, 0], 1.0 / counts[sp])
    weighted = pool_superpoints(feats.detach(), sp, 9, point_weights=torch.full((50,), 3.0))
    torch.testing.assert_close(weighted, pooled.detach())


def test_pool_superpoints_does_not_overflow_in_half_precision() -> None:
    feats = torch.full((20000, 2), 8.0, dtype=torch.float16)  # the sum (160000) overflows float16
    pooled = pool_superpoints(feats, torch.zeros(20000, dtype=torch.long), 1)
    assert pooled.dtype == torch.float32 and torch.equal(pooled, torch.full((1, 2), 8.0))


def test_superpoint_tokens_from_a_batch() -> None:
    # two scenes: 3 and 2 superpoints; scene 1's ids are shifted by token_offsets[1] = 3
    xyz = torch.tensor([[0.0, 0, 0], [2, 0, 0], [1, 1, 1], [5, 5, 5], [0, 0, 4], [1, 1, 1], [3, 3, 3]])
    feats = torch.arange(14.0).view(7, 2)
    sp = torch.tensor([0, 0, 1, 2, 3, 3, 3])
    tokens = superpoint_tokens(feats, xyz, sp, torch.tensor([0, 3, 5]))
    assert tokens.weights.tolist() == [2, 1, 1, 3, 0]  # token 4 (scene 1, id 1) is empty
    torch.testing.assert_close(tokens.positions[0], torch.tensor([1.0, 0, 0]))
    torch.testing.assert_close(tokens.features[3], feats[4:7].mean(0))
    assert tokens.split(tokens.weights)[1].tolist() == [3, 0]
    with pytest.raises(ValueError, match="superpoint ids"):
        superpoint_tokens(feats, xyz, sp + 3, torch.tensor([0, 3, 5]))


def reference_fps(points: np.ndarray, k: int, start: int) -> list[int]:
    chosen = [start]
    dist = ((points - points[start]) ** 2).sum(1)
    for _ in range(k - 1):
        dist_masked = dist.copy()
        dist_masked[chosen] = -1
        nxt = int(dist_masked.argmax())
        chosen.append(nxt)
        dist = np.minimum(dist, ((points - points[nxt]) ** 2).sum(1))
    return chosen


def test_fps_matches_a_reference_and_handles_ragged_scenes() -> None:
    g = torch.Generator().manual_seed(3)
    pos = torch.rand(2, 40, 3, generator=g)
    valid = torch.ones(2, 40, dtype=torch.bool)
    valid[1, 25:] = False
    seeds = farthest_point_sampling(pos, valid, 30)
    for b, n in ((0, 40), (1, 25)):
        pts = pos[b, :n].numpy().astype(np.float64)
        start = int(((pts - pts.mean(0)) ** 2).sum(1).argmax())
        k = min(30, n)
        assert seeds[b, :k].tolist() == reference_fps(pts, k, start)
    assert (seeds[1, 25:] == -1).all() and seeds[0].unique().numel() == 30


def test_fps_spreads_seeds_and_respects_priority() -> None:
    # points on a line: after the far end, FPS picks the other end, then the middle
    pos = torch.linspace(0, 1, 11)[None, :, None].expand(1, 11, 3).contiguous()
    seeds = farthest_point_sampling(pos, torch.ones(1, 11, dtype=torch.bool), 3)
    assert sorted(seeds[0].tolist()) == [0, 5, 10]
    priority = torch.zeros(1, 11, dtype=torch.bool)
    priority[0, [2, 3, 4]] = True
    seeds = farthest_point_sampling(pos, torch.ones(1, 11, dtype=torch.bool), 5, priority=priority)
    assert sorted(seeds[0, :3].tolist()) == [2, 3, 4]
    assert seeds[0, 3].item() == 10  # then the farthest from the priority seeds


def test_normalize_positions_per_scene() -> None:
    pos = torch.tensor([[0.0, 0, 0], [2, 4, 1], [1, 2, 0.5], [10, 10, 10], [11, 12, 10]])
    offsets = torch.tensor([0, 3, 5])
    out = normalize_positions(pos, offsets)
    torch.testing.assert_close(out[2], torch.tensor([0.5, 0.5, 0.5]))
    torch.testing.assert_close(out[3], torch.tensor([0.0, 0.0, 0.0]))  # flat z axis maps to 0
    torch.testing.assert_close(out[4], torch.tensor([1.0, 1.0, 0.0]))
    shifted = normalize_positions(pos + 100.0, offsets)
    torch.testing.assert_close(shifted, out)
    valid = torch.tensor([True, False, True, True, True])
    torch.testing.assert_close(normalize_positions(pos, offsets, valid=valid)[2], torch.tensor([1.0, 1.0, 1.0]))


def test_fourier_encoding() -> None:
    enc = FourierPositionEncoding(pos_dim=3, out_dim=16)
    x = torch.rand(5, 3)
    y = enc(x)
    assert y.shape == (5, 16)
    torch.testing.assert_close(y[:, :8] ** 2 + y[:, 8:] ** 2, torch.ones(5, 8))
    again = FourierPositionEncoding(pos_dim=3, out_dim=16)
    torch.testing.assert_close(again(x), y)  # fixed seed: the same encoding in every process
    assert "frequencies" in enc.state_dict()
    assert not torch.allclose(enc(x + 0.1), y)
    with pytest.raises(ValueError, match="even"):
        FourierPositionEncoding(pos_dim=3, out_dim=15)
    with pytest.raises(ValueError, match="positions"):
        enc(torch.rand(5, 2))
