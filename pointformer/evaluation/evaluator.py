"""The ScanNet 3D instance evaluation (AP over IoU 0.50:0.90, AP50, AP25), exact and vectorised.

Protocol: ``docs/evaluation.md`` (and the official ``evaluate_semantic_instance.py``). Per IoU
threshold, GT instances (>= 100 vertices) walk their same-class predictions in the recorded order;
the first unvisited prediction with IoU > t (strict) matches, later ones make the GT keep the max
score and add a false positive with the min; unmatched predictions are false positives unless the
share of their vertices on void / small GT exceeds t.

The walk is order dependent only when one prediction has IoU > t with two GT instances, which is
impossible for t >= 0.5 (GT instances are disjoint) and rare at 0.25. Without such a prediction,
the walk's outcome is closed-form — every GT with candidates is a TP at its candidates' max score
and each other candidate is a FP at its own score — and is computed for all pairs at once; scenes
where it is not, run the exact walk over their few candidate pairs.
"""
from __future__ import annotations

from typing import Optional, Sequence

import numpy as np

from pointformer.evaluation.average_precision import scannet_average_precision
from pointformer.evaluation.coverage import DEFAULT_SCORE_THRESHOLD, CoverageEvaluator
from pointformer.evaluation.overlaps import SceneOverlaps, compute_scene_overlaps
from pointformer.evaluation.prediction import ScenePrediction
from pointformer.evaluation.protocol import IOU_THRESHOLDS, MIN_REGION_SIZE, class_set
from pointformer.evaluation.result import EvaluationResult


class ScanNetEvaluator:
    """Accumulates scenes one at a time and computes the result at the end.

    Per scene only the matching outcome at each threshold is kept (a few numbers per prediction),
    so evaluating during training needs no more memory than one scene's masks. S3DIS adds the
    ASIS-style metrics (:mod:`pointformer.evaluation.coverage`) with ``score_threshold`` for their
    precision / recall.
    """

    def __init__(self, *, dataset: str = "scannet", score_threshold: float = DEFAULT_SCORE_THRESHOLD) -> None:
        self.classes = class_set(dataset)
        self.dataset = dataset
        num_classes = len(self.classes.ids)
        num_thresholds = IOU_THRESHOLDS.shape[0]
        self._examples: list[list[tuple[np.ndarray, np.ndarray, np.ndarray]]] = [[] for _ in range(num_thresholds)]
        self._hard_fn = np.zeros((num_thresholds, num_classes), np.int64)
        self._has_gt = np.zeros(num_classes, bool)
        self._has_pred = np.zeros(num_classes, bool)
        self._pr_counts = np.zeros((3, num_classes), np.int64) if dataset == "s3dis" else None
        self._coverage = (CoverageEvaluator(self.classes, score_threshold=score_threshold) if dataset == "s3dis"
                          else None)
        self.num_scenes = 0

    def add(self, gt_ids: np.ndarray, prediction: ScenePrediction, *, scene_name: Optional[str] = None) -> None:
        """Add one scene: GT ids int [V] (label*1000+inst) and its prediction over the same V vertices."""
        where = scene_name if scene_name is not None else f"scene #{self.num_scenes}"
        if not isinstance(prediction, ScenePrediction):
            raise ValueError(f"{where}: prediction must be a ScenePrediction; got {type(prediction).__name__}")
        overlaps = compute_scene_overlaps(gt_ids, prediction, self.classes, where=where,
                                          with_precision_recall=self._pr_counts is not None)
        self.add_overlaps(overlaps)
        if self._coverage is not None:
            self._coverage.add(gt_ids, prediction)

    def add_overlaps(self, scene: SceneOverlaps) -> None:
        """Add a scene already reduced by :func:`compute_scene_overlaps`."""
        num_classes = len(self.classes.ids)
        big_gt = scene.gt_size >= MIN_REGION_SIZE
        self._has_gt |= np.bincount(scene.gt_class[big_gt], minlength=num_classes) > 0
        self._has_pred |= np.bincount(scene.pred_class, minlength=num_classes) > 0
        iou = scene.pair_iou
        with np.errstate(divide="ignore", invalid="ignore"):
            ignore_share = scene.pred_ignore / scene.pred_size.astype(np.float64)
        for ti, threshold in enumerate(IOU_THRESHOLDS):
            classes, y_true, y_score, unmatched_gt = _match_scene(scene, iou, ignore_share, float(threshold))
            self._examples[ti].append((classes, y_true, y_score))
            self._hard_fn[ti] += np.bincount(scene.gt_class[unmatched_gt], minlength=num_classes)
        if self._pr_counts is not None and scene.pr_counts is not None:
            self._pr_counts += scene.pr_counts
        self.num_scenes += 1

    def result(self) -> EvaluationResult:
        """AP per class and threshold over all scenes added so far."""
        num_classes = len(self.classes.ids)
        ap = np.full((num_classes, IOU_THRESHOLDS.shape[0]), np.nan)
        for ti, examples in enumerate(self._examples):
            if examples:
                classes = np.concatenate([e[0] for e in examples])
                y_true = np.concatenate([e[1] for e in examples])
                y_score = np.concatenate([e[2] for e in examples])
            else:
                classes, y_true, y_score = np.zeros(0, np.int64), np.zeros(0), np.zeros(0)
            order = np.argsort(classes, kind="stable")
            bounds = np.searchsorted(classes[order], np.arange(num_classes + 1))
            for c in range(num_classes):
                if not self._has_gt[c]:
                    continue  # NaN: no GT of this class anywhere
                if not self._has_pred[c]:
                    ap[c, ti] = 0.0
                    continue
                sel = order[bounds[c]:bounds[c + 1]]
                ap[c, ti] = scannet_average_precision(y_true[sel], y_score[sel], int(self._hard_fn[ti, c]))
        precision = recall = None
        if self._pr_counts is not None:
            tp, fp, gt = self._pr_counts.astype(np.float64)
            with np.errstate(divide="ignore", invalid="ignore"):
                prec = np.where(tp + fp > 0, tp / (tp + fp), np.nan)
                rec = np.where(gt > 0, tp / gt, np.nan)
            precision = {n: float(v) for n, v in zip(self.classes.names, prec)}
            recall = {n: float(v) for n, v in zip(self.classes.names, rec)}
        return EvaluationResult(dataset=self.dataset, class_ids=self.classes.ids, class_names=self.classes.names,
                                ap_matrix=ap, num_scenes=self.num_scenes, precision=precision, recall=recall,
                                class_groups=self.classes.groups,
                                coverage=None if self._coverage is None else self._coverage.result())


def _match_scene(scene: SceneOverlaps, iou: np.ndarray, ignore_share: np.ndarray, threshold: float
                 ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """One scene at one threshold -> (class int [N], y_true float [N], y_score float [N], unmatched big GT [H])."""
    candidate = iou > threshold
    cand_pred = scene.pair_pred[candidate]
    cand_gt = scene.pair_gt[candidate]
    walked = scene.gt_size[cand_gt] >= MIN_REGION_SIZE  # only GT with >= 100 vertices walk their matches
    walk_pred, walk_gt = cand_pred[walked], cand_gt[walked]
    num_pred = scene.pred_size.shape[0]

    if walk_pred.size == 0 or np.bincount(walk_pred, minlength=num_pred).max() <= 1:
        # Closed form: per GT, its best candidate is the TP score, every other candidate a FP.
        scores = scene.pred_score[walk_pred]
        order = np.lexsort((-scores, walk_gt))
        gt_sorted, score_sorted = walk_gt[order], scores[order]
        first = np.ones(gt_sorted.shape[0], bool)
        first[1:] = gt_sorted[1:] != gt_sorted[:-1]
        match_class = scene.gt_class[gt_sorted]
        match_true = first.astype(np.float64)
        match_score = score_sorted
        matched_gt = gt_sorted[first]
    else:
        match_class, match_true, match_score, matched_gt = _walk(scene, walk_pred, walk_gt)

    big_gt = np.flatnonzero(scene.gt_size >= MIN_REGION_SIZE)
    unmatched_gt = np.setdiff1d(big_gt, matched_gt, assume_unique=True)

    # Predictions without any candidate GT (of any size) are FPs unless mostly on void / small GT.
    has_candidate = np.zeros(num_pred, bool)
    has_candidate[cand_pred] = True
    false_pos = ~has_candidate & (ignore_share <= threshold)
    classes = np.concatenate([match_class, scene.pred_class[false_pos]])
    y_true = np.concatenate([match_true, np.zeros(int(false_pos.sum()))])
    y_score = np.concatenate([match_score, scene.pred_score[false_pos]])
    return classes, y_true, y_score, unmatched_gt


def _walk(scene: SceneOverlaps, walk_pred: np.ndarray, walk_gt: np.ndarray
          ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """The official greedy walk, step by step, over the candidate pairs (sorted by GT, then prediction)."""
    visited = np.zeros(scene.pred_size.shape[0], bool)
    classes: list[int] = []
    trues: list[float] = []
    scores: list[float] = []
    matched: list[int] = []
    starts = np.flatnonzero(np.r_[True, walk_gt[1:] != walk_gt[:-1]])
    ends = np.r_[starts[1:], walk_gt.shape[0]]
    for start, end in zip(starts.tolist(), ends.tolist()):
        gt = int(walk_gt[start])
        gt_score: Optional[float] = None
        for p in walk_pred[start:end].tolist():
            if visited[p]:
                continue
            score = float(scene.pred_score[p])
            if gt_score is None:
                gt_score = score
                visited[p] = True
            else:
                # A second match: the lower score becomes a FP; this prediction is not marked visited.
                classes.append(int(scene.gt_class[gt]))
                trues.append(0.0)
                scores.append(min(gt_score, score))
                gt_score = max(gt_score, score)
        if gt_score is not None:
            classes.append(int(scene.gt_class[gt]))
            trues.append(1.0)
            scores.append(gt_score)
            matched.append(gt)
    return (np.asarray(classes, np.int64), np.asarray(trues, np.float64), np.asarray(scores, np.float64),
            np.asarray(matched, np.int64))


def evaluate_scenes(gt_ids: Sequence[np.ndarray], predictions: Sequence[ScenePrediction], *,
                    dataset: str = "scannet", scene_names: Optional[Sequence[str]] = None,
                    score_threshold: float = DEFAULT_SCORE_THRESHOLD) -> EvaluationResult:
    """Evaluate whole scenes in memory.

    gt_ids:      per scene int [V] GT ids (label*1000 + inst, 0 = unannotated)
    predictions: per scene :class:`ScenePrediction` over the same V vertices
    dataset:     "scannet" (18 nyu40 classes), "scannet200" (198 raw-category ids; adds head / common /
                 tail means) or "s3dis" (1..13, plus mean precision / recall)
    scene_names: used in error messages
    score_threshold: S3DIS: confidence threshold of the ASIS-style precision / recall
    """
    if len(gt_ids) != len(predictions):
        raise ValueError(f"evaluate_scenes: {len(gt_ids)} GT scenes but {len(predictions)} predictions")
    if scene_names is not None and len(scene_names) != len(gt_ids):
        raise ValueError(f"evaluate_scenes: {len(scene_names)} scene names for {len(gt_ids)} scenes")
    evaluator = ScanNetEvaluator(dataset=dataset, score_threshold=score_threshold)
    for i, (gt, pred) in enumerate(zip(gt_ids, predictions)):
        evaluator.add(gt, pred, scene_name=None if scene_names is None else str(scene_names[i]))
    return evaluator.result()
