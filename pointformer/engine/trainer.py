"""The training loop: AdamW + OneCycle (stepped per iteration), gradient clipping, AMP, DDP,
checkpoints and exact resume; logging, validation, checkpointing, the LR schedule and the progress
bar are hooks (``pointformer.engine.hooks``) called around every step.

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
import os
import random
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterator, Optional, Protocol, Sequence

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from pointformer.data.sampler import ResumableBatchSampler, ShardedEvalSampler
from pointformer.config import TrainerSettings
from pointformer.engine import checkpoint as ckpt
from pointformer.engine.distributed import DistInfo, all_agree, barrier, broadcast_object, gather_objects
from pointformer.engine.hooks import (CheckpointHook, Hook, LRSchedulerHook, ProgressHook, StepOutput, TrainLogHook,
                                      ValidationHook)
from pointformer.engine.metrics_log import MetricsLogger
from pointformer.timing import Stopwatch

if TYPE_CHECKING:
    from pointformer.data.collate import SceneBatch

log = logging.getLogger(__name__)


class Task(Protocol):
    """What the trainer needs from a model/loss pairing."""

    def training_loss(self, model: torch.nn.Module, batch: SceneBatch) -> tuple[torch.Tensor, dict[str, float]]:
        """Scalar loss with gradient, and detached float logs (loss terms)."""

    def predict(self, model: torch.nn.Module, batch: SceneBatch) -> list[Any]:
        """One prediction per scene of the batch (in eval mode, under no_grad)."""

    def evaluate(self, gt_ids: Sequence[np.ndarray], predictions: Sequence[Any],
                 scene_ids: Sequence[str]) -> dict[str, Any]:
        """Metrics dict over the whole split (must contain the trainer's ``monitor`` key)."""


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

    Args:
        hooks: extra hooks (``pointformer.engine.hooks.Hook``), run after the built-in bookkeeping of
            a step and before its validation and checkpoint; their state is saved in checkpoints.
        collate_fn: turns a list of dataset items into a batch with ``.to(device)``, ``.batch_size``,
            ``.scene_ids`` and ``.gt_ids`` (None: the 3D ``collate_scenes``, imported only then, so a
            2D run loads no 3D module).

    What hooks may use: ``settings``, ``model``, ``optimizer``, ``scheduler``, ``device``, ``dist``,
    ``run_dir``, ``val_set``, ``step`` (optimiser steps done), ``steps_per_epoch``, ``last_step``,
    ``last_metrics`` and the methods ``run_validation``, ``validate``, ``save_checkpoint`` and
    ``log_metrics``.
    """

    def __init__(self, *, model: torch.nn.Module, task: Task, train_set: Dataset, val_set: Optional[Dataset],
                 settings: TrainerSettings, run_dir: os.PathLike | str, config_yaml: str,
                 dist_info: DistInfo = DistInfo(), hooks: Sequence[Hook] = (),
                 collate_fn: Any = None) -> None:
        self.settings = settings
        self.task = task
        self.train_set, self.val_set = train_set, val_set
        self.run_dir = Path(run_dir)
        self.config_yaml = config_yaml
        self.dist = dist_info
        if collate_fn is None:
            from pointformer.data.collate import collate_scenes

            collate_fn = collate_scenes
        self.collate_fn = collate_fn
        self.device = resolve_device(settings.device, dist_info)
        self.amp_dtype = resolve_amp(settings.amp, self.device)
        if settings.deterministic:
            torch.use_deterministic_algorithms(True, warn_only=True)
        self.model = model.to(self.device)
        probe = ResumableBatchSampler(len(train_set), settings.batch_size, seed=settings.seed, rank=dist_info.rank,
                                      world_size=dist_info.world_size)
        self.steps_per_epoch = probe.steps_per_epoch
        self.total_steps = settings.epochs * self.steps_per_epoch
        self.last_step = self.total_steps if settings.max_steps is None else min(self.total_steps, settings.max_steps)
        params = [p for p in self.model.parameters() if p.requires_grad]
        self.optimizer = torch.optim.AdamW(params, lr=settings.lr, weight_decay=settings.weight_decay,
                                           betas=settings.betas)
        self.scheduler = torch.optim.lr_scheduler.OneCycleLR(
            self.optimizer, max_lr=settings.lr, total_steps=self.total_steps, pct_start=settings.pct_start,
            div_factor=settings.div_factor, final_div_factor=settings.final_div_factor, anneal_strategy="cos")
        self.scaler = torch.amp.GradScaler(self.device.type, enabled=self.amp_dtype == torch.float16)
        self.step = 0
        self.resumed_from: Optional[str] = None
        self.last_metrics: dict[str, dict[str, Any]] = {}   # kind ("train", "val") -> latest record
        self.validation = ValidationHook()
        self.hooks: list[Hook] = [LRSchedulerHook(), TrainLogHook(), ProgressHook(), *hooks, self.validation,
                                  CheckpointHook()]
        names = [hook.name for hook in self.hooks]
        duplicated = sorted({n for n in names if names.count(n) > 1})
        if duplicated:
            raise ValueError(f"trainer hooks need unique names (their checkpoint keys); repeated: {duplicated}")
        # the step phases are timed on the device's clock only when a hook asks (it costs overlap on CUDA)
        timing_device = self.device if any(hook.synchronise_timing for hook in self.hooks) else None
        self.phase_watches = {phase: Stopwatch(timing_device) for phase in ("data", "forward", "backward")}
        self.logger: Optional[MetricsLogger] = None

    @property
    def best(self) -> dict[str, Any]:
        """The best validation so far: {"metric", "value", "step"} ({} before the first)."""
        return dict(self.validation.best)

    # ------------------------------------------------------------------ resume
    def _resume_path(self) -> Optional[Path]:
        resume = self.settings.resume
        if resume in (None, "", "none", "null"):
            return None
        if resume == "auto":
            path, _, problems = ckpt.find_resume_checkpoint(self.run_dir)
            for problem in problems:
                log.warning("resume=auto skipped a bad checkpoint: %s", problem)
            if path is None:
                if problems:
                    raise ckpt.CheckpointError(f"resume=auto: no loadable checkpoint in "
                                               f"{self.run_dir / 'checkpoints'}; problems: {problems}")
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
                    f"{path}: schedule of {payload['scheduler'].get('total_steps')} steps, this run has "
                    f"{self.total_steps} (epochs, batch size, dataset or process count changed); "
                    "start a new run instead of resuming")
            self.scheduler.load_state_dict(payload["scheduler"])
        if payload.get("scaler") is not None:
            self.scaler.load_state_dict(payload["scaler"])
        self.step = int(payload["step"])
        states = payload.get("hooks") or {}
        for hook in self.hooks:
            if hook.name in states:
                hook.load_state_dict(states[hook.name])
            elif hook.state_dict():
                log.warning("resume: %s has no state of hook %r; it starts afresh", path, hook.name)
        rng = payload.get("rng")
        if rng is not None:
            ckpt.restore_rng_state(rng)
        self.resumed_from = str(path)
        if self.dist.is_main:
            for moved in ckpt.set_aside_newer_checkpoints(self.run_dir, self.step):
                log.warning("resume: set aside %s (newer than the resumed step %d)", moved, self.step)
        log.info("resumed from %s at step %d (epoch %d)", path, self.step, self.step // self.steps_per_epoch)

    # ------------------------------------------------------------------ what hooks call
    def save_checkpoint(self, path: Path, metrics: dict[str, Any]) -> None:
        """A full checkpoint at the current step (rank 0 writes; a no-op elsewhere), every hook's state included."""
        if self.dist.is_main:
            ckpt.save_checkpoint(path, model=self.model, optimizer=self.optimizer, scheduler=self.scheduler,
                                 scaler=self.scaler, epoch=self.step // self.steps_per_epoch, step=self.step,
                                 config_yaml=self.config_yaml, metrics=metrics, best=self.best,
                                 extra={"hooks": {hook.name: hook.state_dict() for hook in self.hooks}})

    def log_metrics(self, kind: str, step: int, record: dict[str, Any]) -> None:
        """Write a ``kind`` record to metrics.jsonl / TensorBoard (rank 0) and tell every hook."""
        assert self.logger is not None, "log_metrics is for hooks during fit()"
        self.logger.log(kind, step, record)
        self.last_metrics[kind] = record
        for hook in self.hooks:
            hook.on_log(self, kind, step, record)

    def run_validation(self) -> dict[str, Any]:
        """Validate, let every hook add to the metrics (``after_validation``), write the ``val`` record."""
        metrics = self.validate()
        for hook in self.hooks:
            extra = hook.after_validation(self, metrics)
            if extra:
                metrics.update(extra)
        self.log_metrics("val", self.step, metrics)
        return metrics

    # ------------------------------------------------------------------ helpers
    def _autocast(self) -> contextlib.AbstractContextManager:
        if self.amp_dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(device_type=self.device.type, dtype=self.amp_dtype)

    def _loader(self, start_step: int) -> DataLoader:
        settings = self.settings
        sampler = ResumableBatchSampler(len(self.train_set), settings.batch_size, seed=settings.seed,
                                        rank=self.dist.rank, world_size=self.dist.world_size,
                                        start_step=start_step, num_epochs=settings.epochs)
        return DataLoader(self.train_set, batch_sampler=sampler, collate_fn=self.collate_fn,
                          num_workers=settings.num_workers, persistent_workers=settings.num_workers > 0,
                          pin_memory=self.device.type == "cuda", generator=self._loader_generator(start_step))

    def _loader_generator(self, salt: int) -> torch.Generator:
        # A DataLoader draws its workers' base seed from this generator; without one it would draw
        # from the global torch RNG, shifting the model's random stream differently in a resumed run.
        generator = torch.Generator()
        generator.manual_seed((self.settings.seed * 1_000_003 + salt + 1) % (2 ** 62))
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
            len(self.val_set), batch_size=self.settings.val_batch_size, rank=self.dist.rank,
            world_size=self.dist.world_size), collate_fn=self.collate_fn, num_workers=self.settings.num_workers,
            generator=self._loader_generator(-1))
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
                raise ValueError("validation split has scenes without GT ids (a test split?); "
                                 "set data.val_split to a labelled split")
            metrics = self.task.evaluate([gt for _, gt, _ in items], [p for _, _, p in items], [s for s, _, _ in items])
            metrics["val_seconds"] = time.perf_counter() - start
            metrics["num_scenes"] = len(items)
        metrics = broadcast_object(metrics)
        self.model.train(was_training)
        return metrics

    # ------------------------------------------------------------------ training
    def fit(self) -> FitResult:
        """Train from scratch or from the resume checkpoint to ``last_step``; hooks do the rest."""
        # rank 0 picks the checkpoint (resume=auto inspects files that rank 0 may rename); all load it
        chosen = broadcast_object(str(self._resume_path() or "") if self.dist.is_main else None)
        if chosen:
            self._load_resume(Path(chosen))
        else:
            seed_everything(self.settings.seed)
        if self.dist.enabled:
            ddp_kwargs = {"device_ids": [self.device.index]} if self.device.type == "cuda" else {}
            self.model = torch.nn.parallel.DistributedDataParallel(
                self.model, find_unused_parameters=self.settings.find_unused_parameters, **ddp_kwargs)
        self.logger = MetricsLogger(self.run_dir, enabled=self.dist.is_main, tensorboard=self.settings.tensorboard,
                                    resume_step=self.step if self.resumed_from else None)
        result = FitResult(run_dir=self.run_dir, step=self.step, epoch=self.step // self.steps_per_epoch,
                           resumed_from=self.resumed_from)
        self.model.train()
        try:
            for hook in self.hooks:
                hook.on_fit_start(self)
            if self.step < self.last_step:
                batches = iter(self._loader(self.step))
                while self.step < self.last_step:
                    output = self._train_step(batches)
                    for hook in self.hooks:
                        hook.after_step(self, output)
        finally:
            result.step, result.epoch = self.step, self.step // self.steps_per_epoch
            result.last_train = self.last_metrics.get("train", {})
            result.last_val = self.last_metrics.get("val", {})
            for hook in self.hooks:
                hook.on_fit_end(self, result)
            self.logger.close()
        barrier()
        result.best = self.best
        return result

    def _train_step(self, batches: Iterator[SceneBatch]) -> StepOutput:
        """Load the next batch and take one optimiser step (skipped on every rank if the loss is not finite)."""
        watches = self.phase_watches
        for watch in watches.values():
            watch.reset()
        cpu_start = time.process_time()
        with watches["data"]:
            batch = next(batches).to(self.device)
        lr = self.optimizer.param_groups[0]["lr"]  # the rate this step uses (the scheduler hook moves it after)
        with watches["forward"]:
            self.optimizer.zero_grad(set_to_none=True)
            with self._autocast():
                loss, logs = self.task.training_loss(self.model, batch)
            finite = all_agree(bool(torch.isfinite(loss.detach()).item()), self.device)
        if finite:
            with watches["backward"]:
                self.scaler.scale(loss).backward()
                if self.settings.grad_clip_norm and self.settings.grad_clip_norm > 0:
                    self.scaler.unscale_(self.optimizer)
                    grad_norm = torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.settings.grad_clip_norm)
                    logs = {**logs, "grad_norm": float(grad_norm)}
                self.scaler.step(self.optimizer)
                self.scaler.update()
            step_logs = {"loss": float(loss.detach()), **{k: float(v) for k, v in logs.items() if k != "loss"},
                         "lr": lr}
        else:
            # every rank skips together (a lone rank skipping backward would hang DDP's all-reduce)
            step_logs = {"lr": lr}
        self.step += 1
        return StepOutput(step=self.step, logs=step_logs, batch_size=batch.batch_size, finite=finite,
                          seconds={phase: watch.seconds for phase, watch in watches.items()},
                          cpu_seconds=time.process_time() - cpu_start)
