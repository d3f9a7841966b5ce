"""Per-scene overlap statistics: everything the protocol needs from the vertices, computed once.

After this step no per-vertex data is kept: the matching at every IoU threshold works on the sparse
list of (prediction, GT instance) pairs of the same class that share at least one vertex, so the
evaluator's memory does not grow with the number of vertices of the evaluated scenes.

The intersections of all predictions with all GT instances (and with the void vertices) are one
``np.nonzero`` + ``np.bincount`` for dense masks, and one matrix product with a segment x GT count
table for :class:`SegmentMasks` — no Python loop over vertices or over predictions.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import numpy as np

from pointformer.evaluation.prediction import ScenePrediction, SegmentMasks
from pointformer.evaluation.protocol import GT_LABEL_DIVISOR, MIN_REGION_SIZE, S3DIS_PR_IOU, ClassSet
from pointformer.io.gt import check_gt_ids

_BLOCK_ENTRIES = 1 << 21
# GT ids below this bound are grouped with a bincount table (O(V)) instead of a sort (O(V log V)).
_DIRECT_ID_BOUND = 1 << 22


@dataclass
class SceneOverlaps:
    """One scene reduced to what the protocol uses (G GT instances, P kept predictions, K pairs).

    gt_class     int64 [G]  class index (0..C-1) of each GT instance of an evaluated class,
                            instances in ascending GT id order (the official walk order)
    gt_size      int64 [G]  vertices of each GT instance
    pred_class   int64 [P]  class index of each kept prediction (evaluated class, >= 100 vertices),
                            in the given order (the official "recorded" order)
    pred_size    int64 [P]
    pred_score   float64 [P]
    pred_ignore  int64 [P]  vertices on void + vertices on same-class GT instances under 100 vertices
    pair_pred    int64 [K]  same-class pairs with intersection > 0, sorted by (GT, prediction)
    pair_gt      int64 [K]
    pair_inter   int64 [K]
    pr_counts    int64 [3, C] or None: S3DIS true positives, false positives, GT instances at IoU 0.5
    """

    gt_class: np.ndarray
    gt_size: np.ndarray
    pred_class: np.ndarray
    pred_size: np.ndarray
    pred_score: np.ndarray
    pred_ignore: np.ndarray
    pair_pred: np.ndarray
    pair_gt: np.ndarray
    pair_inter: np.ndarray
    pr_counts: Optional[np.ndarray] = None

    @property
    def pair_iou(self) -> np.ndarray:
        """float64 [K] — computed exactly as the official script: inter / (|g| + |p| - inter)."""
        union = self.gt_size[self.pair_gt] + self.pred_size[self.pair_pred] - self.pair_inter
        return self.pair_inter / union.astype(np.float64)


def compute_scene_overlaps(gt_ids: np.ndarray, prediction: ScenePrediction, classes: ClassSet, *,
                           where: str = "scene", with_precision_recall: bool = False) -> SceneOverlaps:
    """Reduce one scene (GT ids int [V], prediction over V vertices) to :class:`SceneOverlaps`.

    ``where`` names the scene in error messages. With ``with_precision_recall`` the S3DIS
    precision/recall counts are computed too (they need the vertices, so they are taken here).
    """
    gt_ids = check_gt_ids(gt_ids, where)
    num_vertices = gt_ids.shape[0]
    if prediction.num_vertices != num_vertices:
        raise ValueError(f"{where}: prediction masks cover {prediction.num_vertices} vertices but the GT has "
                         f"{num_vertices} (masks must be over the mesh vertices, in mesh order)")
    num_classes = len(classes.ids)

    # GT instances: every distinct id whose label (id // 1000) is evaluated. Everything else is void.
    uniq, inverse, counts = _unique_ids(gt_ids)
    uniq_class = classes.index_of(uniq // GT_LABEL_DIVISOR)
    is_instance = uniq_class >= 0
    gt_class = uniq_class[is_instance]
    gt_size = counts[is_instance]
    num_gt = gt_class.shape[0]
    # Column of every vertex: its GT instance 0..G-1, or G for void.
    column_of_uniq = np.where(is_instance, np.cumsum(is_instance) - 1, num_gt)
    vertex_column = column_of_uniq[inverse]

    # Predictions: evaluated classes only, then at least MIN_REGION_SIZE vertices.
    pred_class_all = classes.index_of(prediction.class_ids)
    candidates = np.flatnonzero(pred_class_all >= 0)
    inter, sizes = _intersections(prediction, candidates, vertex_column, num_gt + 1)
    big = sizes >= MIN_REGION_SIZE
    kept = candidates[big]
    inter, sizes = inter[big], sizes[big]
    pred_class = pred_class_all[kept]

    # Same-class pairs with a non-empty intersection, ordered by GT then by prediction.
    gt_inter = inter[:, :num_gt]
    same_class = pred_class[:, None] == gt_class[None, :]
    pair_gt, pair_pred = np.nonzero((gt_inter.T > 0) & same_class.T)
    pair_inter = gt_inter[pair_pred, pair_gt]
    small_gt = gt_size[pair_gt] < MIN_REGION_SIZE
    pred_ignore = inter[:, num_gt] + np.bincount(pair_pred[small_gt], weights=pair_inter[small_gt],
                                                 minlength=kept.shape[0]).astype(np.int64)

    pr_counts = None
    if with_precision_recall:
        pr_counts = _precision_recall_counts(prediction, pred_class_all, vertex_column, gt_class, num_classes)

    return SceneOverlaps(
        gt_class=gt_class.astype(np.int64), gt_size=gt_size.astype(np.int64),
        pred_class=pred_class.astype(np.int64), pred_size=sizes.astype(np.int64),
        pred_score=prediction.scores[kept].astype(np.float64), pred_ignore=pred_ignore.astype(np.int64),
        pair_pred=pair_pred.astype(np.int64), pair_gt=pair_gt.astype(np.int64),
        pair_inter=pair_inter.astype(np.int64), pr_counts=pr_counts,
    )


def _unique_ids(gt_ids: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """np.unique(gt_ids, return_inverse=True, return_counts=True), via a bincount table when ids are small."""
    if gt_ids.size == 0 or gt_ids.max() >= _DIRECT_ID_BOUND:
        uniq, inverse, counts = np.unique(gt_ids, return_inverse=True, return_counts=True)
        return uniq, inverse.reshape(-1), counts
    table = np.bincount(gt_ids)
    uniq = np.flatnonzero(table)
    position = np.zeros(table.shape[0], np.int64)
    position[uniq] = np.arange(uniq.shape[0])
    return uniq, position[gt_ids], table[uniq]


def _intersections(prediction: ScenePrediction, rows: np.ndarray, vertex_column: np.ndarray,
                   num_columns: int) -> tuple[np.ndarray, np.ndarray]:
    """Vertices shared by each selected prediction and each column (GT instances, then void).

    Returns inter int64 [R, num_columns] and sizes int64 [R].
    """
    num_rows = rows.shape[0]
    if num_rows == 0:
        return np.zeros((0, num_columns), np.int64), np.zeros(0, np.int64)
    masks = prediction.masks
    if isinstance(masks, SegmentMasks):
        seg = masks.segment_ids
        num_segments = masks.segment_masks.shape[1]
        # counts[s, c] = vertices of segment s in column c; then one (exact, < 2**53) float64 GEMM.
        counts = np.bincount(seg * num_columns + vertex_column, minlength=num_segments * num_columns)
        counts = counts.reshape(num_segments, num_columns).astype(np.float64)
        inter = np.rint(masks.segment_masks[rows].astype(np.float64) @ counts).astype(np.int64)
        return inter, inter.sum(axis=1)
    num_vertices = masks.shape[1]
    if masks.flags.f_contiguous and not masks.flags.c_contiguous and num_rows == masks.shape[0]:
        # Column-major masks (e.g. from ``seg_masks[:, segment_ids]``): scan the transposed view in
        # memory order instead of copying it.
        vertex, row = np.divmod(np.flatnonzero(masks.T), num_rows)
        inter = np.bincount(row * num_columns + vertex_column[vertex], minlength=num_rows * num_columns)
        inter = inter.reshape(num_rows, num_columns).astype(np.int64)
        return inter, inter.sum(axis=1)
    inter = np.zeros((num_rows, num_columns), np.int64)
    # Row blocks of ~2M mask entries: the block stays in cache, and the flat indices stay small.
    block = max(1, _BLOCK_ENTRIES // max(num_vertices, 1))
    all_rows = num_rows == masks.shape[0]
    for start in range(0, num_rows, block):
        stop = min(start + block, num_rows)
        dense = masks[start:stop] if all_rows else masks[rows[start:stop]]
        flat = np.flatnonzero(dense)
        row, vertex = np.divmod(flat, num_vertices)
        counts = np.bincount(row * num_columns + vertex_column[vertex], minlength=(stop - start) * num_columns)
        inter[start:stop] = counts.reshape(stop - start, num_columns)
    return inter, inter.sum(axis=1)


def _precision_recall_counts(prediction: ScenePrediction, pred_class_all: np.ndarray, vertex_column: np.ndarray,
                             gt_class: np.ndarray, num_classes: int) -> np.ndarray:
    """S3DIS instance precision / recall counts at IoU >= 0.5, int64 [3, C]: TP, FP, GT instances.

    As in Mask3D's S3DIS evaluation, overlapping predictions are first painted into one instance map:
    a vertex belongs to the highest-scoring prediction covering it (Mask3D paints its score-sorted
    list so that the first mask wins); each painted instance is a TP when its best IoU with a GT
    instance of its class is >= 0.5, otherwise a FP. Unlike Mask3D, vertices covered by no
    prediction do not form an extra "class 1" prediction, and GT instances are told apart by their
    full id (label*1000+inst), not by the instance number alone.
    """
    num_gt = gt_class.shape[0]
    tp = np.zeros(num_classes, np.int64)
    fp = np.zeros(num_classes, np.int64)
    gt_count = np.bincount(gt_class, minlength=num_classes).astype(np.int64)
    valid = np.flatnonzero(pred_class_all >= 0)
    if valid.size == 0:
        return np.stack([tp, fp, gt_count])
    order = valid[np.argsort(-prediction.scores[valid], kind="stable")]
    masks = prediction.masks
    if isinstance(masks, SegmentMasks):
        seg_masks = masks.segment_masks[order]
        owner_seg = np.where(seg_masks.any(axis=0), np.argmax(seg_masks, axis=0), -1)
        owner = owner_seg[masks.segment_ids]
    else:
        ordered = masks[order]
        owner = np.where(ordered.any(axis=0), np.argmax(ordered, axis=0), -1)
    painted = owner >= 0
    num_owned = order.shape[0]
    size = np.bincount(owner[painted], minlength=num_owned)
    inter = np.bincount(owner[painted] * (num_gt + 1) + vertex_column[painted],
                        minlength=num_owned * (num_gt + 1)).reshape(num_owned, num_gt + 1)[:, :num_gt]
    gt_size = np.bincount(vertex_column, minlength=num_gt + 1)[:num_gt]
    owned_class = pred_class_all[order]
    with np.errstate(divide="ignore", invalid="ignore"):
        iou = inter / (size[:, None] + gt_size[None, :] - inter).astype(np.float64)
    iou = np.where(owned_class[:, None] == gt_class[None, :], iou, -1.0)
    best = iou.max(axis=1) if num_gt else np.full(num_owned, -1.0)
    alive = size > 0  # a prediction painted over entirely by better ones no longer exists
    is_tp = alive & (best >= S3DIS_PR_IOU)
    is_fp = alive & ~is_tp
    tp += np.bincount(owned_class[is_tp], minlength=num_classes)
    fp += np.bincount(owned_class[is_fp], minlength=num_classes)
    return np.stack([tp, fp, gt_count])
