"""The query decoder on its own, with random tokens (no 3D code imported)."""
from __future__ import annotations

import pytest
import torch

from pointformer.models.decoder import DecoderOutput, QueryDecoder
from pointformer.models.heads import attention_block_mask, mask_probabilities
from pointformer.models.tokens import Tokens, offsets_from_counts

torch.set_num_threads(1)

TOKEN_DIM = 12
NUM_CLASSES = 4

CONFIGS = {
    "seeded-ownership": dict(query_init="seeded", mask_activation="ownership"),
    "seeded-sigmoid": dict(query_init="seeded", mask_activation="sigmoid"),
    "objectness-ownership": dict(query_init="seeded", mask_activation="ownership", seed_sampling="objectness"),
    "learned-sigmoid": dict(query_init="learned", mask_activation="sigmoid"),
    "relative-ownership": dict(query_init="seeded", mask_activation="ownership", position_encoding="relative"),
    "relative-radius-sigmoid": dict(query_init="seeded", mask_activation="sigmoid", position_encoding="relative",
                                    attention_radius=2.0),
    "prenorm-shared": dict(query_init="seeded", mask_activation="ownership", pre_norm=True, num_layers=4,
                           num_unique_layers=2),
}


def make_decoder(seed: int = 0, **overrides) -> QueryDecoder:
    torch.manual_seed(seed)
    kwargs = dict(token_dim=TOKEN_DIM, num_classes=NUM_CLASSES, hidden_dim=32, num_heads=4, ffn_dim=64, num_layers=3,
                  num_queries=8)
    kwargs.update(overrides)
    return QueryDecoder(**kwargs)


def make_tokens(counts: list[int], seed: int = 1) -> Tokens:
    g = torch.Generator().manual_seed(seed)
    total = sum(counts)
    return Tokens(
        features=torch.randn(total, TOKEN_DIM, generator=g),
        positions=torch.rand(total, 3, generator=g) * torch.tensor([6.0, 4.0, 2.5]),
        weights=torch.randint(1, 50, (total,), generator=g).float(),
        offsets=offsets_from_counts(torch.tensor(counts)),
    )


@pytest.mark.parametrize("name", list(CONFIGS))
def test_output_shapes(name: str) -> None:
    cfg = CONFIGS[name]
    decoder = make_decoder(**cfg).eval()
    counts = [20, 5, 13]
    out = decoder(make_tokens(counts))
    assert isinstance(out, DecoderOutput)
    assert len(out.layers) == decoder.num_layers + 1
    seeded = cfg["query_init"] == "seeded"
    expected_queries = [min(8, c) for c in counts] if seeded else [8, 8, 8]
    assert out.num_queries == expected_queries
    for layer in out.layers:
        for b, (p, n) in enumerate(zip(counts, expected_queries)):
            assert layer.class_logits[b].shape == (n, NUM_CLASSES + 1)
            assert layer.mask_logits[b].shape == (n, p)
            if cfg["mask_activation"] == "ownership":
                assert layer.background_logits[b].shape == (p,)
            assert torch.isfinite(layer.mask_logits[b]).all()
        if cfg["mask_activation"] == "sigmoid":
            assert layer.background_logits is None
    for b, (p, n) in enumerate(zip(counts, expected_queries)):
        seeds = out.query_seed_token[b]
        assert seeds.dtype == torch.long and seeds.shape == (n,)
        if seeded:
            assert seeds.min() >= 0 and seeds.max() < p and seeds.unique().numel() == n
        else:
            assert (seeds == -1).all()
    if cfg.get("seed_sampling") == "objectness":
        assert [t.shape for t in out.token_objectness] == [(p,) for p in counts]
    else:
        assert out.token_objectness is None
    assert out.final is out.layers[-1]


def test_query_count_differs_between_train_and_eval() -> None:
    decoder = make_decoder(num_queries=6, eval_num_queries=15)
    tokens = make_tokens([40, 10])
    assert decoder.train()(tokens).num_queries == [6, 6]
    assert decoder.eval()(tokens).num_queries == [15, 10]
    assert decoder(tokens, num_queries=3).num_queries == [3, 3]


@pytest.mark.parametrize("name", list(CONFIGS))
def test_ragged_batch_equals_each_scene_alone(name: str) -> None:
    decoder = make_decoder(**CONFIGS[name]).eval()
    counts = [17, 4, 30]
    tokens = make_tokens(counts)
    scenes = [
        Tokens(features=f, positions=p, weights=w, offsets=torch.tensor([0, f.shape[0]]))
        for f, p, w in zip(tokens.split(tokens.features), tokens.split(tokens.positions), tokens.split(tokens.weights))
    ]
    batched = decoder(tokens)
    for b, scene in enumerate(scenes):
        alone = decoder(scene)
        torch.testing.assert_close(batched.query_seed_token[b], alone.query_seed_token[0])
        for lb, la in zip(batched.layers, alone.layers):
            torch.testing.assert_close(lb.class_logits[b], la.class_logits[0], atol=2e-5, rtol=1e-4)
            torch.testing.assert_close(lb.mask_logits[b], la.mask_logits[0], atol=2e-5, rtol=1e-4)
            if lb.background_logits is not None:
                torch.testing.assert_close(lb.background_logits[b], la.background_logits[0], atol=2e-5, rtol=1e-4)
        if batched.token_objectness is not None:
            torch.testing.assert_close(batched.token_objectness[b], alone.token_objectness[0], atol=2e-5, rtol=1e-4)


@pytest.mark.parametrize("name", list(CONFIGS))
def test_permuting_tokens_permutes_masks_and_keeps_classes(name: str) -> None:
    decoder = make_decoder(**CONFIGS[name]).eval()
    counts = [25, 9]
    tokens = make_tokens(counts, seed=3)
    g = torch.Generator().manual_seed(7)
    perms = [torch.randperm(c, generator=g) for c in counts]
    global_perm = torch.cat([p + int(o) for p, o in zip(perms, tokens.offsets[:-1])])
    permuted = Tokens(
        features=tokens.features[global_perm],
        positions=tokens.positions[global_perm],
        weights=tokens.weights[global_perm],
        offsets=tokens.offsets,
    )
    ref, out = decoder(tokens), decoder(permuted)
    for b, perm in enumerate(perms):
        if CONFIGS[name]["query_init"] == "seeded":
            # new token i is old token perm[i]: the same old tokens are picked, in the same order
            torch.testing.assert_close(perm[out.query_seed_token[b]], ref.query_seed_token[b])
        for lr, lo in zip(ref.layers, out.layers):
            torch.testing.assert_close(lo.class_logits[b], lr.class_logits[b], atol=2e-5, rtol=1e-4)
            torch.testing.assert_close(lo.mask_logits[b], lr.mask_logits[b][:, perm], atol=2e-5, rtol=1e-4)
            if lr.background_logits is not None:
                torch.testing.assert_close(lo.background_logits[b], lr.background_logits[b][perm], atol=2e-5, rtol=1e-4)


def test_attention_block_mask_rules() -> None:
    key_pad = torch.tensor([[False, False, False, True]])
    logits = torch.tensor([[[3.0, -2.0, 1.0, 9.0], [-1.0, -1.0, -1.0, 9.0]]])  # [1, 2, 4]
    blocked = attention_block_mask(logits, None, "sigmoid", key_padding_mask=key_pad)
    assert blocked[0, 0].tolist() == [False, True, False, True]  # padding stays blocked even at logit 9
    assert blocked[0, 1].tolist() == [False, False, False, True]  # all real tokens blocked -> attend to all
    # ownership: token 0 owned by query 0 (p > 0.5), token 1 by the background, token 2 split (no owner)
    mask = torch.tensor([[[5.0, 0.0, 2.0, 0.0], [0.0, 0.0, 2.0, 0.0]]])
    background = torch.tensor([[0.0, 5.0, 0.0, 0.0]])
    probs = mask_probabilities(mask, background, "ownership")
    torch.testing.assert_close(probs.sum(1) + torch.softmax(torch.cat([background[:, None], mask], 1), 1)[:, 0],
                               torch.ones(1, 4))
    blocked = attention_block_mask(mask, background, "ownership", key_padding_mask=key_pad)
    assert blocked[0, 0].tolist() == [False, True, True, True]
    assert blocked[0, 1].tolist() == [False, False, False, True]  # owns nothing -> everything
    # a padding query does not take part in the softmax
    pad_q = torch.tensor([[False, True]])
    probs = mask_probabilities(mask, background, "ownership", pad_q)
    assert probs[0, 1].abs().max() == 0 and probs[0, 0, 2] > 0.8


@pytest.mark.parametrize("activation", ["ownership", "sigmoid"])
def test_fully_blocked_rows_attend_everywhere(activation: str) -> None:
    decoder = make_decoder(mask_activation=activation).eval()
    with torch.no_grad():
        # Zero mask embeddings: every mask probability is 0.5 (sigmoid) or 1/(N+1) (ownership), never
        # > 0.5, so every query's mask blocks every token at every layer.
        decoder.heads.mask_embed[-1].weight.zero_()
        decoder.heads.mask_embed[-1].bias.zero_()
        if decoder.heads.background_embedding is not None:
            decoder.heads.background_embedding.zero_()
    unmasked = make_decoder(mask_activation=activation, masked_attention=False).eval()
    unmasked.load_state_dict(decoder.state_dict())
    tokens = make_tokens([15, 6])
    out, ref = decoder(tokens), unmasked(tokens)
    for lo, lr in zip(out.layers, ref.layers):
        for b in range(2):
            assert torch.isfinite(lo.class_logits[b]).all()
            torch.testing.assert_close(lo.class_logits[b], lr.class_logits[b])


def test_masked_attention_changes_outputs() -> None:
    # The control for the test above: with informative masks, masking matters.
    decoder = make_decoder(mask_activation="sigmoid").eval()
    unmasked = make_decoder(mask_activation="sigmoid", masked_attention=False).eval()
    unmasked.load_state_dict(decoder.state_dict())
    tokens = make_tokens([30])
    diff = (decoder(tokens).final.class_logits[0] - unmasked(tokens).final.class_logits[0]).abs().max()
    assert diff > 1e-4


@pytest.mark.parametrize("name", list(CONFIGS))
def test_backward_reaches_every_parameter(name: str) -> None:
    decoder = make_decoder(**CONFIGS[name]).train()
    tokens = make_tokens([20, 7])
    tokens.features.requires_grad_(True)
    out = decoder(tokens)
    g = torch.Generator().manual_seed(0)
    loss = torch.zeros(())
    for layer in out.layers:
        for tensors in (layer.class_logits, layer.mask_logits, layer.background_logits or []):
            for t in tensors:
                loss = loss + (t * torch.randn(t.shape, generator=g)).sum()
    for t in out.token_objectness or []:
        loss = loss + (t * torch.randn(t.shape, generator=g)).sum()
    loss.backward()
    missing = [n for n, p in decoder.named_parameters() if p.grad is None or not p.grad.abs().sum() > 0]
    assert not missing, f"parameters without gradient: {missing}"
    assert tokens.features.grad.abs().sum() > 0


def test_objectness_seeding_prefers_foreground_tokens() -> None:
    decoder = make_decoder(seed_sampling="objectness", num_queries=5).eval()
    tokens = make_tokens([40])
    with torch.no_grad():
        logits = decoder(tokens).token_objectness[0]
    foreground = (logits > 0).nonzero().flatten()
    assert 0 < foreground.numel()
    seeds = decoder(tokens, num_queries=foreground.numel() + 3).query_seed_token[0]
    # every foreground token first, then the others
    assert set(seeds[: foreground.numel()].tolist()) == set(foreground.tolist())
    assert not set(seeds[foreground.numel():].tolist()) & set(foreground.tolist())


def test_generator_changes_first_seed_reproducibly() -> None:
    decoder = make_decoder().eval()
    tokens = make_tokens([50])
    a = decoder(tokens, generator=torch.Generator().manual_seed(1)).query_seed_token[0]
    b = decoder(tokens, generator=torch.Generator().manual_seed(1)).query_seed_token[0]
    default = decoder(tokens).query_seed_token[0]
    torch.testing.assert_close(a, b)
    firsts = {int(decoder(tokens, generator=torch.Generator().manual_seed(s)).query_seed_token[0][0]) for s in range(6)}
    assert len(firsts) > 1 and default.tolist() == decoder(tokens).query_seed_token[0].tolist()


def test_bad_input_is_rejected_clearly() -> None:
    decoder = make_decoder()
    with pytest.raises(ValueError, match="token_dim"):
        decoder(Tokens(features=torch.randn(5, 3), positions=torch.randn(5, 3), weights=torch.ones(5),
                       offsets=torch.tensor([0, 5])))
    with pytest.raises(ValueError, match="no tokens"):
        decoder(make_tokens([0, 5]))
    with pytest.raises(ValueError, match="pos_dim"):
        decoder(Tokens(features=torch.randn(5, TOKEN_DIM), positions=torch.randn(5, 2), weights=torch.ones(5),
                       offsets=torch.tensor([0, 5])))
    learned = make_decoder(query_init="learned", num_queries=4)
    with pytest.raises(ValueError, match="embeddings"):
        learned(make_tokens([10]), num_queries=5)
    with pytest.warns(UserWarning, match="eval_num_queries=6 is ignored"):
        learned_eval = make_decoder(query_init="learned", num_queries=4, eval_num_queries=6)
    assert learned_eval.eval()(make_tokens([10])).num_queries == [4]
    with pytest.raises(ValueError, match="mask_activation"):
        make_decoder(mask_activation="softmax")
    with pytest.raises(ValueError, match="query_init"):
        make_decoder(query_init="zero")
    with pytest.raises(ValueError, match="objectness"):
        make_decoder(seed_sampling="objectness", objectness_head=False)


def test_two_dimensional_tokens() -> None:
    # The 2D branch feeds pixel tokens with normalised (x, y) positions through the same class.
    decoder = make_decoder(pos_dim=2).eval()
    g = torch.Generator().manual_seed(0)
    tokens = Tokens(features=torch.randn(64 + 36, TOKEN_DIM, generator=g),
                    positions=torch.cat([torch.cartesian_prod(torch.arange(8.0), torch.arange(8.0)) / 8,
                                         torch.cartesian_prod(torch.arange(6.0), torch.arange(6.0)) / 6]),
                    weights=torch.full((100,), 16.0), offsets=torch.tensor([0, 64, 100]))
    out = decoder(tokens)
    assert [m.shape for m in out.final.mask_logits] == [(8, 64), (8, 36)]


def test_empty_tokens_are_predicted_but_not_attended() -> None:
    # Superpoints cropped away keep their slot (targets are indexed by superpoint id) with weight 0.
    decoder = make_decoder().eval()
    tokens = make_tokens([12])
    keep = torch.ones(12, dtype=torch.bool)
    keep[[3, 7]] = False
    with_empty = Tokens(features=tokens.features * keep[:, None],
                        positions=torch.where(keep[:, None], tokens.positions, 0.0),
                        weights=tokens.weights * keep, offsets=tokens.offsets)
    without = Tokens(features=tokens.features[keep], positions=tokens.positions[keep], weights=tokens.weights[keep],
                     offsets=torch.tensor([0, 10]))
    a, b = decoder(with_empty), decoder(without)
    assert a.final.mask_logits[0].shape == (8, 12)
    assert not set(a.query_seed_token[0].tolist()) & {3, 7}
    torch.testing.assert_close(a.final.class_logits[0], b.final.class_logits[0], atol=2e-5, rtol=1e-4)
    torch.testing.assert_close(a.final.mask_logits[0][:, keep], b.final.mask_logits[0], atol=2e-5, rtol=1e-4)
    assert decoder(with_empty, num_queries=20).num_queries == [10]
    with pytest.raises(ValueError, match="weight > 0"):
        decoder(Tokens(features=tokens.features, positions=tokens.positions, weights=torch.zeros(12),
                       offsets=tokens.offsets))


def _room_with_far_context(far: float) -> tuple[Tokens, Tokens]:
    """A 20-token room alone, and the same room with 15 more tokens ``far`` metres away (appended)."""
    room = make_tokens([20])
    extra = make_tokens([15], seed=7)
    positions = torch.cat([room.positions, extra.positions + torch.tensor([far, 0.0, 0.0])])
    both = Tokens(features=torch.cat([room.features, extra.features]), positions=positions,
                  weights=torch.cat([room.weights, extra.weights]), offsets=offsets_from_counts(torch.tensor([35])))
    return room, both


@pytest.mark.parametrize("encoding", ["scene", "relative"])
def test_relative_positions_ignore_far_context(encoding: str) -> None:
    """Tiling's requirement: with the same seeds, tokens far away must not change a room's masks and classes.

    Under the scene-normalised code they do (the room's codes depend on the scan's extent); under the
    relative encoding the far tokens are 200 m away and weigh exp(-slope * 200) ~ 0 in every softmax."""
    decoder = make_decoder(query_init="seeded", mask_activation="ownership", position_encoding=encoding).eval()
    room, both = _room_with_far_context(200.0)
    seeds = [torch.tensor([0, 3, 7, 11, 15, 19])]
    alone = decoder(room, seed_tokens=seeds).final
    with_far = decoder(both, seed_tokens=seeds).final
    mask_change = (alone.mask_logits[0] - with_far.mask_logits[0][:, :20]).abs().max().item()
    class_change = (alone.class_logits[0] - with_far.class_logits[0]).abs().max().item()
    if encoding == "relative":
        assert mask_change < 1e-4 and class_change < 1e-4
        assert torch.equal(alone.background_logits[0], with_far.background_logits[0][:20])
    else:
        assert mask_change > 1e-2


def test_attention_radius_cuts_context_exactly() -> None:
    """With an attention radius, tokens beyond it (here 10 m away, radius 3 m) change no query: class logits and
    the room's mask logits are equal to those of the room alone up to float rounding, in every stage."""
    decoder = make_decoder(query_init="seeded", mask_activation="ownership", position_encoding="relative",
                           attention_radius=3.0).eval()
    soft = make_decoder(query_init="seeded", mask_activation="ownership", position_encoding="relative").eval()
    room, both = _room_with_far_context(10.0)
    seeds = [torch.tensor([0, 3, 7, 11, 15, 19])]
    stages = zip(decoder(room, seed_tokens=seeds).layers, decoder(both, seed_tokens=seeds).layers)
    for layer_alone, layer_both in stages:
        torch.testing.assert_close(layer_alone.class_logits[0], layer_both.class_logits[0], atol=1e-5, rtol=0)
        torch.testing.assert_close(layer_alone.mask_logits[0], layer_both.mask_logits[0][:, :20], atol=1e-5, rtol=0)
    # without the radius, the distance penalty alone leaves a trace of the far tokens at 10 m
    change = (soft(room, seed_tokens=seeds).final.class_logits[0]
              - soft(both, seed_tokens=seeds).final.class_logits[0]).abs().max().item()
    assert change > 1e-4
    with pytest.raises(ValueError, match="attention_radius"):
        make_decoder(attention_radius=3.0)  # scene position codes have no seeds to measure from


def test_relative_positions_are_translation_invariant_and_need_seeds() -> None:
    decoder = make_decoder(query_init="seeded", mask_activation="ownership", position_encoding="relative").eval()
    tokens = make_tokens([20])
    moved = Tokens(features=tokens.features, positions=tokens.positions + torch.tensor([37.0, -3.0, 7.0]),
                   weights=tokens.weights, offsets=tokens.offsets)
    assert torch.allclose(decoder(tokens).final.mask_logits[0], decoder(moved).final.mask_logits[0], atol=1e-3)
    # the bias decays with distance and is learnable: every slope gets a gradient
    out = decoder.train()(tokens)
    (out.final.mask_logits[0].sum() + out.final.class_logits[0].sum()).backward()
    for module in (decoder.cross_distance, decoder.self_distance, decoder.mask_distance):
        assert module.raw_slope.grad is not None and bool((module.raw_slope.grad != 0).all())
    with pytest.raises(ValueError, match="query_init='seeded'"):
        make_decoder(query_init="learned", mask_activation="sigmoid", position_encoding="relative")
    with pytest.raises(ValueError, match="position_encoding must be one of"):
        make_decoder(position_encoding="absolute")
