"""Turn one scene's decoder predictions into instances — no matching, and no NMS for the ownership
form — and map token masks back to points / mesh vertices.

* ownership (``influencer``): owner(p) = argmax over {background, queries} of the logits (= of π);
  mask_q = the tokens q owns (disjoint by construction); masks below ``min_size`` (in token-weight
  units, i.e. points) are dropped; score = class probability × weighted mean π_q inside the mask.
  ``classes_per_mask`` > 1 also emits the same mask with the next-best classes (lower scores).
* sigmoid (``influencer_sigmoid``, ``hungarian``, ``greedy``): Mask3D's rule — class probabilities
  without no-object, top-k over (query, class) pairs, mask = σ > 0.5, score = class probability ×
  weighted mean σ inside the mask; optional greedy mask NMS (off by default, as in Mask3D).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping, Optional

import torch
from torch import Tensor

ACTIVATIONS = ("ownership", "sigmoid")


@dataclass
class InstancePrediction:
    """Instances of one scene.

    Attributes:
        masks: bool [M, P] (tokens) or [M, V] (points after `to_points`).
        class_index: long [M], 0-based class index (into the model's C classes).
        scores: float [M] confidence in [0, 1].
        query_index: long [M], the query each instance came from.
    """

    masks: Tensor
    class_index: Tensor
    scores: Tensor
    query_index: Tensor

    def __len__(self) -> int:
        return int(self.scores.shape[0])

    def to_points(self, token_index: Tensor) -> "InstancePrediction":
        """The same instances with masks over points: point i belongs to a mask iff its token does.

        Args:
            token_index: long [V], the token of every point (-1: a point outside every token, e.g.
                dropped by voxelisation; it belongs to no mask).
        """
        return InstancePrediction(masks=token_masks_to_points(self.masks, token_index),
                                  class_index=self.class_index, scores=self.scores, query_index=self.query_index)

    def to_scene_prediction(self, token_index: Tensor, dataset_ids: tuple[int, ...] | list[int]) -> Any:
        """The evaluator's / submission writer's `ScenePrediction` over the V vertices.

        Args:
            token_index: long [V], the token of every vertex (-1: none).
            dataset_ids: dataset class id of each class index (e.g. SCANNET_INSTANCE_IDS).
        Token masks travel as `SegmentMasks` (M·P memory instead of M·V) when every vertex has a token.
        """
        from pointformer.evaluation import ScenePrediction, SegmentMasks

        ids = self.class_ids(dataset_ids).numpy()
        scores = self.scores.detach().float().cpu().numpy()
        if token_index.numel() and int(token_index.min()) >= 0:
            masks: Any = SegmentMasks(self.masks.cpu().numpy(), token_index.cpu().numpy())
        else:
            masks = token_masks_to_points(self.masks, token_index).cpu().numpy()
        return ScenePrediction(masks=masks, class_ids=ids, scores=scores)

    def class_ids(self, dataset_ids: tuple[int, ...] | list[int]) -> Tensor:
        """Dataset class ids (e.g. ScanNet nyu40 ids) of the instances: dataset_ids[class_index]."""
        lut = torch.as_tensor(list(dataset_ids), dtype=torch.long)
        if len(self) and int(self.class_index.max()) >= lut.numel():
            raise ValueError(f"class index {int(self.class_index.max())} has no dataset id ({lut.numel()} given)")
        return lut[self.class_index.cpu()]


def token_masks_to_points(masks: Tensor, token_index: Tensor) -> Tensor:
    """bool [M, P] token masks -> bool [M, V] point masks through `token_index` long [V] (-1 = none)."""
    if token_index.dim() != 1 or token_index.dtype.is_floating_point:
        raise ValueError(f"token_index must be an integer vector [V], got {token_index.dtype} {tuple(token_index.shape)}")
    p = masks.shape[1]
    if token_index.numel() and (int(token_index.max()) >= p or int(token_index.min()) < -1):
        raise ValueError(f"token_index values must lie in [-1, {p}) for masks over {p} tokens, "
                         f"got range [{int(token_index.min())}, {int(token_index.max())}]")
    idx = token_index.to(masks.device).long()
    # A padded all-False column at index P absorbs the points without a token.
    padded = torch.cat([masks, masks.new_zeros(masks.shape[0], 1)], dim=1)
    return padded[:, torch.where(idx < 0, torch.full_like(idx, p), idx)]


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
    """Dispatch on the loss family's mask activation ("ownership" or "sigmoid", see
    `pointformer.losses.mask_activation_for`). Options go to the chosen rule."""
    if activation == "ownership":
        if background_logits is None:
            raise ValueError("ownership postprocessing needs background_logits (the decoder's background slot)")
        return postprocess_ownership(mask_logits, background_logits, class_logits, token_weight, **options)
    if activation == "sigmoid":
        return postprocess_sigmoid(mask_logits, class_logits, token_weight, **options)
    raise ValueError(f"activation must be one of {ACTIVATIONS}, got {activation!r}")


@dataclass
class Postprocessor:
    """Configured postprocessing (the ``postprocess`` entry of a loss config).

    Attributes:
        activation: "ownership" or "sigmoid".
        options: keyword options of the rule (e.g. min_size, topk, nms_iou).
    """

    activation: str
    options: dict[str, Any]

    @classmethod
    def from_settings(cls, loss: Any) -> "Postprocessor":
        """The postprocessing of a run's loss settings (``pointformer.config.LossSettings``): the loss's
        registered mask activation with the options of ``loss.postprocess``."""
        from pointformer.losses import get_loss

        return cls.from_config({"activation": get_loss(loss.name).activation, **dict(loss.postprocess)})

    @classmethod
    def from_config(cls, cfg: Mapping[str, Any]) -> "Postprocessor":
        cfg = dict(cfg)
        activation = cfg.pop("activation", None)
        if activation not in ACTIVATIONS:
            raise ValueError(f"postprocess config: activation must be one of {ACTIVATIONS}, got {activation!r}")
        allowed = {"ownership": {"min_size", "classes_per_mask", "score_threshold"},
                   "sigmoid": {"topk", "mask_threshold", "min_size", "score_threshold", "nms_iou"}}[activation]
        unknown = sorted(set(cfg) - allowed)
        if unknown:
            raise ValueError(f"postprocess config: unknown options {unknown} for {activation!r}; allowed {sorted(allowed)}")
        return cls(activation=activation, options=cfg)

    def __call__(self, mask_logits: Tensor, background_logits: Optional[Tensor], class_logits: Tensor,
                 token_weight: Optional[Tensor] = None) -> InstancePrediction:
        return postprocess_scene(self.activation, mask_logits, background_logits, class_logits, token_weight,
                                 **self.options)
