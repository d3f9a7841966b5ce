"""The checkpoint file format: written atomically, read with ``torch.load(weights_only=True)``.

A checkpoint is one ``torch.save`` dict of plain containers and tensors only, so that a
``weights_only`` load can read it and a checkpoint can never execute code. Its entries:

    format "pointformer-checkpoint", version 1, model (state_dict), step (global optimiser steps
    done), epoch, config (the resolved run config as a YAML string), and whatever else the writer
    adds (the trainer: optimizer, scheduler, scaler, rng, metrics, best, hook states).

Which checkpoints a run keeps and which one a resume takes is the runtime's business
(``pointformer.engine.checkpoint``); this module only writes and reads one file.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Mapping, Union

import torch

from pointformer.io.atomic import atomic_write

FORMAT = "pointformer-checkpoint"
VERSION = 1
REQUIRED_KEYS = ("model", "step", "epoch", "config")


class CheckpointError(ValueError):
    """A checkpoint file is missing, unreadable, truncated or not a pointformer checkpoint."""


def write_checkpoint(path: Union[str, os.PathLike], payload: Mapping[str, Any]) -> Path:
    """Write a checkpoint atomically: ``payload`` (which must hold the required keys) stamped with format
    and version. A crash mid-write leaves the previous file (or none), never a truncated one."""
    missing = [key for key in REQUIRED_KEYS if key not in payload]
    if missing:
        raise ValueError(f"{path}: a checkpoint needs the entries {list(REQUIRED_KEYS)}; missing {missing}")
    stamped = {"format": FORMAT, "version": VERSION, **payload}
    return atomic_write(path, lambda f: torch.save(stamped, f))


def load_checkpoint(path: Union[str, os.PathLike], *, map_location: Union[str, torch.device] = "cpu") -> dict[str, Any]:
    """Read and check a checkpoint with ``weights_only=True``; any defect raises CheckpointError naming the file."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: checkpoint not found")
    if path.stat().st_size == 0:
        raise CheckpointError(f"{path}: checkpoint is empty (0 bytes); the write was interrupted")
    try:
        payload = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as exc:  # truncated zip, bad pickle, foreign object types: many exception classes
        first_line = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
        raise CheckpointError(f"{path}: not a readable checkpoint, the file is corrupt or truncated "
                              f"({type(exc).__name__}: {first_line[:200]})") from None
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise CheckpointError(f"{path}: not a pointformer checkpoint (no 'format': {FORMAT!r} entry)")
    if payload.get("version") != VERSION:
        raise CheckpointError(f"{path}: checkpoint version {payload.get('version')}, this pointformer reads {VERSION}")
    for key in REQUIRED_KEYS:
        if key not in payload:
            raise CheckpointError(f"{path}: checkpoint lacks {key!r}")
    return payload


def load_model_weights(model: torch.nn.Module, payload: Mapping[str, Any], path: Union[str, os.PathLike], *,
                       device: str = "auto", hint: str = "") -> torch.nn.Module:
    """``model`` with the checkpoint's weights, on ``device`` ("auto": CUDA when available, "cuda", "cpu").

    Raises CheckpointError naming ``path`` when the weights do not fit the model (``hint``: what to check)."""
    try:
        model.load_state_dict(payload["model"])
    except RuntimeError as exc:
        raise CheckpointError(f"{path}: weights do not fit the model of the stored config{hint}: "
                              f"{str(exc).splitlines()[0]}") from None
    use_cuda = torch.cuda.is_available() and device in ("auto", "cuda")
    return model.to("cuda" if use_cuda else "cpu")
