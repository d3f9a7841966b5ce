"""The 2D instance segmentation task: the shared ``InstanceCriterion`` on image tokens for training,
the shared postprocessing + COCO segm AP for validation. The :class:`pointformer.engine.trainer.Task`
the trainer runs for an image dataset.
"""
from __future__ import annotations

from typing import Any, Optional, Sequence

import torch
from torch import Tensor

from pointformer.image.build import build_postprocessor
from pointformer.image.dataset import ImageBatch
from pointformer.image.evaluation import EncodedPrediction, encode_prediction, evaluate_coco
from pointformer.image.model import ImageSegmentorOutput
from pointformer.image.predictor import model_inputs, predict_images
from pointformer.image.settings import ImageRunSettings
from pointformer.image.tokens import token_targets
from pointformer.inference.postprocess import Postprocessor
from pointformer.losses import InstanceCriterion, TokenTargets, build_criterion
from pointformer.timing import Stopwatch

__all__ = ["batch_targets", "ImageSegmentationTask"]


def batch_targets(out: ImageSegmentorOutput, batch: ImageBatch) -> list[TokenTargets]:
    """Per-image ``TokenTargets`` of the model's tokens (majority instance over non-crowd pixels)."""
    counts = out.tokens.counts.tolist()
    return [token_targets(token_map, count, sample.masks, sample.classes, sample.ignore)
            for token_map, count, sample in zip(out.token_maps, counts, batch.samples)]


class ImageSegmentationTask:
    """Train with ``criterion``; predict with ``postprocessor``; evaluate with COCO segm AP.

    Args:
        criterion: the shared loss over every decoder stage.
        postprocessor: the loss family's inference rule.
        coco_gt: pycocotools ``COCO`` of the validation images (None: ``evaluate`` is unavailable).
        class_to_category_id: COCO category id of each model class 0..C-1.
        eval_seed: seeds the first FPS query at evaluation.
    """

    def __init__(self, *, criterion: InstanceCriterion, postprocessor: Postprocessor, coco_gt: Any,
                 class_to_category_id: Sequence[int], eval_seed: int) -> None:
        self.criterion = criterion
        self.postprocessor = postprocessor
        self.coco_gt = coco_gt
        self.class_to_category_id = [int(c) for c in class_to_category_id]
        self.eval_seed = eval_seed

    @classmethod
    def from_settings(cls, settings: ImageRunSettings, *, coco_gt: Any, class_to_category_id: Sequence[int],
                      assignment_timer: Optional[Stopwatch] = None) -> "ImageSegmentationTask":
        """The task of a 2D run: its loss's criterion (optionally timing the assignment) and postprocessing."""
        return cls(criterion=build_criterion(settings.loss, assignment_timer=assignment_timer),
                   postprocessor=build_postprocessor(settings.loss), coco_gt=coco_gt,
                   class_to_category_id=class_to_category_id, eval_seed=settings.eval.seed)

    def training_loss(self, model: torch.nn.Module, batch: ImageBatch) -> tuple[Tensor, dict[str, float]]:
        images, sizes, superpixels = model_inputs(batch)
        out = model(images, sizes, superpixels)
        losses = self.criterion(out.layers, out.query_seed_token, batch_targets(out, batch), out.token_objectness)
        logs = {k: float(v) for k, v in losses.items() if k != "loss" and "/" not in k}
        return losses["loss"], logs

    def predict(self, model: torch.nn.Module, batch: ImageBatch) -> list[EncodedPrediction]:
        """One prediction per image, masks at the original image size as compressed RLE: the trainer keeps
        a whole split's predictions (boolean masks of a COCO-size split would not fit in memory)."""
        return [encode_prediction(p) for p in predict_images(model, batch, self.postprocessor, seed=self.eval_seed)]

    def evaluate(self, gt_ids: Sequence[Any], predictions: Sequence[EncodedPrediction],
                 scene_ids: Sequence[str]) -> dict[str, Any]:
        """COCO segm AP of the split: ap, ap50, ap75 (in [0, 1]), per-class AP and the printed table."""
        if self.coco_gt is None:
            raise ValueError("this task has no COCO ground truth (no validation split)")
        result = evaluate_coco(self.coco_gt, list(predictions), self.class_to_category_id)
        metrics = dict(result.to_dict())
        metrics["table"] = result.table()
        return metrics
