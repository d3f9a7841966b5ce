"""The seeded sigmoid form of the Influencer Loss (`influencer_sigmoid`): independent sigmoid masks,
each instance supervised through a soft-min over its candidate influencers instead of a matching.

For q ∈ Q_k (queries seeded on k's tokens; every query if none):
    c_qk   = 5·BCE(m_q, 1_{S_k}) + 2·dice(m_q, 1_{S_k})
    u_qk   = softmax_{q∈Q_k}(−c_qk / τ)                       (stop-gradient, τ = 0.5)
    L_att  = (1/K) Σ_k Σ_{q∈Q_k} u_qk·c_qk
    L_rep  = mean over (k, q∈Q_k) of (1 − u_qk)·mean_{p∈S_k} σ(m_qp)   (losers leave the instance)
    L_supp = mean over unclaimed queries q of a_q·mean_{p∈∪S_k} σ(m_qp), a_q = 1 − Σ_k u_qk:
             background-seeded queries are otherwise unsupervised and duplicate instances
             (reference: 32 % duplicates), so their masks are pushed off the foreground.
    L_cls  = soft-target CE as in the ownership form (class weight 2, no-object weight 0.1).
"""
from __future__ import annotations

from typing import Mapping, Optional

import torch
from torch import Tensor

from pointformer.losses.influencer import weighted_total
from pointformer.losses.targets import PreparedScene, prepare_scene, validate_inputs
from pointformer.losses.terms import (
    masked_softmax_over_queries,
    pairwise_sigmoid_stats,
    soft_class_loss,
    soft_class_targets,
    without_autocast,
    zero_like_graph,
)

INFLUENCER_SIGMOID_TERM_WEIGHTS: dict[str, float] = {"att": 1.0, "rep": 1.0, "supp": 1.0, "cls": 2.0}


@without_autocast
def influencer_sigmoid_terms(
    mask_logits: Tensor,
    class_logits: Tensor,
    scene: PreparedScene,
    *,
    tau: float = 0.5,
    bce_weight: float = 5.0,
    dice_weight: float = 2.0,
    no_object_weight: float = 0.1,
) -> dict[str, Tensor]:
    """Unweighted terms of the sigmoid form for one scene (see the module docstring)."""
    if not tau > 0:
        raise ValueError(f"tau must be positive, got {tau}")
    anchor = zero_like_graph(mask_logits)
    valid = scene.instance_valid
    num_valid = scene.num_valid_instances
    bce, dice, prob_in = pairwise_sigmoid_stats(mask_logits, scene)
    cost = bce_weight * bce + dice_weight * dice  # [N, K]
    cand = scene.candidates
    assign = masked_softmax_over_queries(-cost.detach() / tau, cand)  # zero outside candidates
    if num_valid:
        att = (assign * cost * valid).sum() / num_valid + anchor  # masks, not boolean indexing: no sync
        inside = prob_in / scene.instance_weight.clamp_min(1e-30)  # [N, K] weighted mean σ on S_k
        pairs = cand & valid.unsqueeze(0)
        rep = ((1.0 - assign) * inside * pairs).sum() / pairs.sum().clamp_min(1) + anchor
        claimed = assign.sum(1).clamp(max=1.0)
        unclaimed = (1.0 - claimed).detach()
        if scene.query_home is not None:
            # Only queries seeded outside every instance are "unclaimed by construction"; losing
            # candidates are already handled by L_rep.
            unclaimed = unclaimed * (scene.query_home < 0)
        else:
            unclaimed = torch.zeros_like(unclaimed)
        # Σ_k Σ_{p∈S_k} w σ = Σ_{p∈fg} w σ: the foreground mean comes from the same sums
        fg_prob = prob_in.sum(1) / scene.fg_weight.sum().clamp_min(1e-30)  # [N]
        supp = (unclaimed * fg_prob).sum() / (unclaimed > 0).sum().clamp_min(1) + anchor  # no device sync
    else:
        att = rep = supp = anchor
    target = soft_class_targets(assign, scene, class_logits.shape[1] - 1)
    cls = soft_class_loss(class_logits, target, no_object_weight)
    return {"att": att, "rep": rep, "supp": supp, "cls": cls}


def influencer_sigmoid_loss(
    mask_logits: Tensor,
    background_logits: Optional[Tensor],
    class_logits: Tensor,
    token_instance: Tensor,
    token_weight: Optional[Tensor],
    instance_class: Tensor,
    query_seed_token: Optional[Tensor] = None,
    *,
    tau: float = 0.5,
    bce_weight: float = 5.0,
    dice_weight: float = 2.0,
    no_object_weight: float = 0.1,
    term_weights: Optional[Mapping[str, float]] = None,
    **unused: object,
) -> dict[str, Tensor]:
    """Seeded sigmoid Influencer Loss of one scene.

    Args:
        mask_logits: [N, P] sigmoid mask logits.
        background_logits: [P] or None; ignored (sigmoid masks have no background slot).
        class_logits: [N, C+1] (last column = no-object).
        token_instance, token_weight, instance_class, query_seed_token: see `targets.py`.
        tau: temperature of the (stop-gradient) soft-min weights over candidates.
        bce_weight, dice_weight: the 5 and 2 of the per-candidate cost.
        term_weights: weights of the terms in "loss" (default att/rep/supp 1, cls 2).
    Returns:
        {"loss", "att", "rep", "supp", "cls"} scalar tensors.
    """
    validate_inputs(mask_logits, background_logits, class_logits, token_instance, token_weight,
                    instance_class, query_seed_token, need_background=False)
    scene = prepare_scene(token_instance, token_weight, instance_class, query_seed_token, mask_logits.shape[0])
    terms = influencer_sigmoid_terms(mask_logits, class_logits, scene, tau=tau, bce_weight=bce_weight,
                                     dice_weight=dice_weight, no_object_weight=no_object_weight)
    terms["loss"] = weighted_total(terms, INFLUENCER_SIGMOID_TERM_WEIGHTS if term_weights is None else term_weights)
    return terms
