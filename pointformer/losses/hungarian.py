"""Mask3D's set criterion (`hungarian`) and its solver-free ablation (`greedy`).

Each scene: match queries to instances on cost 2·class + 5·BCE + 2·dice (sigmoid masks), then
    L_cls  = weighted CE (matched → instance class, unmatched → no-object with weight 0.1)
    L_bce  = Σ_matched BCE(m_q, 1_{S_k}) / num_masks,  L_dice = Σ_matched dice / num_masks
and the total 2·L_cls + 5·L_bce + 2·L_dice. num_masks is the number of GT masks (in the criterion:
of the whole batch, averaged over DDP ranks, as Mask3D does).
"""
from __future__ import annotations

from typing import Mapping, Optional

import torch
from torch import Tensor

from pointformer.losses.influencer import weighted_total
from pointformer.losses.matching import ASSIGNERS, matching_cost
from pointformer.losses.targets import PreparedScene, prepare_scene, validate_inputs
from pointformer.losses.terms import pairwise_sigmoid_costs, upcast, without_autocast, zero_like_graph

HUNGARIAN_TERM_WEIGHTS: dict[str, float] = {"cls": 2.0, "bce": 5.0, "dice": 2.0}


@without_autocast
def matched_terms(
    mask_logits: Tensor,
    class_logits: Tensor,
    scene: PreparedScene,
    *,
    assigner: str = "hungarian",
    cost_class: float = 2.0,
    cost_bce: float = 5.0,
    cost_dice: float = 2.0,
    no_object_weight: float = 0.1,
    num_masks: Optional[float] = None,
    assignment: Optional[tuple[Tensor, Tensor]] = None,
) -> tuple[dict[str, Tensor], Tensor, Tensor]:
    """Match, then the unweighted terms of one scene.

    `assignment` (query index, instance index), when given, replaces the matching (the criterion
    solves all scenes of a layer with one device→host copy, see `matching.assign_many`).

    Returns:
        (terms {"cls", "bce", "dice"}, matched query index [M], matched instance index [M]).
    """
    if assigner not in ASSIGNERS:
        raise ValueError(f"assigner must be one of {sorted(ASSIGNERS)}, got {assigner!r}")
    if assignment is None:
        cost = matching_cost(mask_logits, class_logits, scene, cost_class=cost_class, cost_bce=cost_bce,
                             cost_dice=cost_dice)
        rows, cols = ASSIGNERS[assigner](cost, scene.instance_valid)
    else:
        rows, cols = assignment
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
    return {"cls": cls, "bce": bce_sum, "dice": dice_sum}, rows, cols


def _set_loss(assigner: str, mask_logits: Tensor, background_logits: Optional[Tensor], class_logits: Tensor,
              token_instance: Tensor, token_weight: Optional[Tensor], instance_class: Tensor,
              query_seed_token: Optional[Tensor], term_weights: Optional[Mapping[str, float]],
              **kwargs: object) -> dict[str, Tensor]:
    validate_inputs(mask_logits, background_logits, class_logits, token_instance, token_weight,
                    instance_class, query_seed_token, need_background=False)
    # Seeds are ignored by the matcher (reference: seeding hurts Hungarian; the matcher cannot use it).
    scene = prepare_scene(token_instance, token_weight, instance_class, None, mask_logits.shape[0])
    terms, _, _ = matched_terms(mask_logits, class_logits, scene, assigner=assigner, **kwargs)  # type: ignore[arg-type]
    terms["loss"] = weighted_total(terms, HUNGARIAN_TERM_WEIGHTS if term_weights is None else term_weights)
    return terms



def hungarian_loss(
    mask_logits: Tensor,
    background_logits: Optional[Tensor],
    class_logits: Tensor,
    token_instance: Tensor,
    token_weight: Optional[Tensor],
    instance_class: Tensor,
    query_seed_token: Optional[Tensor] = None,
    *,
    cost_class: float = 2.0,
    cost_bce: float = 5.0,
    cost_dice: float = 2.0,
    no_object_weight: float = 0.1,
    num_masks: Optional[float] = None,
    term_weights: Optional[Mapping[str, float]] = None,
    **unused: object,
) -> dict[str, Tensor]:
    """Mask3D's Hungarian criterion for one scene.

    Args:
        mask_logits: [N, P] sigmoid mask logits; background_logits: ignored (may be None);
        class_logits: [N, C+1]; token_instance, token_weight, instance_class: see `targets.py`;
        query_seed_token: ignored (the matcher does not use seeds).
        cost_class, cost_bce, cost_dice: matching cost weights (2, 5, 2).
        num_masks: BCE/dice normaliser (default: this scene's instance count, at least 1).
        term_weights: loss weights (default cls 2, bce 5, dice 2 — the same as the cost).
    Returns:
        {"loss", "cls", "bce", "dice"} scalar tensors.
    """
    return _set_loss("hungarian", mask_logits, background_logits, class_logits, token_instance, token_weight,
                     instance_class, query_seed_token, term_weights, cost_class=cost_class, cost_bce=cost_bce,
                     cost_dice=cost_dice, no_object_weight=no_object_weight, num_masks=num_masks)


def greedy_loss(
    mask_logits: Tensor,
    background_logits: Optional[Tensor],
    class_logits: Tensor,
    token_instance: Tensor,
    token_weight: Optional[Tensor],
    instance_class: Tensor,
    query_seed_token: Optional[Tensor] = None,
    *,
    cost_class: float = 2.0,
    cost_bce: float = 5.0,
    cost_dice: float = 2.0,
    no_object_weight: float = 0.1,
    num_masks: Optional[float] = None,
    term_weights: Optional[Mapping[str, float]] = None,
    **unused: object,
) -> dict[str, Tensor]:
    """Ablation: `hungarian_loss` with a greedy assignment (cheapest pairs first, no solver)."""
    return _set_loss("greedy", mask_logits, background_logits, class_logits, token_instance, token_weight,
                     instance_class, query_seed_token, term_weights, cost_class=cost_class, cost_bce=cost_bce,
                     cost_dice=cost_dice, no_object_weight=no_object_weight, num_masks=num_masks)
