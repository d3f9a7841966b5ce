"""ASIS-style S3DIS instance metrics: mean coverage (mCov), weighted coverage (mWCov), mean precision
and mean recall at IoU 0.5 (mPrec50, mRec50). Pure numpy; definitions in ``docs/evaluation.md``.

Per class c (S3DIS class index), with IoU taken between a GT instance and a prediction of class c only:

* coverage of a GT instance: its best IoU with any prediction of its class (0 when there is none);
  per room, Cov_c = the mean over the room's GT instances of c, WCov_c = the same weighted by the
  instances' point counts; mCov_c / mWCov_c = the mean over the rooms that contain c (as ASIS);
* precision / recall at IoU 0.5 over the predictions whose score is >= ``score_threshold``: a
  prediction is a true positive when its best IoU with a GT instance of its class is >= 0.5, a GT
  instance is found when some such prediction reaches IoU >= 0.5 with it; Prec_c = TP / predictions,
  Rec_c = found / GT instances, both pooled over all rooms (for disjoint predictions, as ASIS's,
  found = TP and this is ASIS's recall; overlapping predictions cannot push recall above 1).

mCov, mWCov, mPrec50 and mRec50 are the means of the per-class values over the classes that have
GT instances (NaN-mean). Coverage uses every prediction (the threshold only affects precision and
recall). No minimum region size applies here (unlike the AP protocol).
"""
from __future__ import annotations

import math
import warnings
from dataclasses import dataclass
from typing import Any

import numpy as np

from pointformer.evaluation.prediction import ScenePrediction, SegmentMasks
from pointformer.evaluation.protocol import GT_LABEL_DIVISOR, ClassSet

# IoU at which a prediction is a true positive (>=, as ASIS and Mask3D).
COVERAGE_PR_IOU: float = 0.5
# Default confidence threshold of precision / recall: Mask3D's paper filters its S3DIS predictions to
# confidence >= 0.8 for mPrec/mRec (its released scripts use every prediction, i.e. 0.0).
DEFAULT_SCORE_THRESHOLD: float = 0.8


def nanmean(values: np.ndarray) -> float:
    """nanmean that returns NaN quietly when everything is NaN or empty (e.g. no GT at all)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        return float(np.nanmean(values)) if np.size(values) else math.nan


@dataclass
class CoverageResult:
    """Per-class ASIS metrics (NaN for a class without GT instances) and their means."""

    class_names: tuple[str, ...]
    score_threshold: float
    num_scenes: int
    coverage: np.ndarray            # float64 [C] mCov per class
    weighted_coverage: np.ndarray   # float64 [C] mWCov per class
    precision: np.ndarray           # float64 [C] at IoU 0.5, predictions with score >= score_threshold
    recall: np.ndarray              # float64 [C]

    @property
    def mcov(self) -> float:
        return nanmean(self.coverage)

    @property
    def mwcov(self) -> float:
        return nanmean(self.weighted_coverage)

    @property
    def mprec50(self) -> float:
        return nanmean(self.precision)

    @property
    def mrec50(self) -> float:
        return nanmean(self.recall)

    def summary(self) -> str:
        """One line: the four means and the threshold used for precision / recall."""
        return (f"mCov {self.mcov:.3f}  mWCov {self.mwcov:.3f}  mPrec50 {self.mprec50:.3f}  "
                f"mRec50 {self.mrec50:.3f}  (precision/recall: predictions with score >= {self.score_threshold:g})")

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready numbers (means and per class)."""
        per_class = {key: {n: float(v) for n, v in zip(self.class_names, values)} for key, values in (
            ("cov", self.coverage), ("wcov", self.weighted_coverage), ("prec50", self.precision),
            ("rec50", self.recall))}
        return {"mcov": self.mcov, "mwcov": self.mwcov, "mprec50": self.mprec50, "mrec50": self.mrec50,
                "score_threshold": self.score_threshold, "coverage_per_class": per_class}


class CoverageEvaluator:
    """Accumulates rooms one at a time (a few numbers per class per room) for :class:`CoverageResult`."""

    def __init__(self, classes: ClassSet, *, score_threshold: float = DEFAULT_SCORE_THRESHOLD) -> None:
        if not 0.0 <= float(score_threshold) <= 1.0 or math.isnan(float(score_threshold)):
            raise ValueError(f"score threshold must be in [0, 1], got {score_threshold!r}")
        self.classes = classes
        self.score_threshold = float(score_threshold)
        num_classes = len(classes.ids)
        self._cov_sum = np.zeros(num_classes)     # sum over rooms of the room's Cov_c
        self._wcov_sum = np.zeros(num_classes)
        self._rooms = np.zeros(num_classes, np.int64)
        self._tp = np.zeros(num_classes, np.int64)
        self._pred = np.zeros(num_classes, np.int64)
        self._found = np.zeros(num_classes, np.int64)
        self._gt = np.zeros(num_classes, np.int64)
        self.num_scenes = 0

    def add(self, gt_ids: np.ndarray, prediction: ScenePrediction) -> None:
        """One room: GT ids int [V] (label*1000+inst; labels outside the class set are void) and its prediction."""
        gt_ids = np.asarray(gt_ids).astype(np.int64).reshape(-1)
        num_classes = len(self.classes.ids)
        uniq, vertex_gt = np.unique(gt_ids, return_inverse=True)
        uniq_class = self.classes.index_of(uniq // GT_LABEL_DIVISOR)
        is_instance = uniq_class >= 0
        gt_class = uniq_class[is_instance]
        num_gt = gt_class.shape[0]
        column = np.where(is_instance, np.cumsum(is_instance) - 1, num_gt)[vertex_gt.reshape(-1)]
        gt_size = np.bincount(column, minlength=num_gt + 1)[:num_gt].astype(np.float64)

        pred_class = self.classes.index_of(prediction.class_ids)
        rows = np.flatnonzero(pred_class >= 0)
        inter, pred_size = _intersections(prediction, rows, column, num_gt + 1)
        inter = inter[:, :num_gt].astype(np.float64)
        pred_class = pred_class[rows]
        with np.errstate(divide="ignore", invalid="ignore"):
            iou = inter / (pred_size[:, None] + gt_size[None, :] - inter)
        iou = np.where(pred_class[:, None] == gt_class[None, :], np.nan_to_num(iou), 0.0)

        cover = iou.max(axis=0) if rows.size else np.zeros(num_gt)
        present = np.bincount(gt_class, minlength=num_classes) > 0
        count = np.bincount(gt_class, minlength=num_classes)
        size_per_class = np.bincount(gt_class, weights=gt_size, minlength=num_classes)
        self._cov_sum[present] += (np.bincount(gt_class, weights=cover, minlength=num_classes)[present]
                                   / count[present])
        self._wcov_sum[present] += (np.bincount(gt_class, weights=cover * gt_size, minlength=num_classes)[present]
                                    / size_per_class[present])
        self._rooms += present
        self._gt += count

        confident = prediction.scores[rows] >= self.score_threshold
        hits = iou[confident] >= COVERAGE_PR_IOU
        self._pred += np.bincount(pred_class[confident], minlength=num_classes)
        self._tp += np.bincount(pred_class[confident][hits.any(axis=1)], minlength=num_classes)
        self._found += np.bincount(gt_class[hits.any(axis=0)], minlength=num_classes)
        self.num_scenes += 1

    def result(self) -> CoverageResult:
        """The metrics over every room added so far."""
        has_gt = self._rooms > 0
        with np.errstate(divide="ignore", invalid="ignore"):
            cov = np.where(has_gt, self._cov_sum / self._rooms, np.nan)
            wcov = np.where(has_gt, self._wcov_sum / self._rooms, np.nan)
            precision = np.where(has_gt, np.where(self._pred > 0, self._tp / self._pred, 0.0), np.nan)
            recall = np.where(has_gt, self._found / self._gt, np.nan)
        return CoverageResult(class_names=self.classes.names, score_threshold=self.score_threshold,
                              num_scenes=self.num_scenes, coverage=cov, weighted_coverage=wcov,
                              precision=precision, recall=recall)


def _intersections(prediction: ScenePrediction, rows: np.ndarray, column: np.ndarray, num_columns: int,
                   ) -> tuple[np.ndarray, np.ndarray]:
    """Points shared by each selected prediction and each column: int64 [R, num_columns], sizes float64 [R]."""
    if rows.size == 0:
        return np.zeros((0, num_columns), np.int64), np.zeros(0)
    masks = prediction.masks
    if isinstance(masks, SegmentMasks):
        num_segments = masks.segment_masks.shape[1]
        counts = np.bincount(masks.segment_ids * num_columns + column, minlength=num_segments * num_columns)
        counts = counts.reshape(num_segments, num_columns).astype(np.float64)
        inter = np.rint(masks.segment_masks[rows].astype(np.float64) @ counts).astype(np.int64)
    else:
        inter = np.zeros((rows.shape[0], num_columns), np.int64)
        for i, row in enumerate(rows.tolist()):
            inter[i] = np.bincount(column[masks[row]], minlength=num_columns)
    return inter, inter.sum(axis=1).astype(np.float64)


SUMMARY_KEYS: tuple[str, ...] = ("map", "map50", "map25", "mcov", "mwcov", "mprec50", "mrec50")


def mean_of_folds(summaries: list[dict[str, Any]]) -> dict[str, float]:
    """6-fold "mean of folds": each summary number (``SUMMARY_KEYS`` present in every fold) averaged over the
    folds' ``as_dict()`` outputs, each fold weighted equally whatever its number of rooms."""
    keys = [k for k in SUMMARY_KEYS if summaries and all(k in s for s in summaries)]
    return {k: nanmean(np.array([float(s[k]) for s in summaries])) for k in keys}
