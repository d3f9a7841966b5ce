"""One 2D training run from a composed config: the composition root of image training.

``pointformer train`` dispatches here when the data config says ``modality: image``. The config is
read once into ``ImageRunSettings``; the datasets, the model, the task and the shared ``Trainer``
(with the dataset's ``collate_fn``) are built from it. Run folders, config storage, checkpoints,
resume and hooks are the 3D run's (``pointformer.engine.run.prepare_run_dir``, ``engine.trainer``).
"""
from __future__ import annotations

import logging
from typing import Optional, Sequence

from omegaconf import DictConfig, open_dict

from pointformer.config import ConfigError
from pointformer.engine.distributed import DistInfo
from pointformer.engine.hooks import Hook
from pointformer.engine.run import prepare_run_dir, setup_logging
from pointformer.engine.trainer import FitResult, Task, Trainer, seed_everything
from pointformer.image.build import build_image_model, make_image_dataset
from pointformer.image.settings import ImageRunSettings
from pointformer.image.task import ImageSegmentationTask

log = logging.getLogger("pointformer")

__all__ = ["run_image_training"]


def run_image_training(cfg: DictConfig, *, dist_info: DistInfo = DistInfo(), overrides: Sequence[str] = (),
                       hooks: Sequence[Hook] = (), task: Optional[Task] = None) -> FitResult:
    """Train the image model of ``cfg`` (a composed config with ``data.modality: image``).

    Args:
        hooks: extra trainer hooks (e.g. a study's measurements).
        task: the model/loss pairing to train (default: the run's ``ImageSegmentationTask``).
    """
    settings = ImageRunSettings.from_config(cfg)
    data, trainer_settings = settings.data, settings.trainer
    train_set = make_image_dataset(data, data.train_split, train=True, seed=trainer_settings.seed,
                                   limit=data.limit_train)
    if train_set.num_classes != settings.model.num_classes:
        raise ConfigError(f"model.num_classes={settings.model.num_classes} but {data.name} split "
                          f"{data.train_split!r} has {train_set.num_classes} categories; set "
                          f"data.num_classes={train_set.num_classes}")
    if data.class_names is None:  # the run folder and checkpoints store the names (infer needs no dataset)
        with open_dict(cfg):
            cfg.data.class_names = list(train_set.class_names)
        settings = ImageRunSettings.from_config(cfg)
    val_set = None
    if data.val_split is not None and trainer_settings.val_every_epochs + (trainer_settings.val_every_steps or 0) > 0:
        val_set = make_image_dataset(data, data.val_split, train=False, seed=trainer_settings.seed,
                                     limit=data.limit_val)
        if list(val_set.class_to_category_id) != list(train_set.class_to_category_id):
            raise ConfigError(f"{data.name}: splits {data.train_split!r} and {data.val_split!r} have different "
                              "category lists")
    if task is None:
        task = ImageSegmentationTask.from_settings(
            settings, coco_gt=None if val_set is None else val_set.coco,
            class_to_category_id=train_set.class_to_category_id)
    seed_everything(trainer_settings.seed)  # the initial weights are part of what a seed reproduces
    model = build_image_model(settings)

    run_dir, config_yaml = prepare_run_dir(cfg, settings, dist_info, overrides)
    setup_logging(run_dir, dist_info)
    n_params = sum(p.numel() for p in model.parameters())
    log.info("run %s: %d train / %s val images, model %s (%.2fM parameters, %s tokens), loss %s, %d process(es)",
             run_dir, len(train_set), len(val_set) if val_set is not None else 0, settings.model.name,
             n_params / 1e6, data.tokens, settings.loss.name, dist_info.world_size)
    trainer = Trainer(model=model, task=task, train_set=train_set, val_set=val_set, settings=trainer_settings,
                      run_dir=run_dir, config_yaml=config_yaml, dist_info=dist_info, hooks=list(hooks),
                      collate_fn=train_set.collate_fn)
    result = trainer.fit()
    if dist_info.is_main:
        log.info("finished at step %d; best %s; checkpoints in %s",
                 result.step, result.best or "-", run_dir / "checkpoints")
    return result
