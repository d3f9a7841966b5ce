"""Reader of the instance files ``pointformer infer SCAN --out OUT`` writes (the infer → show contract).

For a scan with stem ``S`` and N points, ``OUT`` holds::

    S.instances.json     {"source", "num_points": N, "checkpoint", "dataset", "features", "tiles",
                          "classes": {"<class_id>": "<name>"},
                          "instances": [{"id": 0..K-1, "class_id", "class_name", "score", "num_points"}]}
    S.instance_ids.npy   int32 [N] instance id per point (index into "instances"), -1 = no instance
    S.class_ids.npy      int32 [N] class id per point (the dataset's label id), -1 = none
    S.instance_ids.txt / S.class_ids.txt   the same, one integer per line (read when the .npy is absent)

Every defect raises :class:`PredictionFormatError` (a ``ValueError``) naming the file and what is wrong.
"""
from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

import numpy as np

JSON_SUFFIX = ".instances.json"


class PredictionFormatError(ValueError):
    """An infer output file is missing or breaks the contract (the message names the file)."""


@dataclass(frozen=True)
class PredictedInstance:
    """One predicted instance of a scan: an entry of ``instances`` in ``S.instances.json`` and of
    ``ScanInstances.instances`` (``Predictor.predict``); id 0..K-1 by descending score."""

    id: int
    class_id: int
    class_name: str
    score: float
    num_points: int


@dataclass
class InstancePredictions:
    """Per-point instances of one scan (N points, K instances).

    instance_ids int32 [N]: index into ``instances``, -1 = no instance; class_ids int32 [N]: dataset
    label id, -1 = none; classes: class id -> name; meta: the JSON's other fields (source, checkpoint...).
    """

    stem: str
    instance_ids: np.ndarray
    class_ids: np.ndarray
    instances: list[PredictedInstance]
    classes: dict[int, str]
    dataset: Optional[str] = None
    meta: dict[str, Any] = field(default_factory=dict)

    @property
    def num_points(self) -> int:
        return int(self.instance_ids.shape[0])


def find_prediction_json(path: str | os.PathLike, stem: Optional[str] = None) -> Path:
    """The ``S.instances.json`` that ``path`` names: the file itself, ``S.instance_ids.(npy|txt)`` or
    ``S.class_ids.*`` next to it, or a folder holding one (``stem`` picks one when it holds several)."""
    path = Path(path)
    if path.is_dir():
        found = sorted(path.glob(f"*{JSON_SUFFIX}"))
        if stem is not None and (path / f"{stem}{JSON_SUFFIX}").is_file():
            return path / f"{stem}{JSON_SUFFIX}"
        if len(found) == 1:
            return found[0]
        if not found:
            raise PredictionFormatError(f"{path}: no *{JSON_SUFFIX} in this folder (is it a `pointformer infer` "
                                        "output folder?)")
        names = ", ".join(p.name for p in found[:5])
        raise PredictionFormatError(f"{path}: {len(found)} prediction files ({names}...); name one of them")
    name = path.name
    for suffix in (JSON_SUFFIX, ".instance_ids.npy", ".instance_ids.txt", ".class_ids.npy", ".class_ids.txt"):
        if name.endswith(suffix):
            candidate = path.with_name(name[: -len(suffix)] + JSON_SUFFIX)
            if not candidate.is_file():
                raise PredictionFormatError(f"{candidate}: prediction file not found")
            return candidate
    if not path.exists():
        raise PredictionFormatError(f"{path}: not found")
    raise PredictionFormatError(f"{path}: not a prediction file (expected a folder, S{JSON_SUFFIX}, "
                                "S.instance_ids.npy or S.instance_ids.txt)")


def _read_int_lines(path: Path) -> np.ndarray:
    try:
        text = path.read_text()
    except (OSError, UnicodeDecodeError) as exc:
        raise PredictionFormatError(f"{path}: cannot be read ({exc})") from None
    tokens = text.split()
    try:
        return np.array(tokens, dtype=np.int64)
    except (ValueError, OverflowError):
        lines = text.splitlines()
        for number, line in enumerate(lines, 1):
            try:
                int(line)
            except ValueError:
                raise PredictionFormatError(f"{path}: line {number}: {line.strip()[:40]!r} is not an integer; "
                                            "expected one integer per line") from None
        raise PredictionFormatError(f"{path}: integers out of range") from None


def read_point_ids(json_path: Path, kind: str, num_points: int) -> np.ndarray:
    """int32 [N] ids of ``kind`` ("instance_ids" | "class_ids") next to ``json_path`` (.npy, else .txt)."""
    base = json_path.name[: -len(JSON_SUFFIX)]
    npy, txt = json_path.with_name(f"{base}.{kind}.npy"), json_path.with_name(f"{base}.{kind}.txt")
    if npy.is_file():
        source = npy
        try:
            ids = np.load(npy, allow_pickle=False)
        except Exception as exc:  # numpy raises several types for a corrupt file
            raise PredictionFormatError(f"{npy}: not a readable .npy file ({type(exc).__name__}: {exc})") from None
        if ids.ndim != 1 or not np.issubdtype(ids.dtype, np.integer):
            raise PredictionFormatError(f"{npy}: expected an integer vector [N], got {ids.dtype} {ids.shape}")
    elif txt.is_file():
        source, ids = txt, _read_int_lines(txt)
    else:
        raise PredictionFormatError(f"{npy}: not found (nor {txt.name}); both are written by `pointformer infer`")
    if ids.shape[0] != num_points:
        raise PredictionFormatError(f"{source}: {ids.shape[0]} values, but {json_path.name} says num_points = "
                                    f"{num_points}")
    if ids.size and ids.min() < -1:
        bad = int(np.flatnonzero(ids < -1)[0])
        raise PredictionFormatError(f"{source}: point {bad} has id {int(ids[bad])}; ids are >= 0, or -1 for none")
    return ids.astype(np.int32)


def _instance_entry(raw: Any, index: int, where: Path) -> PredictedInstance:
    try:
        return PredictedInstance(id=int(raw["id"]), class_id=int(raw["class_id"]), class_name=str(raw["class_name"]),
                                 score=float(raw["score"]), num_points=int(raw["num_points"]))
    except (KeyError, TypeError, ValueError) as exc:
        raise PredictionFormatError(f"{where}: instances[{index}] must have id, class_id, class_name, score and "
                                    f"num_points ({type(exc).__name__}: {exc})") from None


def read_instance_predictions(path: str | os.PathLike, *, stem: Optional[str] = None) -> InstancePredictions:
    """Read one scan's infer outputs from ``path`` (see :func:`find_prediction_json`) and check that the
    JSON, the per-point instance ids and the per-point class ids agree."""
    json_path = find_prediction_json(path, stem)
    try:
        raw = json.loads(json_path.read_text())
    except (OSError, UnicodeDecodeError) as exc:
        raise PredictionFormatError(f"{json_path}: cannot be read ({exc})") from None
    except json.JSONDecodeError as exc:
        raise PredictionFormatError(f"{json_path}: not valid JSON ({exc})") from None
    if not isinstance(raw, dict):
        raise PredictionFormatError(f"{json_path}: expected a JSON object, got {type(raw).__name__}")
    missing = [key for key in ("num_points", "classes", "instances") if key not in raw]
    if missing:
        raise PredictionFormatError(f"{json_path}: missing keys {missing}")
    try:
        num_points = int(raw["num_points"])
        classes = {int(k): str(v) for k, v in dict(raw["classes"]).items()}
    except (TypeError, ValueError) as exc:
        raise PredictionFormatError(f"{json_path}: num_points must be an integer and classes a "
                                    f"{{class id: name}} object ({exc})") from None
    if not isinstance(raw["instances"], list):
        raise PredictionFormatError(f"{json_path}: instances must be a list")
    instances = [_instance_entry(entry, i, json_path) for i, entry in enumerate(raw["instances"])]
    for i, inst in enumerate(instances):
        if inst.id != i:
            raise PredictionFormatError(f"{json_path}: instances[{i}] has id {inst.id}; ids must be 0..K-1 in order")
    instance_ids = read_point_ids(json_path, "instance_ids", num_points)
    class_ids = read_point_ids(json_path, "class_ids", num_points)
    if instance_ids.size and instance_ids.max() >= len(instances):
        raise PredictionFormatError(f"{json_path}: the instance ids reach {int(instance_ids.max())}, but only "
                                    f"{len(instances)} instances are listed")
    members = instance_ids >= 0
    expected = np.array([inst.class_id for inst in instances], dtype=np.int32)
    if members.any() and not (class_ids[members] == expected[instance_ids[members]]).all():
        bad = int(np.flatnonzero(members & (class_ids != expected[np.maximum(instance_ids, 0)]))[0])
        raise PredictionFormatError(f"{json_path}: point {bad} belongs to instance {int(instance_ids[bad])} "
                                    f"(class {int(expected[instance_ids[bad]])}) but its class id is "
                                    f"{int(class_ids[bad])}")
    known = {k: v for k, v in raw.items() if k not in ("num_points", "classes", "instances")}
    dataset = raw.get("dataset")
    return InstancePredictions(stem=json_path.name[: -len(JSON_SUFFIX)], instance_ids=instance_ids,
                               class_ids=class_ids, instances=instances, classes=classes,
                               dataset=str(dataset) if dataset is not None else None, meta=known)
