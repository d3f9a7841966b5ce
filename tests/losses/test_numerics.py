"""Gradients, mixed precision, degenerate scenes, token weights and input validation."""
from __future__ import annotations

import warnings

import pytest
import torch

from pointformer.losses import (InstanceCriterion, SceneInputs, StagePrediction, TokenTargets, get_loss,
                                registered_losses, scene_loss)

# the package's losses (a test may register a toy loss of its own)
NAMES = sorted(n for n in registered_losses() if get_loss(n).terms.__module__.startswith("pointformer.losses"))


def run_loss(name, mask_logits, background_logits, class_logits, token_instance, token_weight, instance_class,
             query_seed_token=None, **kwargs):
    """scene_loss of one scene given as loose tensors."""
    inputs = SceneInputs(mask_logits=mask_logits, class_logits=class_logits, background_logits=background_logits,
                         targets=TokenTargets(token_instance, token_weight, instance_class),
                         query_seed_token=query_seed_token)
    return scene_loss(name, inputs, **kwargs)


def matched_rows(name, mask, cls, inst, weight, classes):
    """The query rows the matching loss `name` assigns to instances (the criterion's assignment)."""
    criterion = InstanceCriterion(loss=name)
    stage = StagePrediction(class_logits=[cls], mask_logits=[mask])
    scenes = criterion.prepare(stage, None, [TokenTargets(inst, weight, classes)])
    rows, _ = criterion.assign(stage, scenes)[0]
    return rows.tolist()


def _random_scene(n=6, p=24, k=3, c=4, seed=0, dtype=torch.float64, seeded=True):
    g = torch.Generator().manual_seed(seed)
    inst = torch.randint(-1, k + 1, (p,), generator=g)
    inst[: k + 1] = torch.arange(0, k + 1)  # every instance and the background present
    weight = (torch.rand(p, generator=g) + 0.5).to(dtype)
    classes = torch.randint(0, c, (k,), generator=g)
    seeds = torch.randperm(p, generator=g)[:n] if seeded else None
    mask = torch.randn(n, p, generator=g, dtype=dtype) * 2
    bg = torch.randn(p, generator=g, dtype=dtype)
    cls = torch.randn(n, c + 1, generator=g, dtype=dtype)
    return mask, bg, cls, inst, weight, classes, seeds


def _single_candidate_seeds(inst, n):
    """One query seeded on each instance, the others on background: the stop-gradient soft-min
    weights are then exactly 1 and the whole loss is a smooth function of the logits."""
    k = int(inst.max())
    seeds = [int((inst == i).nonzero()[0]) for i in range(1, k + 1)]
    bg = (inst == 0).nonzero().squeeze(1).tolist()
    return torch.tensor(seeds + [bg[j % len(bg)] for j in range(n - k)])


@pytest.mark.parametrize("name", NAMES)
def test_gradcheck_float64(name):
    mask, bg, cls, inst, weight, classes, _ = _random_scene()
    seeds = _single_candidate_seeds(inst, mask.shape[0])
    inputs = (mask.requires_grad_(), bg.requires_grad_(), cls.requires_grad_())

    # the unseeded form has soft candidates whatever the seeds: leave out its stop-gradient class term
    weights = {"cls": 0.0} if name == "influencer_unseeded" else None

    def f(m, b, c):
        return run_loss(name, m, b, c, inst, weight, classes, seeds, term_weights=weights)["loss"]

    assert torch.autograd.gradcheck(f, inputs, eps=1e-6, atol=1e-5, rtol=1e-4)


@pytest.mark.parametrize("seeded", [True, False])
def test_gradcheck_ownership_terms_with_soft_candidates(seeded):
    """Several candidates per instance (and the unseeded form): every term but the class term
    (whose targets are stop-gradient) is differentiable end to end."""
    mask, bg, cls, inst, weight, classes, seeds = _random_scene(seeded=seeded, n=8)
    name = "influencer" if seeded else "influencer_unseeded"  # the same terms; the ablation ignores seeds

    def f(m, b):
        return run_loss(name, m, b, cls, inst, weight, classes, seeds, term_weights={"cls": 0.0})["loss"]

    assert torch.autograd.gradcheck(f, (mask.requires_grad_(), bg.requires_grad_()), eps=1e-6, atol=1e-5, rtol=1e-4)


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16], ids=["bf16", "fp16"])
@pytest.mark.parametrize("name", NAMES)
def test_autocast_with_extreme_logits_is_finite(name, dtype):
    """Half-precision predictions (as an autocast decoder emits them) with logits near the type's
    range: values and gradients stay finite."""
    n, p, k, c, d = 8, 64, 4, 5, 16
    g = torch.Generator().manual_seed(1)
    inst = torch.randint(-1, k + 1, (p,), generator=g)
    inst[: k + 1] = torch.arange(0, k + 1)
    limit = 3e4 if dtype == torch.float16 else 1e30  # fp16: room for the sum below
    sign = lambda *shape: torch.randint(0, 2, shape, generator=g).float() * 2 - 1  # noqa: E731
    mask = (sign(n, p) * limit * torch.rand(n, p, generator=g)).to(dtype).requires_grad_()
    bg = (sign(p) * limit).to(dtype).requires_grad_()
    cls = (sign(n, c + 1) * limit).to(dtype).requires_grad_()
    # a real autocast producer as well: a linear layer's output
    features = torch.randn(p, d, generator=g)
    embed = (torch.randn(n, d, generator=g) * 50).requires_grad_()
    with torch.autocast("cpu", dtype=dtype):
        produced = embed @ features.T
        assert produced.dtype == dtype
        out = run_loss(name, mask + produced, bg, cls, inst, torch.rand(p, generator=g) + 0.5,
                       torch.randint(0, c, (k,), generator=g), torch.randperm(p, generator=g)[:n])
    for key, value in out.items():
        assert torch.isfinite(value), key
    out["loss"].backward()
    reached = [mask, cls, embed] + ([bg] if get_loss(name).activation == "ownership" else [])
    for t in reached:
        assert t.grad is not None and torch.isfinite(t.grad).all()
    if get_loss(name).activation == "sigmoid":  # the background slot is not part of a sigmoid loss
        assert bg.grad is None


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("case", ["no_instances", "only_ignore", "more_instances_than_queries", "no_background",
                                  "empty_instance"])
def test_degenerate_scenes_give_finite_loss_and_gradients(name, case):
    n, p, c = 4, 30, 3
    g = torch.Generator().manual_seed(2)
    if case == "no_instances":
        inst, classes = torch.zeros(p, dtype=torch.long), torch.zeros(0, dtype=torch.long)
        inst[:5] = -1
    elif case == "only_ignore":
        inst, classes = torch.full((p,), -1, dtype=torch.long), torch.zeros(0, dtype=torch.long)
    elif case == "more_instances_than_queries":
        inst = torch.arange(p) % 11  # 10 instances + background, 4 queries
        classes = torch.randint(0, c, (10,), generator=g)
    elif case == "no_background":
        inst = torch.arange(p) % 3 + 1
        classes = torch.randint(0, c, (3,), generator=g)
    else:  # instance 2 declared but owns no token
        inst = torch.tensor([1, 3] * (p // 2))
        classes = torch.randint(0, c, (3,), generator=g)
    mask = torch.randn(n, p, generator=g, requires_grad=True)
    bg = torch.randn(p, generator=g, requires_grad=True)
    cls = torch.randn(n, c + 1, generator=g, requires_grad=True)
    seeds = torch.randperm(p, generator=g)[:n]
    out = run_loss(name, mask, bg, cls, inst, torch.ones(p), classes, seeds)
    for key, value in out.items():
        assert torch.isfinite(value), (key, value)
    out["loss"].backward()
    assert torch.isfinite(mask.grad).all() and torch.isfinite(cls.grad).all()
    if case == "only_ignore":  # nothing to supervise but the classes (all no-object)
        assert float(mask.grad.abs().sum()) == 0.0


@pytest.mark.parametrize("seeded", [True, False])
@pytest.mark.parametrize("name", NAMES)
def test_token_of_weight_two_counts_as_two_tokens_of_weight_one(name, seeded):
    mask, bg, cls, inst, weight, classes, seeds = _random_scene(seeded=seeded, seed=3)
    weight = torch.ones_like(weight)
    for j in (2, 7, 11):  # one background or instance token each; duplicated below
        weight[j] = 2.0
    dup = torch.tensor([2, 7, 11])
    mask_d = torch.cat([mask, mask[:, dup]], 1)
    bg_d = torch.cat([bg, bg[dup]])
    inst_d = torch.cat([inst, inst[dup]])
    weight_d = torch.cat([torch.where(torch.isin(torch.arange(len(weight)), dup), 1.0, weight),
                          torch.ones(3, dtype=weight.dtype)])
    with warnings.catch_warnings():  # the seeded losses warn when seeded=False
        warnings.simplefilter("ignore", UserWarning)
        a = run_loss(name, mask, bg, cls, inst, weight, classes, seeds)
        b = run_loss(name, mask_d, bg_d, cls, inst_d, weight_d, classes, seeds)
    for key in a:
        assert float(a[key]) == pytest.approx(float(b[key]), rel=1e-9, abs=1e-12), key
    # and a different weight changes the loss (the test can fail)
    weight2 = weight.clone()
    weight2[2] = 5.0
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        c = run_loss(name, mask, bg, cls, inst, weight2, classes, seeds)
    assert float(c["loss"]) != pytest.approx(float(a["loss"]), rel=1e-9)


def test_learned_query_seeds_of_minus_one_mean_unseeded():
    mask, bg, cls, inst, weight, classes, seeds = _random_scene()
    with pytest.warns(UserWarning, match="no query seeds"):
        a = run_loss("influencer", mask, bg, cls, inst, weight, classes, torch.full((mask.shape[0],), -1))
    with pytest.warns(UserWarning, match="no query seeds"):
        b = run_loss("influencer", mask, bg, cls, inst, weight, classes, None)
    assert float(a["loss"]) == pytest.approx(float(b["loss"]), rel=1e-12)
    # the unseeded ablation is that form whatever the seeds (no warning: it ignores them) ...
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        c = run_loss("influencer_unseeded", mask, bg, cls, inst, weight, classes, seeds)
    for key in a:
        assert float(c[key]) == pytest.approx(float(a[key]), rel=1e-12), key
    # ... while the seeded loss with real seeds is a different loss (the comparison can fail)
    seeded = run_loss("influencer", mask, bg, cls, inst, weight, classes, seeds)
    assert float(seeded["loss"]) != pytest.approx(float(a["loss"]), rel=1e-6)


@pytest.mark.parametrize("bad", ["nan", "inf", "neginf"])
def test_hungarian_guards_nonfinite_costs(bad):
    mask, bg, cls, inst, weight, classes, _ = _random_scene(dtype=torch.float32)
    value = {"nan": float("nan"), "inf": float("inf"), "neginf": float("-inf")}[bad]
    mask[1] = value  # one query's mask entirely non-finite
    cls[2, 0] = value
    out = run_loss("hungarian", mask, bg, cls, inst, weight, classes)  # must not raise
    assert set(out) == {"loss", "cls", "bce", "dice"}
    # the guarded queries are avoided: the loss over the finite ones remains usable when they are unmatched
    rows = matched_rows("hungarian", mask, cls, inst, weight, classes)
    assert len(rows) == int(classes.numel())  # every instance is matched (6 queries, 3 instances)
    assert 1 not in rows
    if bad != "neginf":  # a -inf class logit is a finite cost (probability 0)
        assert 2 not in rows


def test_all_nan_cost_matrix_does_not_crash():
    mask, bg, cls, inst, weight, classes, _ = _random_scene(dtype=torch.float32)
    mask[:] = float("nan")
    for name in ("greedy", "hungarian"):
        out = run_loss(name, mask, bg, cls, inst, weight, classes)
        assert torch.isnan(out["bce"]), name  # NaN predictions give a NaN loss (the trainer skips the step) — no crash


@pytest.mark.parametrize("mutate, match", [
    (lambda a: a.update(token_instance=torch.full_like(a["token_instance"], 9)), "token_instance values"),
    (lambda a: a.update(instance_class=torch.tensor([0, 1, 9])), "instance_class values"),
    (lambda a: a.update(token_weight=-a["token_weight"]), "token_weight"),
    (lambda a: a.update(query_seed_token=torch.tensor([0, 1, 2, 3, 4, 99])), "query_seed_token"),
    (lambda a: a.update(background_logits=None), "background_logits"),
    (lambda a: a.update(class_logits=a["class_logits"][:3]), "class_logits"),
    (lambda a: a.update(token_instance=a["token_instance"].float()), "integer dtype"),
    (lambda a: a.update(mask_logits=a["mask_logits"][0]), "mask_logits"),
])
def test_bad_inputs_raise_clear_value_errors(mutate, match):
    mask, bg, cls, inst, weight, classes, seeds = _random_scene()
    args = dict(mask_logits=mask, background_logits=bg, class_logits=cls, token_instance=inst, token_weight=weight,
                instance_class=classes, query_seed_token=seeds)
    mutate(args)
    with pytest.raises(ValueError, match=match):
        run_loss("influencer", **args)


def test_sigmoid_losses_accept_missing_background():
    mask, _, cls, inst, weight, classes, seeds = _random_scene()
    sigmoid = [name for name in NAMES if get_loss(name).activation == "sigmoid"]
    assert {"influencer_sigmoid", "hungarian", "greedy"} <= set(sigmoid)
    for name in sigmoid:
        assert torch.isfinite(run_loss(name, mask, None, cls, inst, weight, classes, seeds)["loss"]), name
