"""Per-scene token targets of the instance losses, their validation, and the index tensors every
loss derives from them (computed once per scene, reused by every decoder layer).

Conventions (shared by every loss in this package):
    P tokens, N queries, K instances, C classes (+1 no-object class, always the LAST column).
    token_instance  long  [P]  0 = background, -1 = ignore (out of every term), 1..K = instance
    token_weight    float [P]  >= 0, e.g. the point count of a superpoint; a token of weight 2
                               counts exactly as two tokens of weight 1 in every term
    instance_class  long  [K]  0-based class index in [0, C) of instance k+1
    query_seed_token long [N]  index of the token each query was seeded at (-1: no seed), or None;
                               None or all -1 (learned queries) = the unseeded form
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import torch
from torch import Tensor


@dataclass
class TokenTargets:
    """Ground truth of one scene at token level (see the module docstring for the conventions).

    Attributes:
        token_instance: long [P]; 0 background, -1 ignore, 1..K instance id.
        token_weight: float [P]; non-negative weight (point count) of each token.
        instance_class: long [K]; 0-based class index of each instance.
    """

    token_instance: Tensor
    token_weight: Tensor
    instance_class: Tensor

    def to(self, device: torch.device | str) -> "TokenTargets":
        return TokenTargets(
            token_instance=self.token_instance.to(device),
            token_weight=self.token_weight.to(device),
            instance_class=self.instance_class.to(device),
        )

    @property
    def num_tokens(self) -> int:
        return int(self.token_instance.shape[0])

    @property
    def num_instances(self) -> int:
        return int(self.instance_class.shape[0])


@dataclass
class PreparedScene:
    """Index tensors derived once from a scene's targets (and its query seeds).

    Instances with zero total weight are *invalid*: they take part in no term.

    Attributes:
        num_tokens, num_queries: P and N.
        instance_class: long [K].
        instance_valid: bool [K]; the instance owns positive weight.
        instance_valid_index: long [K_valid]; indices of the valid instances.
        num_valid_instances: python int (number of valid instances).
        instance_weight: float [K]; total token weight of each instance.
        fg_index: long [P_fg]; tokens of (valid) instances.
        fg_instance: long [P_fg]; 0-based instance of each foreground token.
        fg_weight: float [P_fg]; raw weight of each foreground token.
        fg_weight_in_instance: float [P_fg]; weight / instance weight (sums to 1 per instance).
        fg_weight_norm: float [P_fg]; weight / total foreground weight.
        bg_index: long [P_bg]; background tokens with positive weight.
        bg_weight_norm: float [P_bg]; weight / total background weight.
        valid_index: long [P_v]; every non-ignore token with positive weight.
        valid_weight: float [P_v]; its raw weight.
        valid_weight_full: float [P]; the raw weight of valid tokens, 0 for ignore tokens.
        query_home: long [N] or None; 0-based home instance of each query, -1 background seed,
            -2 no usable seed (seed -1, on an ignore token, or on an instance without weight).
            None for unseeded queries.
        candidates: bool [N, K]; q is a candidate influencer of instance k.
        fallback: bool [K]; valid instance without a seeded query (every query is a candidate).
        has_fallback: python bool, fallback.any() (read once, so the per-layer terms need no sync).
    """

    num_tokens: int
    num_queries: int
    instance_class: Tensor
    instance_valid: Tensor
    instance_valid_index: Tensor
    num_valid_instances: int
    instance_weight: Tensor
    fg_index: Tensor
    fg_instance: Tensor
    fg_weight: Tensor
    fg_weight_in_instance: Tensor
    fg_weight_norm: Tensor
    bg_index: Tensor
    bg_weight_norm: Tensor
    valid_index: Tensor
    valid_weight: Tensor
    valid_weight_full: Tensor
    query_home: Optional[Tensor]
    candidates: Tensor
    fallback: Tensor
    has_fallback: bool


def _check_int_vector(name: str, tensor: Tensor, length: Optional[int] = None) -> None:
    if not isinstance(tensor, Tensor):
        raise ValueError(f"{name} must be a torch.Tensor, got {type(tensor).__name__}")
    if tensor.dim() != 1:
        raise ValueError(f"{name} must be 1-D, got shape {tuple(tensor.shape)}")
    if tensor.dtype.is_floating_point or tensor.dtype.is_complex or tensor.dtype == torch.bool:
        raise ValueError(f"{name} must have an integer dtype, got {tensor.dtype}")
    if length is not None and tensor.shape[0] != length:
        raise ValueError(f"{name} must have length {length}, got {tensor.shape[0]}")


def validate_inputs(
    mask_logits: Tensor,
    background_logits: Optional[Tensor],
    class_logits: Tensor,
    token_instance: Tensor,
    token_weight: Optional[Tensor],
    instance_class: Tensor,
    query_seed_token: Optional[Tensor],
    *,
    need_background: bool,
) -> None:
    """Shape, dtype and value checks of the functional loss arguments; raises ValueError naming
    the argument. Value checks read a few scalars (one device sync each)."""
    if not isinstance(mask_logits, Tensor) or mask_logits.dim() != 2:
        raise ValueError(
            f"mask_logits must be a 2-D tensor [N, P], got {getattr(mask_logits, 'shape', type(mask_logits))}"
        )
    n, p = mask_logits.shape
    if n < 1:
        raise ValueError("mask_logits has no queries (N = 0); at least one query is required")
    if need_background:
        if background_logits is None:
            raise ValueError("background_logits [P] is required by the ownership losses, got None")
    if background_logits is not None and (background_logits.dim() != 1 or background_logits.shape[0] != p):
        raise ValueError(f"background_logits must have shape [{p}], got {tuple(background_logits.shape)}")
    if not isinstance(class_logits, Tensor) or class_logits.dim() != 2 or class_logits.shape[0] != n:
        raise ValueError(f"class_logits must have shape [{n}, C+1], got {tuple(getattr(class_logits, 'shape', ()))}")
    num_classes = class_logits.shape[1] - 1
    if num_classes < 1:
        raise ValueError(
            f"class_logits needs at least one class plus the no-object column, got {class_logits.shape[1]} columns"
        )
    _check_int_vector("token_instance", token_instance, p)
    _check_int_vector("instance_class", instance_class)
    k = instance_class.shape[0]
    if token_weight is not None:
        if not isinstance(token_weight, Tensor) or token_weight.shape != (p,):
            raise ValueError(f"token_weight must have shape [{p}], got {tuple(getattr(token_weight, 'shape', ()))}")
        if p and (not bool(torch.isfinite(token_weight).all()) or float(token_weight.min()) < 0):
            raise ValueError("token_weight must be finite and non-negative")
    if p:
        lo, hi = int(token_instance.min()), int(token_instance.max())
        if lo < -1 or hi > k:
            raise ValueError(
                f"token_instance values must lie in [-1, K={k}] (0 background, -1 ignore, 1..K instances), "
                f"got range [{lo}, {hi}]; is instance_class missing entries?")
    if k:
        lo, hi = int(instance_class.min()), int(instance_class.max())
        if lo < 0 or hi >= num_classes:
            raise ValueError(
                f"instance_class values must be 0-based class indices in [0, {num_classes}), got range [{lo}, {hi}]")
    if query_seed_token is not None:
        _check_int_vector("query_seed_token", query_seed_token, n)
        lo, hi = int(query_seed_token.min()), int(query_seed_token.max())
        if lo < -1 or hi >= p:
            raise ValueError(
                f"query_seed_token values must be token indices in [0, {p}) or -1 (no seed), got range [{lo}, {hi}]")


def prepare_scene(
    token_instance: Tensor,
    token_weight: Optional[Tensor],
    instance_class: Tensor,
    query_seed_token: Optional[Tensor],
    num_queries: int,
) -> PreparedScene:
    """Derive the index tensors of one scene (no validation; see `validate_inputs`).

    Candidate influencers (reference `influencer_loss.md`): the queries seeded on an instance's own
    tokens; an instance without such a query falls back to every query. Unseeded (seed None): every
    instance falls back.
    """
    device = token_instance.device
    p = token_instance.shape[0]
    k = instance_class.shape[0]
    if token_weight is None:
        token_weight = torch.ones(p, device=device)
    weight = token_weight.float()
    inst = token_instance.long()

    fg_mask = (inst > 0) & (weight > 0)
    fg_index = fg_mask.nonzero().squeeze(1)
    fg_instance = inst[fg_index] - 1
    fg_weight = weight[fg_index]
    instance_weight = torch.zeros(k, device=device).index_add_(0, fg_instance, fg_weight)
    instance_valid = instance_weight > 0
    fg_weight_in_instance = fg_weight / instance_weight.clamp_min(1e-30)[fg_instance]
    fg_weight_norm = fg_weight / fg_weight.sum().clamp_min(1e-30)

    bg_index = ((inst == 0) & (weight > 0)).nonzero().squeeze(1)
    bg_weight = weight[bg_index]
    bg_weight_norm = bg_weight / bg_weight.sum().clamp_min(1e-30)
    valid_mask = (inst >= 0) & (weight > 0)
    valid_index = valid_mask.nonzero().squeeze(1)

    candidates = torch.zeros(num_queries, k, dtype=torch.bool, device=device)
    query_home: Optional[Tensor] = None
    if query_seed_token is not None and bool((query_seed_token < 0).all()):
        query_seed_token = None  # learned queries (seed -1 everywhere): the unseeded form
    if query_seed_token is not None:
        seeds = query_seed_token.long()
        seed_inst = torch.where(seeds >= 0, inst[seeds.clamp_min(0)], torch.full_like(seeds, -1))
        home = seed_inst - 1
        home = torch.where(seed_inst == 0, torch.full_like(home, -1), home)
        home = torch.where(seed_inst < 0, torch.full_like(home, -2), home)
        # A seed on an instance that owns no weight cannot be a candidate of anything.
        on_valid = (home >= 0) & instance_valid[home.clamp_min(0)] if k else torch.zeros_like(home, dtype=torch.bool)
        home = torch.where((home >= 0) & ~on_valid, torch.full_like(home, -2), home)
        query_home = home
        rows = on_valid.nonzero().squeeze(1)
        candidates[rows, home[rows]] = True
    fallback = instance_valid & ~candidates.any(0)
    candidates |= fallback.unsqueeze(0)

    return PreparedScene(
        num_tokens=p,
        num_queries=num_queries,
        instance_class=instance_class.long(),
        instance_valid=instance_valid,
        instance_valid_index=instance_valid.nonzero().squeeze(1),
        num_valid_instances=int(instance_valid.sum()),
        instance_weight=instance_weight,
        fg_index=fg_index,
        fg_instance=fg_instance,
        fg_weight=fg_weight,
        fg_weight_in_instance=fg_weight_in_instance,
        fg_weight_norm=fg_weight_norm,
        bg_index=bg_index,
        bg_weight_norm=bg_weight_norm,
        valid_index=valid_index,
        valid_weight=weight[valid_index],
        valid_weight_full=torch.where(valid_mask, weight, torch.zeros_like(weight)),
        query_home=query_home,
        candidates=candidates,
        fallback=fallback,
        has_fallback=bool(fallback.any()),
    )
