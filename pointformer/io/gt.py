"""Instance ground-truth files of the ScanNet evaluation: one ``label*1000+instance`` integer per mesh
vertex, one per line (0 = unannotated). Written by preprocessing and by anyone preparing an
evaluation; read by ``pointformer.evaluation.files.read_gt_ids``.
"""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from pointformer.io.atomic import atomic_write_text


def check_gt_ids(gt_ids: np.ndarray, where: str) -> np.ndarray:
    """Validate GT ids per vertex (int [V], label*1000+inst, >= 0) and return them as int64 [V].

    Raises ValueError naming ``where`` (a file or scene) and what is wrong.
    """
    gt_ids = np.asarray(gt_ids)
    if gt_ids.ndim != 1:
        raise ValueError(f"{where}: GT ids must be a 1-D array [V]; got shape {gt_ids.shape}")
    if gt_ids.size and not np.issubdtype(gt_ids.dtype, np.integer):
        raise ValueError(f"{where}: GT ids must be integers (label*1000+instance); got dtype {gt_ids.dtype}")
    gt_ids = gt_ids.astype(np.int64, copy=False)
    if gt_ids.size and gt_ids.min() < 0:
        bad = int(np.flatnonzero(gt_ids < 0)[0])
        raise ValueError(f"{where}: GT ids must be >= 0 (label*1000+instance, 0 = unannotated); "
                         f"vertex {bad} has {int(gt_ids[bad])}")
    return gt_ids


def write_gt_file(path: str | os.PathLike, gt_ids: np.ndarray) -> Path:
    """Validate one scene's GT ids (int [V]) and write them in the official format, atomically.

    A bad array raises ValueError naming ``path`` before anything is written.
    """
    gt_ids = check_gt_ids(gt_ids, f"{path}")
    return atomic_write_text(path, "".join(f"{v}\n" for v in gt_ids.tolist()))
