"""Query-level diagnostics of instance predictions: duplicates, unmatched GT, assignment stability.

Class-agnostic and over token (superpoint) masks, IoU at 0.5, point-weighted like the evaluator:

* a predicted query *hits* the GT instance of its highest IoU when that IoU > 0.5; queries are taken
  in descending score order, and a hit on an instance a higher-scored query already covers is a
  *duplicate* (``duplicate_rate`` = duplicates / hits);
* an instance no query covers is *unmatched* (``unmatched_gt_rate`` = 1 - class-agnostic recall at 0.5);
* the query covering an instance (its highest-scored hit) is the instance's *assignment*; between two
  evaluations of the same scenes, ``assignment_stability`` is the share of the instances covered at
  both that kept their query, ``assignment_retention`` the share of those covered at the earlier one.

GT instances below the evaluator's minimum size (``MIN_REGION_SIZE`` points) and ignore tokens are
left out, as in the evaluator. The convergence study (benchmarks/convergence.py, docs/convergence.md)
records these at every evaluation.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping, Optional, Sequence

import numpy as np
import torch

from pointformer.evaluation.protocol import MIN_REGION_SIZE

# scene id -> {GT instance id (as a string: a JSON key) -> the query covering it}
Assignment = Mapping[str, Mapping[str, int]]


@dataclass(frozen=True)
class SceneDiagnostics:
    """Query-level outcome of one scene."""

    num_gt: int                     # GT instances of >= min_region_size points
    hits: int                       # predicted queries whose best GT has IoU > 0.5
    duplicates: int                 # ... of which that GT was already covered by a higher-scored query
    num_queries: int                # distinct queries among the predictions
    covered_by: dict[int, int]      # GT instance id -> the highest-scored query covering it


def scene_diagnostics(masks: torch.Tensor, scores: torch.Tensor, query_index: torch.Tensor,
                      token_instance: torch.Tensor, token_weight: torch.Tensor,
                      min_region_size: int = MIN_REGION_SIZE) -> SceneDiagnostics:
    """Hits, duplicates, covered GT and the query->instance assignment of one scene.

    Args:
        masks: bool [M, P] predicted masks over the P tokens.
        scores: float [M] confidence of each prediction.
        query_index: long [M] the query each prediction came from; a query may appear with several
            classes (Mask3D's rule) and counts once, with its best score (its entries share the mask).
        token_instance: long [P] GT instance of each token (0 background, -1 ignore).
        token_weight: float [P] points per token (IoUs are point-weighted, as the evaluator's).
        min_region_size: GT instances with fewer points are not GT (the evaluator's rule).
    """
    masks = masks.detach().cpu()
    scores = scores.detach().float().cpu()
    queries = query_index.detach().cpu()
    inst = token_instance.detach().cpu().long()
    weight = token_weight.detach().cpu().double()
    ids = [int(k) for k in torch.unique(inst) if int(k) > 0]
    gt_ids = [k for k in ids if float(weight[inst == k].sum()) >= min_region_size]
    best: dict[int, int] = {}   # query -> its best-scored row
    for row in torch.argsort(scores, descending=True, stable=True).tolist():
        best.setdefault(int(queries[row]), row)
    rows = list(best.values())  # in descending score order
    covered: dict[int, int] = {}
    hits = duplicates = 0
    if rows and gt_ids:
        valid = (inst >= 0).double() * weight                                  # ignore tokens are out of the IoU
        pred = masks[rows].double() * valid                                   # [Q, P] point-weighted
        gt = torch.stack([(inst == k).double() for k in gt_ids])              # [K, P] binary
        inter = pred @ gt.T                                                    # [Q, K] points in both
        union = pred.sum(1, keepdim=True) + (gt * weight).sum(1).unsqueeze(0) - inter
        best_iou, best_gt = (inter / union.clamp_min(1e-9)).max(dim=1)
        for i, row in enumerate(rows):
            if float(best_iou[i]) <= 0.5:
                continue
            hits += 1
            k = gt_ids[int(best_gt[i])]
            if k in covered:
                duplicates += 1
            else:
                covered[k] = int(queries[row])
    return SceneDiagnostics(num_gt=len(gt_ids), hits=hits, duplicates=duplicates, num_queries=len(rows),
                            covered_by=covered)


def summarize(diagnostics: Sequence[SceneDiagnostics]) -> dict[str, Optional[float]]:
    """Split-level rates: ``duplicate_rate`` (0 without hits), ``unmatched_gt_rate`` (None without GT)
    and ``queries_per_scene`` (distinct predicted queries per scene)."""
    num_gt = sum(d.num_gt for d in diagnostics)
    hits = sum(d.hits for d in diagnostics)
    covered = sum(len(d.covered_by) for d in diagnostics)
    return {"duplicate_rate": sum(d.duplicates for d in diagnostics) / hits if hits else 0.0,
            "unmatched_gt_rate": 1.0 - covered / num_gt if num_gt else None,
            "queries_per_scene": float(np.mean([d.num_queries for d in diagnostics])) if diagnostics else 0.0}


def assignment(diagnostics: Mapping[str, SceneDiagnostics]) -> dict[str, dict[str, int]]:
    """The query->instance assignment of a split (scene id -> diagnostics), JSON-ready."""
    return {scene: {str(k): q for k, q in d.covered_by.items()} for scene, d in diagnostics.items()}


def assignment_stability(previous: Assignment, current: Assignment) -> dict[str, Any]:
    """How the query->instance assignment changed between two evaluations (None where undefined)."""
    both = same = before = kept = 0
    for scene, now in current.items():
        for k, q in previous.get(scene, {}).items():
            before += 1
            kept += int(now.get(k) == q)
            if k in now:
                both += 1
                same += int(now[k] == q)
    return {"assignment_stability": same / both if both else None,
            "assignment_retention": kept / before if before else None}
