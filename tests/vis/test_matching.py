import numpy as np
import pytest

from pointformer.vis.matching import MATCH_IOU, match_instances, overlap_pairs


def _ids(*runs):
    """Per-point ids from (id, count) runs."""
    return np.concatenate([np.full(count, value) for value, count in runs])


def test_best_overlap_above_half_is_a_match_else_fp_and_missed():
    # GT: 0 = points 0..9, 1 = points 10..19; pred 0 covers 8 of GT 0 (+1 extra), pred 1 covers 4 of GT 1
    gt = _ids((0, 10), (1, 10), (-1, 5))
    pred = _ids((-1, 2), (0, 8), (-1, 6), (1, 4), (0, 1), (-1, 4))
    m = match_instances(pred, gt)
    assert m.pred_to_gt.tolist() == [0, -1] and m.gt_to_pred.tolist() == [0, -1]
    assert m.pred_iou[0] == pytest.approx(8 / 11) and m.pred_iou[1] == pytest.approx(4 / 10)
    assert (m.true_positives, m.false_positives, m.missed, m.wrong_class) == (1, 1, 1, 0)


def test_threshold_is_inclusive_at_one_half():
    gt = _ids((0, 10))
    pred = _ids((0, 5), (-1, 5))  # IoU exactly 0.5
    assert match_instances(pred, gt).pred_to_gt.tolist() == [0]
    assert MATCH_IOU == 0.5
    assert match_instances(pred, gt, threshold=0.51).pred_to_gt.tolist() == [-1]


def test_duplicates_keep_the_best_iou_then_the_best_score():
    gt = _ids((0, 10))
    pred = _ids((0, 5), (1, 5))  # two halves: both exactly 0.5
    m = match_instances(pred, gt, pred_scores=np.array([0.2, 0.9]))
    assert m.pred_to_gt.tolist() == [-1, 0] and m.gt_to_pred.tolist() == [1]
    m = match_instances(pred, gt)  # equal scores: the lower index
    assert m.pred_to_gt.tolist() == [0, -1]


def test_class_decides_tp_versus_wrong_class_not_the_colour():
    gt = _ids((0, 10), (1, 10))
    pred = _ids((0, 10), (1, 10))
    m = match_instances(pred, gt, pred_classes=np.array([3, 5]), gt_classes=np.array([3, 4]))
    assert m.pred_to_gt.tolist() == [0, 1]
    assert m.same_class.tolist() == [True, False]
    assert (m.true_positives, m.wrong_class, m.false_positives, m.missed) == (1, 1, 0, 0)


def test_empty_sides_and_instances_without_points():
    gt = _ids((-1, 5))
    pred = _ids((0, 5))
    m = match_instances(pred, gt, num_gt=0, pred_classes=np.array([3]), gt_classes=np.zeros(0, int))
    assert m.pred_to_gt.tolist() == [-1] and m.gt_to_pred.shape == (0,)
    m = match_instances(np.full(5, -1), _ids((0, 5)), num_pred=0)
    assert m.missed == 1 and m.pred_to_gt.shape == (0,)
    m = match_instances(pred, _ids((0, 5)), num_pred=2)  # prediction 1 has no point
    assert m.pred_to_gt.tolist() == [0, -1]


def test_overlap_counts_and_input_checks():
    pred, gt, counts = overlap_pairs(np.array([0, 0, 1, -1, 1]), np.array([1, 0, 1, 1, 1]), 2)
    assert list(zip(pred.tolist(), gt.tolist(), counts.tolist())) == [(0, 0, 1), (0, 1, 1), (1, 1, 2)]
    with pytest.raises(ValueError, match="pred_ids"):
        match_instances(np.zeros(3, int), np.zeros(4, int))
    with pytest.raises(ValueError, match="together"):
        match_instances(np.zeros(3, int), np.zeros(3, int), pred_classes=np.array([1]))
    with pytest.raises(ValueError, match=">= num_pred"):
        match_instances(np.array([0, 2]), np.array([0, 0]), num_pred=2)


def test_sparse_matching_agrees_with_a_dense_iou_table():
    rng = np.random.default_rng(3)
    for _ in range(20):
        gt = rng.integers(-1, 6, 400)
        pred = np.where(rng.random(400) < 0.8, gt, rng.integers(-1, 8, 400))  # noisy copies + extras
        m = match_instances(pred, gt, num_pred=8, num_gt=6)
        iou = np.array([[((pred == p) & (gt == g)).sum() / max(((pred == p) | (gt == g)).sum(), 1)
                         for g in range(6)] for p in range(8)])
        assert np.allclose(m.pred_iou, iou.max(axis=1))
        for p in range(8):
            g = m.pred_to_gt[p]
            if g >= 0:
                assert iou[p, g] == iou[p].max() >= 0.5 and m.gt_to_pred[g] == p
            else:
                assert iou[p].max() < 0.5 or m.gt_to_pred[iou[p].argmax()] != p
        assert all(m.pred_to_gt[m.gt_to_pred[g]] == g for g in range(6) if m.gt_to_pred[g] >= 0)
