"""Prediction with a trained model: checkpoint → settings → model + postprocessing → instances.

The composition root of prediction: :meth:`Predictor.from_checkpoint` reads the checkpoint's stored
config once into :class:`~pointformer.config.RunSettings` and builds the model and the postprocessor
from it. A predictor runs whole splits of a preprocessed dataset (evaluation, export) and single scans
given as arrays (``pointformer infer``). :func:`predict_instances` is the one forward pass +
postprocessing of a batch, shared with validation during training (``engine.task``).
"""
from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional, Sequence

import numpy as np
import torch
from torch import Tensor, nn

from pointformer.build import build_model, check_classes, make_dataset
from pointformer.config import ConfigError, RunSettings, apply_overrides
from pointformer.config.compose import load_config_yaml
from pointformer.data.collate import SceneBatch, collate_scenes
from pointformer.data.dataset import PreprocessedDataset, SceneSample
from pointformer.data.targets import superpoint_targets
from pointformer.data.transforms import PointSample, build_transforms
from pointformer.evaluation import EvaluationResult, ScenePrediction, class_set, evaluate_scenes
from pointformer.inference.instances import InstancePrediction, PointInstances, point_instances
from pointformer.inference.postprocess import Postprocessor
from pointformer.inference.reseed import Reseeder
from pointformer.io.checkpoint import CheckpointError, load_checkpoint
from pointformer.preprocess.cloud_segmentator import cell_superpoints


@torch.no_grad()
def predict_instances(model: nn.Module, batch: SceneBatch, postprocessor: Postprocessor, *,
                      seed: int, reseeder: Optional[Reseeder] = None) -> list[tuple[InstancePrediction, Tensor]]:
    """The model's instances for every scene of ``batch`` (already on the model's device).

    ``seed`` seeds the first FPS query, so predictions are reproducible; the query count is the
    model's evaluation count (``model.decoder.eval_num_queries``). ``reseeder``: a coverage-driven
    re-seeding pass (``pointformer.inference.reseed``) that adds instances, never removes one.
    Returns per scene: (InstancePrediction over its P_b tokens, scene-local token of every point long [V_b]).
    """
    generator = torch.Generator(device=batch.xyz.device)
    generator.manual_seed(seed)
    out = model(batch, generator=generator)
    final = out.final
    weights = out.tokens.split(out.tokens.weights)
    point_tokens = out.scene_point_to_token()
    scenes = []
    for b in range(out.batch_size):
        background = None if final.background_logits is None else final.background_logits[b].float()
        scenes.append(postprocessor(final.mask_logits[b].float(), background, final.class_logits[b].float(),
                                    weights[b].float()))
    if reseeder is not None:
        scenes = reseeder(model, out, scenes, postprocessor)
    return list(zip(scenes, point_tokens))


@dataclass
class PredictedScene:
    """One scene of a predicted split.

    gt_ids: int [V] benchmark GT ids (label*1000+instance), None for an unlabelled (test) split;
    prediction: instances over the V points; num_mesh_vertices: the source mesh's vertex count.
    """

    scene_id: str
    gt_ids: Optional[np.ndarray]
    prediction: ScenePrediction
    num_mesh_vertices: int


class Predictor:
    """A trained model with its run settings and postprocessing, in eval mode on its device.

    Args:
        settings: the run's settings (data: colour statistics, features, dataset; eval: seed).
        model: the trained model (moved to eval mode here).
        step: the training step of the weights (for messages), when known.
    """

    def __init__(self, settings: RunSettings, model: nn.Module, *, step: Optional[int] = None) -> None:
        self.settings = settings
        self.model = model.eval()
        self.step = step
        try:
            self.postprocessor = Postprocessor.from_settings(settings.loss)
        except ValueError as exc:
            raise ConfigError(f"loss={settings.loss.name}: {exc}") from None

    @classmethod
    def from_checkpoint(cls, path: str | os.PathLike, overrides: Sequence[str] = (), *,
                        device: str = "auto") -> "Predictor":
        """Load a checkpoint (``weights_only``) and build its model from the stored config.

        Args:
            overrides: ``key=value`` changes of plain keys of the stored config (e.g. ``data.root=...``,
                ``model.decoder.eval_num_queries=150``); the model and loss groups are fixed.
            device: "auto" (CUDA when available), "cuda" or "cpu".
        Raises CheckpointError (bad file, weights that do not fit) or ConfigError (bad overrides).
        """
        payload = load_checkpoint(path)
        settings = RunSettings.from_config(apply_overrides(load_config_yaml(payload["config"]), overrides))
        model = build_model(settings)
        try:
            model.load_state_dict(payload["model"])
        except RuntimeError as exc:
            raise CheckpointError(f"{path}: weights do not fit the model of the stored config (was an override "
                                  f"of model.* given?): {str(exc).splitlines()[0]}") from None
        use_cuda = torch.cuda.is_available() and device in ("auto", "cuda")
        return cls(settings, model.to("cuda" if use_cuda else "cpu"), step=int(payload["step"]))

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    def predict_batch(self, batch: SceneBatch, class_ids: Sequence[int]) -> list[ScenePrediction]:
        """Instances over the points of every scene of ``batch`` (moved to the model's device here);
        ``class_ids``: dataset class id of each model class."""
        return [instances.to_scene_prediction(point_tokens, class_ids)
                for instances, point_tokens in predict_instances(self.model, batch.to(self.device), self.postprocessor,
                                                                 seed=self.settings.eval.seed)]

    def dataset(self, split: str, *, data_root: Optional[str | os.PathLike] = None,
                limit: Optional[int] = None) -> PreprocessedDataset:
        """A split of the run's dataset (or of the same kind of dataset under ``data_root``) with the
        evaluation transforms."""
        data = self.settings.data
        if data_root is not None:
            data = dataclasses.replace(data, root=Path(data_root))
        return make_dataset(data, split, train=False, seed=self.settings.trainer.seed, limit=limit)

    def predict_split(self, split: str, *, data_root: Optional[str | os.PathLike] = None,
                      limit: Optional[int] = None, progress: bool = True
                      ) -> tuple[PreprocessedDataset, list[PredictedScene]]:
        """Predict every scene of a preprocessed split (optionally the first ``limit``), in order."""
        from torch.utils.data import DataLoader

        dataset = self.dataset(split, data_root=data_root, limit=limit)
        class_ids = check_classes(self.settings, dataset)
        loader: Any = DataLoader(dataset, batch_size=1, shuffle=False, collate_fn=collate_scenes)
        if progress:
            from tqdm import tqdm

            loader = tqdm(loader, desc=f"predict {split}", dynamic_ncols=True)
        results = []
        for batch in loader:
            predictions = self.predict_batch(batch, class_ids)
            results.extend(PredictedScene(*scene) for scene in zip(batch.scene_ids, batch.gt_ids, predictions,
                                                                       batch.num_mesh_vertices))
        return dataset, results

    def evaluate(self, scenes: Sequence[PredictedScene]) -> EvaluationResult:
        """The evaluation protocol of the run's dataset over labelled predicted scenes."""
        unlabelled = [s.scene_id for s in scenes if s.gt_ids is None]
        if unlabelled:
            raise ValueError(f"scene {unlabelled[0]} has no ground truth (a test split?); evaluate a labelled split")
        return evaluate_scenes([s.gt_ids for s in scenes], [s.prediction for s in scenes],
                               dataset=self.settings.data.dataset, scene_names=[s.scene_id for s in scenes])

    def predict_scan(self, xyz: np.ndarray, rgb: np.ndarray, *, normals: Optional[np.ndarray] = None,
                     superpoint: Optional[np.ndarray] = None, cell: float = 0.1, min_points: int = 1,
                     class_ids: Optional[Sequence[int]] = None,
                     class_names: Optional[Sequence[str]] = None) -> PointInstances:
        """Instances of one scan given as arrays, with the run's evaluation transforms.

        Args:
            xyz: float [V, 3] metres, z up; rgb: uint8 [V, 3]; normals: float [V, 3] (None: zeros).
            superpoint: int [V] superpoint of every point (None: ``cell``-metre cubes).
            min_points: instances owning fewer points are dropped.
            class_ids, class_names: dataset id and name of each model class (None: the evaluated
                classes of the run's dataset).
        Returns: one instance id per point, with the instances' classes and scores.
        """
        xyz = np.asarray(xyz)
        v = xyz.shape[0]
        for name, array in (("rgb", rgb), ("normals", normals), ("superpoint", superpoint)):
            if array is not None and np.shape(array)[0] != v:
                raise ValueError(f"{name} has {np.shape(array)[0]} rows but xyz has {v} points")
        if class_ids is None:
            classes = class_set(self.settings.data.dataset)
            class_ids, class_names = classes.ids, classes.names
        if len(class_ids) != self.settings.model.num_classes:
            raise ValueError(f"{len(class_ids)} class ids given but the model has {self.settings.model.num_classes} "
                             f"classes")
        normals = np.zeros_like(xyz, dtype=np.float32) if normals is None else normals
        superpoint = cell_superpoints(xyz, cell) if superpoint is None else superpoint
        data = self.settings.data
        transform = build_transforms(train=False, color_mean=list(data.color_mean), color_std=list(data.color_std))
        sample = transform(PointSample(xyz=xyz.astype(np.float32), rgb=np.asarray(rgb).astype(np.float32),
                                       normals=np.asarray(normals).astype(np.float32)), np.random.default_rng(0))
        channels = {"rgb": sample.rgb, "normals": sample.normals}
        features = np.concatenate([channels[f] for f in data.features], axis=1).astype(np.float32)
        superpoint = np.unique(superpoint, return_inverse=True)[1].reshape(-1)  # contiguous 0..S-1
        unlabelled = superpoint_targets(superpoint, np.full(v, -1, np.int16), np.zeros(v, np.int32), thing_classes=[])
        batch = collate_scenes([SceneSample(scene_id="scan", index=0, xyz=sample.xyz, features=features,
                                            superpoint=superpoint.astype(np.int64), targets=unlabelled, gt_ids=None,
                                            num_mesh_vertices=v)])
        prediction = self.predict_batch(batch, class_ids)[0]
        return point_instances(prediction, min_points=min_points,
                               class_names=dict(zip(class_ids, class_names or [str(c) for c in class_ids])))
