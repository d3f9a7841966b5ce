"""Matching-free inference: ownership argmax, Mask3D's sigmoid rule, token -> point masks."""
from __future__ import annotations

import pytest
import torch

from pointformer.config import LossSettings
from pointformer.inference.instances import InstancePrediction, token_masks_to_points
from pointformer.inference.postprocess import (
    Postprocessor,
    mask_nms,
    postprocess_ownership,
    postprocess_scene,
    postprocess_sigmoid,
)


def _ownership_case():
    # 3 queries, 8 tokens: q0 owns tokens 0-2, q1 owns 3-4, q2 owns token 5 only, background owns 6-7.
    n, p = 3, 8
    mask = torch.full((n, p), -5.0)
    bg = torch.full((p,), -5.0)
    mask[0, 0:3] = 5.0
    mask[1, 3:5] = 5.0
    mask[2, 5] = 5.0
    bg[6:] = 5.0
    mask[0, 2] = 1.0  # a less certain token of q0
    cls = torch.tensor([[4.0, 0.0, 0.0], [0.0, 3.0, 0.0], [2.0, 0.0, 0.0]])  # C = 2 + no-object
    return mask, bg, cls


def test_ownership_masks_are_the_argmax_partition_and_scores_follow_the_rule():
    mask, bg, cls = _ownership_case()
    weight = torch.tensor([1.0, 1.0, 2.0, 1.0, 1.0, 1.0, 1.0, 1.0])
    pred = postprocess_ownership(mask, bg, cls, weight)
    assert len(pred) == 3
    assert int(pred.masks.sum(0).max()) == 1  # disjoint
    by_query = {int(q): i for i, q in enumerate(pred.query_index)}
    assert pred.masks[by_query[0]].tolist() == [True, True, True, False, False, False, False, False]
    pi = torch.softmax(torch.cat([bg[None], mask]), 0)
    prob = torch.softmax(cls, 1)
    mean0 = (pi[1, :3] * weight[:3]).sum() / weight[:3].sum()
    assert float(pred.scores[by_query[0]]) == pytest.approx(float(prob[0, 0] * mean0), rel=1e-5)
    assert int(pred.class_index[by_query[1]]) == 1
    assert (pred.scores[:-1] >= pred.scores[1:]).all()  # sorted


def test_ownership_min_size_uses_token_weight_and_classes_per_mask():
    mask, bg, cls = _ownership_case()
    weight = torch.tensor([10.0, 10, 10, 10, 10, 150, 1, 1])
    pred = postprocess_ownership(mask, bg, cls, weight, min_size=100)
    assert pred.query_index.tolist() == [2]  # only q2's single heavy token passes 100 points
    two = postprocess_ownership(mask, bg, cls, None, classes_per_mask=2)
    assert len(two) == 6
    for q in range(3):
        rows = (two.query_index == q).nonzero().squeeze(1)
        assert sorted(two.class_index[rows].tolist()) == [0, 1]
        assert torch.equal(two.masks[rows[0]], two.masks[rows[1]])


def test_sigmoid_rule_topk_threshold_and_mean_probability():
    mask = torch.tensor([[4.0, 4.0, -4.0, -4.0], [-4.0, 0.5, 3.0, 3.0]])
    cls = torch.tensor([[3.0, 0.0, 0.0], [0.0, 2.0, 1.0]])
    pred = postprocess_sigmoid(mask, cls, topk=4)
    assert len(pred) == 4  # every (query, class) pair with a non-empty mask
    prob = torch.softmax(cls, 1)[:, :2]
    sig = torch.sigmoid(mask)
    top = int(torch.argmax(pred.scores))
    assert int(pred.query_index[top]) == 0 and int(pred.class_index[top]) == 0
    assert float(pred.scores[top]) == pytest.approx(float(prob[0, 0] * sig[0, :2].mean()), rel=1e-5)
    q1 = (pred.query_index == 1).nonzero().squeeze(1)[0]
    assert pred.masks[q1].tolist() == [False, True, True, True]
    assert len(postprocess_sigmoid(mask, cls, topk=1)) == 1


def test_sigmoid_nms_removes_duplicates_of_the_same_class():
    mask = torch.tensor([[4.0, 4.0, 4.0, -4.0], [4.0, 4.0, 4.0, -4.0], [-4.0, -4.0, -4.0, 4.0]])
    cls = torch.tensor([[3.0, -9.0, 0.0], [2.0, -9.0, 0.0], [3.0, -9.0, 0.0]])
    without = postprocess_sigmoid(mask, cls, topk=3)
    with_nms = postprocess_sigmoid(mask, cls, topk=3, nms_iou=0.5)
    assert len(without) == 3 and len(with_nms) == 2
    assert sorted(with_nms.query_index.tolist()) == [0, 2]


def test_mask_nms_weighted_iou():
    masks = torch.tensor([[1, 1, 0], [1, 0, 0], [0, 0, 1]], dtype=torch.bool)
    scores = torch.tensor([0.9, 0.8, 0.7])
    assert mask_nms(masks, scores, torch.tensor([1.0, 1.0, 1.0]), 0.4).tolist() == [0, 2]  # IoU 0.5
    assert mask_nms(masks, scores, torch.tensor([1.0, 9.0, 1.0]), 0.4).tolist() == [0, 1, 2]  # IoU 0.1


def test_token_masks_to_points_and_vertices():
    masks = torch.tensor([[True, False, True], [False, True, False]])
    token_index = torch.tensor([0, 0, 1, 2, -1, 2])
    pts = token_masks_to_points(masks, token_index)
    assert pts.tolist() == [[True, True, False, True, False, True], [False, False, True, False, False, False]]
    # composition: vertices -> points -> tokens
    vertex_point = torch.tensor([5, 4, 0])
    assert token_masks_to_points(pts, vertex_point).tolist() == [[True, False, True], [False, False, False]]
    with pytest.raises(ValueError, match="token_index values"):
        token_masks_to_points(masks, torch.tensor([0, 3]))


@pytest.mark.parametrize("with_unassigned", [False, True])
def test_to_scene_prediction_for_the_evaluator(with_unassigned):
    masks = torch.tensor([[True, False, True], [False, True, False]])
    token_index = torch.tensor([0, 0, 1, 2, -1 if with_unassigned else 1, 2])
    pred = InstancePrediction(masks, torch.tensor([0, 2]), torch.tensor([0.5, 0.4]), torch.tensor([0, 1]))
    sp = pred.to_scene_prediction(token_index, (3, 4, 5))
    assert sp.class_ids.tolist() == [3, 5]
    with pytest.raises(ValueError, match="dataset id"):
        pred.class_ids((3, 4))


def test_empty_predictions_and_dispatch_errors():
    mask = torch.full((2, 5), -9.0)
    bg = torch.full((5,), 9.0)
    cls = torch.zeros(2, 3)
    assert len(postprocess_ownership(mask, bg, cls)) == 0
    assert postprocess_sigmoid(mask, cls).masks.shape == (0, 5)
    with pytest.raises(ValueError, match="activation"):
        postprocess_scene("softmax", mask, bg, cls)
    with pytest.raises(ValueError, match="background_logits"):
        postprocess_scene("ownership", mask, None, cls)
    with pytest.raises(ValueError, match="class_logits"):
        postprocess_sigmoid(mask, torch.zeros(3, 3))
    with pytest.raises(ValueError, match="unknown options"):
        Postprocessor("ownership", {"topk": 5})
    with pytest.raises(ValueError, match="activation must be one of"):
        Postprocessor("softmax")
    post = Postprocessor("sigmoid", {"topk": 5, "nms_iou": None})
    assert len(post(torch.full((2, 5), 9.0), None, cls)) == 4


def _loss_settings(name: str, **postprocess) -> LossSettings:
    return LossSettings(name=name, params={}, term_weights={}, layer_weights=None, objectness_weight=0.0,
                        postprocess=postprocess)


def test_postprocessor_from_settings_takes_the_activation_from_the_loss_registry():
    assert Postprocessor.from_settings(_loss_settings("influencer", min_size=3)) == Postprocessor("ownership",
                                                                                                   {"min_size": 3})
    assert Postprocessor.from_settings(_loss_settings("hungarian", topk=7)).activation == "sigmoid"
    with pytest.raises(ValueError, match="unknown loss"):
        Postprocessor.from_settings(_loss_settings("no_such_loss"))
    with pytest.raises(ValueError, match="unknown options"):
        Postprocessor.from_settings(_loss_settings("influencer", topk=5))  # a sigmoid option
