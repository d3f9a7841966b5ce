"""The one conversion from query masks to instances over points (validation, export, infer, demo)."""
from __future__ import annotations

import numpy as np
import torch

from pointformer.evaluation import ScenePrediction, SegmentMasks
from pointformer.inference.instances import InstancePrediction, point_instances


def test_overlapping_masks_go_to_the_best_score_and_small_ones_drop():
    # 3 masks over 6 points; mask 2 (best) overlaps mask 0 on points 1-2; mask 1 keeps one point only.
    masks = np.array([[1, 1, 1, 0, 0, 0],
                      [0, 0, 0, 1, 0, 0],
                      [0, 1, 1, 0, 1, 0]], dtype=bool)
    pred = ScenePrediction(masks, np.array([5, 7, 9]), np.array([0.5, 0.2, 0.9]))
    out = point_instances(pred, class_names={9: "nine", 5: "five"})
    assert out.instance.tolist() == [2, 1, 1, 3, 1, 0]  # ids 1..K by descending score
    assert out.class_ids.tolist() == [9, 5, 7] and out.class_names == ["nine", "five", "7"]
    assert out.scores.tolist() == [0.9, 0.5, 0.2] and out.num_points.tolist() == [3, 1, 1]
    assert out.instance.dtype == np.int32
    kept = point_instances(pred, min_points=2)
    assert kept.instance.tolist() == [0, 1, 1, 0, 1, 0] and kept.class_ids.tolist() == [9]


def test_a_mask_that_owns_nothing_is_dropped_and_empty_predictions_work():
    masks = np.array([[1, 1, 0], [1, 0, 0]], dtype=bool)  # mask 1 is inside the better mask 0
    out = point_instances(ScenePrediction(masks, np.array([3, 4]), np.array([0.8, 0.3])))
    assert out.instance.tolist() == [1, 1, 0] and out.class_ids.tolist() == [3]
    empty = point_instances(ScenePrediction.empty(4))
    assert empty.instance.tolist() == [0, 0, 0, 0] and empty.num_points.shape == (0,)


def test_token_instances_to_scene_prediction_and_per_point_ids_agree():
    # tokens -> points through token_index; SegmentMasks when every point has a token
    token_masks = torch.tensor([[True, False, True], [False, True, True]])
    instances = InstancePrediction(token_masks, torch.tensor([1, 0]), torch.tensor([0.7, 0.6]), torch.tensor([0, 1]))
    token_index = torch.tensor([0, 1, 2, 2, 1])
    pred = instances.to_scene_prediction(token_index, (3, 4))
    assert isinstance(pred.masks, SegmentMasks)
    assert pred.dense_masks().tolist() == [[True, False, True, True, False], [False, True, True, True, True]]
    assert pred.class_ids.tolist() == [4, 3]
    assert point_instances(pred).instance.tolist() == [1, 2, 1, 1, 2]
    dropped = instances.to_scene_prediction(torch.tensor([0, -1, 2]), (3, 4))  # a point without a token
    assert isinstance(dropped.masks, np.ndarray) and dropped.dense_masks()[:, 1].tolist() == [False, False]
