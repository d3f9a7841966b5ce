"""The official file contract of the ScanNet instance evaluation: reading and checking it.

Prediction folder (``PRED_DIR``)::

    sceneXXXX_YY.txt            one line per instance: "<relative mask path> <class id> <confidence>"
    predicted_masks/*.txt       one integer per mesh vertex, non-zero = member

GT folder (``GT_DIR``): ``sceneXXXX_YY.txt`` with one ``label*1000+inst`` integer per vertex (written by
``pointformer.io.gt.write_gt_file``).

As in the official script, the scenes evaluated are those with a prediction file (each needs its GT
file), lines are exactly three single-space-separated fields, mask paths are relative to the
prediction folder and must stay inside it, and masks of non-evaluated classes are not read. Every
problem raises :class:`EvaluationInputError` naming the file and, where it applies, the line.
"""
from __future__ import annotations

import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Optional

import numpy as np

from pointformer.evaluation.prediction import ScenePrediction
from pointformer.evaluation.protocol import class_set
from pointformer.evaluation.result import EvaluationResult
from pointformer.evaluation.coverage import DEFAULT_SCORE_THRESHOLD
from pointformer.evaluation.evaluator import ScanNetEvaluator

# The official script writes its result next to the predictions under this name; it is not a scene.
OFFICIAL_RESULT_NAME = "semantic_instance_evaluation.txt"
# Longest decimal integer the vectorised parser accepts (float64 sums are exact below 2**53).
_MAX_DIGITS = 15


class EvaluationInputError(ValueError):
    """A prediction or GT file breaks the file contract (the message names the file and line)."""


@dataclass(frozen=True)
class PredictionLine:
    """One line of a scene's prediction file."""

    mask_path: Path       # absolute, resolved
    class_id: int
    score: float
    line: int             # 1-based line number in the prediction file


def parse_int_lines(data: bytes, where: str) -> np.ndarray:
    """One decimal integer per line (``\\n`` or ``\\r\\n``) -> int64 [N].

    Vectorised for the common layouts (digits only); anything else goes through a checked slow
    path whose error names ``where`` and the first bad line.
    """
    if not data:
        return np.zeros(0, np.int64)
    # Fast path 1: single digits, "d\n" per line (every 0/1 mask). Read as little-endian uint16
    # pairs: "d\n" is 0x0A00 + ord(d), so one subtraction and one comparison check the whole file.
    if len(data) % 2 == 0:
        digits = np.frombuffer(data, "<u2") - np.uint16(0x0A30)
        if (digits < 10).all():
            return digits.astype(np.int64)
    buf = np.frombuffer(data, np.uint8)
    # Fast path 2: multi-digit non-negative integers, "\n" terminated, no empty lines.
    if buf[-1] == 10:
        newline = buf == 10
        is_digit = (buf >= 48) & (buf <= 57)
        ends = np.flatnonzero(newline)
        lengths = np.diff(np.r_[-1, ends]) - 1
        if (is_digit | newline).all() and lengths.min() >= 1 and lengths.max() <= _MAX_DIGITS:
            line_of = np.cumsum(newline) - newline  # line index of every byte
            digit_pos = np.flatnonzero(is_digit)
            power = ends[line_of[digit_pos]] - digit_pos - 1
            values = np.bincount(line_of[digit_pos], weights=(buf[digit_pos] - 48) * 10.0 ** power,
                                 minlength=ends.shape[0])
            return values.astype(np.int64)
    return _parse_int_lines_checked(data, where)


def _parse_int_lines_checked(data: bytes, where: str) -> np.ndarray:
    try:
        text = data.decode("ascii")
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        raise EvaluationInputError(f"{where}: line {line}: non-ASCII byte; expected one integer per line") from None
    lines = text.split("\n")
    if lines and lines[-1] == "":
        lines.pop()  # the final newline
    try:
        return np.array(lines).astype(np.int64) if lines else np.zeros(0, np.int64)
    except (ValueError, OverflowError):
        pass
    for number, line in enumerate(lines, start=1):
        try:
            int(line)
        except ValueError:
            raise EvaluationInputError(
                f"{where}: line {number}: {line.strip()[:40]!r} is not an integer; expected one integer per line"
            ) from None
    raise EvaluationInputError(f"{where}: integers out of range")  # pragma: no cover (int64 overflow)


def read_gt_ids(path: str | os.PathLike) -> np.ndarray:
    """GT ids of one scene (int64 [V], label*1000+inst). Errors name the file and line."""
    path = Path(path)
    if not path.is_file():
        raise EvaluationInputError(f"{path}: GT file not found")
    ids = parse_int_lines(path.read_bytes(), str(path))
    if ids.size and ids.min() < 0:
        line = int(np.flatnonzero(ids < 0)[0]) + 1
        raise EvaluationInputError(f"{path}: line {line}: GT id {ids[line - 1]} is negative "
                                   "(expected label*1000+instance, 0 = unannotated)")
    return ids


def read_mask_file(path: str | os.PathLike, num_vertices: int, *, referenced_from: str = "") -> np.ndarray:
    """A predicted mask (bool [V]): one integer per vertex, non-zero = member.

    ``referenced_from`` ("file:line" of the prediction line) is added to error messages.
    """
    path = Path(path)
    origin = f" (referenced from {referenced_from})" if referenced_from else ""
    if not path.is_file():
        raise EvaluationInputError(f"{path}: mask file not found{origin}")
    values = parse_int_lines(path.read_bytes(), f"{path}{origin}")
    if values.shape[0] != num_vertices:
        raise EvaluationInputError(
            f"{path}{origin}: mask has {values.shape[0]} lines but the scene has {num_vertices} vertices "
            "(one line per vertex of the scene's _vh_clean_2.ply, in order)")
    return values != 0


def read_prediction_file(path: str | os.PathLike, pred_root: str | os.PathLike) -> list[PredictionLine]:
    """Parse a scene's prediction file; mask paths are resolved against ``pred_root`` and checked."""
    path = Path(path)
    root = Path(pred_root).resolve()
    try:
        text = path.read_bytes().decode("utf-8")
    except FileNotFoundError:
        raise EvaluationInputError(f"{path}: prediction file not found") from None
    except UnicodeDecodeError:
        raise EvaluationInputError(f"{path}: not a UTF-8 text file") from None
    out: list[PredictionLine] = []
    seen: dict[Path, int] = {}
    for number, raw in enumerate(text.splitlines(), start=1):
        where = f"{path}:{number}"
        parts = raw.split(" ")
        if len(parts) != 3 or "" in parts:
            raise EvaluationInputError(
                f"{where}: expected exactly 3 fields separated by single spaces "
                f"('<relative mask path> <class id> <confidence>'); got {raw[:80]!r}")
        rel, class_text, score_text = parts
        if os.path.isabs(rel) or rel.startswith(("/", "\\")) or (len(rel) > 1 and rel[1] == ":"):
            raise EvaluationInputError(f"{where}: mask path {rel!r} must be relative to the prediction folder")
        mask_path = (root / rel).resolve()
        if mask_path != root and root not in mask_path.parents:
            raise EvaluationInputError(f"{where}: mask path {rel!r} points outside the prediction folder {root}")
        if mask_path in seen:
            raise EvaluationInputError(f"{where}: mask {rel!r} is listed twice (first on line {seen[mask_path]})")
        seen[mask_path] = number
        try:
            class_value = float(class_text)
        except ValueError:
            raise EvaluationInputError(f"{where}: class id {class_text!r} is not a number") from None
        if not math.isfinite(class_value) or class_value != int(class_value):
            raise EvaluationInputError(f"{where}: class id {class_text!r} is not an integer")
        try:
            score = float(score_text)
        except ValueError:
            raise EvaluationInputError(f"{where}: confidence {score_text!r} is not a number") from None
        if not math.isfinite(score):
            raise EvaluationInputError(f"{where}: confidence {score_text!r} is not finite")
        out.append(PredictionLine(mask_path, int(class_value), score, number))
    return out


def load_scene_prediction(pred_file: str | os.PathLike, pred_root: str | os.PathLike, num_vertices: int, *,
                          dataset: str = "scannet") -> ScenePrediction:
    """A scene's prediction file and its masks as a :class:`ScenePrediction`.

    Masks of classes outside the evaluated set are not read (the official script skips them too);
    those entries are left out of the returned prediction, which does not change any result.
    """
    classes = class_set(dataset)
    lines = [ln for ln in read_prediction_file(pred_file, pred_root) if ln.class_id in classes.ids]
    masks = np.zeros((len(lines), num_vertices), dtype=bool)
    for i, ln in enumerate(lines):
        masks[i] = read_mask_file(ln.mask_path, num_vertices, referenced_from=f"{pred_file}:{ln.line}")
    return ScenePrediction(masks, np.array([ln.class_id for ln in lines], np.int64),
                           np.array([ln.score for ln in lines], np.float64))


@dataclass(frozen=True)
class ScenePairs:
    """The scenes of a prediction folder matched to GT files."""

    names: list[str]
    pred_files: list[Path]
    gt_files: list[Path]
    gt_without_prediction: list[str]   # GT scenes that have no prediction file (not evaluated)


def pair_scene_files(pred_dir: str | os.PathLike, gt_dir: str | os.PathLike) -> ScenePairs:
    """Match ``PRED_DIR/<scene>.txt`` to ``GT_DIR/<scene>.txt``; a prediction without GT is an error."""
    pred_dir, gt_dir = Path(pred_dir), Path(gt_dir)
    if not pred_dir.is_dir():
        raise EvaluationInputError(f"{pred_dir}: prediction folder not found")
    if not gt_dir.is_dir():
        raise EvaluationInputError(f"{gt_dir}: GT folder not found")
    pred_files = sorted(p for p in pred_dir.iterdir()
                        if p.is_file() and p.suffix == ".txt" and p.name != OFFICIAL_RESULT_NAME)
    if not pred_files:
        raise EvaluationInputError(f"{pred_dir}: no prediction files (<scene>.txt) in the folder's root")
    gt_files = []
    for p in pred_files:
        gt = gt_dir / p.name
        if not gt.is_file():
            raise EvaluationInputError(f"{p}: no GT file {gt} for this prediction file")
        gt_files.append(gt)
    names = [p.stem for p in pred_files]
    have = set(names)
    missing = sorted(g.stem for g in gt_dir.glob("*.txt") if g.stem not in have)
    return ScenePairs(names, pred_files, gt_files, missing)


def evaluate_folders(pred_dir: str | os.PathLike, gt_dir: str | os.PathLike, *, dataset: str = "scannet",
                     require_all_scenes: bool = False,
                     progress: Optional[Callable[[int, int, str], None]] = None,
                     score_threshold: float = DEFAULT_SCORE_THRESHOLD,
                     pooled: Optional[ScanNetEvaluator] = None) -> EvaluationResult:
    """Evaluate a prediction folder against a GT folder (the official CLI contract).

    With ``require_all_scenes`` a GT scene without a prediction file is an error; otherwise it is
    not evaluated (as in the official script). ``progress(done, total, scene)`` is called per scene.
    ``score_threshold``: S3DIS precision / recall confidence threshold (ASIS-style metrics).
    ``pooled``: an evaluator that receives every scene too (S3DIS 6-fold: all rooms of all folds pooled).
    """
    pairs = pair_scene_files(pred_dir, gt_dir)
    if require_all_scenes and pairs.gt_without_prediction:
        shown = ", ".join(pairs.gt_without_prediction[:5])
        more = "" if len(pairs.gt_without_prediction) <= 5 else f" (and {len(pairs.gt_without_prediction) - 5} more)"
        raise EvaluationInputError(f"{pred_dir}: no prediction file for GT scenes {shown}{more}")
    evaluator = ScanNetEvaluator(dataset=dataset, score_threshold=score_threshold)
    for i, (name, pred_file, gt_file) in enumerate(zip(pairs.names, pairs.pred_files, pairs.gt_files)):
        gt_ids = read_gt_ids(gt_file)
        prediction = load_scene_prediction(pred_file, pred_dir, gt_ids.shape[0], dataset=dataset)
        evaluator.add(gt_ids, prediction, scene_name=str(pred_file))
        if pooled is not None:
            pooled.add(gt_ids, prediction, scene_name=str(pred_file))
        if progress is not None:
            progress(i + 1, len(pairs.names), name)
    return evaluator.result()
