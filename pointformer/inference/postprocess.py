"""Turn one scene's decoder predictions into instances over its tokens — no matching, and no NMS for
the ownership form. (Token masks become point instances in ``pointformer.inference.instances``.)

* ownership (``influencer``): owner(p) = argmax over {background, queries} of the logits (= of π);
  mask_q = the tokens q owns (disjoint by construction); masks below ``min_size`` (in token-weight
  units, i.e. points) are dropped; score = class probability × weighted mean π_q inside the mask.
  ``classes_per_mask`` > 1 also emits the same mask with the next-best classes (lower scores).
* sigmoid (``influencer_sigmoid``, ``hungarian``, ``greedy``): Mask3D's rule — class probabilities
  without no-object, top-k over (query, class) pairs, mask = σ > 0.5, score = class probability ×
  weighted mean σ inside the mask; optional greedy mask NMS (off by default, as in Mask3D).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Optional

import torch
from torch import Tensor

from pointformer.config import LossSettings
from pointformer.inference.instances import InstancePrediction
from pointformer.losses import get_loss

ACTIVATIONS = ("ownership", "sigmoid")
# The keyword options each rule takes (the ``postprocess`` mapping of a loss config).
OPTIONS = {"ownership": frozenset({"min_size", "classes_per_mask", "score_threshold"}),
           "sigmoid": frozenset({"topk", "mask_threshold", "min_size", "score_threshold", "nms_iou"})}


def _empty(p: int, device: torch.device) -> InstancePrediction:
    return InstancePrediction(masks=torch.zeros(0, p, dtype=torch.bool, device=device),
                              class_index=torch.zeros(0, dtype=torch.long, device=device),
                              scores=torch.zeros(0, device=device),
                              query_index=torch.zeros(0, dtype=torch.long, device=device))


def _check(mask_logits: Tensor, class_logits: Tensor, token_weight: Optional[Tensor]) -> Tensor:
    if mask_logits.dim() != 2:
        raise ValueError(f"mask_logits must be [N, P], got {tuple(mask_logits.shape)}")
    n, p = mask_logits.shape
    if class_logits.dim() != 2 or class_logits.shape[0] != n or class_logits.shape[1] < 2:
        raise ValueError(f"class_logits must be [{n}, C+1] with C >= 1, got {tuple(class_logits.shape)}")
    if token_weight is None:
        return torch.ones(p, device=mask_logits.device)
    if token_weight.shape != (p,):
        raise ValueError(f"token_weight must be [{p}], got {tuple(token_weight.shape)}")
    return token_weight.to(mask_logits.device).float()


@torch.no_grad()
def postprocess_ownership(
    mask_logits: Tensor,
    background_logits: Tensor,
    class_logits: Tensor,
    token_weight: Optional[Tensor] = None,
    *,
    min_size: float = 0.0,
    classes_per_mask: int = 1,
    score_threshold: float = 0.0,
) -> InstancePrediction:
    """Disjoint instances from the ownership form (no matching, no NMS).

    Args:
        mask_logits: [N, P]; background_logits: [P]; class_logits: [N, C+1].
        token_weight: [P] points per token (None: 1); sizes and mean ownership use it.
        min_size: minimum mask size in token-weight units (points); smaller masks are dropped.
        classes_per_mask: emit each mask with its top-k non-∅ classes (k = this).
        score_threshold: drop instances scoring below it.
    Returns:
        InstancePrediction with token masks [M, P], sorted by descending score.
    """
    w = _check(mask_logits, class_logits, token_weight)
    if background_logits is None or background_logits.shape != (mask_logits.shape[1],):
        raise ValueError(f"background_logits must be [{mask_logits.shape[1]}] for ownership postprocessing")
    if classes_per_mask < 1:
        raise ValueError(f"classes_per_mask must be >= 1, got {classes_per_mask}")
    n, p = mask_logits.shape
    logits = torch.cat([background_logits.float().unsqueeze(0), mask_logits.float()], dim=0)  # [N+1, P]
    pi = torch.softmax(logits, dim=0)
    owner = logits.argmax(0)  # [P], 0 = background
    onehot = torch.zeros(n + 1, p, dtype=torch.bool, device=mask_logits.device)
    onehot[owner, torch.arange(p, device=owner.device)] = True
    masks = onehot[1:]  # [N, P] disjoint
    size = (masks.float() * w).sum(1)
    mean_own = (pi[1:] * masks * w).sum(1) / size.clamp_min(1e-30)
    keep = (size > 0) & (size >= min_size)
    prob = torch.softmax(class_logits.float(), dim=1)[:, :-1]  # without no-object
    k = min(classes_per_mask, prob.shape[1])
    top_prob, top_cls = prob.topk(k, dim=1)  # [N, k]
    scores = top_prob * mean_own.unsqueeze(1)
    q = torch.arange(n, device=mask_logits.device).unsqueeze(1).expand(n, k)
    sel = keep.unsqueeze(1).expand(n, k) & (scores >= score_threshold)
    q, cls, sc = q[sel], top_cls[sel], scores[sel]
    order = sc.argsort(descending=True)
    q, cls, sc = q[order], cls[order], sc[order]
    if q.numel() == 0:
        return _empty(p, mask_logits.device)
    return InstancePrediction(masks=masks[q], class_index=cls, scores=sc, query_index=q)


def mask_nms(masks: Tensor, scores: Tensor, token_weight: Tensor, iou_threshold: float) -> Tensor:
    """Greedy mask NMS (masks sorted by score, descending): keep a mask unless its weighted IoU with
    a kept mask exceeds `iou_threshold`. Returns the indices kept, long [M']."""
    if masks.shape[0] == 0:
        return torch.zeros(0, dtype=torch.long, device=masks.device)
    mf = masks.float() * token_weight
    inter = mf @ masks.float().T
    area = mf.sum(1)
    iou = inter / (area.unsqueeze(1) + area.unsqueeze(0) - inter).clamp_min(1e-30)
    keep: list[int] = []
    suppressed = torch.zeros(masks.shape[0], dtype=torch.bool)
    iou_cpu = iou.cpu()
    for i in range(masks.shape[0]):
        if suppressed[i]:
            continue
        keep.append(i)
        suppressed |= iou_cpu[i] > iou_threshold
    return torch.as_tensor(keep, dtype=torch.long, device=masks.device)


@torch.no_grad()
def postprocess_sigmoid(
    mask_logits: Tensor,
    class_logits: Tensor,
    token_weight: Optional[Tensor] = None,
    *,
    topk: int = 500,
    mask_threshold: float = 0.5,
    min_size: float = 0.0,
    score_threshold: float = 0.0,
    nms_iou: Optional[float] = None,
) -> InstancePrediction:
    """Mask3D's inference rule for sigmoid masks.

    Args:
        mask_logits: [N, P]; class_logits: [N, C+1]; token_weight: [P] or None.
        topk: number of (query, class) pairs kept by class probability.
        mask_threshold: σ threshold of a mask.
        min_size: minimum mask size in token-weight units.
        nms_iou: if set, greedy mask NMS at this (weighted) IoU, per class.
    Returns:
        InstancePrediction with token masks [M, P], sorted by descending score.
    """
    w = _check(mask_logits, class_logits, token_weight)
    n, p = mask_logits.shape
    prob = torch.softmax(class_logits.float(), dim=1)[:, :-1]  # [N, C]
    c = prob.shape[1]
    k = min(int(topk), n * c)
    top_prob, flat = prob.flatten().topk(k)
    q = torch.div(flat, c, rounding_mode="floor")
    cls = flat % c
    sig = torch.sigmoid(mask_logits.float())[q]  # [k, P]
    masks = sig > mask_threshold
    size = (masks.float() * w).sum(1)
    mean_prob = (sig * masks * w).sum(1) / size.clamp_min(1e-30)
    scores = top_prob * mean_prob
    keep = (size > 0) & (size >= min_size) & (scores >= score_threshold)
    q, cls, scores, masks = q[keep], cls[keep], scores[keep], masks[keep]
    order = scores.argsort(descending=True)
    q, cls, scores, masks = q[order], cls[order], scores[order], masks[order]
    if nms_iou is not None and q.numel():
        kept = []
        for label in cls.unique():
            idx = (cls == label).nonzero().squeeze(1)
            kept.append(idx[mask_nms(masks[idx], scores[idx], w, nms_iou)])
        sel = torch.cat(kept).sort().values
        q, cls, scores, masks = q[sel], cls[sel], scores[sel], masks[sel]
    if q.numel() == 0:
        return _empty(p, mask_logits.device)
    return InstancePrediction(masks=masks, class_index=cls, scores=scores, query_index=q)


def postprocess_scene(
    activation: str,
    mask_logits: Tensor,
    background_logits: Optional[Tensor],
    class_logits: Tensor,
    token_weight: Optional[Tensor] = None,
    **options: Any,
) -> InstancePrediction:
    """Dispatch on the loss family's mask activation ("ownership" or "sigmoid": the loss's registered
    ``activation``). Options go to the chosen rule."""
    if activation == "ownership":
        if background_logits is None:
            raise ValueError("ownership postprocessing needs background_logits (the decoder's background slot)")
        return postprocess_ownership(mask_logits, background_logits, class_logits, token_weight, **options)
    if activation == "sigmoid":
        return postprocess_sigmoid(mask_logits, class_logits, token_weight, **options)
    raise ValueError(f"activation must be one of {ACTIVATIONS}, got {activation!r}")


@dataclass
class Postprocessor:
    """The postprocessing of a run: its loss's mask activation and the options of the rule.

    Attributes:
        activation: "ownership" or "sigmoid" (the loss's, see ``pointformer.losses.registry``).
        options: keyword options of the rule (``OPTIONS[activation]``, e.g. min_size, topk, nms_iou).
    """

    activation: str
    options: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.activation not in ACTIVATIONS:
            raise ValueError(f"postprocess: activation must be one of {ACTIVATIONS}, got {self.activation!r}")
        unknown = sorted(set(self.options) - OPTIONS[self.activation])
        if unknown:
            raise ValueError(f"postprocess: unknown options {unknown} for {self.activation!r}; "
                             f"allowed {sorted(OPTIONS[self.activation])}")

    @classmethod
    def from_settings(cls, loss: LossSettings) -> "Postprocessor":
        """The postprocessing of a run's loss settings: the loss's registered mask activation with the
        options of ``loss.postprocess``. ValueError for an unknown loss or option."""
        return cls(activation=get_loss(loss.name).activation, options=dict(loss.postprocess))

    def __call__(self, mask_logits: Tensor, background_logits: Optional[Tensor], class_logits: Tensor,
                 token_weight: Optional[Tensor] = None) -> InstancePrediction:
        """One scene: mask_logits [N, P], background_logits [P] or None, class_logits [N, C+1],
        token_weight [P] -> instances over the P tokens, sorted by descending score."""
        return postprocess_scene(self.activation, mask_logits, background_logits, class_logits, token_weight,
                                 **self.options)
