"""Seeding: farthest-point sampling with size-aware scores, explicit seeds, the decoder's strategies."""
import pytest
import torch

from pointformer.models.decoder import QueryDecoder
from pointformer.models.sampling import farthest_point_sampling, size_score_scale
from pointformer.models.tokens import Tokens


def _line_scene():
    # A big superpoint at x=0 and x=10 (walls), small ones at x = 4.0 and x = 6.0 (a small object)
    positions = torch.tensor([[[0.0, 0, 0], [10.0, 0, 0], [4.0, 0, 0], [6.0, 0, 0], [5.0, 0, 0]]])
    weights = torch.tensor([[4000.0, 4000.0, 20.0, 20.0, 4000.0]])
    return positions, weights


def test_size_scale_favours_small_tokens_and_zero_alpha_is_plain_fps():
    positions, weights = _line_scene()
    valid = torch.ones(1, 5, dtype=torch.bool)
    scale = size_score_scale(weights, valid, alpha=0.5)
    assert scale[0, 2].item() == pytest.approx(200.0) and scale[0, 0].item() == pytest.approx(1.0)  # median 4000
    assert torch.equal(size_score_scale(weights, valid, alpha=0.0), torch.ones(1, 5))
    plain = farthest_point_sampling(positions, valid, 3)
    assert torch.equal(farthest_point_sampling(positions, valid, 3, score_scale=torch.ones(1, 5)), plain)
    # plain FPS after the two ends takes the middle (x=5, farthest from both); size-aware takes a small one
    assert plain[0, 2].item() == 4
    sized = farthest_point_sampling(positions, valid, 3, score_scale=size_score_scale(weights, valid, 0.5))
    assert sized[0, 2].item() == 2
    with pytest.raises(ValueError, match="alpha"):
        size_score_scale(weights, valid, alpha=-1.0)
    with pytest.raises(ValueError, match="score_scale"):
        farthest_point_sampling(positions, valid, 2, score_scale=torch.ones(1, 4))


def _tokens(num=12, seed=0):
    g = torch.Generator().manual_seed(seed)
    return Tokens(features=torch.randn(num, 8, generator=g), positions=torch.rand(num, 3, generator=g) * 4,
                  weights=torch.randint(10, 500, (num,), generator=g).float(),
                  offsets=torch.tensor([0, num]))


def test_decoder_size_seeding_and_explicit_seed_tokens():
    torch.manual_seed(0)
    tokens = _tokens()
    decoder = QueryDecoder(token_dim=8, num_classes=3, hidden_dim=16, num_heads=2, ffn_dim=32, num_layers=1,
                           num_queries=4, seed_sampling="size", seed_size_alpha=1.0).eval()
    out = decoder(tokens)
    assert out.query_seed_token[0].numel() == 4
    given = torch.tensor([5, 1, 7])
    out = decoder(tokens, seed_tokens=[given])
    assert torch.equal(out.query_seed_token[0], given)
    assert out.final.mask_logits[0].shape == (3, 12)
    with pytest.raises(ValueError, match="outside its tokens"):
        decoder(tokens, seed_tokens=[torch.tensor([12])])
    with pytest.raises(ValueError, match="seed_size_alpha"):
        QueryDecoder(token_dim=8, num_classes=3, seed_size_alpha=-0.5)
    learned = QueryDecoder(token_dim=8, num_classes=3, hidden_dim=16, num_heads=2, ffn_dim=32, num_layers=1,
                           num_queries=4, query_init="learned")
    with pytest.raises(ValueError, match="only seeded"):
        learned(tokens, seed_tokens=[given])
