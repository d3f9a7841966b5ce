"""The instance segmentation task: model + criterion for training, postprocessing + the ScanNet
evaluator for validation. This is the :class:`pointformer.engine.trainer.Task` the trainer runs.
"""
from __future__ import annotations

from typing import Any, Optional, Sequence

import numpy as np
import torch

from pointformer.config import ConfigError, RunSettings
from pointformer.data.collate import SceneBatch
from pointformer.evaluation import EvaluationResult, ScenePrediction, evaluate_scenes
from pointformer.evaluation.seed_coverage import scene_seed_coverage
from pointformer.inference.instances import InstancePrediction
from pointformer.inference.postprocess import Postprocessor
from pointformer.inference.predictor import predict_instances
from pointformer.losses import InstanceCriterion, build_criterion
from pointformer.timing import Stopwatch


class InstanceSegmentationTask:
    """Train with ``criterion``; predict with ``postprocessor``; evaluate with the ScanNet protocol.

    Args:
        criterion: the loss over every decoder stage (``pointformer.losses.build_criterion``).
        postprocessor: per-scene inference rule matching the loss family.
        class_ids: dataset class id (ScanNet: nyu40) of each model class index 0..C-1.
        dataset: evaluation protocol (`pointformer.evaluation.class_set`: "scannet", "scannet200", "s3dis").
        eval_seed: seeds the first FPS query at evaluation, so predictions are reproducible.

    The query count at validation/test time is the model's (``model.decoder.eval_num_queries``).
    """

    def __init__(self, *, criterion: InstanceCriterion, postprocessor: Postprocessor, class_ids: Sequence[int],
                 dataset: str, eval_seed: int) -> None:
        self.criterion = criterion
        self.postprocessor = postprocessor
        self.class_ids = [int(c) for c in class_ids]
        self.dataset = dataset
        self.eval_seed = eval_seed

    @classmethod
    def from_settings(cls, settings: RunSettings, *, class_ids: Sequence[int],
                      assignment_timer: Optional[Stopwatch] = None) -> "InstanceSegmentationTask":
        """The task of a run: its loss's criterion (optionally timing the assignment) and
        postprocessing, the dataset's evaluation protocol and the evaluation seed."""
        try:
            postprocessor = Postprocessor.from_settings(settings.loss)
        except ValueError as exc:
            raise ConfigError(f"loss={settings.loss.name}: {exc}") from None
        return cls(criterion=build_criterion(settings.loss, assignment_timer=assignment_timer),
                   postprocessor=postprocessor, class_ids=class_ids, dataset=settings.data.dataset,
                   eval_seed=settings.eval.seed)

    def training_loss(self, model: torch.nn.Module, batch: SceneBatch) -> tuple[torch.Tensor, dict[str, float]]:
        out = model(batch)
        losses = self.criterion(out.layers, out.query_seed_token, batch.targets, out.token_objectness)
        # the last stage's terms (and objectness) are logged; per-layer terms would flood the progress bar
        logs = {k: float(v) for k, v in losses.items() if k != "loss" and "/" not in k}
        seeds = out.query_seed_token
        if seeds and all(bool((s >= 0).all()) for s in seeds):  # seeded queries: share of GT holding a seed
            covered = [scene_seed_coverage(s, t.token_instance, t.token_weight).seeded
                       for s, t in zip(seeds, batch.targets)]
            hits = np.concatenate(covered) if covered else np.zeros(0, dtype=bool)
            if hits.size:
                logs["seed_coverage"] = float(hits.mean())
        return losses["loss"], logs

    def predict_instances(self, model: torch.nn.Module,
                          batch: SceneBatch) -> list[tuple[InstancePrediction, torch.Tensor]]:
        """Per scene: (InstancePrediction over tokens, scene-local token of every point long [P_b]);
        the same forward pass and postprocessing as ``Predictor`` (``inference.predictor.predict_instances``)."""
        return predict_instances(model, batch, self.postprocessor, seed=self.eval_seed)

    def predict(self, model: torch.nn.Module, batch: SceneBatch) -> list[ScenePrediction]:
        """One ScenePrediction per scene over its points (masks kept per superpoint: M x S, not M x V)."""
        return [instances.to_scene_prediction(point_tokens, self.class_ids)
                for instances, point_tokens in self.predict_instances(model, batch)]

    def evaluate_result(self, gt_ids: Sequence[np.ndarray], predictions: Sequence[ScenePrediction],
                        scene_ids: Sequence[str]) -> EvaluationResult:
        """The evaluator's full result (table, CSV) for a split's predictions."""
        return evaluate_scenes(list(gt_ids), list(predictions), dataset=self.dataset, scene_names=list(scene_ids))

    def evaluate(self, gt_ids: Sequence[np.ndarray], predictions: Sequence[ScenePrediction],
                 scene_ids: Sequence[str]) -> dict[str, Any]:
        """Metrics dict for logging: map, map50, map25, per-class ap/ap50/ap25, the printed table."""
        result = self.evaluate_result(gt_ids, predictions, scene_ids)
        metrics = result.as_dict()
        metrics["table"] = result.table()
        metrics["num_predictions"] = int(sum(len(p.scores) for p in predictions))
        return metrics
