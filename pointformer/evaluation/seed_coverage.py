"""Seed coverage: the share of GT instances that hold at least one query seed, by instance size.

With seeded queries (the Influencer Loss) a query is trained on, and at inference mostly predicts,
the instance its seed token lies in. An instance without a seed is one the model is never asked to
find, so seed coverage caps recall before training starts -- worst for small objects, which
farthest-point sampling on superpoint centroids tends to skip. This module measures it, per scene
and per split, in size buckets of GT points (``SIZE_BUCKETS``).

GT instances are what the evaluator counts: instance id > 0 with at least ``MIN_REGION_SIZE`` points
(token weights are points per token). Seeds of -1 (learned queries, padding) cover nothing.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional, Sequence

import numpy as np
import torch

from pointformer.evaluation.protocol import MIN_REGION_SIZE

__all__ = ["SIZE_BUCKETS", "SceneSeedCoverage", "bucket_names", "scene_seed_coverage", "summarize_seed_coverage"]

# Instance size buckets in GT points: [0, 500), [500, 2000), [2000, 10000), [10000, inf).
SIZE_BUCKETS: tuple[float, ...] = (0.0, 500.0, 2000.0, 10000.0, float("inf"))


def bucket_names(edges: Sequence[float] = SIZE_BUCKETS) -> list[str]:
    """Readable bucket names ("<500", "500-2k", "2k-10k", ">=10k" for the default edges)."""
    def short(v: float) -> str:
        return f"{v / 1000:g}k" if v >= 1000 else f"{v:g}"
    names = []
    for lo, hi in zip(edges[:-1], edges[1:]):
        if lo <= 0:
            names.append(f"<{short(hi)}")
        elif np.isinf(hi):
            names.append(f">={short(lo)}")
        else:
            names.append(f"{short(lo)}-{short(hi)}")
    return names


@dataclass(frozen=True)
class SceneSeedCoverage:
    """One scene: every GT instance's size (points) and whether a seed lies in it.

    sizes: float [K] points per GT instance; seeded: bool [K]; seeds: number of valid seeds.
    """

    sizes: np.ndarray
    seeded: np.ndarray
    seeds: int

    @property
    def num_gt(self) -> int:
        return int(self.sizes.shape[0])


def scene_seed_coverage(seed_tokens: torch.Tensor, token_instance: torch.Tensor, token_weight: torch.Tensor,
                        min_region_size: float = MIN_REGION_SIZE) -> SceneSeedCoverage:
    """Which GT instances of a scene hold a seed.

    Args:
        seed_tokens: long [N] scene-local seed token of each query (-1 = none).
        token_instance: long [P] GT instance of each token (0 background, -1 ignore).
        token_weight: float [P] points per token.
        min_region_size: GT instances with fewer points are not GT (the evaluator's rule).
    Returns:
        ``SceneSeedCoverage`` over the instances of at least ``min_region_size`` points.
    """
    inst = token_instance.detach().cpu().long()
    if seed_tokens.dim() != 1 or inst.dim() != 1 or token_weight.shape != inst.shape:
        raise ValueError(f"seed_tokens must be [N], token_instance and token_weight [P]; got "
                         f"{tuple(seed_tokens.shape)}, {tuple(inst.shape)}, {tuple(token_weight.shape)}")
    seeds = seed_tokens.detach().cpu().long()
    seeds = seeds[seeds >= 0]
    if seeds.numel() and int(seeds.max()) >= inst.numel():
        raise ValueError(f"seed token {int(seeds.max())} is out of range for {inst.numel()} tokens")
    weight = token_weight.detach().cpu().double()
    num = int(inst.max()) + 1 if inst.numel() else 1
    positive = inst > 0
    sizes = torch.zeros(max(num, 1), dtype=torch.float64).index_add_(0, inst[positive], weight[positive])
    seeded_ids = torch.unique(inst[seeds])
    hit = torch.zeros(max(num, 1), dtype=torch.bool)
    hit[seeded_ids[seeded_ids > 0]] = True
    present = torch.zeros(max(num, 1), dtype=torch.bool)
    present[torch.unique(inst[positive])] = True
    keep = present & (sizes >= min_region_size)
    keep[0] = False
    return SceneSeedCoverage(sizes=sizes[keep].numpy(), seeded=hit[keep].numpy(), seeds=int(seeds.numel()))


def summarize_seed_coverage(scenes: Sequence[SceneSeedCoverage], edges: Sequence[float] = SIZE_BUCKETS,
                            prefix: str = "seed_coverage") -> dict[str, Optional[float]]:
    """Split-level coverage: ``<prefix>`` (share of all GT instances with a seed) and
    ``<prefix>/<bucket>`` per size bucket (None where the bucket holds no instance), plus
    ``<prefix>/instances/<bucket>`` (instance counts) and ``<prefix>/seeds_per_scene``."""
    sizes = np.concatenate([s.sizes for s in scenes]) if scenes else np.zeros(0)
    seeded = np.concatenate([s.seeded for s in scenes]) if scenes else np.zeros(0, dtype=bool)
    out: dict[str, Optional[float]] = {prefix: float(seeded.mean()) if seeded.size else None}
    for name, lo, hi in zip(bucket_names(edges), edges[:-1], edges[1:]):
        inside = (sizes >= lo) & (sizes < hi)
        out[f"{prefix}/{name}"] = float(seeded[inside].mean()) if inside.any() else None
        out[f"{prefix}/instances/{name}"] = float(inside.sum())
    out[f"{prefix}/seeds_per_scene"] = float(np.mean([s.seeds for s in scenes])) if scenes else 0.0
    return out
