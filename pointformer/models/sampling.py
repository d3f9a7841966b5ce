"""Farthest-point sampling of seed tokens, vectorised over a padded batch.

Used to seed the decoder's queries at tokens (Mask3D's non-parametric queries; the Influencer Loss's
influencer points). Deterministic: without a generator the first seed is the token farthest from the
centroid of the candidate set, a choice fixed by the positions alone, so permuting tokens permutes
the seeds with them (index 0 would not be permutation-equivariant). With a generator the first seed
is random (e.g. for more diverse seeds in training).
"""
from __future__ import annotations

from typing import Optional

import torch
from torch import Tensor

__all__ = ["farthest_point_sampling", "size_score_scale"]


def size_score_scale(weights: Tensor, valid: Tensor, alpha: float = 0.5) -> Tensor:
    """Per-token factor on the FPS distance that favours small tokens (size-aware seeding).

    A large superpoint is usually part of a large surface (walls, floor, table tops) that other seeds
    already reach; plain FPS on centroids spends many seeds on the room's boundary (the walls are the
    farthest points) and skips small objects. Scaling the squared distance by ``(median / w) ** (2 alpha)``
    makes a small token as attractive as a large one ``(w / median) ** alpha`` times farther away.

    Args:
        weights: float [B, T] points per token (padding: anything). valid: bool [B, T].
        alpha: strength (0 = plain FPS).
    Returns:
        float [B, T] positive factors (1 at padding).
    """
    if alpha < 0:
        raise ValueError(f"size-aware seeding: alpha must be >= 0, got {alpha}")
    w = weights.detach().float().clamp_min(1e-6)
    out = torch.ones_like(w)
    for b in range(w.shape[0]):
        row = valid[b]
        if row.any():
            median = w[b][row].median()
            out[b] = torch.where(row, (median / w[b]) ** (2.0 * alpha), out[b])
    return out


def farthest_point_sampling(
    positions: Tensor,
    valid: Tensor,
    num_samples: int,
    *,
    priority: Optional[Tensor] = None,
    generator: Optional[torch.Generator] = None,
    score_scale: Optional[Tensor] = None,
) -> Tensor:
    """Pick ``num_samples`` tokens per scene, each the farthest from those picked before.

    Args:
        positions: float [B, T, d] padded positions.
        valid: bool [B, T], False for padding tokens (never picked).
        num_samples: seeds per scene (a scene with fewer valid tokens gets all of them, then -1).
        priority: optional bool [B, T]; tokens in it are picked first (farthest-point order among
            them), the rest only once every priority token is taken. Used for objectness-guided
            seeding: FPS among the tokens called foreground, then the others.
        generator: when given, the first seed of every scene is drawn at random with it.
        score_scale: optional positive float [B, T]: the next seed maximises squared distance to the
            picked seeds times this factor (``size_score_scale``: size-aware seeding); None = plain FPS.
    Returns:
        long [B, num_samples] scene-local token indices in picking order, -1 where a scene ran out.
    """
    if positions.dim() != 3 or valid.shape != positions.shape[:2]:
        raise ValueError(
            f"farthest_point_sampling: positions must be [B, T, d] and valid [B, T], got "
            f"{tuple(positions.shape)} and {tuple(valid.shape)}"
        )
    if num_samples < 0:
        raise ValueError(f"farthest_point_sampling: num_samples must be >= 0, got {num_samples}")
    batch_size, num_tokens, _ = positions.shape
    pos = positions.detach().float()
    valid = valid.bool()
    candidates = valid if priority is None else (priority.bool() & valid)
    rows = torch.arange(batch_size, device=pos.device)
    out = torch.full((batch_size, num_samples), -1, dtype=torch.long, device=pos.device)
    if num_tokens == 0 or num_samples == 0:
        return out

    if generator is None:
        start_set = torch.where(candidates.any(1, keepdim=True), candidates, valid).float()
        centroid = (pos * start_set[..., None]).sum(1) / start_set.sum(1).clamp_min(1.0)[:, None]
        score = ((pos - centroid[:, None, :]) ** 2).sum(-1)
    else:
        score = torch.rand((batch_size, num_tokens), generator=generator, device=generator.device).to(pos.device)

    if score_scale is not None and score_scale.shape != valid.shape:
        raise ValueError(f"farthest_point_sampling: score_scale must be [B, T] = {tuple(valid.shape)}, "
                         f"got {tuple(score_scale.shape)}")
    scale = None if score_scale is None else score_scale.detach().float().to(pos.device)
    available = valid.clone()
    min_dist = torch.full((batch_size, num_tokens), torch.inf, device=pos.device)
    for k in range(num_samples):
        pool = candidates & available
        pool = torch.where(pool.any(1, keepdim=True), pool, available)
        has_any = pool.any(1)
        # Scores are >= 0, so -1 marks tokens outside the pool.
        current = score if k == 0 else (min_dist if scale is None else min_dist * scale)
        index = current.masked_fill(~pool, -1.0).argmax(1)
        out[:, k] = torch.where(has_any, index, torch.full_like(index, -1))
        available[rows, index] = available[rows, index] & ~has_any
        picked = pos[rows, index]
        min_dist = torch.minimum(min_dist, ((pos - picked[:, None, :]) ** 2).sum(-1))
    return out
