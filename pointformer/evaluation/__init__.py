"""ScanNet-protocol 3D instance evaluation (AP over IoU 0.50:0.90, AP50, AP25; S3DIS precision/recall).

In memory::

    from pointformer.evaluation import ScenePrediction, evaluate_scenes
    result = evaluate_scenes(gt_ids_per_scene, predictions_per_scene, dataset="scannet")
    print(result.table()); result.to_csv("eval.csv"); result.map50

From files (the official contract): :func:`evaluate_folders` or ``pointformer evaluate PRED GT``.
"""
from pointformer.evaluation.average_precision import scannet_average_precision
from pointformer.evaluation.files import (EvaluationInputError, evaluate_folders, read_gt_ids, read_mask_file,
                                          read_prediction_file)
from pointformer.evaluation.overlaps import SceneOverlaps, compute_scene_overlaps
from pointformer.evaluation.prediction import ScenePrediction, SegmentMasks
from pointformer.evaluation.protocol import IOU_THRESHOLDS, MIN_REGION_SIZE, ClassSet, class_set
from pointformer.evaluation.result import EvaluationResult
from pointformer.evaluation.evaluator import ScanNetEvaluator, evaluate_scenes
from pointformer.io.gt import write_gt_file  # the one GT writer, part of the evaluation's file contract

__all__ = [
    "ClassSet", "EvaluationInputError", "EvaluationResult", "IOU_THRESHOLDS", "MIN_REGION_SIZE",
    "ScanNetEvaluator", "SceneOverlaps", "ScenePrediction", "SegmentMasks", "class_set",
    "compute_scene_overlaps", "evaluate_folders", "evaluate_scenes", "read_gt_ids", "read_mask_file",
    "read_prediction_file", "scannet_average_precision", "write_gt_file",
]
