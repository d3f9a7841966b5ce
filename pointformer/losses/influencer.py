"""The Influencer Loss in its seeded ownership form (`influencer`, the default) and the unseeded
ablation (`influencer_unseeded`). Definitions and design notes: docs/losses.md.

Ownership: π_qp = softmax over {background slot 0, queries 1..N} of the logits of token p.
ℓ_qk = Σ_{p∈S_k} w_p log π_qp / Σ_{p∈S_k} w_p (log of the geometric-mean ownership of instance k by q).
    L_att  = (1/K) Σ_k −T·log Σ_{q∈Q_k} exp(ℓ_qk / T)          (soft-min over candidate influencers)
    L_bg   = −mean_{p∈B} log π_0p,  L_fg = −mean_{p∈∪S_k} log(1 − π_0p)   (weighted means)
    L_excl = (1/K) Σ_q [(Σ_{k∈F} r_qk)² − Σ_{k∈F} r_qk²],  r = exp ℓ, F = instances without a seed
    L_cls  = soft-target CE, targets u_qk·onehot(c_k) + (1 − u_qk)·onehot(∅), u = softmax_{Q_k}(ℓ/T)
Since Σ_q r_qk ≤ 1 (Jensen) and T < 1, Σ_q exp(ℓ_qk/T) ≤ 1, so L_att ≥ 0 with equality iff one
candidate owns the whole instance; at T ≥ 1 "everybody shares everything" is as good or better, so
T ≥ 1 is rejected.
"""
from __future__ import annotations

import dataclasses
from typing import Any, Mapping, Optional

import torch
from torch import Tensor

from pointformer.losses.registry import LossDefinition, SceneLossInputs, register_loss
from pointformer.losses.targets import PreparedScene
from pointformer.losses.terms import (
    masked_softmax_over_queries,
    soft_class_loss,
    soft_class_targets,
    upcast,
    zero_like_graph,
)

INFLUENCER_TERM_WEIGHTS: dict[str, float] = {"att": 1.0, "bg": 1.0, "fg": 1.0, "excl": 1.0, "cls": 2.0}


def check_ownership_temperature(hyper_parameters: Mapping[str, Any]) -> None:
    """Raise ValueError unless 0 < T < 1 (at T >= 1 the all-share configuration is a minimum)."""
    temperature = hyper_parameters["temperature"]
    if not (0.0 < float(temperature) < 1.0):
        raise ValueError(
            f"temperature must lie in (0, 1) for the ownership form of the Influencer Loss, got {temperature}: "
            "at T >= 1 every query sharing every token scores as well as (T = 1) or better than (T > 1) the "
            "correct one-query-per-instance partition")


class _QueryLogSumExpAndInstanceSums(torch.autograd.Function):
    """Fused core of the ownership form: lse_q[p] = logsumexp_q z_qp and
    A[q, k] = Σ_{p∈S_k} ŵ_p z_qp, with a hand-written backward.

    Saves one [N, P] buffer (exp(z − max)) and makes ~4 passes over [N, P] forward and 2 backward;
    the autograd composition made ~15 and saved several [N, P] temporaries.
    """

    @staticmethod
    def forward(ctx, z: Tensor, fg_index: Tensor, fg_instance: Tensor, fg_weight: Tensor,  # type: ignore[override]
                num_instances: int) -> tuple[Tensor, Tensor]:
        m = z.amax(0)  # [P]
        e = torch.sub(z, m)
        e.exp_()
        lse_q = e.sum(0).log_() + m
        a = z.new_zeros(z.shape[0], num_instances)
        if fg_index.numel() and num_instances:
            a.index_add_(1, fg_instance, z.index_select(1, fg_index) * fg_weight)
        ctx.save_for_backward(e, m, lse_q, fg_index, fg_instance, fg_weight)
        return a, lse_q

    @staticmethod
    def backward(ctx, grad_a: Optional[Tensor], grad_lse: Optional[Tensor]):  # type: ignore[override]
        e, m, lse_q, fg_index, fg_instance, fg_weight = ctx.saved_tensors
        if grad_lse is not None:
            grad_z = e * (grad_lse * torch.exp(m - lse_q))  # softmax over queries · upstream
        else:
            grad_z = torch.zeros_like(e)
        if grad_a is not None and fg_index.numel() and grad_a.shape[1]:
            grad_z.index_add_(1, fg_index, grad_a.index_select(1, fg_instance) * fg_weight)
        return grad_z, None, None, None, None


def ownership_log_terms(
    mask_logits: Tensor, background_logits: Tensor, scene: PreparedScene
) -> tuple[Tensor, Tensor, Tensor]:
    """ℓ [N, K], log π_0 [P] and log(1 − π_0) [P] without materialising log π [N+1, P].

    ℓ_qk = Σ ŵ z_qp − Σ ŵ lse_p (ŵ = weight within the instance), lse = logsumexp over all slots.
    """
    z = upcast(mask_logits)
    z0 = upcast(background_logits).to(z.dtype)
    k = scene.instance_class.shape[0]
    z_sums, lse_queries = _QueryLogSumExpAndInstanceSums.apply(
        z, scene.fg_index, scene.fg_instance, scene.fg_weight_in_instance.to(z.dtype), k)
    lse_all = torch.logaddexp(lse_queries, z0)
    lse_mean = torch.zeros(k, device=z.device, dtype=z.dtype).index_add(
        0, scene.fg_instance, lse_all.index_select(0, scene.fg_index) * scene.fg_weight_in_instance)
    ell = z_sums - lse_mean.unsqueeze(0)
    return ell, z0 - lse_all, lse_queries - lse_all


def influencer_terms(inputs: SceneLossInputs, *, temperature: float, no_object_weight: float) -> dict[str, Tensor]:
    """Unweighted terms {att, bg, fg, excl, cls} of the ownership loss for one scene (module docstring).

    Args:
        inputs: the scene's predictions (``background_logits`` required) and prepared targets.
        temperature: T of the soft-min over candidate influencers, 0 < T < 1.
        no_object_weight: class weight of the no-object column.
    """
    mask_logits, background_logits, class_logits, scene = (inputs.mask_logits, inputs.background_logits,
                                                           inputs.class_logits, inputs.scene)
    if background_logits is None:
        raise ValueError("the ownership form needs background_logits [P] (decoder mask_activation='ownership')")
    t = float(temperature)
    ell, log_bg, log_not_bg = ownership_log_terms(mask_logits, background_logits, scene)
    anchor = zero_like_graph(mask_logits) + zero_like_graph(background_logits)
    num_valid = scene.num_valid_instances

    if num_valid:
        # Only valid instances: an all -inf column would give NaN gradients even when masked out.
        cols = scene.instance_valid_index
        scaled = (ell.index_select(1, cols) / t).masked_fill(~scene.candidates.index_select(1, cols), float("-inf"))
        att = (-t * torch.logsumexp(scaled, dim=0)).sum() / num_valid
        if scene.has_fallback:
            r = torch.exp(ell) * scene.fallback.unsqueeze(0)
            excl = (r.sum(1).square() - r.square().sum(1)).sum() / num_valid
        else:
            excl = anchor
    else:
        att = anchor
        excl = anchor
    bg = -(log_bg.index_select(0, scene.bg_index) * scene.bg_weight_norm).sum() if scene.bg_index.numel() else anchor
    fg = (-(log_not_bg.index_select(0, scene.fg_index) * scene.fg_weight_norm).sum()
          if scene.fg_index.numel() else anchor)

    assign = masked_softmax_over_queries(ell.detach() / t, scene.candidates)
    target = soft_class_targets(assign, scene, class_logits.shape[1] - 1)
    cls = soft_class_loss(class_logits, target, no_object_weight)
    return {"att": att + anchor, "bg": bg, "fg": fg, "excl": excl, "cls": cls}


INFLUENCER = register_loss(LossDefinition(
    name="influencer", terms=influencer_terms, activation="ownership", query_init="seeded", uses_seeds=True,
    term_weights=INFLUENCER_TERM_WEIGHTS, defaults={"temperature": 0.5, "no_object_weight": 0.1},
    check=check_ownership_temperature))

# Ablation: every query a candidate for every instance (seeds dropped), on learned queries as in the
# reference ablation. It collapses (reference: AP50 ~0 without L_fg, 0.43 with it); shipped to
# reproduce that measurement, not to train with.
INFLUENCER_UNSEEDED = register_loss(dataclasses.replace(
    INFLUENCER, name="influencer_unseeded", query_init="learned", uses_seeds=False))
