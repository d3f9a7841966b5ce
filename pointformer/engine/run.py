"""One training run from a composed config: the composition root of training.

The config is read here, once, into typed settings (``RunSettings``); datasets, model, task and
trainer are built from them. Used by ``pointformer train`` (also under torchrun), the demo and the
convergence study (which adds hooks and its own task). Under DDP only rank 0 creates the run
directory and writes into it; the directory is chosen on rank 0 and broadcast.
"""
from __future__ import annotations

import datetime as _dt
import logging
import sys
from pathlib import Path
from typing import Any, Optional, Sequence

from omegaconf import DictConfig, open_dict

from pointformer.config import RunSettings
from pointformer.config.compose import plain_config, to_yaml
from pointformer.engine import checkpoint as ckpt
from pointformer.engine.distributed import DistInfo, broadcast_object
from pointformer.engine.hooks import Hook
from pointformer.engine.trainer import FitResult, Task, Trainer, seed_everything
from pointformer.io.atomic import atomic_write_text

log = logging.getLogger("pointformer")


def setup_logging(run_dir: Optional[Path], dist_info: DistInfo) -> None:
    """INFO on rank 0 (stderr and <run_dir>/train.log), warnings only on the other ranks."""
    root = logging.getLogger("pointformer")
    root.setLevel(logging.INFO if dist_info.is_main else logging.WARNING)
    for handler in list(root.handlers):
        if getattr(handler, "_pointformer", False):
            root.removeHandler(handler)
            handler.close()
    fmt = logging.Formatter(f"[%(asctime)s rank{dist_info.rank}] %(levelname)s %(name)s: %(message)s", "%H:%M:%S")
    handlers: list[logging.Handler] = [logging.StreamHandler(sys.stderr)]
    if run_dir is not None and dist_info.is_main:
        handlers.append(logging.FileHandler(run_dir / "train.log"))
    for handler in handlers:
        handler.setFormatter(fmt)
        handler._pointformer = True  # type: ignore[attr-defined]
        root.addHandler(handler)
    root.propagate = False


def _latest_run(parent: Path) -> Optional[Path]:
    runs = [p for p in parent.iterdir() if p.is_dir() and ckpt.list_step_checkpoints(p)] if parent.is_dir() else []
    return max(runs, key=lambda p: p.name) if runs else None


def choose_run_dir(settings: Any) -> Path:
    """``run_dir`` if set (``settings``: a ``RunSettings`` or the 2D branch's, with ``run_dir``,
    ``output_root``, ``name`` and ``trainer.resume``); for ``trainer.resume=auto`` the newest run of
    this name with checkpoints; otherwise a new timestamped folder under ``<output_root>/<name>/``."""
    if settings.run_dir is not None:
        return settings.run_dir
    parent = settings.output_root / settings.name
    resume = settings.trainer.resume
    if resume == "auto":
        latest = _latest_run(parent)
        if latest is not None:
            return latest
    elif resume is not None:
        path = Path(resume).expanduser()
        if path.parent.name == "checkpoints":  # continue in the run the checkpoint came from
            return path.parent.parent
    return parent / _dt.datetime.now().strftime("%Y-%m-%d_%H-%M-%S")


def prepare_run_dir(cfg: DictConfig, settings: Any, dist_info: DistInfo,
                    overrides: Sequence[str]) -> tuple[Path, str]:
    """Choose the run folder (rank 0, broadcast), store it in ``cfg.run_dir`` and write ``config.yaml``
    and ``overrides.txt`` there (rank 0). Returns (run folder, the resolved config YAML)."""
    run_dir = Path(broadcast_object(str(choose_run_dir(settings)) if dist_info.is_main else None))
    with open_dict(cfg):
        cfg.run_dir = str(run_dir)
    config_yaml = to_yaml(plain_config(cfg))
    if dist_info.is_main:
        run_dir.mkdir(parents=True, exist_ok=True)
        # config.yaml is the latest start/resume; an earlier, different one is kept beside it
        previous = run_dir / "config.yaml"
        if previous.is_file() and previous.read_text() != config_yaml:
            stamp = _dt.datetime.fromtimestamp(previous.stat().st_mtime).strftime("%Y-%m-%d_%H-%M-%S")
            previous.rename(run_dir / f"config.{stamp}.yaml")
        atomic_write_text(previous, config_yaml)
        atomic_write_text(run_dir / "overrides.txt", "\n".join(overrides) + ("\n" if overrides else ""))
    return run_dir, config_yaml


def run_training(cfg: DictConfig, *, dist_info: DistInfo = DistInfo(), overrides: Sequence[str] = (),
                 hooks: Sequence[Hook] = (), task: Optional[Task] = None) -> FitResult:
    """Train with ``cfg`` (a composed config); returns the trainer's result (on every rank).

    Args:
        hooks: extra trainer hooks, run after the built-in ones (e.g. a study's measurements).
        task: the model/loss pairing to train (default: the run's ``InstanceSegmentationTask``).
    """
    # the 3D parts are imported here, not at module level: the 2D branch uses this module's run folder helpers
    from pointformer.build import build_model, check_classes, make_dataset, resolve_color_stats
    from pointformer.engine.task import InstanceSegmentationTask

    settings = RunSettings.from_config(cfg)
    data = resolve_color_stats(settings.data)
    if data is not settings.data:  # the run folder and checkpoints store the statistics used
        with open_dict(cfg):
            cfg.data.color_mean, cfg.data.color_std = list(data.color_mean), list(data.color_std)
        settings = RunSettings.from_config(cfg)
    trainer_settings = settings.trainer
    train_set = make_dataset(data, data.train_split, train=True, seed=trainer_settings.seed, limit=data.limit_train)
    val_set = None
    if data.val_split is not None and trainer_settings.val_every_epochs + (trainer_settings.val_every_steps or 0) > 0:
        val_set = make_dataset(data, data.val_split, train=False, seed=trainer_settings.seed, limit=data.limit_val)
    class_ids = check_classes(settings, train_set)
    if task is None:
        task = InstanceSegmentationTask.from_settings(settings, class_ids=class_ids)
    seed_everything(trainer_settings.seed)  # the initial weights are part of what a seed reproduces
    model = build_model(settings)

    run_dir, config_yaml = prepare_run_dir(cfg, settings, dist_info, overrides)
    setup_logging(run_dir, dist_info)
    n_params = sum(p.numel() for p in model.parameters())
    log.info("run %s: %d train / %s val scenes, model %s (%.2fM parameters), loss %s, %d process(es)",
             run_dir, len(train_set), len(val_set) if val_set is not None else 0, settings.model.name, n_params / 1e6,
             settings.loss.name, dist_info.world_size)
    trainer = Trainer(model=model, task=task, train_set=train_set, val_set=val_set, settings=trainer_settings,
                      run_dir=run_dir, config_yaml=config_yaml, dist_info=dist_info, hooks=list(hooks))
    result = trainer.fit()
    if dist_info.is_main:
        log.info("finished at step %d; best %s; checkpoints in %s",
                 result.step, result.best or "-", run_dir / "checkpoints")
    return result
