"""The seeded sigmoid form of the Influencer Loss (`influencer_sigmoid`): independent sigmoid masks,
each instance supervised through a soft-min over its candidate influencers instead of a matching.

For q ∈ Q_k (queries seeded on k's tokens; every query if none):
    c_qk   = 5·BCE(m_q, 1_{S_k}) + 2·dice(m_q, 1_{S_k})
    u_qk   = softmax_{q∈Q_k}(−c_qk / T)                       (stop-gradient, temperature T = 0.5)
    L_att  = (1/K) Σ_k Σ_{q∈Q_k} u_qk·c_qk
    L_rep  = mean over (k, q∈Q_k) of (1 − u_qk)·mean_{p∈S_k} σ(m_qp)   (losers leave the instance)
    L_supp = mean over unclaimed queries q of a_q·mean_{p∈∪S_k} σ(m_qp), a_q = 1 − Σ_k u_qk:
             background-seeded queries are otherwise unsupervised and duplicate instances
             (reference: 32 % duplicates), so their masks are pushed off the foreground.
    L_cls  = soft-target CE as in the ownership form (class weight 2, no-object weight 0.1).
"""
from __future__ import annotations

from typing import Any, Mapping

import torch
from torch import Tensor

from pointformer.losses.registry import LossDefinition, SceneLossInputs, register_loss
from pointformer.losses.terms import (
    masked_softmax_over_queries,
    pairwise_sigmoid_stats,
    soft_class_loss,
    soft_class_targets,
    zero_like_graph,
)

INFLUENCER_SIGMOID_TERM_WEIGHTS: dict[str, float] = {"att": 1.0, "rep": 1.0, "supp": 1.0, "cls": 2.0}


def check_positive_temperature(hyper_parameters: Mapping[str, Any]) -> None:
    if not float(hyper_parameters["temperature"]) > 0:
        raise ValueError(f"temperature must be positive, got {hyper_parameters['temperature']}")


def influencer_sigmoid_terms(inputs: SceneLossInputs, *, temperature: float, bce_weight: float, dice_weight: float,
                             no_object_weight: float) -> dict[str, Tensor]:
    """Unweighted terms {att, rep, supp, cls} of the sigmoid form for one scene (module docstring).

    Args:
        inputs: the scene's predictions (``background_logits`` unused) and prepared targets.
        temperature: T of the stop-gradient soft-min weights over candidates.
        bce_weight, dice_weight: the 5 and 2 of the per-candidate cost.
        no_object_weight: class weight of the no-object column.
    """
    mask_logits, class_logits, scene = inputs.mask_logits, inputs.class_logits, inputs.scene
    anchor = zero_like_graph(mask_logits)
    valid = scene.instance_valid
    num_valid = scene.num_valid_instances
    bce, dice, prob_in = pairwise_sigmoid_stats(mask_logits, scene)
    cost = bce_weight * bce + dice_weight * dice  # [N, K]
    cand = scene.candidates
    assign = masked_softmax_over_queries(-cost.detach() / temperature, cand)  # zero outside candidates
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


INFLUENCER_SIGMOID = register_loss(LossDefinition(
    name="influencer_sigmoid", terms=influencer_sigmoid_terms, activation="sigmoid", query_init="seeded",
    uses_seeds=True, term_weights=INFLUENCER_SIGMOID_TERM_WEIGHTS,
    defaults={"temperature": 0.5, "bce_weight": 5.0, "dice_weight": 2.0, "no_object_weight": 0.1},
    check=check_positive_temperature))
