"""Build datasets, model and task from a composed run config, with clear messages for bad configs."""
from __future__ import annotations

import logging
from pathlib import Path
from typing import Any, Optional

from omegaconf import DictConfig, OmegaConf, open_dict

from pointformer.data.dataset import DatasetConfigError, PreprocessedDataset, compute_color_stats
from pointformer.data.transforms import build_transforms
from pointformer.engine.config import ConfigError, container, optional_path
from pointformer.engine.task import InstanceSegmentationTask

log = logging.getLogger(__name__)


def data_root(cfg: DictConfig) -> Path:
    """``data.root`` as a path; ConfigError when unset or missing on disk."""
    root = optional_path(cfg.data.get("root"))
    if root is None:
        raise ConfigError(
            f"data.root is not set for data={cfg.data.name}: preprocess the dataset first "
            f"(`pointformer preprocess scannet RAW_ROOT OUT_DIR`) and pass data.root=OUT_DIR")
    if not root.is_dir():
        raise ConfigError(f"data.root={str(root)!r} does not exist (run `pointformer preprocess scannet RAW_ROOT {root}` "
                          "or fix the path)")
    return root


def _check_channels(cfg: DictConfig) -> None:
    features = list(cfg.data.features)
    if int(cfg.data.in_channels) != 3 * len(features):
        raise ConfigError(f"data.in_channels={cfg.data.in_channels} but data.features={features} give "
                          f"{3 * len(features)} channels; set data.in_channels={3 * len(features)}")


def make_dataset(cfg: DictConfig, split: str, *, train: bool, limit: Optional[int] = None,
                 transform: Any = None) -> PreprocessedDataset:
    """A split of the configured dataset with the train or eval transform pipeline
    (``transform=False``: raw scenes, no transform)."""
    _check_channels(cfg)
    if transform is None:
        if cfg.data.color_mean is None or cfg.data.color_std is None:
            raise ConfigError("data.color_mean / data.color_std are unset; call resolve_color_stats(cfg) first")
        transform = build_transforms(train=train, color_mean=list(cfg.data.color_mean), color_std=list(cfg.data.color_std),
                                     augment=container(cfg.data.augment) if train else None)
    try:
        return PreprocessedDataset(data_root(cfg), split, transform=None if transform is False else transform, seed=int(cfg.trainer.seed),
                                   features=list(cfg.data.features), expected_dataset=str(cfg.data.dataset),
                                   limit=limit, cache=bool(cfg.data.cache))
    except DatasetConfigError as exc:
        raise ConfigError(str(exc)) from None


def resolve_color_stats(cfg: DictConfig) -> None:
    """Fill ``data.color_mean/std`` from the training split when they are null (in place)."""
    if cfg.data.color_mean is not None and cfg.data.color_std is not None:
        return
    train = make_dataset(cfg, str(cfg.data.train_split), train=False, transform=False)
    mean, std = compute_color_stats(train)
    with open_dict(cfg):
        cfg.data.color_mean, cfg.data.color_std = mean, std
    log.info("colour normalisation from %d training scenes: mean %s std %s", len(train),
             [round(v, 4) for v in mean], [round(v, 4) for v in std])


def check_classes(cfg: DictConfig, dataset: PreprocessedDataset) -> list[int]:
    """The dataset class ids of the model's classes; ConfigError when counts disagree."""
    class_ids = dataset.thing_class_ids
    if int(cfg.model.num_classes) != len(class_ids):
        raise ConfigError(f"model.num_classes={cfg.model.num_classes} but the {dataset.manifest.dataset} manifest has "
                          f"{len(class_ids)} instance classes; set data.num_classes={len(class_ids)}")
    return class_ids


def build_task(cfg: DictConfig, class_ids: list[int]) -> InstanceSegmentationTask:
    from pointformer.inference.postprocess import Postprocessor
    from pointformer.losses import build_criterion, mask_activation_for

    loss_cfg = container(cfg.loss)
    try:
        criterion = build_criterion(loss_cfg)
        postprocessor = Postprocessor.from_config(loss_cfg.get("postprocess") or {"activation": mask_activation_for(loss_cfg["name"])})
    except ValueError as exc:
        raise ConfigError(f"loss={cfg.loss.name}: {exc}") from None
    model_activation = cfg.model.decoder.get("mask_activation")
    if model_activation is not None and model_activation != criterion.mask_activation:
        raise ConfigError(f"model.decoder.mask_activation={model_activation} but loss={cfg.loss.name} needs "
                          f"{criterion.mask_activation}; drop the override or set it to {criterion.mask_activation}")
    return InstanceSegmentationTask(criterion=criterion, postprocessor=postprocessor, class_ids=class_ids,
                                    dataset=str(cfg.data.dataset), eval_num_queries=cfg.eval.get("num_queries"),
                                    eval_seed=int(cfg.eval.get("seed", 0)))


def build_model(cfg: DictConfig) -> Any:
    from pointformer.models.build import build_model as _build

    try:
        return _build(cfg.model)
    except ValueError as exc:
        raise ConfigError(f"model={cfg.model.get('name')}: {exc}") from None


def plain_config(cfg: DictConfig) -> DictConfig:
    """A resolved copy without interpolations (what checkpoints and run folders store)."""
    return OmegaConf.create(OmegaConf.to_container(cfg, resolve=True))
