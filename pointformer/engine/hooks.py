"""Trainer hooks: what happens around the optimiser steps of :class:`pointformer.engine.trainer.Trainer`.

The trainer's loop only loads batches and takes optimiser steps; everything else is a :class:`Hook`:

    LRSchedulerHook  steps the learning-rate schedule after every optimiser step
    TrainLogHook     train records (means over a log window, throughput, skipped steps, CUDA memory)
    ProgressHook     the tqdm bar on rank 0
    <extra hooks>    passed by the caller (``run_training(cfg, hooks=[...])``)
    ValidationHook   validation at the configured steps/epochs, the monitored metric and ``best.pt``
    CheckpointHook   periodic step checkpoints (the newest ``keep_last`` kept)

Hooks run in that order at every event. Extra hooks sit after the bookkeeping of a step and before
its validation and checkpoint, so a checkpoint written at step k holds every hook's state after step k.

State: a hook's ``state_dict()`` (plain containers, numbers, strings, tensors: checkpoints load with
``weights_only=True``) is saved under ``payload["hooks"][hook.name]`` in every checkpoint and handed
back to ``load_state_dict`` on resume, before ``on_fit_start``. A resumed run therefore continues
each hook exactly where the checkpoint left it.
"""
from __future__ import annotations

import logging
import math
import sys
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar, Optional

import torch

from pointformer.engine import checkpoint as ckpt
from pointformer.engine.distributed import all_reduce_mean

if TYPE_CHECKING:  # the trainer imports this module; the annotations only name its classes
    from pointformer.engine.trainer import FitResult, Trainer

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class StepOutput:
    """What one optimiser step produced, as the hooks see it.

    Attributes:
        step: global optimiser steps done, this one included (1-based).
        logs: the step's float logs on this process: the task's loss terms, ``loss``, ``grad_norm``
            (when clipping) and ``lr`` (the rate this step used); only ``lr`` for a skipped step.
        batch_size: scenes in this process's batch.
        finite: False when the loss was not finite on some rank and every rank skipped the update.
        seconds: wall-clock seconds of the step's phases: ``data`` (waiting for the batch and moving it
            to the device), ``forward`` (the task's training loss) and ``backward`` (backward, clipping,
            optimiser step). CUDA-synchronised only when a hook asks (``Hook.synchronise_timing``).
        cpu_seconds: CPU seconds of this process (all threads; data workers excluded) in those phases.
    """

    step: int
    logs: dict[str, float]
    batch_size: int
    finite: bool
    seconds: dict[str, float] = field(default_factory=dict)
    cpu_seconds: float = 0.0

    @property
    def total_seconds(self) -> float:
        """Wall-clock seconds of the whole step (all phases)."""
        return sum(self.seconds.values())


class Hook:
    """A trainer hook: every method is a no-op; override the events you need.

    ``name`` is the hook's key in checkpoints (``payload["hooks"][name]``); it must be unique among the
    hooks of a trainer and stay the same between a run and its resumption.
    """

    name: str = "hook"
    # True: the trainer synchronises the device around each step phase, so StepOutput.seconds are the
    # device's time (costs a little overlap of data loading and computation on CUDA).
    synchronise_timing: ClassVar[bool] = False

    def on_fit_start(self, trainer: "Trainer") -> None:
        """Before the first step of this process (after a resume: the hook's state is already loaded)."""

    def after_step(self, trainer: "Trainer", output: StepOutput) -> None:
        """After every optimiser step (``trainer.step`` already counts it)."""

    def after_validation(self, trainer: "Trainer", metrics: dict[str, Any]) -> Optional[dict[str, Any]]:
        """After a validation; returns extra metrics recorded with it (or None).

        ``metrics`` holds the task's metrics and the extras of the hooks before this one; the merged
        dict is what the ``val`` record, ``best.pt`` and later hooks see.
        """
        return None

    def on_log(self, trainer: "Trainer", kind: str, step: int, record: dict[str, Any]) -> None:
        """After a record of ``kind`` ("train" or "val") was written to the run's metrics."""

    def on_fit_end(self, trainer: "Trainer", result: "FitResult") -> None:
        """When ``fit`` ends, normally or by an exception (release resources here)."""

    def state_dict(self) -> dict[str, Any]:
        """The hook's state to save in a checkpoint (weights_only-loadable containers)."""
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore the state of ``state_dict()`` (called on resume, before ``on_fit_start``)."""


def is_epoch_end(trainer: "Trainer") -> bool:
    return trainer.step % trainer.steps_per_epoch == 0


# ---------------------------------------------------------------------------------------------
# Built-in hooks
# ---------------------------------------------------------------------------------------------
class LRSchedulerHook(Hook):
    """Steps ``trainer.scheduler`` once per optimiser step, skipped updates included (the schedule
    counts steps, not updates). Its state is the scheduler's, saved with the optimiser's."""

    name = "lr_scheduler"

    def after_step(self, trainer: "Trainer", output: StepOutput) -> None:
        trainer.scheduler.step()


class TrainLogHook(Hook):
    """Train records every ``log_every`` steps, at epoch ends and at the last step.

    A record holds the window means of the step logs (averaged over ranks), ``epoch``, throughput
    (``scenes_per_s``, ``s_per_step``, ``cpu_s_per_step``: step phases only, so validation and
    checkpoints are not training time), ``skipped_steps`` and, on CUDA, ``cuda_peak_mem_gb``.
    The window's sums are the hook's state: a run resumed mid-window logs the same means. A record at
    the last step off the log grid keeps the window open, so a continuation logs the full window.
    """

    name = "train_log"

    def __init__(self) -> None:
        self.sums: dict[str, float] = {}
        self.steps = 0
        self.skipped = 0
        # throughput of the steps this process ran in the window (process-local: not in the state)
        self.timed_steps = self.scenes = 0
        self.seconds = self.cpu_seconds = 0.0

    def after_step(self, trainer: "Trainer", output: StepOutput) -> None:
        if not output.finite:
            self.skipped += 1
            log.warning("step %d: non-finite loss on some rank; the update was skipped", output.step)
        for key, value in output.logs.items():
            self.sums[key] = self.sums.get(key, 0.0) + value
        self.steps += 1
        self.timed_steps += 1
        self.scenes += output.batch_size * trainer.dist.world_size
        self.seconds += output.total_seconds
        self.cpu_seconds += output.cpu_seconds
        regular = output.step % trainer.settings.log_every == 0 or is_epoch_end(trainer)
        if not (regular or output.step == trainer.last_step):
            return
        means = all_reduce_mean({k: v / self.steps for k, v in self.sums.items()}, trainer.device)
        record = {**means, "epoch": output.step / trainer.steps_per_epoch,
                  "scenes_per_s": self.scenes / max(self.seconds, 1e-9),
                  "s_per_step": self.seconds / self.timed_steps,
                  # CPU seconds of this process: the cost of a step on a shared machine
                  "cpu_s_per_step": self.cpu_seconds / self.timed_steps,
                  "skipped_steps": self.skipped}
        if trainer.device.type == "cuda":
            record["cuda_peak_mem_gb"] = torch.cuda.max_memory_allocated(trainer.device) / 2 ** 30
        trainer.log_metrics("train", output.step, record)
        if regular:
            self.sums, self.steps = {}, 0
            self.timed_steps = self.scenes = 0
            self.seconds = self.cpu_seconds = 0.0

    def state_dict(self) -> dict[str, Any]:
        return {"sums": dict(self.sums), "steps": self.steps, "skipped": self.skipped}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.sums = {k: float(v) for k, v in (state.get("sums") or {}).items()}
        self.steps = int(state.get("steps", 0))
        self.skipped = int(state.get("skipped", 0))


# keys of a train record that are not loss terms (the progress bar shows the terms)
_THROUGHPUT_KEYS = ("epoch", "scenes_per_s", "s_per_step", "cpu_s_per_step", "skipped_steps", "cuda_peak_mem_gb")


class ProgressHook(Hook):
    """A tqdm bar on rank 0 (when ``trainer.progress``): steps, the latest train means, validation mAPs."""

    name = "progress"

    def __init__(self) -> None:
        self.bar: Any = None

    def on_fit_start(self, trainer: "Trainer") -> None:
        if not (trainer.dist.is_main and trainer.settings.progress):
            return
        from tqdm import tqdm

        # in a log file (no terminal) a bar line every 30 s instead of every update
        self.bar = tqdm(total=trainer.last_step, initial=trainer.step, desc="train", dynamic_ncols=True, leave=True,
                        mininterval=0.5 if sys.stderr.isatty() else 30.0)

    def after_step(self, trainer: "Trainer", output: StepOutput) -> None:
        if self.bar is not None:
            self.bar.update(1)

    def on_log(self, trainer: "Trainer", kind: str, step: int, record: dict[str, Any]) -> None:
        if self.bar is None:
            return
        if kind == "train":
            terms = [(k, v) for k, v in record.items() if k not in _THROUGHPUT_KEYS][:4]
            self.bar.set_postfix({**{k: f"{v:.3f}" for k, v in terms}, "scn/s": f"{record['scenes_per_s']:.2f}"})
        elif kind == "val":
            self.bar.write(f"step {step}: " + ", ".join(
                f"{k}={record[k]:.4f}" for k in ("map", "map50", "map25") if k in record))

    def on_fit_end(self, trainer: "Trainer", result: "FitResult") -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None


class ValidationHook(Hook):
    """Validates every ``val_every_epochs`` epochs, every ``val_every_steps`` steps and at the last
    step; keeps the best value of ``monitor`` (higher is better) and its weights in ``best.pt``."""

    name = "validation"

    def __init__(self) -> None:
        self.best: dict[str, Any] = {}   # {"metric", "value", "step"} of the best validation so far

    def after_step(self, trainer: "Trainer", output: StepOutput) -> None:
        settings, step = trainer.settings, output.step
        epoch = step // trainer.steps_per_epoch
        due = ((is_epoch_end(trainer) and settings.val_every_epochs and epoch % settings.val_every_epochs == 0)
               or (settings.val_every_steps and step % settings.val_every_steps == 0)
               or step == trainer.last_step)
        if trainer.val_set is not None and due:
            trainer.run_validation()

    def after_validation(self, trainer: "Trainer", metrics: dict[str, Any]) -> Optional[dict[str, Any]]:
        monitor = trainer.settings.monitor
        value = metrics.get(monitor)
        if value is None:
            raise ValueError(f"trainer.monitor={monitor!r} is not a validation metric; "
                             f"available: {sorted(k for k, v in metrics.items() if isinstance(v, (int, float)))}")
        if math.isfinite(float(value)) and float(value) > float(self.best.get("value", -math.inf)):
            self.best = {"metric": monitor, "value": float(value), "step": trainer.step}
            trainer.save_checkpoint(trainer.run_dir / "checkpoints" / "best.pt", metrics)
            if trainer.dist.is_main:
                log.info("new best %s = %.4f at step %d", monitor, float(value), trainer.step)
        return None

    def state_dict(self) -> dict[str, Any]:
        return {"best": dict(self.best)}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.best = dict(state.get("best") or {})


class CheckpointHook(Hook):
    """Step checkpoints every ``checkpoint_every_epochs`` epochs, every ``checkpoint_every_steps``
    steps and at the last step; only the newest ``keep_last`` are kept (rank 0 writes)."""

    name = "checkpoint"

    def after_step(self, trainer: "Trainer", output: StepOutput) -> None:
        settings, step = trainer.settings, output.step
        epoch = step // trainer.steps_per_epoch
        due = ((is_epoch_end(trainer) and settings.checkpoint_every_epochs
                and epoch % settings.checkpoint_every_epochs == 0)
               or (settings.checkpoint_every_steps and step % settings.checkpoint_every_steps == 0)
               or step == trainer.last_step)
        if due:
            # the metrics of the latest validation of this process ({} before the first one)
            latest_val = trainer.last_metrics.get("val", {})
            trainer.save_checkpoint(ckpt.step_checkpoint_path(trainer.run_dir, step), latest_val)
            if trainer.dist.is_main:
                ckpt.prune_step_checkpoints(trainer.run_dir, settings.keep_last)
