"""Which predicted instance is which ground-truth object: the matching behind ``pointformer show``'s colours.

Each prediction is paired with the GT instance it overlaps best (highest point IoU); the pair counts as
a match when that IoU is at least 0.5 — the threshold of the ScanNet protocol's AP50, at which two
predictions whose points are disjoint can never both exceed half of one object. A GT instance claimed
by several predictions keeps the one with the highest IoU (then the higher score); the others are
false positives (the protocol counts duplicates so). The matching itself ignores classes, so an object
keeps its colour even when its class is wrong; the class decides only whether a match is a true
positive or a "wrong class" one.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import numpy as np

MATCH_IOU = 0.5


@dataclass(frozen=True)
class InstanceMatch:
    """Result of :func:`match_instances` for P predictions and G GT instances.

    pred_to_gt int64 [P]: matched GT index, -1 = false positive; pred_iou float64 [P]: IoU with the best
    overlapping GT (0 when none overlaps); gt_to_pred int64 [G]: matched prediction, -1 = missed;
    same_class bool [P]: matched and of the GT's class (a true positive).
    """

    pred_to_gt: np.ndarray
    pred_iou: np.ndarray
    gt_to_pred: np.ndarray
    same_class: np.ndarray

    @property
    def true_positives(self) -> int:
        return int(self.same_class.sum())

    @property
    def wrong_class(self) -> int:
        return int(((self.pred_to_gt >= 0) & ~self.same_class).sum())

    @property
    def false_positives(self) -> int:
        return int((self.pred_to_gt < 0).sum())

    @property
    def missed(self) -> int:
        return int((self.gt_to_pred < 0).sum())


def overlap_pairs(pred_ids: np.ndarray, gt_ids: np.ndarray, num_gt: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The (prediction, GT instance) pairs that share points, and how many: three int64 [M] arrays.

    Sparse, so a building with thousands of instances on each side costs O(N log N), not O(P * G).
    ids int [N], -1 = none.
    """
    both = (pred_ids >= 0) & (gt_ids >= 0)
    pair = pred_ids[both].astype(np.int64) * max(num_gt, 1) + gt_ids[both].astype(np.int64)
    keys, counts = np.unique(pair, return_counts=True)
    return keys // max(num_gt, 1), keys % max(num_gt, 1), counts.astype(np.int64)


def match_instances(pred_ids: np.ndarray, gt_ids: np.ndarray, *, pred_classes: Optional[np.ndarray] = None,
                    gt_classes: Optional[np.ndarray] = None, pred_scores: Optional[np.ndarray] = None,
                    num_pred: Optional[int] = None, num_gt: Optional[int] = None,
                    threshold: float = MATCH_IOU) -> InstanceMatch:
    """Match predictions to GT instances by point IoU (see the module docstring).

    pred_ids int [N]: prediction index per point, -1 = none; gt_ids int [N]: GT index per point, -1 = none;
    pred_classes int [P] / gt_classes int [G]: class ids (both or neither; without them every match is a
    true positive); pred_scores float [P] break IoU ties between duplicates; num_pred / num_gt default to
    max id + 1 (give them when an instance may have no points).
    """
    pred_ids, gt_ids = np.asarray(pred_ids), np.asarray(gt_ids)
    if pred_ids.ndim != 1 or pred_ids.shape != gt_ids.shape:
        raise ValueError(f"match_instances: need pred_ids [N] and gt_ids [N], got {pred_ids.shape} and {gt_ids.shape}")
    num_pred = int(pred_ids.max(initial=-1)) + 1 if num_pred is None else int(num_pred)
    num_gt = int(gt_ids.max(initial=-1)) + 1 if num_gt is None else int(num_gt)
    if pred_ids.max(initial=-1) >= num_pred or gt_ids.max(initial=-1) >= num_gt:
        raise ValueError("match_instances: an id is >= num_pred / num_gt")
    if (pred_classes is None) != (gt_classes is None):
        raise ValueError("match_instances: give pred_classes and gt_classes together")
    pair_pred, pair_gt, inter = overlap_pairs(pred_ids, gt_ids, num_gt)
    pred_size = np.bincount(pred_ids[pred_ids >= 0], minlength=num_pred)
    gt_size = np.bincount(gt_ids[gt_ids >= 0], minlength=num_gt)
    pair_iou = inter / (pred_size[pair_pred] + gt_size[pair_gt] - inter)
    # per prediction, its best GT: highest IoU, then the lower GT index
    order = np.lexsort((pair_gt, -pair_iou, pair_pred))
    first = np.ones(len(order), dtype=bool)
    first[1:] = pair_pred[order][1:] != pair_pred[order][:-1]
    best_iou = np.zeros(num_pred)
    best = np.full(num_pred, -1, dtype=np.int64)
    best_iou[pair_pred[order][first]] = pair_iou[order][first]
    best[pair_pred[order][first]] = pair_gt[order][first]
    pred_to_gt = np.where(best_iou >= threshold, best, -1).astype(np.int64)
    gt_to_pred = np.full(num_gt, -1, dtype=np.int64)
    scores = np.zeros(num_pred) if pred_scores is None else np.asarray(pred_scores, dtype=np.float64)
    # strongest claim first: IoU, then score, then the lower index (a stable, documented order)
    for p in np.lexsort((np.arange(num_pred), -scores, -best_iou)):
        g = pred_to_gt[p]
        if g < 0:
            continue
        if gt_to_pred[g] < 0:
            gt_to_pred[g] = p
        else:
            pred_to_gt[p] = -1  # a duplicate of an object already claimed
    matched = pred_to_gt >= 0
    if pred_classes is None:
        same_class = matched.copy()
    else:
        pred_classes, gt_classes = np.asarray(pred_classes), np.asarray(gt_classes)
        if pred_classes.shape != (num_pred,) or gt_classes.shape != (num_gt,):
            raise ValueError(f"match_instances: pred_classes must be [{num_pred}] and gt_classes [{num_gt}], got "
                             f"{pred_classes.shape} and {gt_classes.shape}")
        same_class = matched & (pred_classes == gt_classes[np.maximum(pred_to_gt, 0)]) if num_gt else matched
    return InstanceMatch(pred_to_gt=pred_to_gt, pred_iou=best_iou.astype(np.float64), gt_to_pred=gt_to_pred,
                         same_class=same_class)
