"""Checkpoints of a training run: what a checkpoint holds, RNG capture, and the run folder's files.

The file format (atomic write, ``weights_only`` read, :class:`CheckpointError`) is
``pointformer.io.checkpoint``'s. A training checkpoint holds, besides the model and the counters:
optimizer, scheduler, scaler (state_dicts), rng {torch, cuda: [..], numpy: {...}, python: tensor},
config (the resolved run config as a YAML string), metrics (dict), best (dict: monitored metric
name/value/step), and the trainer's extra plain-container state (e.g. hook states).

Files live in ``<run_dir>/checkpoints/``: ``step_XXXXXXXX.pt`` (the last ``keep_last`` are kept) and
``best.pt``. ``resume=auto`` takes the newest step checkpoint that loads; a corrupt or truncated newest
file is reported and skipped in favour of the previous good one.
"""
from __future__ import annotations

import logging
import os
import random
import re
from pathlib import Path
from typing import Any, Optional, Union

import numpy as np
import torch

from pointformer.io.checkpoint import CheckpointError, load_checkpoint, write_checkpoint

log = logging.getLogger(__name__)

_STEP_FILE = re.compile(r"^step_(\d{8,})\.pt$")


# ---------------------------------------------------------------------------------------------
# RNG state as tensors (weights_only-safe)
# ---------------------------------------------------------------------------------------------
def capture_rng_state() -> dict[str, Any]:
    """Every global RNG the training loop may touch: torch (CPU and CUDA), numpy, python."""
    np_name, np_keys, np_pos, np_has_gauss, np_cached = np.random.get_state()
    py_version, py_state, py_gauss = random.getstate()
    return {
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
        "numpy": {"keys": torch.from_numpy(np.asarray(np_keys, dtype=np.int64)), "pos": int(np_pos),
                  "has_gauss": int(np_has_gauss), "cached": float(np_cached)},
        "python": torch.tensor(py_state, dtype=torch.int64),
        "python_version": int(py_version),
        "python_gauss": None if py_gauss is None else float(py_gauss),
    }


def restore_rng_state(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"].to(torch.uint8))
    if state.get("cuda") and torch.cuda.is_available():
        torch.cuda.set_rng_state_all([s.to(torch.uint8) for s in state["cuda"]])
    np_state = state["numpy"]
    np.random.set_state(("MT19937", np_state["keys"].numpy().astype(np.uint32), np_state["pos"],
                         np_state["has_gauss"], np_state["cached"]))
    random.setstate((state["python_version"], tuple(int(v) for v in state["python"].tolist()), state["python_gauss"]))


# ---------------------------------------------------------------------------------------------
# Writing (reading: pointformer.io.checkpoint.load_checkpoint)
# ---------------------------------------------------------------------------------------------
def save_checkpoint(path: Union[str, os.PathLike], *, model: torch.nn.Module,
                    optimizer: Optional[torch.optim.Optimizer], scheduler: Any, scaler: Any, epoch: int, step: int,
                    config_yaml: str, metrics: Optional[dict] = None, best: Optional[dict] = None,
                    extra: Optional[dict] = None) -> Path:
    """Write a full training checkpoint atomically (see the module docstring for its contents).

    ``load_checkpoint`` (from ``pointformer.io.checkpoint``) reads it back."""
    module = model.module if hasattr(model, "module") else model  # unwrap DDP
    payload = {
        "model": module.state_dict(),
        "optimizer": optimizer.state_dict() if optimizer is not None else None,
        "scheduler": scheduler.state_dict() if scheduler is not None else None,
        "scaler": scaler.state_dict() if scaler is not None else None,
        "rng": capture_rng_state(),
        "epoch": int(epoch), "step": int(step),
        "config": str(config_yaml),
        "metrics": dict(metrics or {}),
        "best": dict(best or {}),
        **dict(extra or {}),  # further plain-container state (e.g. the trainer's partial log window)
    }
    return write_checkpoint(path, payload)


def step_checkpoint_path(run_dir: Union[str, os.PathLike], step: int) -> Path:
    return Path(run_dir) / "checkpoints" / f"step_{step:08d}.pt"


def list_step_checkpoints(run_dir: Union[str, os.PathLike]) -> list[tuple[int, Path]]:
    """(step, path) of the step checkpoints of a run, newest first."""
    folder = Path(run_dir) / "checkpoints"
    if not folder.is_dir():
        return []
    found = []
    for entry in folder.iterdir():
        match = _STEP_FILE.match(entry.name)
        if match:
            found.append((int(match.group(1)), entry))
    return sorted(found, reverse=True)


def prune_step_checkpoints(run_dir: Union[str, os.PathLike], keep_last: int) -> None:
    """Delete all but the newest ``keep_last`` step checkpoints (best.pt is separate and kept)."""
    for _, path in list_step_checkpoints(run_dir)[max(int(keep_last), 1):]:
        path.unlink(missing_ok=True)


def set_aside_newer_checkpoints(run_dir: Union[str, os.PathLike], step: int) -> list[Path]:
    """Rename step checkpoints newer than ``step`` to ``*.pt.abandoned``.

    Called when a run resumes from ``step``: newer files belong to the abandoned continuation (or are
    the corrupt ones that resume=auto skipped); left in place they would shadow the new run's own
    checkpoints in a later ``resume=auto`` and count against ``keep_last``.
    """
    moved = []
    for newer_step, path in list_step_checkpoints(run_dir):
        if newer_step > step:
            target = path.with_name(path.name + ".abandoned")
            os.replace(path, target)
            moved.append(target)
    return moved


def find_resume_checkpoint(run_dir: Union[str, os.PathLike]) -> tuple[Optional[Path], Optional[dict], list[str]]:
    """The newest step checkpoint of ``run_dir`` that loads, its payload, and the problems skipped.

    Returns (None, None, problems) when the run has no usable checkpoint.
    """
    problems: list[str] = []
    for _, path in list_step_checkpoints(run_dir):
        try:
            return path, load_checkpoint(path), problems
        except CheckpointError as exc:
            log.warning("resume: skipping %s", exc)
            problems.append(str(exc))
    return None, None, problems
