"""ImageSegmentationTask: targets from a batch, predictions at the original size, COCO evaluation."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from pointformer.config import compose_config
from pointformer.image.build import build_image_model, make_image_dataset
from pointformer.image.predictor import model_inputs, predict_images
from pointformer.image.settings import ImageRunSettings
from pointformer.image.task import ImageSegmentationTask, batch_targets

from .shapes_fixture import write_shapes


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    root = tmp_path_factory.mktemp("shapes")
    write_shapes(root, "train", images=4)
    write_shapes(root, "val", images=3, seed=1)
    cfg = compose_config(["experiment=demo_2d", f"data.root={root}", "data.num_classes=2", "data.image_size=32"])
    settings = ImageRunSettings.from_config(cfg)
    val = make_image_dataset(settings.data, "val", train=False, seed=0)
    torch.manual_seed(0)
    model = build_image_model(settings)
    task = ImageSegmentationTask.from_settings(settings, coco_gt=val.coco,
                                               class_to_category_id=val.class_to_category_id)
    return settings, val, model, task


def test_batch_targets_follow_the_masks_and_the_crowd(setup):
    _, val, model, task = setup
    batch = val.collate_fn([val[0], val[1]])
    out = model(*model_inputs(batch))
    targets = batch_targets(out, batch)
    for target, sample, count in zip(targets, batch.samples, out.tokens.counts.tolist()):
        assert target.num_tokens == count
        assert target.instance_class.tolist() == sample.classes.tolist()
        assert float(target.token_weight.sum()) == float((~sample.ignore).sum())
    assert bool(batch.samples[0].ignore.any())  # image 0 of the fixture has a crowd region
    h, w = batch.samples[0].image.shape[-2:]
    assert float(targets[0].token_weight.sum()) < h * w  # the crowd pixels weigh nothing


def test_training_loss_is_finite_with_logs(setup):
    _, val, model, task = setup
    loss, logs = task.training_loss(model, val.collate_fn([val[0], val[2]]))
    assert torch.isfinite(loss) and loss.requires_grad
    assert {"att", "cls"} <= set(logs)


def test_predictions_are_at_the_original_size_and_evaluate_to_coco_ap(setup):
    _, val, model, task = setup
    model.eval()
    batch = val.collate_fn([val[i] for i in range(len(val))])
    predictions = task.predict(model, batch)
    assert [p.image_id for p in predictions] == [s.image_id for s in batch.samples]
    for p, s in zip(predictions, batch.samples):
        assert p.size == s.original_size  # 48 x 48 / 48 x 56, predicted at 32 px
        assert len(p.classes) == len(p.scores) == len(p.rles)
        assert all(tuple(r["size"]) == s.original_size for r in p.rles)
    masks = predict_images(model, batch, task.postprocessor, seed=0)[0].masks  # the same, decoded
    assert masks.dtype == np.bool_ and masks.shape[1:] == batch.samples[0].original_size
    metrics = task.evaluate(batch.gt_ids, predictions, batch.scene_ids)
    assert {"ap", "ap50", "ap75", "table"} <= set(metrics)
    assert 0.0 <= metrics["ap50"] <= 1.0
    json.dumps({k: v for k, v in metrics.items() if k != "table"})
