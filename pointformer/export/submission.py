"""Benchmark submission writer: per-scene prediction files + 0/1 masks, as a zip or a folder.

Layout (ScanNet 3D semantic instance benchmark; also what ``pointformer evaluate`` reads)::

    scene0707_00.txt                      "predicted_masks/scene0707_00_000.txt 10 0.7234" per instance
    predicted_masks/scene0707_00_000.txt  one 0/1 per vertex of scene0707_00_vh_clean_2.ply

Files sit at the archive root (no enclosing folder), lines use single spaces and relative paths,
class ids must be benchmark ids (anything else is a ValueError, never silently dropped), and
confidences must be finite. Both writers are atomic: a half-written submission never appears
under the target name.
"""
from __future__ import annotations

import os
import re
import shutil
import tempfile
import zipfile
from pathlib import Path
from typing import BinaryIO, Iterator, Mapping

import numpy as np

from pointformer.evaluation.prediction import ScenePrediction
from pointformer.evaluation.protocol import class_set
from pointformer.io.atomic import atomic_write

MASK_DIR = "predicted_masks"
# Scene names become file names inside the archive: no separators, no spaces.
_SCENE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
# Masks are written in chunks of this many rows to bound the memory of dense conversion.
_ROWS_PER_CHUNK = 16


def format_confidence(score: float) -> str:
    """Positional decimal with the shortest round-trip digits (no exponent: '0.00000001', not '1e-08')."""
    return np.format_float_positional(float(score), trim="-")


def mask_to_text(mask: np.ndarray) -> bytes:
    """bool [V] -> b"0\\n1\\n..." (one 0/1 per vertex), built without a Python loop."""
    out = np.empty(2 * mask.shape[0], np.uint8)
    out[0::2] = np.asarray(mask, bool).view(np.uint8) + ord("0")
    out[1::2] = ord("\n")
    return out.tobytes()


def check_predictions(predictions: Mapping[str, ScenePrediction], *, dataset: str = "scannet") -> None:
    """ValueError (naming the scene) for anything the benchmark would reject; run before writing anything."""
    classes = class_set(dataset)
    allowed = set(classes.ids)
    for scene, pred in predictions.items():
        if not isinstance(scene, str) or not _SCENE_NAME.match(scene):
            raise ValueError(f"submission: scene name {scene!r} must be a plain file name (letters, digits, _ . -)")
        if not isinstance(pred, ScenePrediction):
            raise ValueError(f"submission: {scene}: expected a ScenePrediction; got {type(pred).__name__}")
        bad = sorted({int(c) for c in pred.class_ids.tolist() if int(c) not in allowed})
        if bad:
            raise ValueError(f"submission: {scene}: class ids {bad} are not {dataset} benchmark ids "
                             f"(allowed: {classes.ids_text()}); map or drop them before writing")
        if pred.num_masks and not np.isfinite(pred.scores).all():
            i = int(np.flatnonzero(~np.isfinite(pred.scores))[0])
            raise ValueError(f"submission: {scene}: confidence of instance {i} is {pred.scores[i]} (must be finite)")


def iter_submission_files(predictions: Mapping[str, ScenePrediction], *, dataset: str = "scannet"
                          ) -> Iterator[tuple[str, bytes]]:
    """(relative path, content) of every file of the submission; all scenes are checked first."""
    check_predictions(predictions, dataset=dataset)
    for scene, pred in predictions.items():
        lines = []
        for start in range(0, pred.num_masks, _ROWS_PER_CHUNK):
            rows = np.arange(start, min(start + _ROWS_PER_CHUNK, pred.num_masks))
            for i, mask in zip(rows.tolist(), pred.dense_masks(rows)):
                rel = f"{MASK_DIR}/{scene}_{i:03d}.txt"
                lines.append(f"{rel} {int(pred.class_ids[i])} {format_confidence(pred.scores[i])}\n")
                yield rel, mask_to_text(mask)
        yield f"{scene}.txt", "".join(lines).encode("ascii")


def write_submission(out_zip: str | os.PathLike, predictions: Mapping[str, ScenePrediction], *,
                     dataset: str = "scannet", compresslevel: int = 6) -> Path:
    """Write the benchmark zip (files at the archive root) atomically; returns its path.

    predictions: scene name (e.g. "scene0707_00") -> :class:`ScenePrediction` over the mesh vertices
    """
    def write_zip(f: BinaryIO) -> None:
        with zipfile.ZipFile(f, "w", compression=zipfile.ZIP_DEFLATED, compresslevel=compresslevel) as zf:
            zf.writestr(zipfile.ZipInfo(f"{MASK_DIR}/", date_time=(2020, 1, 1, 0, 0, 0)), b"")
            for rel, content in iter_submission_files(predictions, dataset=dataset):
                zf.writestr(rel, content)

    return atomic_write(out_zip, write_zip)


def write_prediction_folder(out_dir: str | os.PathLike, predictions: Mapping[str, ScenePrediction], *,
                            dataset: str = "scannet", overwrite: bool = False) -> Path:
    """Write the same layout into a folder (what ``pointformer evaluate PRED_DIR GT_DIR`` reads).

    The folder is built under a temporary name next to ``out_dir`` and renamed into place. An
    existing non-empty ``out_dir`` is replaced only with ``overwrite=True`` (stale scene files of an
    earlier run would otherwise be evaluated too).
    """
    out_dir = Path(out_dir)
    if out_dir.exists() and not out_dir.is_dir():
        raise ValueError(f"{out_dir}: exists and is not a folder")
    if out_dir.is_dir() and any(out_dir.iterdir()) and not overwrite:
        raise ValueError(f"{out_dir}: folder is not empty; pass overwrite=True to replace it")
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.", suffix=".tmp", dir=out_dir.parent))
    try:
        (tmp / MASK_DIR).mkdir()
        for rel, content in iter_submission_files(predictions, dataset=dataset):
            (tmp / rel).write_bytes(content)
        if out_dir.exists():
            old = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.", suffix=".old", dir=out_dir.parent))
            os.rmdir(old)
            os.replace(out_dir, old)
            os.replace(tmp, out_dir)
            shutil.rmtree(old)
        else:
            os.replace(tmp, out_dir)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return out_dir

