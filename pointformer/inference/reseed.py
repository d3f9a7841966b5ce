"""Coverage-driven re-seeding: a second decoder pass with queries seeded where the first pass found
foreground that no prediction covers.

Seeded queries (the Influencer Loss) find the instances their seeds land in; an object without a seed
is usually missed (``pointformer.evaluation.seed_coverage``). After the first pass, the re-seeding pass

1. takes the tokens the model calls foreground (the objectness head when the model has one, else the
   ownership form's 1 - P(background)) with probability > ``foreground_threshold``,
2. keeps those that no first-pass prediction covers (not in any kept instance mask),
3. picks new seeds among them by farthest-point order, each at least ``min_spacing`` metres from every
   seed so far (old and new), at most ``max_new`` per scene,
4. decodes again with the old seeds plus the new ones (the backbone and tokens are reused), and
5. adds the instances of the *new* queries that do not duplicate a first-pass instance (token-weighted
   IoU > ``duplicate_iou``).

The first pass's instances are returned unchanged (never removed, never rescored); the pass only adds.
Learned queries (Hungarian / greedy baselines) have no seeds: the pass does not apply to them.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import torch
from torch import Tensor

from pointformer.inference.instances import InstancePrediction

__all__ = ["Reseeder", "foreground_probability", "new_seed_tokens", "merge_new_instances"]


def foreground_probability(token_objectness: Optional[Tensor], background_logits: Optional[Tensor],
                           mask_logits: Tensor) -> Tensor:
    """float [P] probability that each token belongs to some object.

    Args:
        token_objectness: [P] objectness logits (preferred when the model has the head) or None.
        background_logits: [P] the ownership form's background slot, or None (sigmoid form).
        mask_logits: [N, P] the final stage's mask logits (used when neither of the above exists:
            the highest sigmoid over queries).
    """
    if token_objectness is not None:
        return torch.sigmoid(token_objectness.float())
    if background_logits is not None:
        logits = torch.cat([background_logits.float()[None], mask_logits.float()], dim=0)  # [1+N, P]
        return 1.0 - torch.softmax(logits, dim=0)[0]
    if mask_logits.shape[0] == 0:
        return torch.zeros(mask_logits.shape[1], device=mask_logits.device)
    return torch.sigmoid(mask_logits.float()).max(0).values


def new_seed_tokens(candidates: Tensor, positions: Tensor, existing_seeds: Tensor, *, min_spacing: float,
                    max_new: int) -> Tensor:
    """Farthest-point choice of new seeds among candidate tokens, away from the existing seeds.

    Args:
        candidates: bool [P] tokens that may become seeds (foreground, uncovered).
        positions: float [P, d] token positions (metres).
        existing_seeds: long [N] the first pass's seed tokens (-1 entries ignored).
        min_spacing: a new seed lies at least this far from every seed so far; picking stops when no
            candidate is farther.
        max_new: at most this many new seeds.
    Returns:
        long [K] new seed tokens (K <= max_new), in picking order.
    """
    pos = positions.float()
    seeds = existing_seeds[existing_seeds >= 0].long()
    if seeds.numel():
        dist = torch.cdist(pos, pos[seeds]).min(1).values  # [P]
    else:
        dist = torch.full((pos.shape[0],), float("inf"), device=pos.device)
    picked: list[int] = []
    pool = candidates.bool().clone()
    while len(picked) < max_new and bool(pool.any()):
        score = dist.masked_fill(~pool, -1.0)
        index = int(score.argmax())
        if float(score[index]) < min_spacing:
            break
        picked.append(index)
        pool[index] = False
        dist = torch.minimum(dist, (pos - pos[index]).norm(dim=1))
    return torch.tensor(picked, dtype=torch.long, device=positions.device)


def _weighted_iou(a: Tensor, b: Tensor, weight: Tensor) -> Tensor:
    """[A, B] token-weighted IoU of bool masks a [A, P] and b [B, P]."""
    fa, fb = a.float() * weight, b.float() * weight
    inter = fa @ b.float().T
    union = fa.sum(1, keepdim=True) + fb.sum(1)[None] - inter
    return inter / union.clamp_min(1e-9)


def merge_new_instances(first: InstancePrediction, second: InstancePrediction, first_queries: int,
                        token_weight: Tensor, duplicate_iou: float) -> InstancePrediction:
    """``first`` plus the instances of ``second`` from queries >= ``first_queries`` (the new ones) that
    overlap no instance of ``first`` by more than ``duplicate_iou``; sorted by descending score, with
    every instance of ``first`` kept exactly."""
    new = second.query_index >= first_queries
    masks, classes, scores, queries = (second.masks[new], second.class_index[new], second.scores[new],
                                       second.query_index[new])
    if masks.shape[0] and first.masks.shape[0]:
        keep = _weighted_iou(masks, first.masks, token_weight.float()).max(1).values <= duplicate_iou
        masks, classes, scores, queries = masks[keep], classes[keep], scores[keep], queries[keep]
    merged = InstancePrediction(masks=torch.cat([first.masks, masks.to(first.masks.dtype)]),
                                class_index=torch.cat([first.class_index, classes]),
                                scores=torch.cat([first.scores, scores]),
                                query_index=torch.cat([first.query_index, queries]))
    order = torch.argsort(merged.scores, descending=True, stable=True)
    return InstancePrediction(masks=merged.masks[order], class_index=merged.class_index[order],
                              scores=merged.scores[order], query_index=merged.query_index[order])


@dataclass(frozen=True)
class Reseeder:
    """The re-seeding pass (module docstring) with its thresholds.

    foreground_threshold: probability above which a token counts as foreground.
    min_spacing: metres between a new seed and every other seed.
    max_new: new seeds per scene at most.
    duplicate_iou: a new query's instance overlapping a first-pass instance more than this is dropped.
    """

    foreground_threshold: float = 0.5
    min_spacing: float = 0.3
    max_new: int = 50
    duplicate_iou: float = 0.5

    def __post_init__(self) -> None:
        if not 0.0 < self.foreground_threshold < 1.0:
            raise ValueError(f"reseed: foreground_threshold must lie in (0, 1), got {self.foreground_threshold}")
        if self.min_spacing < 0 or self.max_new < 1 or not 0.0 <= self.duplicate_iou <= 1.0:
            raise ValueError(f"reseed: need min_spacing >= 0, max_new >= 1, duplicate_iou in [0, 1]; got "
                             f"{self.min_spacing}, {self.max_new}, {self.duplicate_iou}")

    def new_seeds(self, first: InstancePrediction, foreground: Tensor, positions: Tensor, token_weight: Tensor,
                  seeds: Tensor) -> Tensor:
        """long [K] new seed tokens of one scene: foreground (> threshold), weight > 0, covered by no
        instance of ``first``; ``foreground`` float [P], ``positions`` [P, d], ``seeds`` long [N]."""
        covered = first.masks.any(0) if first.masks.shape[0] else torch.zeros_like(foreground, dtype=torch.bool)
        candidates = (foreground > self.foreground_threshold) & ~covered.to(foreground.device) & (token_weight > 0)
        return new_seed_tokens(candidates, positions, seeds, min_spacing=self.min_spacing, max_new=self.max_new)

    @torch.no_grad()
    def added_seeds(self, out: object, first: list[InstancePrediction]) -> list[Tensor]:
        """Per scene, long [K_b] the new seed tokens the pass adds to a first pass ``out`` (a
        ``SegmentorOutput``) whose instances are ``first``; new query j of scene b is seeded at [b][j]."""
        seeds = out.query_seed_token
        if any(bool((s < 0).any()) for s in seeds):
            raise ValueError("re-seeding needs seeded queries; learned queries (query_init='learned') have no seeds")
        final, tokens, objectness = out.final, out.tokens, out.token_objectness
        positions = tokens.split(tokens.positions)
        weights = tokens.split(tokens.weights)
        added: list[Tensor] = []
        for b in range(len(first)):
            foreground = foreground_probability(
                None if objectness is None else objectness[b],
                None if final.background_logits is None else final.background_logits[b], final.mask_logits[b])
            added.append(self.new_seeds(first[b], foreground, positions[b], weights[b], seeds[b]))
        return added

    @torch.no_grad()
    def __call__(self, model: torch.nn.Module, out: object, first: list[InstancePrediction],
                 postprocessor: object) -> list[InstancePrediction]:
        """Re-seed every scene of a model output.

        Args:
            model: the ``InstanceSegmentor3D`` that produced ``out`` (its ``decoder`` decodes again).
            out: the first pass's ``SegmentorOutput`` (tokens, seeds, final predictions).
            first: the first pass's instances per scene (the postprocessed ``out``).
            postprocessor: the run's ``Postprocessor``.
        Returns:
            per scene, ``first`` plus the non-duplicate instances of the new queries.
        """
        tokens = out.tokens
        seeds = out.query_seed_token
        weights = tokens.split(tokens.weights)
        added = self.added_seeds(out, first)
        if all(a.numel() == 0 for a in added):
            return list(first)
        second = model.decoder(tokens, seed_tokens=[torch.cat([s, a]) for s, a in zip(seeds, added)]).final
        results = []
        for b in range(len(first)):
            if added[b].numel() == 0:
                results.append(first[b])
                continue
            background = None if second.background_logits is None else second.background_logits[b].float()
            instances = postprocessor(second.mask_logits[b].float(), background, second.class_logits[b].float(),
                                      weights[b].float())
            results.append(merge_new_instances(first[b], instances, int(seeds[b].numel()), weights[b],
                                               self.duplicate_iou))
        return results
