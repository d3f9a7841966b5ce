"""The coverage-driven re-seeding pass: it adds a query where foreground has no prediction and never
removes (or changes) a first-pass prediction."""
import pytest
import torch

from pointformer.inference.instances import InstancePrediction
from pointformer.inference.postprocess import Postprocessor
from pointformer.inference.reseed import (Reseeder, foreground_probability, merge_new_instances,
                                          new_seed_tokens)
from pointformer.models.decoder import QueryDecoder
from pointformer.models.segmentor import SegmentorOutput
from pointformer.models.tokens import Tokens

# A constructed scene of 12 tokens: object A (tokens 0-3) around x=0, object B (tokens 4-7) around
# x=3, a small object C (tokens 8-9) at x=6, floor (tokens 10-11) between them.
POSITIONS = torch.tensor([[0.0, 0, 0.5], [0.1, 0, 0.5], [0.0, 0.1, 0.5], [0.1, 0.1, 0.6],
                          [3.0, 0, 0.5], [3.1, 0, 0.5], [3.0, 0.1, 0.5], [3.1, 0.1, 0.6],
                          [6.0, 0, 1.2], [6.05, 0, 1.2], [1.5, 1.0, 0.0], [4.5, 1.0, 0.0]])
OBJECT_B = set(range(4, 8))


def _first_pass_covering_a_only(num_queries=1):
    masks = torch.zeros(1, 12, dtype=torch.bool)
    masks[0, :4] = True
    return InstancePrediction(masks=masks, class_index=torch.tensor([2]), scores=torch.tensor([0.9]),
                              query_index=torch.tensor([0]))


def test_new_seeds_go_to_uncovered_foreground_far_from_existing_seeds():
    candidates = torch.zeros(12, dtype=torch.bool)
    candidates[4:10] = True                              # B and C are foreground and uncovered
    seeds = new_seed_tokens(candidates, POSITIONS, torch.tensor([0]), min_spacing=0.5, max_new=10)
    picked = seeds.tolist()
    assert len(picked) == 2                              # one in C (farthest), one in B; none twice in one object
    assert {8, 9} & set(picked) and OBJECT_B & set(picked)
    assert new_seed_tokens(candidates, POSITIONS, torch.tensor([0]), min_spacing=0.5, max_new=1).numel() == 1
    # nothing farther than min_spacing from the seeds: no new seed
    assert new_seed_tokens(candidates, POSITIONS, torch.tensor([4, 8]), min_spacing=0.5, max_new=10).numel() == 0
    assert new_seed_tokens(torch.zeros(12, dtype=torch.bool), POSITIONS, torch.tensor([0]), min_spacing=0.0,
                           max_new=5).numel() == 0


def test_foreground_probability_sources():
    objectness = torch.tensor([10.0, -10.0])
    assert torch.allclose(foreground_probability(objectness, None, torch.zeros(3, 2)), torch.tensor([1.0, 0.0]),
                          atol=1e-4)
    background = torch.tensor([10.0, -10.0])            # token 0 owned by the background, token 1 by a query
    prob = foreground_probability(None, background, torch.zeros(2, 2))
    assert prob[0] < 0.01 and prob[1] > 0.99
    prob = foreground_probability(None, None, torch.tensor([[-10.0, 10.0], [-10.0, -10.0]]))
    assert prob[0] < 0.01 and prob[1] > 0.99


def test_merge_keeps_every_first_instance_and_drops_new_duplicates():
    first = _first_pass_covering_a_only()
    second_masks = torch.zeros(3, 12, dtype=torch.bool)
    second_masks[0, :4] = True                           # old query 0 again: not new, ignored
    second_masks[1, :4] = True                           # new query duplicating A: dropped
    second_masks[2, 4:8] = True                          # new query on B: added
    second = InstancePrediction(masks=second_masks, class_index=torch.tensor([2, 2, 1]),
                                scores=torch.tensor([0.5, 0.95, 0.99]), query_index=torch.tensor([0, 1, 2]))
    merged = merge_new_instances(first, second, first_queries=1, token_weight=torch.ones(12), duplicate_iou=0.5)
    assert len(merged) == 2
    assert merged.query_index.tolist() == [2, 0]        # sorted by score
    old = merged.query_index == 0
    assert torch.equal(merged.masks[old], first.masks) and torch.equal(merged.scores[old], first.scores)
    assert torch.equal(merged.class_index[old], first.class_index)


def _decoder_and_output(mask_activation="ownership", query_init="seeded"):
    torch.manual_seed(0)
    decoder = QueryDecoder(token_dim=8, num_classes=3, hidden_dim=16, num_heads=2, ffn_dim=32, num_layers=1,
                           num_queries=1, mask_activation=mask_activation, query_init=query_init,
                           objectness_head=True).eval()
    with torch.no_grad():                                # an objectness head that calls objects A, B, C foreground
        decoder.objectness.weight.zero_()
        decoder.objectness.bias.fill_(5.0)
    tokens = Tokens(features=torch.randn(12, 8), positions=POSITIONS, weights=torch.full((12,), 50.0),
                    offsets=torch.tensor([0, 12]))
    first_seeds = [torch.tensor([0])] if query_init == "seeded" else None
    decoded = decoder(tokens, seed_tokens=first_seeds)
    objectness = [torch.where(torch.arange(12) < 10, 5.0, -5.0)]   # the floor (10, 11) is background
    out = SegmentorOutput(layers=decoded.layers, query_seed_token=decoded.query_seed_token,
                          token_objectness=objectness, tokens=tokens, point_to_token=torch.arange(12),
                          point_to_voxel=torch.arange(12), point_offsets=torch.tensor([0, 12]), num_voxels=12)
    return decoder, out


class _Model(torch.nn.Module):
    """What the pass needs of the model: its decoder (the real QueryDecoder)."""

    def __init__(self, decoder):
        super().__init__()
        self.decoder = decoder


@pytest.mark.parametrize("activation", ["ownership", "sigmoid"])
def test_reseeding_adds_a_query_at_the_unseeded_objects_and_keeps_the_first_pass(activation):
    decoder, out = _decoder_and_output(activation)
    first = [_first_pass_covering_a_only()]
    options = {} if activation == "ownership" else {"topk": 50}
    postprocessor = Postprocessor(activation, options)
    reseeder = Reseeder(foreground_threshold=0.5, min_spacing=0.5, max_new=10, duplicate_iou=0.5)
    new = reseeder.added_seeds(out, first)[0].tolist()
    assert len(new) == 2 and OBJECT_B & set(new) and {8, 9} & set(new)    # one query per unseeded object
    assert not {10, 11} & set(new)                      # background is never seeded
    result = reseeder(_Model(decoder), out, first, postprocessor)[0]
    old = result.query_index == 0
    assert int(old.sum()) == 1                           # the first pass's instance, unchanged
    assert torch.equal(result.masks[old], first[0].masks) and torch.equal(result.scores[old], first[0].scores)
    # the new queries (index 1, 2 = seeds new[0], new[1]) predict instances away from A
    added = result.masks[result.query_index >= 1]
    assert added.shape[0] >= 1 and not added[:, :4].all(1).any()


def test_nothing_to_add_returns_the_first_pass_and_learned_queries_are_refused():
    decoder, out = _decoder_and_output()
    everything = InstancePrediction(masks=torch.ones(1, 12, dtype=torch.bool), class_index=torch.tensor([0]),
                                    scores=torch.tensor([0.5]), query_index=torch.tensor([0]))
    result = Reseeder()(_Model(decoder), out, [everything], Postprocessor("ownership"))
    assert result[0] is everything
    decoder, out = _decoder_and_output(query_init="learned")
    with pytest.raises(ValueError, match="seeded queries"):
        Reseeder()(_Model(decoder), out, [everything], Postprocessor("ownership"))
    with pytest.raises(ValueError, match="foreground_threshold"):
        Reseeder(foreground_threshold=1.5)
