"""Optimising free logits (no network) with every loss recovers the GT partition, and matching-free
inference then scores AP 1.0 with the project's ScanNet evaluator."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from pointformer.evaluation import evaluate_scenes
from pointformer.inference.postprocess import postprocess_scene
from pointformer.io.labels import SCANNET_INSTANCE_IDS
from pointformer.losses import SceneInputs, TokenTargets, get_loss, registered_losses, scene_loss

NAMES = sorted(n for n in registered_losses() if get_loss(n).terms.__module__.startswith("pointformer.losses"))


def toy_scene(seed=0, num_instances=4, tokens_per_instance=5, background_tokens=10, num_queries=12):
    g = torch.Generator().manual_seed(seed)
    inst = torch.cat([torch.arange(1, num_instances + 1).repeat_interleave(tokens_per_instance),
                      torch.zeros(background_tokens, dtype=torch.long)])
    perm = torch.randperm(inst.numel(), generator=g)
    inst = inst[perm]
    weight = torch.randint(25, 40, (inst.numel(),), generator=g).float()  # points per token
    classes = torch.randint(0, len(SCANNET_INSTANCE_IDS), (num_instances,), generator=g)
    seeds = torch.randperm(inst.numel(), generator=g)[:num_queries]
    token_index = torch.repeat_interleave(torch.arange(inst.numel()), weight.long())  # vertex -> token
    nyu = torch.tensor(SCANNET_INSTANCE_IDS)
    gt_ids = torch.where(inst > 0, nyu[classes[(inst - 1).clamp_min(0)]] * 1000 + inst, torch.zeros_like(inst))
    return inst, weight, classes, seeds, token_index, gt_ids[token_index].numpy().astype(np.int64)


def fit_free_logits(name, inst, weight, classes, seeds, *, steps=300, seed=0):
    g = torch.Generator().manual_seed(seed)
    n, p, c = seeds.numel(), inst.numel(), len(SCANNET_INSTANCE_IDS)
    mask = torch.randn(n, p, generator=g).requires_grad_()
    bg = torch.randn(p, generator=g).requires_grad_()
    cls = torch.randn(n, c + 1, generator=g).requires_grad_()
    opt = torch.optim.Adam([mask, bg, cls], lr=0.1)
    targets = TokenTargets(inst, weight, classes)
    for _ in range(steps):
        opt.zero_grad()
        inputs = SceneInputs(mask_logits=mask, class_logits=cls, targets=targets,
                             background_logits=bg if get_loss(name).activation == "ownership" else None,
                             query_seed_token=seeds)
        scene_loss(name, inputs)["loss"].backward()
        opt.step()
    return mask.detach(), bg.detach(), cls.detach()


@pytest.mark.parametrize("name", NAMES)
def test_free_logits_recover_partition_and_ap_is_one(name):
    inst, weight, classes, seeds, token_index, gt_ids = toy_scene()
    mask, bg, cls = fit_free_logits(name, inst, weight, classes, seeds)
    activation = get_loss(name).activation
    pred = postprocess_scene(activation, mask, bg, cls, weight)
    # The top-scoring prediction of every instance is exactly its token set with its class.
    for k in range(classes.numel()):
        truth = inst == k + 1
        hits = [i for i in range(len(pred)) if torch.equal(pred.masks[i], truth)]
        assert hits, f"instance {k + 1} not recovered by {name}"
        assert int(pred.class_index[hits[0]]) == int(classes[k])
    if activation == "ownership":  # disjoint by construction, one mask per instance, nothing else
        assert len(pred) == classes.numel()
        assert int(pred.masks.sum(0).max()) <= 1
    result = evaluate_scenes([gt_ids], [pred.to_scene_prediction(token_index, SCANNET_INSTANCE_IDS)])
    assert result.map == pytest.approx(1.0)
    assert result.map50 == pytest.approx(1.0)


def test_unfit_logits_do_not_score_ap_one():
    """Control: the evaluator path can fail — random logits are far from AP 1."""
    inst, weight, classes, seeds, token_index, gt_ids = toy_scene()
    mask, bg, cls = fit_free_logits("influencer", inst, weight, classes, seeds, steps=0)
    pred = postprocess_scene("ownership", mask, bg, cls, weight)
    result = evaluate_scenes([gt_ids], [pred.to_scene_prediction(token_index, SCANNET_INSTANCE_IDS)])
    assert not result.map50 >= 0.5
