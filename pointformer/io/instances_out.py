"""The files ``pointformer infer SCAN --out OUT`` writes (the contract ``pointformer show`` reads).

For a scan with stem ``S`` and N points, in ``OUT``:

- ``S.instances.json``: ``{"source", "num_points", "checkpoint", "dataset", "features", "tiles", "classes",
  "instances": [{"id", "class_id", "class_name", "score", "num_points"}, ...]}`` plus descriptive keys
  (``format``, ``superpoints``); instance ids are 0..K-1;
- ``S.instance_ids.npy`` / ``S.class_ids.npy``: int32 [N], the instance (index into ``instances``) and the
  dataset class id of every point, -1 = none; ``S.instance_ids.txt`` / ``S.class_ids.txt``: the same, one
  integer per line;
- ``S.ply``: the points (and faces of a mesh) coloured by instance, with ``instance`` and ``class`` int32
  vertex properties; coordinates as in the input (double precision when the input had it);
- LAS/LAZ input: ``S.las`` / ``S.laz``, a copy of the input (header, scales and offsets unchanged) with the
  extra dimensions ``instance`` and ``class`` (int32).

Every file is written atomically (:mod:`pointformer.io.atomic`).
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO, Mapping, Optional

import numpy as np

from pointformer.io.atomic import atomic_write, atomic_write_json
from pointformer.io.ply import write_ply

# Integers per text chunk: bounded memory for text files of tens of millions of lines.
_TEXT_CHUNK = 1 << 20


@dataclass
class InstanceFiles:
    """The paths written for one scan (``las`` None unless the input was LAS/LAZ)."""

    json: Path
    instance_npy: Path
    class_npy: Path
    instance_txt: Path
    class_txt: Path
    ply: Path
    las: Optional[Path]


def _write_ids_text(path: Path, ids: np.ndarray) -> None:
    def write(f: BinaryIO) -> None:
        for start in range(0, ids.shape[0], _TEXT_CHUNK):
            chunk = ids[start:start + _TEXT_CHUNK].tolist()
            f.write(("\n".join(map(str, chunk)) + "\n").encode("ascii"))

    atomic_write(path, write)


def _write_npy(path: Path, array: np.ndarray) -> None:
    atomic_write(path, lambda f: np.save(f, array, allow_pickle=False))


def write_las_with_labels(source: str | os.PathLike, dest: str | os.PathLike, instance_ids: np.ndarray,
                          class_ids: np.ndarray) -> Path:
    """A copy of the LAS/LAZ file ``source`` with int32 extra dimensions ``instance`` and ``class`` [N];
    the header (point format, scales, offsets, CRS records) and every point record are kept as they are.
    ``dest`` ending in ``.laz`` is compressed (lazrs)."""
    import laspy

    source, dest = Path(source), Path(dest)
    las = laspy.read(source)
    if len(las.points) != instance_ids.shape[0] or class_ids.shape != instance_ids.shape:
        raise ValueError(f"{source}: {len(las.points)} points but {instance_ids.shape[0]} instance and "
                         f"{class_ids.shape[0]} class ids")
    have = set(las.point_format.dimension_names)
    new = [laspy.ExtraBytesParams(name=name, type=np.int32, description=f"pointformer {name} id")
           for name in ("instance", "class") if name not in have]
    if new:
        las.add_extra_dims(new)
    las["instance"] = instance_ids.astype(np.int32)
    las["class"] = class_ids.astype(np.int32)
    compress = dest.suffix.lower() == ".laz"
    return atomic_write(dest, lambda f: las.write(f, do_compress=compress))


def write_instance_files(out: str | os.PathLike, stem: str, *, xyz: np.ndarray, colors: np.ndarray,
                         instance_ids: np.ndarray, class_ids: np.ndarray, meta: Mapping[str, Any],
                         instances: list[dict], classes: Mapping[int, str], faces: Optional[np.ndarray] = None,
                         double: bool = False, las_source: Optional[str | os.PathLike] = None) -> InstanceFiles:
    """Write the files of the module doc for one scan of N points.

    xyz float [N, 3] as in the input; colors uint8 [N, 3] (by instance); instance_ids, class_ids int [N]
    (-1 = none); meta: the JSON's ``source``, ``checkpoint``, ``dataset``, ``features``, ``tiles`` (and any
    further descriptive keys); instances: dicts with ``id``, ``class_id``, ``class_name``, ``score``,
    ``num_points``; classes: class id -> name; faces int [F, 3] of a mesh; double: write float64 coordinates;
    las_source: the input LAS/LAZ file to copy with the labels.
    """
    out = Path(out)
    n = int(instance_ids.shape[0])
    instance_ids = np.asarray(instance_ids, dtype=np.int32)
    class_ids = np.asarray(class_ids, dtype=np.int32)
    if xyz.shape != (n, 3) or class_ids.shape != (n,) or colors.shape != (n, 3):
        raise ValueError(f"{stem}: need xyz [N, 3], colors [N, 3] and class ids [N] for N = {n} instance ids, got "
                         f"{xyz.shape}, {colors.shape} and {class_ids.shape}")
    if n and (instance_ids.min() < -1 or instance_ids.max() >= len(instances)):
        raise ValueError(f"{stem}: instance ids must lie in -1..{len(instances) - 1}")
    for i, inst in enumerate(instances):
        if inst["id"] != i:
            raise ValueError(f"{stem}: instances must be numbered 0..K-1 in order; entry {i} has id {inst['id']}")
    for key in ("source", "checkpoint", "dataset", "features", "tiles"):
        if key not in meta:
            raise ValueError(f"{stem}: the instances JSON needs {key!r}")
    files = InstanceFiles(json=out / f"{stem}.instances.json", instance_npy=out / f"{stem}.instance_ids.npy",
                          class_npy=out / f"{stem}.class_ids.npy", instance_txt=out / f"{stem}.instance_ids.txt",
                          class_txt=out / f"{stem}.class_ids.txt", ply=out / f"{stem}.ply", las=None)
    _write_npy(files.instance_npy, instance_ids)
    _write_npy(files.class_npy, class_ids)
    _write_ids_text(files.instance_txt, instance_ids)
    _write_ids_text(files.class_txt, class_ids)
    write_ply(files.ply, xyz, colors=colors, faces=faces, extra={"instance": instance_ids, "class": class_ids},
              double=double)
    if las_source is not None:
        suffix = Path(las_source).suffix.lower()
        files.las = write_las_with_labels(las_source, out / f"{stem}{suffix}", instance_ids, class_ids)
    payload = {"source": str(meta["source"]), "num_points": n, "checkpoint": str(meta["checkpoint"]),
               "dataset": meta["dataset"], "features": list(meta["features"]), "tiles": meta["tiles"],
               **{k: v for k, v in meta.items() if k not in ("source", "checkpoint", "dataset", "features", "tiles")},
               "classes": {str(int(c)): str(name) for c, name in classes.items()},
               "instances": [{"id": int(inst["id"]), "class_id": int(inst["class_id"]),
                              "class_name": str(inst["class_name"]), "score": float(inst["score"]),
                              "num_points": int(inst["num_points"])} for inst in instances]}
    atomic_write_json(files.json, payload)  # last: its presence means the other files are complete
    return files
