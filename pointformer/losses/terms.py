"""Building blocks shared by the losses: per-instance token sums, pairwise sigmoid mask costs
(BCE and dice of every query against every instance in O(N·P)), and the soft-target class loss.

Everything is computed in float32 (inputs are upcast) so that bf16/fp16 autocast stays finite.
"""
from __future__ import annotations

from typing import Mapping

import torch
from torch import Tensor

from pointformer.losses.targets import PreparedScene

DICE_SMOOTH = 1.0  # Mask3D's dice smoothing, in token-weight units (points)


def upcast(t: Tensor) -> Tensor:
    """float16/bfloat16 -> float32 (other dtypes, e.g. float64 for gradcheck, are kept)."""
    return t.float() if t.dtype in (torch.float16, torch.bfloat16) else t


def autocast_off(t: Tensor) -> torch.autocast:
    """Context that disables autocast on t's device: the losses upcast to float32 themselves and
    their matvecs (sums over up to 10^5 weighted tokens) must not run in half precision."""
    return torch.autocast(device_type=t.device.type, enabled=False)


def weighted_total(terms: Mapping[str, Tensor], weights: Mapping[str, float]) -> Tensor:
    """Σ weight·term over the weights' keys; raises ValueError for a weight naming no term."""
    unknown = sorted(set(weights) - set(terms))
    if unknown:
        raise ValueError(f"term weights name unknown loss terms {unknown}; known terms: {sorted(terms)}")
    total = None
    for name, w in weights.items():
        if w == 0:
            continue
        total = terms[name] * w if total is None else total + terms[name] * w
    if total is None:
        total = next(iter(terms.values())) * 0.0
    return total


def zero_like_graph(t: Tensor) -> Tensor:
    """A scalar 0 that stays connected to `t`'s graph (so backward and DDP see every parameter).
    Built from one element: a half-precision t.sum() can overflow to inf, and inf·0 is NaN."""
    return upcast(t.reshape(-1)[:1]).sum() * 0.0


def instance_sums(values: Tensor, scene: PreparedScene, token_scale: Tensor) -> Tensor:
    """Σ_{p∈S_k} token_scale_p · values[:, p] for every instance k.

    Args:
        values: [N, P] per-query, per-token values.
        token_scale: [P_fg] factor per foreground token (aligned with scene.fg_index).
    Returns:
        [N, K] sums (zero for instances without tokens).
    """
    n = values.shape[0]
    k = scene.instance_class.shape[0]
    out = values.new_zeros(n, k)
    if scene.fg_index.numel() == 0 or k == 0:
        return out
    return out.index_add(1, scene.fg_instance, values.index_select(1, scene.fg_index) * token_scale)


def pairwise_sigmoid_costs(mask_logits: Tensor, scene: PreparedScene) -> tuple[Tensor, Tensor]:
    """(bce [N, K], dice [N, K]); see `pairwise_sigmoid_stats`."""
    bce, dice, _ = pairwise_sigmoid_stats(mask_logits, scene)
    return bce, dice


def pairwise_sigmoid_stats(mask_logits: Tensor, scene: PreparedScene) -> tuple[Tensor, Tensor, Tensor]:
    """BCE and dice of every query's sigmoid mask against every instance's binary mask.

    Both are weighted by token weight over the non-ignore tokens: BCE is the weighted mean over
    those tokens, dice = 1 − (2·Σ w σ y + 1) / (Σ w σ + Σ w y + 1).

    Args:
        mask_logits: [N, P].
    Returns:
        (bce [N, K], dice [N, K], prob_in [N, K] = Σ_{p∈S_k} w_p σ(m_qp)), differentiable.
    """
    z = upcast(mask_logits)
    prob = torch.sigmoid(z)
    w_full = scene.valid_weight_full.to(z.dtype)  # 0 on ignore tokens: full-width matvecs, no gather
    total = w_full.sum().clamp_min(1e-30)
    # BCE(z, y) = softplus(z) − z·y; the y-part only touches the instance's own tokens.
    softplus_sum = torch.nn.functional.softplus(z) @ w_full / total  # [N]
    z_in = instance_sums(z, scene, scene.fg_weight) / total  # [N, K]
    bce = softplus_sum.unsqueeze(1) - z_in
    prob_sum = prob @ w_full  # [N]
    prob_in = instance_sums(prob, scene, scene.fg_weight)  # [N, K]
    dice = 1.0 - (2.0 * prob_in + DICE_SMOOTH) / (
        prob_sum.unsqueeze(1) + scene.instance_weight.unsqueeze(0) + DICE_SMOOTH
    )
    return bce, dice, prob_in


def soft_class_loss(class_logits: Tensor, target: Tensor, no_object_weight: float) -> Tensor:
    """Weighted cross-entropy against soft targets; reduces to torch's weighted CE for one-hot.

    loss = Σ_q Σ_c t_qc·w_c·(−log p_qc) / Σ_q Σ_c t_qc·w_c, with w = 1 for classes and
    `no_object_weight` for the last (no-object) column.

    Args:
        class_logits: [N, C+1].
        target: [N, C+1], rows sum to 1.
    """
    logp = torch.log_softmax(upcast(class_logits), dim=1)
    w = torch.ones(class_logits.shape[1], device=class_logits.device, dtype=logp.dtype)
    w[-1] = no_object_weight
    tw = target * w
    return -(tw * logp).sum() / tw.sum().clamp_min(1e-30)


def soft_class_targets(assign: Tensor, scene: PreparedScene, num_classes: int) -> Tensor:
    """Class targets from a (soft) query→instance assignment.

    Args:
        assign: [N, K] non-negative weights u_qk (0 where q is not a candidate of k).
    Returns:
        [N, C+1]: Σ_k u_qk·onehot(c_k) + (1 − Σ_k u_qk)·onehot(∅); a query claimed by several
        instances (possible only through fallback candidates) is renormalised to total mass 1.
    """
    n, k = assign.shape
    target = assign.new_zeros(n, num_classes + 1)
    if k:
        mass = assign.sum(1, keepdim=True)
        assign = assign / mass.clamp_min(1.0)
        # index_add, not a matmul with a one-hot: autocast would run the matmul in half precision
        target = target.index_add(1, scene.instance_class, assign)
    target[:, -1] = 1.0 - target[:, :-1].sum(1)
    return target.clamp_min(0.0)


def masked_softmax_over_queries(scores: Tensor, mask: Tensor) -> Tensor:
    """Softmax over queries (dim 0) restricted to `mask`; columns without candidates are zero.

    Args:
        scores: [N, K]; mask: bool [N, K].
    """
    filled = scores.masked_fill(~mask, float("-inf"))
    has_any = mask.any(0, keepdim=True)
    filled = torch.where(has_any, filled, torch.zeros_like(filled))
    out = torch.softmax(filled, dim=0)
    return torch.where(mask, out, torch.zeros_like(out))
