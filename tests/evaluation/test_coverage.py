"""ASIS-style S3DIS metrics (mCov, mWCov, mPrec50, mRec50) and their wiring into evaluate / the CLI."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from pointformer.cli.evaluate import evaluate_main
from pointformer.evaluation import ScenePrediction, SegmentMasks, class_set, evaluate_scenes
from pointformer.evaluation.coverage import CoverageEvaluator, mean_of_folds
from pointformer.io.gt import write_gt_file

V = 400


def room() -> tuple[np.ndarray, ScenePrediction]:
    """Ceiling A (0..99), tables B (100..299) and C (300..399); four predictions with known IoUs."""
    gt = np.zeros(V, np.int64)
    gt[:100], gt[100:300], gt[300:] = 1001, 8001, 8002
    masks = np.zeros((4, V), bool)
    masks[0, :80] = True                        # ceiling: IoU 0.8 with A
    masks[1, 100:200] = True                    # table: IoU 0.5 with B
    masks[2, 300:350] = masks[2, :10] = True    # table: IoU 50/110 with C
    masks[3, 150:300] = True                    # table: IoU 0.75 with B
    return gt, ScenePrediction(masks, np.array([1, 8, 8, 8]), np.array([0.9, 0.95, 0.5, 0.85]))


def test_hand_computed_room() -> None:
    gt, pred = room()
    ev = CoverageEvaluator(class_set("s3dis"), score_threshold=0.8)
    ev.add(gt, pred)
    res = ev.result()
    names = list(res.class_names)
    ceiling, table = names.index("ceiling"), names.index("table")
    c_iou = 50 / 110
    assert res.coverage[ceiling] == pytest.approx(0.8) and res.weighted_coverage[ceiling] == pytest.approx(0.8)
    assert res.coverage[table] == pytest.approx((0.75 + c_iou) / 2)
    assert res.weighted_coverage[table] == pytest.approx((200 * 0.75 + 100 * c_iou) / 300)
    assert (res.precision[table], res.recall[table]) == (1.0, 0.5)  # p2 (score 0.5) is below the threshold
    assert np.isnan(res.coverage[names.index("sofa")]) and np.isnan(res.precision[names.index("sofa")])
    assert res.mcov == pytest.approx((0.8 + (0.75 + c_iou) / 2) / 2)
    assert res.mrec50 == pytest.approx(0.75) and res.mprec50 == 1.0
    assert "score >= 0.8" in res.summary()

    every = CoverageEvaluator(class_set("s3dis"), score_threshold=0.0)
    every.add(gt, pred)
    assert every.result().precision[table] == pytest.approx(2 / 3)


def test_rooms_average_coverage_and_pool_precision() -> None:
    gt, pred = room()
    ev = CoverageEvaluator(class_set("s3dis"), score_threshold=0.0)
    ev.add(gt, pred)
    ev.add(gt, ScenePrediction.empty(V))  # same room, nothing predicted
    res = ev.result()
    ceiling = list(res.class_names).index("ceiling")
    assert res.coverage[ceiling] == pytest.approx(0.4)  # mean over rooms of the room's coverage
    assert res.recall[ceiling] == pytest.approx(0.5) and res.precision[ceiling] == 1.0  # pooled counts


def test_segment_masks_give_the_same_numbers() -> None:
    gt, pred = room()
    segments = np.arange(V) // 10  # every mask above is a union of 10-point segments
    seg_masks = pred.masks.reshape(4, V // 10, 10).any(axis=2)
    seg_pred = ScenePrediction(SegmentMasks(seg_masks, segments), pred.class_ids, pred.scores)
    a, b = (CoverageEvaluator(class_set("s3dis")) for _ in range(2))
    a.add(gt, pred)
    b.add(gt, seg_pred)
    assert json.dumps(a.result().as_dict()) == json.dumps(b.result().as_dict())


def test_threshold_is_checked() -> None:
    with pytest.raises(ValueError, match=r"score threshold must be in \[0, 1\]"):
        CoverageEvaluator(class_set("s3dis"), score_threshold=1.5)


def test_evaluate_scenes_reports_asis_metrics_for_s3dis_only() -> None:
    gt, pred = room()
    result = evaluate_scenes([gt], [pred], dataset="s3dis", score_threshold=0.8)
    metrics = result.as_dict()
    assert metrics["score_threshold"] == 0.8 and metrics["mcov"] == pytest.approx(result.coverage.mcov)
    assert {"mwcov", "mprec50", "mrec50", "map50"} <= set(metrics)
    assert "ASIS metrics: mCov" in result.table() and "score >= 0.8" in result.table()
    scannet_gt = np.where(gt > 0, 3000 + gt % 1000, 0)  # cabinet (nyu40 3)
    scannet = evaluate_scenes([scannet_gt], [ScenePrediction(pred.masks, np.full(4, 3), pred.scores)])
    assert scannet.coverage is None and "mcov" not in scannet.as_dict()


def test_mean_of_folds() -> None:
    folds = [{"map": 0.2, "mcov": 0.5, "mprec50": 0.4}, {"map": 0.4, "mcov": 0.7}]
    assert mean_of_folds(folds) == pytest.approx({"map": 0.3, "mcov": 0.6})


def write_fold(root: Path, name: str, gt: np.ndarray, pred: ScenePrediction) -> tuple[Path, Path]:
    pred_dir, gt_dir = root / name / "pred", root / name / "gt"
    (pred_dir / "masks").mkdir(parents=True)
    write_gt_file(gt_dir / f"{name}_office_1.txt", gt)
    lines = []
    for i, (mask, cid, score) in enumerate(zip(pred.masks, pred.class_ids, pred.scores)):
        np.savetxt(pred_dir / "masks" / f"{i}.txt", mask.astype(int), fmt="%d")
        lines.append(f"masks/{i}.txt {cid} {score}")
    (pred_dir / f"{name}_office_1.txt").write_text("\n".join(lines) + "\n")
    return pred_dir, gt_dir


def test_cli_folds_print_each_fold_the_mean_and_the_pooled_numbers(tmp_path: Path,
                                                                  capsys: pytest.CaptureFixture) -> None:
    gt, pred = room()
    p1, g1 = write_fold(tmp_path, "Area_1", gt, pred)
    p2, g2 = write_fold(tmp_path, "Area_2", gt, ScenePrediction(pred.masks[:1], pred.class_ids[:1], pred.scores[:1]))
    out_json = tmp_path / "folds.json"
    assert evaluate_main([str(p1), str(g1), str(p2), str(g2), "--dataset", "s3dis", "--score-threshold", "0.6",
                          "--json", str(out_json), "--quiet"]) == 0
    text = capsys.readouterr().out
    assert "== fold 1:" in text and "== fold 2:" in text
    assert "== pooled over all rooms of the 2 folds (2 scenes)" in text
    assert "== mean of the 2 folds" in text and "score >= 0.6" in text
    summary = json.loads(out_json.read_text())
    assert summary["pooled"]["num_scenes"] == 2 and len(summary["folds"]) == 2
    assert summary["mean_of_folds"]["mcov"] == pytest.approx(np.mean([f["mcov"] for f in summary["folds"]]))
    assert evaluate_main([str(p1), str(g1), str(p2), "--dataset", "s3dis"]) == 2
    assert "PRED_DIR GT_DIR pairs" in capsys.readouterr().err
