"""One training run from a composed config: run directory, logging, datasets, model, trainer.

Used by ``pointformer train`` (also under torchrun) and by the demo. Under DDP only rank 0 creates
the run directory and writes into it; the directory is chosen on rank 0 and broadcast.
"""
from __future__ import annotations

import datetime as _dt
import logging
import sys
from pathlib import Path
from typing import Optional, Sequence

from omegaconf import DictConfig, open_dict

from pointformer.engine import checkpoint as ckpt
from pointformer.engine.build import (build_model, build_task, check_classes, make_dataset, plain_config,
                                      resolve_color_stats)
from pointformer.engine.config import ConfigError, container, optional_path, to_yaml
from pointformer.engine.distributed import DistInfo, broadcast_object
from pointformer.engine.trainer import FitResult, Trainer, TrainerConfig, seed_everything

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


def choose_run_dir(cfg: DictConfig) -> Path:
    """``run_dir`` if set; for ``trainer.resume=auto`` the newest run of this name with checkpoints;
    otherwise a new timestamped folder under ``<output_root>/<name>/``."""
    explicit = optional_path(cfg.get("run_dir"))
    if explicit is not None:
        return explicit
    parent = Path(str(cfg.output_root)).expanduser() / str(cfg.name)
    resume = cfg.trainer.get("resume")
    if resume == "auto":
        latest = _latest_run(parent)
        if latest is not None:
            return latest
    elif resume not in (None, "", "null"):
        path = Path(str(resume)).expanduser()
        if path.parent.name == "checkpoints":  # continue in the run the checkpoint came from
            return path.parent.parent
    return parent / _dt.datetime.now().strftime("%Y-%m-%d_%H-%M-%S")


def run_training(cfg: DictConfig, *, dist_info: DistInfo = DistInfo(), overrides: Sequence[str] = ()) -> FitResult:
    """Train with ``cfg`` (a composed config); returns the trainer's result (on every rank)."""
    try:
        trainer_cfg = TrainerConfig.from_mapping(container(cfg.trainer))
    except ValueError as exc:
        raise ConfigError(str(exc)) from None
    resolve_color_stats(cfg)
    train_set = make_dataset(cfg, str(cfg.data.train_split), train=True, limit=cfg.data.get("limit_train"))
    val_split = cfg.data.get("val_split")
    val_set = None
    if val_split not in (None, "", "null") and trainer_cfg.val_every_epochs + (trainer_cfg.val_every_steps or 0) > 0:
        val_set = make_dataset(cfg, str(val_split), train=False, limit=cfg.data.get("limit_val"))
    class_ids = check_classes(cfg, train_set)
    task = build_task(cfg, class_ids)
    seed_everything(trainer_cfg.seed)  # the initial weights are part of what a seed reproduces
    model = build_model(cfg)

    run_dir = Path(broadcast_object(str(choose_run_dir(cfg)) if dist_info.is_main else None))
    with open_dict(cfg):
        cfg.run_dir = str(run_dir)
    resolved = plain_config(cfg)
    config_yaml = to_yaml(resolved)
    if dist_info.is_main:
        run_dir.mkdir(parents=True, exist_ok=True)
        # config.yaml is the latest start/resume; an earlier, different one is kept beside it
        previous = run_dir / "config.yaml"
        if previous.is_file() and previous.read_text() != config_yaml:
            stamp = _dt.datetime.fromtimestamp(previous.stat().st_mtime).strftime("%Y-%m-%d_%H-%M-%S")
            previous.rename(run_dir / f"config.{stamp}.yaml")
        previous.write_text(config_yaml)
        (run_dir / "overrides.txt").write_text("\n".join(overrides) + ("\n" if overrides else ""))
    setup_logging(run_dir, dist_info)
    n_params = sum(p.numel() for p in model.parameters())
    log.info("run %s: %d train / %s val scenes, model %s (%.2fM parameters), loss %s, %d process(es)",
             run_dir, len(train_set), len(val_set) if val_set is not None else 0, cfg.model.name, n_params / 1e6,
             cfg.loss.name, dist_info.world_size)
    trainer = Trainer(model=model, task=task, train_set=train_set, val_set=val_set, cfg=trainer_cfg, run_dir=run_dir,
                      config_yaml=config_yaml, dist_info=dist_info)
    result = trainer.fit()
    if dist_info.is_main:
        log.info("finished at step %d; best %s; checkpoints in %s", result.step, result.best or "-", run_dir / "checkpoints")
    return result
