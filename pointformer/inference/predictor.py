"""Prediction with a trained model: checkpoint → settings → model + postprocessing → instances.

The composition root of prediction: :meth:`Predictor.from_checkpoint` reads the checkpoint's stored
config once into :class:`~pointformer.config.RunSettings` and builds the model and the postprocessor
from it. A predictor runs whole splits of a preprocessed dataset (evaluation, export) and single scans
given as arrays: :meth:`Predictor.predict` takes a scan of any size (tiles, merged instances,
:mod:`pointformer.inference.tiling`) and is what ``pointformer infer`` runs; :meth:`Predictor.predict_scan`
is one untiled pass. :func:`predict_instances` is the one forward pass + postprocessing of a batch,
shared with validation during training (``engine.task``).

Input features are the checkpoint's contract: the stored ``data.features`` (``rgb``, ``normals``) say
what the model reads; :meth:`Predictor.predict` refuses a scan without colour for a model that reads
colour (:class:`MissingFeatureError`) and estimates normals (kNN PCA) for a cloud that has none.
"""
from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional, Sequence, Union

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
from pointformer.io.checkpoint import load_checkpoint, load_model_weights
from pointformer.io.predictions import PredictedInstance
from pointformer.inference.tiling import predict_tiled, voxel_units
from pointformer.preprocess.cloud_segmentator import cell_superpoints, cloud_normals, segment_cloud

SUPERPOINT_METHODS = ("knn", "cells")
# ``num_queries="all"``: one seeded query per token (the decoder caps any count at the scene's tokens)
ALL_QUERIES = "all"
# ``Predictor.predict`` defaults: what the model's decoder was built for (:meth:`Predictor.scan_defaults`)
AUTO = "auto"
QueryCount = Optional[Union[int, str]]


def resolve_query_count(num_queries: QueryCount) -> Optional[int]:
    """``None`` (the model's evaluation count), a positive int, or ``"all"`` (every token a seed) -> the
    decoder's ``num_queries`` argument."""
    if num_queries is None:
        return None
    if num_queries == ALL_QUERIES:
        return 2**31 - 1
    if isinstance(num_queries, bool) or not isinstance(num_queries, int) or num_queries < 1:
        raise ValueError(f"num_queries must be a positive integer, 'all' or None, got {num_queries!r}")
    return num_queries


class MissingFeatureError(ValueError):
    """A scan lacks an input feature the checkpoint's model reads (message names feature, scan and checkpoint)."""


@dataclass
class ScanInstances:
    """The instances of one scan of N points (what :meth:`Predictor.predict` returns).

    instance_ids int32 [N]: the instance of every point (index into ``instances``), -1 = none;
    class_ids int32 [N]: the dataset class id of every point's instance, -1 = none;
    instances: K instances by descending score; features: the model's input features;
    tiles: the tiling used (None: one pass); superpoints: how the superpoints were made.
    """

    instance_ids: np.ndarray
    class_ids: np.ndarray
    instances: list[PredictedInstance]
    features: tuple[str, ...]
    tiles: Optional[dict]
    superpoints: str

    @property
    def num_points(self) -> int:
        return int(self.instance_ids.shape[0])

    def mask(self, instance: int) -> np.ndarray:
        """bool [N]: the points of instance ``instance`` (0..K-1)."""
        if not 0 <= instance < len(self.instances):
            raise IndexError(f"instance {instance} out of range 0..{len(self.instances) - 1}")
        return self.instance_ids == instance

    def masks(self) -> np.ndarray:
        """bool [K, N]: every instance's points (K x N bytes: prefer :meth:`mask` on large scans)."""
        return self.instance_ids[None, :] == np.arange(len(self.instances), dtype=np.int32)[:, None]


@torch.no_grad()
def predict_instances(model: nn.Module, batch: SceneBatch, postprocessor: Postprocessor, *,
                      seed: int, reseeder: Optional[Reseeder] = None,
                      query_radius: Optional[float] = None,
                      num_queries: QueryCount = None) -> list[tuple[InstancePrediction, Tensor]]:
    """The model's instances for every scene of ``batch`` (already on the model's device).

    ``seed`` seeds the first FPS query, so predictions are reproducible; the query count is the
    model's evaluation count (``model.decoder.eval_num_queries``). ``reseeder``: a coverage-driven
    re-seeding pass (``pointformer.inference.reseed``) that adds instances, never removes one.
    ``query_radius`` (metres; seeded queries): a query can own only tokens within this distance of its seed
    token (None: any token of the scene, as in training and evaluation). ``num_queries``: queries per scene,
    ``"all"`` = one per token (seeded queries; None: the model's evaluation count).
    Returns per scene: (InstancePrediction over its P_b tokens, scene-local token of every point long [V_b]).
    """
    if query_radius is not None and not query_radius > 0:
        raise ValueError(f"query_radius must be a positive number of metres, got {query_radius}")
    generator = torch.Generator(device=batch.xyz.device)
    generator.manual_seed(seed)
    out = model(batch, generator=generator, num_queries=resolve_query_count(num_queries))
    final = out.final
    weights = out.tokens.split(out.tokens.weights)
    positions = out.tokens.split(out.tokens.positions)
    point_tokens = out.scene_point_to_token()
    scenes = []
    for b in range(out.batch_size):
        background = None if final.background_logits is None else final.background_logits[b].float()
        mask_logits = final.mask_logits[b].float()
        if query_radius is not None:
            # the mask logits are dot products of a query with token features, blind to where the token is:
            # a query would also claim look-alike objects anywhere in the scene (e.g. the chairs of every room)
            seeds = out.query_seed_token[b]
            if (seeds < 0).any():
                raise ValueError("query_radius needs seeded queries (query_init='seeded')")
            far = torch.cdist(positions[b][seeds].float(), positions[b].float()) > query_radius  # [Q, P]
            mask_logits = mask_logits.masked_fill(far, -1e4)
        scenes.append(postprocessor(mask_logits, background, final.class_logits[b].float(), weights[b].float()))
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

    def __init__(self, settings: RunSettings, model: nn.Module, *, step: Optional[int] = None,
                 checkpoint: Optional[Path] = None) -> None:
        self.settings = settings
        self.model = model.eval()
        self.step = step
        self.checkpoint = checkpoint
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
        model = load_model_weights(build_model(settings), payload, path, device=device,
                                   hint=" (was an override of model.* given?)")
        return cls(settings, model, step=int(payload["step"]), checkpoint=Path(path))

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    def predict_batch(self, batch: SceneBatch, class_ids: Sequence[int], *,
                      query_radius: Optional[float] = None, num_queries: QueryCount = None) -> list[ScenePrediction]:
        """Instances over the points of every scene of ``batch`` (moved to the model's device here);
        ``class_ids``: dataset class id of each model class; ``query_radius``, ``num_queries``:
        :func:`predict_instances`."""
        return [instances.to_scene_prediction(point_tokens, class_ids)
                for instances, point_tokens in predict_instances(self.model, batch.to(self.device), self.postprocessor,
                                                                 seed=self.settings.eval.seed,
                                                                 query_radius=query_radius, num_queries=num_queries)]

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
                     class_ids: Optional[Sequence[int]] = None, class_names: Optional[Sequence[str]] = None,
                     centre_grid: Optional[float] = None, query_radius: Optional[float] = None,
                     num_queries: QueryCount = None) -> PointInstances:
        """Instances of one scan given as arrays, with the run's evaluation transforms.

        Args:
            xyz: float [V, 3] metres, z up; rgb: uint8 [V, 3]; normals: float [V, 3] (None: zeros).
            superpoint: int [V] superpoint of every point (None: ``cell``-metre cubes).
            min_points: instances owning fewer points are dropped.
            class_ids, class_names: dataset id and name of each model class (None: the evaluated
                classes of the run's dataset).
            centre_grid: centre the scan by its mean rounded to a multiple of this (metres) instead of its
                mean (:class:`~pointformer.data.transforms.CenterScene`); None: as the dataset's scenes.
            query_radius, num_queries: :func:`predict_instances`.
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
        transform = build_transforms(train=False, color_mean=list(data.color_mean), color_std=list(data.color_std),
                                     centre_grid=centre_grid)
        sample = transform(PointSample(xyz=xyz.astype(np.float32), rgb=np.asarray(rgb).astype(np.float32),
                                       normals=np.asarray(normals).astype(np.float32)), np.random.default_rng(0))
        channels = {"rgb": sample.rgb, "normals": sample.normals}
        features = np.concatenate([channels[f] for f in data.features], axis=1).astype(np.float32)
        superpoint = np.unique(superpoint, return_inverse=True)[1].reshape(-1)  # contiguous 0..S-1
        unlabelled = superpoint_targets(superpoint, np.full(v, -1, np.int16), np.zeros(v, np.int32), thing_classes=[])
        batch = collate_scenes([SceneSample(scene_id="scan", index=0, xyz=sample.xyz, features=features,
                                            superpoint=superpoint.astype(np.int64), targets=unlabelled, gt_ids=None,
                                            num_mesh_vertices=v)])
        prediction = self.predict_batch(batch, class_ids, query_radius=query_radius, num_queries=num_queries)[0]
        return point_instances(prediction, min_points=min_points,
                               class_names=dict(zip(class_ids, class_names or [str(c) for c in class_ids])))

    def check_features(self, available: Sequence[str], source: str = "the scan") -> None:
        """Raise MissingFeatureError unless ``available`` (of ``rgb``, ``normals``, ...) covers the model's
        input features; normals count as available for any scan (they are estimated when missing)."""
        features = self.settings.data.features
        have = set(available) | {"normals"}
        for feature in features:
            if feature not in have:
                what = "colour (rgb)" if feature == "rgb" else feature
                raise MissingFeatureError(
                    f"{source} has no {what}, but the checkpoint {self.checkpoint or '(in memory)'} was trained with "
                    f"the input features {list(features)}: it would see made-up values. Use a checkpoint trained "
                    f"without it, e.g. data.features=[normals] data.in_channels=3 (docs/inference.md)")

    def scan_defaults(self) -> tuple[QueryCount, Optional[float]]:
        """``(num_queries, query_radius)`` that :meth:`predict` uses for ``"auto"``.

        A decoder with seed-relative positions (``position_encoding: relative``) gets one query per superpoint,
        so that the seeds do not depend on how the scan is cut, and instances reach as far from their seed as
        its queries see (``attention_radius``; None: no limit). Other decoders keep their evaluation query count
        and no radius (more queries than in training split instances under the ownership form)."""
        decoder = getattr(self.model, "decoder", None)
        if getattr(decoder, "position_encoding", "scene") != "relative":
            return None, None
        return ALL_QUERIES, getattr(decoder, "attention_radius", None)

    def predict(self, xyz: np.ndarray, rgb: Optional[np.ndarray] = None, *, normals: Optional[np.ndarray] = None,
                superpoint: Optional[np.ndarray] = None, tile_size: Optional[float] = 12.0, overlap: float = 4.0,
                superpoints: str = "knn", cell: float = 0.1, min_points: int = 50, merge_iou: float = 0.5,
                progress: bool = False, source: str = "the scan",
                superpoint_name: str = "given", query_radius: Union[float, str, None] = AUTO,
                num_queries: QueryCount = AUTO) -> ScanInstances:
        """Instances of a scan of any size (a room or a building), tile by tile (:mod:`~pointformer.inference.tiling`).

        Args:
            xyz: float [N, 3] metres, z up; float64 georeferenced coordinates are fine (a float64 origin is
                subtracted before anything becomes float32).
            rgb: uint8 [N, 3] or None (refused when the model reads colour); normals: float [N, 3] or None
                (estimated by kNN PCA per tile when the model reads normals).
            superpoint: int [N] (e.g. a mesh's segmentator ids) or None: made per tile by ``superpoints``,
                "knn" (the kNN-graph segmentator) or "cells" (``cell``-metre cubes).
            tile_size, overlap: square tiles in metres (x-y) and their overlap; None: one pass.
            min_points: instances with fewer points are dropped; merge_iou: the band IoU that joins tile instances.
            query_radius: metres; an instance reaches at most this far from its query's seed token (None: no
                limit; ``"auto"``: :meth:`scan_defaults`). Without it a query of one room may also claim
                look-alike objects of other rooms in the same tile or pass (docs/inference.md).
            num_queries: queries per tile: None = the model's evaluation count; ``"all"`` = one per superpoint,
                so that seeds do not depend on how the scan is cut; ``"auto"``: :meth:`scan_defaults`.
            source: the scan's name for messages; superpoint_name: what made ``superpoint`` (for the description).
        Returns: per-point instance and class ids (-1 = none) and the instances, by descending score.
        Raises MissingFeatureError, or ValueError for arrays of the wrong shape.
        """
        auto_queries, auto_radius = self.scan_defaults()
        num_queries = auto_queries if num_queries == AUTO else num_queries
        query_radius = auto_radius if query_radius == AUTO else query_radius
        resolve_query_count(num_queries)  # a bad count fails before any work
        xyz = np.asarray(xyz)
        if xyz.ndim != 2 or xyz.shape[1] != 3 or xyz.shape[0] == 0:
            raise ValueError(f"{source}: xyz must have shape [N, 3] with N > 0, got {xyz.shape}")
        n = xyz.shape[0]
        for name, array in (("rgb", rgb), ("normals", normals), ("superpoint", superpoint)):
            if array is not None and np.shape(array)[0] != n:
                raise ValueError(f"{source}: {name} has {np.shape(array)[0]} rows but xyz has {n} points")
        if superpoints not in SUPERPOINT_METHODS:
            raise ValueError(f"superpoints must be one of {SUPERPOINT_METHODS}, got {superpoints!r}")
        self.check_features([name for name, a in (("rgb", rgb), ("normals", normals)) if a is not None], source)
        data = self.settings.data
        classes = class_set(data.dataset)
        names = dict(zip(classes.ids, classes.names))
        units = voxel_units(xyz, self.settings.model.voxel_size, rgb=rgb if "rgb" in data.features else None,
                            normals=normals if "normals" in data.features else None, superpoint=superpoint)
        # a float64 origin off the (few) unit means before anything becomes float32: georeferenced coordinates
        # keep their precision, and no shifted copy of the whole scan is made. The origin is the units' own
        # grid origin (the scan's minimum), and every tile is centred by a multiple of the model's translation
        # period: a unit falls in the same model voxel, and the backbone's strided convolutions group the same
        # voxels, in every tile and in one pass, so tiles and one pass see the same features (measured:
        # BENCHMARKS.md, "Inference on large scans")
        units.xyz -= xyz.min(axis=0).astype(np.float64)
        period = getattr(self.model, "translation_period", None)  # None: a model that does not say it
        # Normals and superpoints of a bare cloud are estimated once for the whole scan (on its voxel units,
        # ~0.1 GB per million units), not per tile: per tile they changed with the cut (PCA normals facing each
        # tile's centre, segments merged differently near the borders), and with them the instances
        # (BENCHMARKS.md, "Inference on large scans"). Normals face the scan's centre (a room seen from inside).
        if "normals" in data.features and units.normals is None:
            units.normals = cloud_normals(units.xyz.astype(np.float32))
        scan_superpoint = units.superpoint
        if scan_superpoint is None:
            scan_superpoint = (segment_cloud(units.xyz.astype(np.float32)) if superpoints == "knn"
                               else cell_superpoints(units.xyz, cell))
        num_superpoints = int(np.unique(scan_superpoint).size)

        def predict_tile(sel: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
            txyz = units.xyz[sel].astype(np.float32)
            tnormals = units.normals[sel] if "normals" in data.features else None
            tsp = scan_superpoint[sel]
            trgb = units.rgb[sel] if units.rgb is not None else np.zeros((sel.size, 3), np.float32)
            result = self.predict_scan(txyz, trgb, normals=tnormals, superpoint=tsp, min_points=1,
                                       class_ids=classes.ids, class_names=classes.names, centre_grid=period,
                                       query_radius=query_radius, num_queries=num_queries)
            return result.instance.astype(np.int32) - 1, result.scores, np.asarray(result.class_ids, dtype=np.int64)

        merged, grid = predict_tiled(units.xyz[:, :2], units.count, predict_tile, tile_size=tile_size,
                                     overlap=overlap, merge_iou=merge_iou, min_points=min_points, progress=progress)
        instance_ids = merged.unit_instance[units.point_unit]
        class_of = np.append(merged.class_ids, -1).astype(np.int32)  # index -1 -> the appended -1
        instances = [PredictedInstance(id=i, class_id=int(c), class_name=names.get(int(c), str(int(c))), score=float(s),
                              num_points=int(k))
                     for i, (c, s, k) in enumerate(zip(merged.class_ids, merged.scores, merged.num_points))]
        method = (superpoint_name if superpoint is not None else
                  "kNN segmentator" if superpoints == "knn" else f"{cell} m cells")
        return ScanInstances(instance_ids=instance_ids, class_ids=class_of[instance_ids], instances=instances,
                             features=tuple(data.features), tiles=grid.describe(),
                             superpoints=f"{method} ({num_superpoints} superpoints over {units.num_units} "
                                         f"{self.settings.model.voxel_size} m voxels)")
