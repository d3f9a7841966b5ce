"""The optimum of every shipped loss, on hand-built logits (reference: influencer_loss.md)."""
from __future__ import annotations

import math

import pytest
import torch

from pointformer.losses import (InstanceCriterion, SceneInputs, SceneLossInputs, StagePrediction, TokenTargets,
                                get_loss, registered_losses, scene_loss)
from pointformer.losses.influencer import influencer_terms
from pointformer.losses.targets import prepare_scene
from pointformer.losses.terms import masked_softmax_over_queries, soft_class_targets

CONFIGS = ("correct", "split", "all_fire", "one_owns_all")
# the package's losses (a test may register a toy loss of its own)
NAMES = sorted(n for n in registered_losses() if get_loss(n).terms.__module__.startswith("pointformer.losses"))
SIGMOID_NAMES = [n for n in NAMES if get_loss(n).activation == "sigmoid"]

# The "unseeded" cases run the seeded losses on a scene without seeds on purpose (their fallback form).
pytestmark = pytest.mark.filterwarnings("ignore:loss '.*' got no query seeds:UserWarning")


def _scene_loss(name, scene, mask, bg, cls, **hyper):
    targets = TokenTargets(scene.token_instance, scene.token_weight, scene.instance_class)
    return scene_loss(name, SceneInputs(mask_logits=mask, class_logits=cls, targets=targets, background_logits=bg,
                                        query_seed_token=scene.seeds), **hyper)


def _loss(name, scene, config, sharpness=30.0, class_logits=None):
    mask, bg = scene.logits(config, get_loss(name).activation, sharpness)
    cls = scene.zero_class_logits() if class_logits is None else class_logits
    return _scene_loss(name, scene, mask, bg, cls)


@pytest.mark.parametrize("seeded", [True, False], ids=["seeded", "unseeded"])
@pytest.mark.parametrize("name", NAMES)
def test_ordering_correct_split_allfire_oneowns(hand_scene, name, seeded):
    scene = hand_scene(num_instances=10, tokens_per_instance=20, background_tokens=40, num_queries=40, seeded=seeded)
    values = [float(_loss(name, scene, c)["loss"]) for c in CONFIGS]
    # Strict, with a margin: each configuration is clearly worse than the previous one.
    for a, b in zip(values, values[1:]):
        assert b > a + 0.1, dict(zip(CONFIGS, values))


def test_reference_hand_check_numbers(hand_scene):
    """Unseeded ownership form, N = 400, K = 10, T = 0.5: L_att + L_excl + L_bg =
    0.000 < 0.347 = (1 − T)·log 2 < 3.018 < 9.000."""
    scene = hand_scene(num_instances=10, tokens_per_instance=20, background_tokens=30, num_queries=400, seeded=False)
    got = {}
    for config in CONFIGS:
        t = _loss("influencer_unseeded", scene, config, sharpness=1e4)
        got[config] = float(t["att"] + t["excl"] + t["bg"])
    assert got["correct"] == pytest.approx(0.0, abs=1e-6)
    assert got["split"] == pytest.approx(0.5 * math.log(2), abs=1e-6)
    # all-fire: (1 − T)·log N + (K − 1)/N
    assert got["all_fire"] == pytest.approx(0.5 * math.log(400) + 9 / 400, abs=1e-6)
    assert round(got["all_fire"], 3) == 3.018
    assert got["one_owns_all"] == pytest.approx(9.0, abs=1e-6)


@pytest.mark.parametrize("seeded", [True, False], ids=["seeded", "unseeded"])
@pytest.mark.parametrize("name", NAMES)
def test_correct_partition_tends_to_zero(hand_scene, name, seeded):
    scene = hand_scene(num_instances=4, tokens_per_instance=30, background_tokens=20, num_queries=12, seeded=seeded)
    values = []
    for s in (2.0, 5.0, 10.0, 20.0):
        values.append(float(_loss(name, scene, "correct", s, scene.ideal_class_logits("correct", s))["loss"]))
    assert all(b < a for a, b in zip(values, values[1:])), values
    assert values[-1] < 1e-3, values


@pytest.mark.parametrize("t", [1.0, 1.5, 0.0, -0.2])
def test_temperature_outside_open_unit_interval_rejected(hand_scene, t):
    scene = hand_scene(num_instances=2, tokens_per_instance=5, background_tokens=5, num_queries=6, seeded=True)
    mask, bg = scene.logits("correct", "ownership")
    with pytest.raises(ValueError, match="temperature"):
        _scene_loss("influencer", scene, mask, bg, scene.zero_class_logits(), temperature=t)


def test_ownership_attraction_is_nonnegative_on_random_logits():
    """Σ_q exp(ℓ_qk / T) ≤ 1 for T < 1 (Jensen), so L_att ≥ 0 whatever the logits."""
    g = torch.Generator().manual_seed(0)
    for _ in range(20):
        n, p, k = 7, 40, 3
        inst = torch.randint(0, k + 1, (p,), generator=g)
        mask = torch.randn(n, p, generator=g) * 5
        bg = torch.randn(p, generator=g) * 5
        cls = torch.randn(n, 4, generator=g)
        targets = TokenTargets(inst, torch.rand(p, generator=g) + 0.1, torch.randint(0, 3, (k,), generator=g))
        inputs = SceneInputs(mask_logits=mask, class_logits=cls, targets=targets, background_logits=bg)
        t = scene_loss("influencer_unseeded", inputs)
        assert float(t["att"]) >= -1e-6


def test_published_soft_max_of_mean_log_sigmoid_fails_the_ordering(hand_scene):
    """Negative control: the published attempt (soft-max over queries of the mean log-sigmoid mask,
    T = 1) prefers "every query fires on every foreground token" to the correct answer — the same
    ordering test catches it."""
    scene = hand_scene(num_instances=10, tokens_per_instance=20, background_tokens=40, num_queries=40, seeded=False)

    def published(config):
        mask, _ = scene.logits(config, "sigmoid", 30.0)
        if config == "all_fire":  # "fires" for sigmoid masks: every mask covers the whole foreground
            mask = torch.where(scene.token_instance > 0, torch.full_like(mask, 30.0), mask)
        logsig = torch.nn.functional.logsigmoid(mask)
        per_k = []
        for k in range(10):
            mean = logsig[:, scene.token_instance == k + 1].mean(1)
            per_k.append(-torch.logsumexp(mean, 0))
        return float(torch.stack(per_k).mean())

    assert published("all_fire") < published("correct")


def test_background_seeded_and_losing_queries_get_no_object(hand_scene):
    scene = hand_scene(num_instances=3, tokens_per_instance=10, background_tokens=10, num_queries=9, seeded=True)
    prep = prepare_scene(scene.token_instance, scene.token_weight, scene.instance_class, scene.seeds, 9)
    mask, bg = scene.logits("correct", "ownership", 20.0)
    from pointformer.losses.influencer import ownership_log_terms
    ell, _, _ = ownership_log_terms(mask, bg, prep)
    target = soft_class_targets(masked_softmax_over_queries(ell / 0.5, prep.candidates), prep, scene.num_classes)
    for k, q in enumerate(scene.owner):
        assert target[q, int(scene.instance_class[k])] == pytest.approx(1.0, abs=1e-6)
    for q in scene.partner:  # losing candidates
        assert target[q, -1] == pytest.approx(1.0, abs=1e-6)
    for q in range(6, 9):  # background-seeded
        assert prep.query_home[q] == -1
        assert target[q, -1] == 1.0
    # and the gradient of the class term pushes their no-object logit up
    cls = torch.zeros(9, scene.num_classes + 1, dtype=torch.float64, requires_grad=True)
    inputs = SceneLossInputs(mask_logits=mask, class_logits=cls, background_logits=bg, scene=prep)
    influencer_terms(inputs, temperature=0.5, no_object_weight=0.1)["cls"].backward()
    assert (cls.grad[6:, -1] < 0).all() and (cls.grad[scene.partner, -1] < 0).all()


def test_hungarian_unmatched_queries_get_no_object(hand_scene):
    scene = hand_scene(num_instances=3, tokens_per_instance=10, background_tokens=10, num_queries=8, seeded=False)
    mask, _ = scene.logits("correct", "sigmoid", 20.0)
    cls = torch.zeros(8, scene.num_classes + 1, dtype=torch.float64, requires_grad=True)
    criterion = InstanceCriterion(loss="hungarian")
    stage = StagePrediction(class_logits=[cls], mask_logits=[mask])
    targets = TokenTargets(scene.token_instance, scene.token_weight, scene.instance_class)
    rows, cols = criterion.assign(stage, criterion.prepare(stage, None, [targets]))[0]
    assert sorted(zip(rows.tolist(), cols.tolist())) == [(0, 0), (1, 1), (2, 2)]
    _scene_loss("hungarian", scene, mask, None, cls)["cls"].backward()
    unmatched = [q for q in range(8) if q not in rows.tolist()]
    assert (cls.grad[unmatched, -1] < 0).all()
    for q, k in zip(rows.tolist(), cols.tolist()):
        assert cls.grad[q, int(scene.instance_class[k])] < 0


def test_fallback_instance_without_seed_uses_every_query(hand_scene):
    scene = hand_scene(num_instances=3, tokens_per_instance=10, background_tokens=10, num_queries=9, seeded=True)
    seeds = scene.seeds.clone()
    seeds[4:6] = 30  # instance 3 loses its seeds (now on background)
    prep = prepare_scene(scene.token_instance, scene.token_weight, scene.instance_class, seeds, 9)
    assert prep.fallback.tolist() == [False, False, True]
    assert prep.candidates[:, 2].all()
    assert prep.candidates[:, 0].sum() == 2


@pytest.mark.parametrize("seeded", [True, False], ids=["seeded", "unseeded"])
@pytest.mark.parametrize("name", SIGMOID_NAMES)
def test_sigmoid_losses_reject_every_mask_covering_the_whole_foreground(hand_scene, name, seeded):
    """The degenerate minimum of the published attempt, read literally for sigmoid masks (every
    query's σ → 1 on every foreground token): clearly worse than the correct and the split answers."""
    scene = hand_scene(num_instances=10, tokens_per_instance=20, background_tokens=40, num_queries=40, seeded=seeded)
    mask, _ = scene.logits("correct", "sigmoid", 30.0)
    fire = torch.where(scene.token_instance > 0, torch.full_like(mask, 30.0), torch.full_like(mask, -30.0))
    correct = float(_scene_loss(name, scene, mask, None, scene.zero_class_logits())["loss"])
    split = float(_loss(name, scene, "split")["loss"])
    all_fire = float(_scene_loss(name, scene, fire, None, scene.zero_class_logits())["loss"])
    assert correct + 0.1 < split < all_fire - 0.1, (correct, split, all_fire)
