"""The ScanNet/CityScapes average precision of one class at one IoU threshold.

Not VOC or COCO AP: precision is sampled at every distinct score, and the recall step widths are
centred differences. The arithmetic below is the official one operation for operation (same sort,
same float64 divisions, the same ``np.convolve`` and ``np.dot``), so results agree to the last bit.
"""
from __future__ import annotations

import numpy as np


def scannet_average_precision(y_true: np.ndarray, y_score: np.ndarray, hard_false_negatives: int) -> float:
    """AP from the collected examples of one class at one threshold.

    y_true  float/bool [N]: 1 for a true positive, 0 for a false positive
    y_score float [N]: their confidences
    hard_false_negatives: GT instances that no prediction matched

    Edge case (the official script crashes here): no examples at all -> the curve is the artificial
    point only and the AP is 0.
    """
    y_true = np.asarray(y_true, dtype=np.float64)
    y_score = np.asarray(y_score, dtype=np.float64)
    order = np.argsort(y_score)
    y_score_sorted = y_score[order]
    true_cumsum = np.cumsum(y_true[order])
    _, unique_indices = np.unique(y_score_sorted, return_index=True)
    num_examples = y_score_sorted.shape[0]
    num_true = true_cumsum[-1] if num_examples else 0.0

    # cumsum[i - 1] with cumsum[-1] := 0 (index -1 of the extended array is the appended 0).
    cumsum_before = np.append(true_cumsum, 0.0)[unique_indices - 1]
    tp = num_true - cumsum_before
    fp = num_examples - unique_indices - tp
    fn = cumsum_before + hard_false_negatives
    with np.errstate(divide="ignore", invalid="ignore"):  # only reachable without any GT: NaN then
        precision = np.append(tp / (tp + fp), 1.0)
        recall = np.append(tp / (tp + fn), 0.0)

    recall_padded = np.concatenate([recall[:1], recall, [0.0]])
    step_widths = np.convolve(recall_padded, [-0.5, 0, 0.5], "valid")
    return float(np.dot(precision, step_widths))
