"""The training loop: AdamW + OneCycle (stepped per iteration), gradient clipping, AMP, DDP,
periodic validation with the project's evaluator, checkpoints and exact resume.

What the loop knows about the model is a :class:`Task` — two functions: ``training_loss(model,
batch) -> (loss, logs)`` and ``predict(model, batch) -> predictions`` plus ``evaluate(...)``. That
keeps the mechanics (this file) testable with a stand-in model and lets the same loop train any
model/loss pairing.

Reproducibility: the data order is a pure function of (seed, epoch) and every scene's augmentation
of (seed, epoch, index) (see ``pointformer.data``); model randomness draws from the global torch RNG,
whose state is in every checkpoint. A run resumed from the checkpoint at step k therefore sees the
same batches and the same random draws as the uninterrupted run from step k + 1 on.
"""
from __future__ import annotations

import contextlib
import logging
import math
import os
import random
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional, Protocol, Sequence

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from pointformer.data.collate import SceneBatch, collate_scenes
from pointformer.data.sampler import ResumableBatchSampler, ShardedEvalSampler
from pointformer.engine import checkpoint as ckpt
from pointformer.engine.distributed import (DistInfo, all_agree, all_reduce_mean, barrier, broadcast_object,
                                            gather_objects)
from pointformer.engine.metrics_log import MetricsLogger

log = logging.getLogger(__name__)


class Task(Protocol):
    """What the trainer needs from a model/loss pairing."""

    def training_loss(self, model: torch.nn.Module, batch: SceneBatch) -> tuple[torch.Tensor, dict[str, float]]:
        """Scalar loss with gradient, and detached float logs (loss terms)."""

    def predict(self, model: torch.nn.Module, batch: SceneBatch) -> list[Any]:
        """One prediction per scene of the batch (in eval mode, under no_grad)."""

    def evaluate(self, gt_ids: Sequence[np.ndarray], predictions: Sequence[Any], scene_ids: Sequence[str]) -> dict[str, Any]:
        """Metrics dict over the whole split (must contain the trainer's ``monitor`` key)."""


@dataclass
class TrainerConfig:
    """Trainer settings (the ``trainer`` config group). Defaults: the Mask3D recipe."""

    epochs: int = 600
    max_steps: Optional[int] = None          # stop after this global step; the LR schedule still spans `epochs`
    batch_size: int = 5                      # scenes per optimiser step per process
    lr: float = 1e-4                         # AdamW peak learning rate (OneCycle max_lr)
    weight_decay: float = 0.01
    betas: tuple[float, float] = (0.9, 0.999)
    pct_start: float = 0.3                   # OneCycle warm-up share
    div_factor: float = 25.0                 # OneCycle initial lr = lr / div_factor
    final_div_factor: float = 1e4
    grad_clip_norm: Optional[float] = 1.0    # None or <= 0: no clipping
    amp: str = "auto"                        # auto | bf16 | fp16 | off  (auto: bf16/fp16 on CUDA, off on CPU)
    device: str = "auto"                     # auto | cpu | cuda
    seed: int = 42
    deterministic: bool = False              # torch.use_deterministic_algorithms (slower on CUDA)
    num_workers: int = 0
    log_every: int = 10                      # steps between train metric records
    val_every_epochs: int = 1                # 0: no periodic validation
    val_every_steps: Optional[int] = None    # additionally every N steps
    val_batch_size: int = 1
    checkpoint_every_epochs: int = 1
    checkpoint_every_steps: Optional[int] = None
    keep_last: int = 3
    monitor: str = "map50"                   # validation metric that selects best.pt (higher is better)
    resume: Optional[str] = None             # None | "auto" | path to a checkpoint
    progress: bool = True                    # tqdm bar on rank 0
    find_unused_parameters: bool = True      # DDP: some heads are unused by some losses
    tensorboard: bool = True

    @classmethod
    def from_mapping(cls, values: dict[str, Any]) -> "TrainerConfig":
        known = set(cls.__dataclass_fields__)
        unknown = sorted(set(values) - known)
        if unknown:
            raise ValueError(f"trainer: unknown option(s) {unknown}; known: {sorted(known)}")
        values = dict(values)
        if "betas" in values:
            values["betas"] = tuple(values["betas"])
        if isinstance(values.get("amp"), bool):  # YAML 1.1 reads a bare off/on as a boolean
            values["amp"] = "auto" if values["amp"] else "off"
        cfg = cls(**values)
        if cfg.amp not in ("auto", "bf16", "fp16", "off"):
            raise ValueError(f"trainer.amp must be auto, bf16, fp16 or off; got {cfg.amp!r}")
        if cfg.device not in ("auto", "cpu", "cuda"):
            raise ValueError(f"trainer.device must be auto, cpu or cuda; got {cfg.device!r}")
        if cfg.epochs <= 0 or cfg.batch_size <= 0 or cfg.lr <= 0:
            raise ValueError(f"trainer: epochs, batch_size and lr must be positive (got {cfg.epochs}, {cfg.batch_size}, {cfg.lr})")
        return cfg


@dataclass
class FitResult:
    """What a finished (or stopped) run reports."""

    run_dir: Path
    step: int
    epoch: int
    last_train: dict[str, float] = field(default_factory=dict)
    last_val: dict[str, Any] = field(default_factory=dict)
    best: dict[str, Any] = field(default_factory=dict)
    resumed_from: Optional[str] = None


def resolve_device(preference: str, dist_info: DistInfo) -> torch.device:
    if preference == "cuda" and not torch.cuda.is_available():
        raise ValueError("trainer.device=cuda but CUDA is not available; use trainer.device=cpu or auto")
    if preference in ("auto", "cuda") and torch.cuda.is_available():
        return torch.device("cuda", dist_info.local_rank)
    return torch.device("cpu")


def resolve_amp(amp: str, device: torch.device) -> Optional[torch.dtype]:
    """The autocast dtype, or None for full precision. CPU: only an explicit bf16 turns it on."""
    if amp == "off":
        return None
    if device.type == "cuda":
        if amp in ("auto", "bf16") and torch.cuda.is_bf16_supported():
            return torch.bfloat16
        return torch.float16
    if amp == "bf16":
        return torch.bfloat16
    if amp == "fp16":
        log.warning("trainer.amp=fp16 has no gradient-scaled CPU path; training in float32 on CPU")
    return None


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % (2 ** 32))
    torch.manual_seed(seed)


class Trainer:
    """Train ``model`` on ``train_set`` with ``task``'s loss; validate on ``val_set``.

    Only rank 0 writes files (run directory, metrics, TensorBoard, checkpoints). ``run_dir`` must be
    the same path on every rank (the CLI decides it on rank 0 and broadcasts it).
    """

    def __init__(self, *, model: torch.nn.Module, task: Task, train_set: Dataset, val_set: Optional[Dataset],
                 cfg: TrainerConfig, run_dir: os.PathLike | str, config_yaml: str,
                 dist_info: DistInfo = DistInfo(), collate_fn: Any = collate_scenes) -> None:
        self.cfg = cfg
        self.task = task
        self.train_set, self.val_set = train_set, val_set
        self.run_dir = Path(run_dir)
        self.config_yaml = config_yaml
        self.dist = dist_info
        self.collate_fn = collate_fn
        self.device = resolve_device(cfg.device, dist_info)
        self.amp_dtype = resolve_amp(cfg.amp, self.device)
        if cfg.deterministic:
            torch.use_deterministic_algorithms(True, warn_only=True)
        self.model = model.to(self.device)
        self.sampler_probe = ResumableBatchSampler(len(train_set), cfg.batch_size, seed=cfg.seed,
                                                   rank=dist_info.rank, world_size=dist_info.world_size)
        self.steps_per_epoch = self.sampler_probe.steps_per_epoch
        self.total_steps = cfg.epochs * self.steps_per_epoch
        params = [p for p in self.model.parameters() if p.requires_grad]
        self.optimizer = torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay, betas=cfg.betas)
        self.scheduler = torch.optim.lr_scheduler.OneCycleLR(
            self.optimizer, max_lr=cfg.lr, total_steps=self.total_steps, pct_start=cfg.pct_start,
            div_factor=cfg.div_factor, final_div_factor=cfg.final_div_factor, anneal_strategy="cos")
        self.scaler = torch.amp.GradScaler(self.device.type, enabled=self.amp_dtype == torch.float16)
        self.step = 0
        self.best: dict[str, Any] = {}
        self.resumed_from: Optional[str] = None
        # sums of the logged values since the last train record, so a resumed run logs the same means
        self.window: dict[str, float] = {}
        self.window_steps = 0
        self.skipped_steps = 0

    # ------------------------------------------------------------------ resume
    def _resume_path(self) -> Optional[Path]:
        resume = self.cfg.resume
        if resume in (None, "", "none", "null"):
            return None
        if resume == "auto":
            path, _, problems = ckpt.find_resume_checkpoint(self.run_dir)
            for problem in problems:
                log.warning("resume=auto skipped a bad checkpoint: %s", problem)
            if path is None:
                if problems:
                    raise ckpt.CheckpointError(f"resume=auto: no loadable checkpoint in {self.run_dir / 'checkpoints'}; "
                                               f"problems: {problems}")
                log.info("resume=auto: no checkpoint in %s, starting fresh", self.run_dir)
            return path
        return Path(resume)

    def _load_resume(self, path: Path) -> None:
        payload = ckpt.load_checkpoint(path, map_location=self.device)
        module = self.model.module if hasattr(self.model, "module") else self.model
        try:
            module.load_state_dict(payload["model"])
        except RuntimeError as exc:
            raise ckpt.CheckpointError(f"{path}: weights do not fit this model (was the model config changed?): "
                                       f"{str(exc).splitlines()[0]}") from None
        if payload.get("optimizer") is not None:
            self.optimizer.load_state_dict(payload["optimizer"])
        if payload.get("scheduler") is not None:
            if payload["scheduler"].get("total_steps") != self.total_steps:
                raise ckpt.CheckpointError(
                    f"{path}: schedule of {payload['scheduler'].get('total_steps')} steps, this run has {self.total_steps} "
                    "(epochs, batch size, dataset or process count changed); start a new run instead of resuming")
            self.scheduler.load_state_dict(payload["scheduler"])
        if payload.get("scaler") is not None:
            self.scaler.load_state_dict(payload["scaler"])
        self.step = int(payload["step"])
        self.best = dict(payload.get("best") or {})
        window = payload.get("train_window") or {}
        self.window = {k: float(v) for k, v in (window.get("sums") or {}).items()}
        self.window_steps = int(window.get("steps", 0))
        self.skipped_steps = int(window.get("skipped", 0))
        rng = payload.get("rng")
        if rng is not None:
            ckpt.restore_rng_state(rng)
        self.resumed_from = str(path)
        if self.dist.is_main:
            for moved in ckpt.set_aside_newer_checkpoints(self.run_dir, self.step):
                log.warning("resume: set aside %s (newer than the resumed step %d)", moved, self.step)
        log.info("resumed from %s at step %d (epoch %d)", path, self.step, self.step // self.steps_per_epoch)

    # ------------------------------------------------------------------ helpers
    def _autocast(self) -> contextlib.AbstractContextManager:
        if self.amp_dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(device_type=self.device.type, dtype=self.amp_dtype)

    def _save(self, path: Path, metrics: dict[str, Any]) -> None:
        if self.dist.is_main:
            ckpt.save_checkpoint(path, model=self.model, optimizer=self.optimizer, scheduler=self.scheduler,
                                 scaler=self.scaler, epoch=self.step // self.steps_per_epoch, step=self.step,
                                 config_yaml=self.config_yaml, metrics=metrics, best=self.best,
                                 extra={"train_window": {"sums": dict(self.window), "steps": self.window_steps,
                                                         "skipped": self.skipped_steps}})

    def _save_step_checkpoint(self, metrics: dict[str, Any]) -> None:
        if self.dist.is_main:
            self._save(ckpt.step_checkpoint_path(self.run_dir, self.step), metrics)
            ckpt.prune_step_checkpoints(self.run_dir, self.cfg.keep_last)

    def _loader(self, start_step: int) -> DataLoader:
        sampler = ResumableBatchSampler(len(self.train_set), self.cfg.batch_size, seed=self.cfg.seed,
                                        rank=self.dist.rank, world_size=self.dist.world_size,
                                        start_step=start_step, num_epochs=self.cfg.epochs)
        return DataLoader(self.train_set, batch_sampler=sampler, collate_fn=self.collate_fn,
                          num_workers=self.cfg.num_workers, persistent_workers=self.cfg.num_workers > 0,
                          pin_memory=self.device.type == "cuda", generator=self._loader_generator(start_step))

    def _loader_generator(self, salt: int) -> torch.Generator:
        # A DataLoader draws its workers' base seed from this generator; without one it would draw
        # from the global torch RNG, shifting the model's random stream differently in a resumed run.
        generator = torch.Generator()
        generator.manual_seed((self.cfg.seed * 1_000_003 + salt + 1) % (2 ** 62))
        return generator

    # ------------------------------------------------------------------ validation
    @torch.no_grad()
    def validate(self) -> dict[str, Any]:
        """Predict every validation scene (sharded over ranks), evaluate on rank 0, share the metrics."""
        if self.val_set is None:
            return {}
        was_training = self.model.training
        self.model.eval()
        loader = DataLoader(self.val_set, batch_sampler=ShardedEvalSampler(
            len(self.val_set), batch_size=self.cfg.val_batch_size, rank=self.dist.rank, world_size=self.dist.world_size),
            collate_fn=self.collate_fn, num_workers=self.cfg.num_workers, generator=self._loader_generator(-1))
        model = self.model.module if hasattr(self.model, "module") else self.model
        local: list[tuple[str, Any, Any]] = []
        start = time.perf_counter()
        for batch in loader:
            with self._autocast():
                predictions = self.task.predict(model, batch.to(self.device))
            local.extend(zip(batch.scene_ids, batch.gt_ids, predictions))
        gathered = gather_objects(local)
        metrics: dict[str, Any] = {}
        if self.dist.is_main:
            items = sorted((item for part in gathered for item in part), key=lambda t: t[0])
            if any(gt is None for _, gt, _ in items):
                raise ValueError("validation split has scenes without GT ids (a test split?); set data.val_split to a labelled split")
            metrics = self.task.evaluate([gt for _, gt, _ in items], [p for _, _, p in items], [s for s, _, _ in items])
            metrics["val_seconds"] = time.perf_counter() - start
            metrics["num_scenes"] = len(items)
        metrics = broadcast_object(metrics)
        self.model.train(was_training)
        return metrics

    def _after_validation(self, metrics: dict[str, Any], logger: MetricsLogger) -> None:
        logger.log("val", self.step, metrics)
        value = metrics.get(self.cfg.monitor)
        if value is None:
            raise ValueError(f"trainer.monitor={self.cfg.monitor!r} is not a validation metric; "
                             f"available: {sorted(k for k, v in metrics.items() if isinstance(v, (int, float)))}")
        if value is not None and math.isfinite(float(value)) and float(value) > float(self.best.get("value", -math.inf)):
            self.best = {"metric": self.cfg.monitor, "value": float(value), "step": self.step}
            self._save(self.run_dir / "checkpoints" / "best.pt", metrics)
            if self.dist.is_main:
                log.info("new best %s = %.4f at step %d", self.cfg.monitor, float(value), self.step)

    # ------------------------------------------------------------------ training
    def fit(self) -> FitResult:
        cfg = self.cfg
        # rank 0 picks the checkpoint (resume=auto inspects files that rank 0 may rename); all load it
        chosen = broadcast_object(str(self._resume_path() or "") if self.dist.is_main else None)
        resume_path = Path(chosen) if chosen else None
        if resume_path is None:
            seed_everything(cfg.seed)
        else:
            self._load_resume(resume_path)
        if self.dist.enabled:
            ddp_kwargs = {"device_ids": [self.device.index]} if self.device.type == "cuda" else {}
            self.model = torch.nn.parallel.DistributedDataParallel(
                self.model, find_unused_parameters=cfg.find_unused_parameters, **ddp_kwargs)
        logger = MetricsLogger(self.run_dir, enabled=self.dist.is_main, tensorboard=cfg.tensorboard,
                               resume_step=self.step if self.resumed_from else None)
        last_step = self.total_steps if cfg.max_steps is None else min(self.total_steps, int(cfg.max_steps))
        bar = None
        if self.dist.is_main and cfg.progress:
            from tqdm import tqdm

            # in a log file (no terminal) a bar line every 30 s instead of every update
            bar = tqdm(total=last_step, initial=self.step, desc="train", dynamic_ncols=True, leave=True,
                       mininterval=0.5 if sys.stderr.isatty() else 30.0)
        result = FitResult(run_dir=self.run_dir, step=self.step, epoch=self.step // self.steps_per_epoch,
                           resumed_from=self.resumed_from)
        self.model.train()
        window_scenes, window_start, window_cpu = 0, time.perf_counter(), time.process_time()
        # Validation and checkpointing inside a window are not training time: kept out of s_per_step.
        paused_wall = paused_cpu = 0.0
        try:
            if self.step < last_step:
                for batch in self._loader(self.step):
                    logs, finite = self._train_step(batch)
                    self.step += 1
                    if not finite:
                        self.skipped_steps += 1
                        log.warning("step %d: non-finite loss on some rank; the update was skipped", self.step)
                    for key, value in logs.items():
                        self.window[key] = self.window.get(key, 0.0) + value
                    self.window_steps += 1
                    window_scenes += batch.batch_size * self.dist.world_size
                    epoch_done = self.step % self.steps_per_epoch == 0
                    regular_log = self.step % cfg.log_every == 0 or epoch_done
                    if regular_log or self.step == last_step:
                        elapsed = time.perf_counter() - window_start - paused_wall
                        timed_steps = max(window_scenes // (batch.batch_size * self.dist.world_size), 1)
                        means = all_reduce_mean({k: v / self.window_steps for k, v in self.window.items()}, self.device)
                        record = {**means, "epoch": self.step / self.steps_per_epoch,
                                  "scenes_per_s": window_scenes / max(elapsed, 1e-9), "s_per_step": elapsed / timed_steps,
                                  # CPU seconds of this process (all threads, data workers excluded): the cost on a shared machine
                                  "cpu_s_per_step": (time.process_time() - window_cpu - paused_cpu) / timed_steps,
                                  "skipped_steps": self.skipped_steps}
                        if self.device.type == "cuda":
                            record["cuda_peak_mem_gb"] = torch.cuda.max_memory_allocated(self.device) / 2 ** 30
                        logger.log("train", self.step, record)
                        result.last_train = record
                        if bar is not None:
                            shown = {k: f"{v:.3f}" for k, v in list(means.items())[:4]}
                            bar.set_postfix({**shown, "scn/s": f"{record['scenes_per_s']:.2f}"})
                        if regular_log:  # a final off-grid record keeps the window: a resumed run continues it
                            self.window, self.window_steps = {}, 0
                            window_scenes, window_start, window_cpu = 0, time.perf_counter(), time.process_time()
                            paused_wall = paused_cpu = 0.0
                    if bar is not None:
                        bar.update(1)
                    pause_start, pause_cpu = time.perf_counter(), time.process_time()
                    epoch = self.step // self.steps_per_epoch
                    do_val = self.val_set is not None and (
                        (epoch_done and cfg.val_every_epochs and epoch % cfg.val_every_epochs == 0)
                        or (cfg.val_every_steps and self.step % cfg.val_every_steps == 0)
                        or self.step == last_step)
                    if do_val:
                        result.last_val = self.validate()
                        self._after_validation(result.last_val, logger)
                        if bar is not None:
                            bar.write(f"step {self.step}: " + ", ".join(
                                f"{k}={result.last_val[k]:.4f}" for k in ("map", "map50", "map25") if k in result.last_val))
                    do_ckpt = ((epoch_done and cfg.checkpoint_every_epochs and epoch % cfg.checkpoint_every_epochs == 0)
                               or (cfg.checkpoint_every_steps and self.step % cfg.checkpoint_every_steps == 0)
                               or self.step == last_step)
                    if do_ckpt:
                        self._save_step_checkpoint(result.last_val)
                    paused_wall += time.perf_counter() - pause_start
                    paused_cpu += time.process_time() - pause_cpu
                    if self.step >= last_step:
                        break
        finally:
            if bar is not None:
                bar.close()
            logger.close()
        barrier()
        result.step, result.epoch, result.best = self.step, self.step // self.steps_per_epoch, dict(self.best)
        return result

    def _train_step(self, batch: SceneBatch) -> tuple[dict[str, float], bool]:
        batch = batch.to(self.device)
        lr = self.optimizer.param_groups[0]["lr"]  # the rate this step uses (the scheduler moves it after)
        self.optimizer.zero_grad(set_to_none=True)
        with self._autocast():
            loss, logs = self.task.training_loss(self.model, batch)
        finite = all_agree(bool(torch.isfinite(loss.detach()).item()), self.device)
        if not finite:
            # every rank skips together (a lone rank skipping backward would hang DDP's all-reduce)
            self.scheduler.step()
            return {"lr": lr}, False
        self.scaler.scale(loss).backward()
        if self.cfg.grad_clip_norm and self.cfg.grad_clip_norm > 0:
            self.scaler.unscale_(self.optimizer)
            grad_norm = torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.cfg.grad_clip_norm)
            logs = {**logs, "grad_norm": float(grad_norm)}
        self.scaler.step(self.optimizer)
        self.scaler.update()
        self.scheduler.step()
        return {"loss": float(loss.detach()), **{k: float(v) for k, v in logs.items() if k != "loss"}, "lr": lr}, True
