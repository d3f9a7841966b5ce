"""Mask3D's set criterion (`hungarian`) and its solver-free ablation (`greedy`).

Each scene: match queries to instances on cost 2·class + 5·BCE + 2·dice (sigmoid masks), then
    L_cls  = weighted CE (matched → instance class, unmatched → no-object with weight 0.1)
    L_bce  = Σ_matched BCE(m_q, 1_{S_k}) / num_masks,  L_dice = Σ_matched dice / num_masks
and the total 2·L_cls + 5·L_bce + 2·L_dice. num_masks is the number of GT masks (in the criterion:
of the whole batch, averaged over DDP ranks, as Mask3D does).
"""
from __future__ import annotations

import dataclasses

import torch
from torch import Tensor

from pointformer.losses.registry import LossDefinition, SceneLossInputs, register_loss
from pointformer.losses.terms import pairwise_sigmoid_costs, upcast, zero_like_graph

HUNGARIAN_TERM_WEIGHTS: dict[str, float] = {"cls": 2.0, "bce": 5.0, "dice": 2.0}


def matched_terms(inputs: SceneLossInputs, *, class_weight: float, bce_weight: float, dice_weight: float,
                  no_object_weight: float) -> dict[str, Tensor]:
    """Unweighted terms {cls, bce, dice} of one scene given the criterion's assignment.

    Args:
        inputs: the scene's predictions, prepared targets, ``assignment`` (query index [M],
            instance index [M]) and ``num_masks`` (BCE/dice normaliser; None: this scene's
            valid instance count, at least 1).
        class_weight, bce_weight, dice_weight: weights of the matching cost (the criterion solves
            the assignment with them; unused here).
        no_object_weight: class weight of the no-object column.
    """
    if inputs.assignment is None:
        raise ValueError("matched_terms needs the assignment (the criterion solves it for matching losses)")
    mask_logits, class_logits, scene = inputs.mask_logits, inputs.class_logits, inputs.scene
    rows, cols = inputs.assignment
    num_masks = inputs.num_masks
    anchor = zero_like_graph(mask_logits)
    denom = float(num_masks) if num_masks is not None else float(scene.num_valid_instances)
    denom = max(denom, 1.0)
    if rows.numel():
        bce, dice = pairwise_sigmoid_costs(mask_logits.index_select(0, rows), scene)  # [M, K]
        ar = torch.arange(rows.numel(), device=rows.device)
        bce_sum = bce[ar, cols].sum() / denom + anchor
        dice_sum = dice[ar, cols].sum() / denom + anchor
    else:
        bce_sum = dice_sum = anchor
    logits = upcast(class_logits)
    num_classes = logits.shape[1] - 1
    target = torch.full((logits.shape[0],), num_classes, dtype=torch.long, device=logits.device)
    target[rows] = scene.instance_class[cols]
    weight = torch.ones(num_classes + 1, device=logits.device, dtype=logits.dtype)
    weight[-1] = no_object_weight
    cls = torch.nn.functional.cross_entropy(logits, target, weight=weight)
    return {"cls": cls, "bce": bce_sum, "dice": dice_sum}


HUNGARIAN = register_loss(LossDefinition(
    name="hungarian", terms=matched_terms, activation="sigmoid", query_init="learned", uses_seeds=False,
    term_weights=HUNGARIAN_TERM_WEIGHTS,
    defaults={"class_weight": 2.0, "bce_weight": 5.0, "dice_weight": 2.0, "no_object_weight": 0.1},
    matcher="hungarian", batch_normalised_terms=("bce", "dice")))

# Ablation: each instance takes its cheapest free query, cheapest instances first (no solver).
GREEDY = register_loss(dataclasses.replace(HUNGARIAN, name="greedy", matcher="greedy"))
