"""Hand-computed cases of the ScanNet instance protocol; each test's name states the rule it pins down."""
from __future__ import annotations

import math

import numpy as np
import pytest

from pointformer.evaluation import IOU_THRESHOLDS, ScenePrediction, evaluate_scenes, scannet_average_precision

CABINET, BED, CHAIR, WALL = 3, 4, 5, 1
V = 2000


def gt_scene(*objects: tuple[int, int, slice]) -> np.ndarray:
    """GT ids [V]: each object = (nyu40 label, instance number, vertex slice); the rest is 0."""
    gt = np.zeros(V, np.int64)
    for label, inst, where in objects:
        gt[where] = label * 1000 + inst
    return gt


def pred(*instances: tuple[int, float, object]) -> ScenePrediction:
    """Each instance = (class id, score, vertex index expression)."""
    masks = np.zeros((len(instances), V), bool)
    for i, (_, _, where) in enumerate(instances):
        masks[i, where] = True
    return ScenePrediction(masks, np.array([c for c, _, _ in instances]), np.array([s for _, s, _ in instances]))


def test_iou_thresholds_are_the_official_ones():
    np.testing.assert_array_equal(IOU_THRESHOLDS, np.append(np.arange(0.5, 0.95, 0.05), 0.25))
    assert len(IOU_THRESHOLDS) == 10 and not np.isclose(IOU_THRESHOLDS, 0.95).any()


def test_perfect_predictions_give_ap_1():
    gt = gt_scene((CABINET, 1, slice(0, 300)), (CABINET, 2, slice(300, 500)), (CHAIR, 1, slice(500, 700)),
                  (WALL, 1, slice(700, 2000)))
    p = pred((CABINET, 0.9, slice(0, 300)), (CABINET, 0.8, slice(300, 500)), (CHAIR, 0.7, slice(500, 700)))
    result = evaluate_scenes([gt], [p])
    assert result.map == 1.0 and result.map50 == 1.0 and result.map25 == 1.0
    assert result.ap["cabinet"] == 1.0 and result.ap["chair"] == 1.0
    assert math.isnan(result.ap["bed"])


def test_one_tp_at_0_9_plus_one_fp_at_0_99_gives_0_25():
    gt = gt_scene((CABINET, 1, slice(0, 200)), (CHAIR, 1, slice(200, 400)))
    # The FP lies on the chair: overlap with another benchmark class is never ignored.
    p = pred((CABINET, 0.9, slice(0, 200)), (CABINET, 0.99, slice(200, 400)))
    result = evaluate_scenes([gt], [p])
    assert result.ap["cabinet"] == pytest.approx(0.25, abs=1e-15)
    assert result.ap50["cabinet"] == pytest.approx(0.25, abs=1e-15)
    assert result.ap["chair"] == 0.0  # GT without any prediction of its class
    assert scannet_average_precision(np.array([1.0, 0.0]), np.array([0.9, 0.99]), 0) == 0.25


def test_prediction_over_void_is_ignored_but_over_another_object_is_a_false_positive():
    gt = gt_scene((CABINET, 1, slice(0, 200)), (CHAIR, 1, slice(200, 400)), (WALL, 1, slice(400, 800)))
    over_void = evaluate_scenes([gt], [pred((CABINET, 0.9, slice(0, 200)), (CABINET, 0.99, slice(400, 600)))])
    over_unlabelled = evaluate_scenes([gt], [pred((CABINET, 0.9, slice(0, 200)), (CABINET, 0.99, slice(1000, 1200)))])
    over_chair = evaluate_scenes([gt], [pred((CABINET, 0.9, slice(0, 200)), (CABINET, 0.99, slice(200, 400)))])
    assert over_void.ap["cabinet"] == 1.0       # wall (a non-benchmark class) is void
    assert over_unlabelled.ap["cabinet"] == 1.0  # id 0 is void
    assert over_chair.ap["cabinet"] == 0.25


def test_predictions_under_100_vertices_are_neither_tp_nor_fp():
    gt = gt_scene((CABINET, 1, slice(0, 200)), (CHAIR, 1, slice(200, 400)))
    # A 99-vertex prediction inside the chair at the top score would be a FP if it counted.
    with_small_fp = evaluate_scenes([gt], [pred((CABINET, 0.9, slice(0, 200)), (CABINET, 0.99, slice(200, 299)))])
    assert with_small_fp.ap["cabinet"] == 1.0
    # A 99-vertex prediction on a 99-vertex GT... use a 150-vertex GT: 99 vertices would be IoU 0.66.
    gt2 = gt_scene((CABINET, 1, slice(0, 150)))
    small_tp = evaluate_scenes([gt2], [pred((CABINET, 0.9, slice(0, 99)))])
    assert small_tp.ap["cabinet"] == 0.0  # not a TP: the GT stays a false negative
    exactly_100 = evaluate_scenes([gt2], [pred((CABINET, 0.9, slice(0, 100)))])
    assert exactly_100.ap50["cabinet"] == 1.0  # 100 vertices is enough (IoU 100/150 > 0.5)


def test_gt_under_100_vertices_is_not_a_positive_and_overlap_with_it_is_ignored():
    # Only small GT of a class: the class has no positives -> NaN.
    only_small = evaluate_scenes([gt_scene((BED, 1, slice(0, 99)))], [pred((BED, 0.9, slice(0, 99)))])
    assert math.isnan(only_small.ap["bed"]) and math.isnan(only_small.map)
    # Big GT (TP at 0.5) + a small GT (99 v) covered by a prediction at 0.9 that also spills onto
    # 60 void and 41 chair vertices: IoU with the small GT is 99/200 = 0.495; ignored share
    # (99 + 60)/200 = 0.795. So it is: matched (not FP) at 0.25, ignored at 0.50..0.75, a FP at 0.80..0.90.
    gt = gt_scene((CABINET, 1, slice(0, 300)), (CABINET, 2, slice(300, 399)), (CHAIR, 1, slice(399, 600)))
    spill = np.r_[300:399, 1000:1060, 399:440]
    result = evaluate_scenes([gt], [pred((CABINET, 0.5, slice(0, 300)), (CABINET, 0.9, spill))])
    per_threshold = dict(zip(np.round(IOU_THRESHOLDS, 2).tolist(), result.ap_matrix[0].tolist()))
    assert per_threshold[0.25] == 1.0
    assert [per_threshold[t] for t in (0.5, 0.55, 0.6, 0.65, 0.7, 0.75)] == [1.0] * 6
    assert [per_threshold[t] for t in (0.8, 0.85, 0.9)] == [0.25] * 3
    assert result.ap["cabinet"] == pytest.approx((6 * 1.0 + 3 * 0.25) / 9)
    # The small GT is no false negative: recall stays 1 (AP 1 at 0.5 without the spill prediction).
    assert evaluate_scenes([gt], [pred((CABINET, 0.5, slice(0, 300)))]).ap["cabinet"] == 1.0


def test_iou_exactly_at_the_threshold_does_not_match():
    gt = gt_scene((CABINET, 1, slice(0, 200)))
    result = evaluate_scenes([gt], [pred((CABINET, 0.9, slice(0, 100)))])  # IoU = 100/200 = 0.5 exactly
    assert result.ap50["cabinet"] == 0.0   # 0.5 is not > 0.5: a FP and a FN
    assert result.ap25["cabinet"] == 1.0


def test_ignored_share_exactly_at_the_threshold_is_still_a_false_positive():
    gt = gt_scene((CABINET, 1, slice(0, 200)), (CHAIR, 1, slice(200, 400)))
    # 100 void + 100 chair vertices: ignored share 0.5 <= 0.5 -> FP at 0.5; 0.5 > 0.25 -> ignored at 0.25.
    result = evaluate_scenes([gt], [pred((CABINET, 0.5, slice(0, 200)), (CABINET, 0.9, np.r_[1000:1100, 200:300]))])
    assert result.ap50["cabinet"] == 0.25
    assert result.ap25["cabinet"] == 1.0


def test_gt_matched_twice_keeps_max_score_and_adds_fp_with_min():
    gt = gt_scene((CABINET, 1, slice(0, 300)), (CABINET, 2, slice(300, 500)))
    # GT1 is matched by A (0.9, IoU 1) and B (0.5, IoU 2/3); GT2 by C (0.3).
    # Correct: TP 0.9, FP 0.5, TP 0.3 -> AP 19/24. (Dropping B would give 1.0; giving the FP the
    # max score would give 5/12.)
    a, b, c = (CABINET, 0.9, slice(0, 300)), (CABINET, 0.5, slice(0, 200)), (CABINET, 0.3, slice(300, 500))
    for order in ([a, b, c], [b, a, c], [c, b, a]):
        result = evaluate_scenes([gt], [pred(*order)])
        np.testing.assert_allclose(result.ap_matrix[0], 19 / 24, rtol=0, atol=1e-15)
    assert scannet_average_precision(np.array([1.0, 0.0, 1.0]), np.array([0.9, 0.5, 0.3]), 0) == pytest.approx(19 / 24)


def test_class_without_gt_is_nan_and_skipped_in_the_means():
    gt = gt_scene((CABINET, 1, slice(0, 200)))
    result = evaluate_scenes([gt], [pred((CABINET, 0.9, slice(0, 200)), (BED, 0.8, slice(300, 500)))])
    assert math.isnan(result.ap["bed"]) and math.isnan(result.ap50["bed"]) and math.isnan(result.ap25["bed"])
    assert result.map == 1.0 and result.map50 == 1.0 and result.map25 == 1.0
    assert np.isnan(result.ap_matrix).sum() == 17 * 10


def test_class_whose_predictions_are_all_ignored_does_not_crash():
    gt = gt_scene((CABINET, 1, slice(0, 200)), (WALL, 1, slice(200, 800)))
    result = evaluate_scenes([gt], [pred((CABINET, 0.9, slice(300, 500)))])  # only on the wall: ignored
    assert result.ap["cabinet"] == 0.0 and result.map == 0.0
    assert scannet_average_precision(np.zeros(0), np.zeros(0), 1) == 0.0


def test_non_benchmark_prediction_classes_are_dropped():
    gt = gt_scene((CABINET, 1, slice(0, 200)), (CHAIR, 1, slice(200, 400)))
    base = evaluate_scenes([gt], [pred((CABINET, 0.9, slice(0, 200)))])
    with_wall_pred = evaluate_scenes([gt], [pred((CABINET, 0.9, slice(0, 200)), (WALL, 0.99, slice(200, 400)),
                                                 (40, 0.99, slice(200, 400)))])
    np.testing.assert_array_equal(base.ap_matrix, with_wall_pred.ap_matrix)


def test_scores_are_pooled_over_scenes():
    # Scene 1: TP 0.9; scene 2: a FP at 0.99 over the chair and an unmatched cabinet GT (hard FN).
    gt1 = gt_scene((CABINET, 1, slice(0, 200)))
    gt2 = gt_scene((CABINET, 1, slice(0, 200)), (CHAIR, 1, slice(200, 400)))
    result = evaluate_scenes([gt1, gt2], [pred((CABINET, 0.9, slice(0, 200))),
                                          pred((CABINET, 0.99, slice(200, 400)))])
    expected = scannet_average_precision(np.array([1.0, 0.0]), np.array([0.9, 0.99]), 1)
    assert result.ap50["cabinet"] == expected
    # By hand: at score 0.9: tp 1, fp 1, fn 1 -> p 1/2, r 1/2; at 0.99: p 0, r 0; then (p 1, r 0).
    # Recall padded [0.5, 0.5, 0, 0, 0] -> widths [0.25, 0.25, 0] -> AP = 0.5*0.25 + 0*0.25 + 1*0 = 0.125.
    assert expected == 0.125


def test_result_table_csv_and_dict(tmp_path):
    gt = gt_scene((CABINET, 1, slice(0, 200)), (CHAIR, 1, slice(200, 400)))
    result = evaluate_scenes([gt], [pred((CABINET, 0.9, slice(0, 200)), (CABINET, 0.99, slice(200, 400)))])
    table = result.table()
    assert "cabinet        :          0.250          0.250          0.250" in table
    assert table.splitlines()[-1].startswith("average")
    result.to_csv(tmp_path / "out.csv")
    lines = (tmp_path / "out.csv").read_text().splitlines()
    assert lines[0] == "class,class id,ap,ap50,ap25"
    assert lines[1] == "cabinet,3,0.25,0.25,0.25"
    assert lines[2] == "bed,4,nan,nan,nan"
    assert len(lines) == 19
    d = result.as_dict()
    assert d["map50"] == 0.125 and d["ap"]["chair"] == 0.0 and d["class_ids"]["otherfurniture"] == 39
