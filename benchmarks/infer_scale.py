"""``pointformer infer`` on scans of growing size: wall time and peak memory against the number of points.

A colour-free synthetic "building" (a grid of 6 m x 6 m rooms: floor, four walls, three boxes each;
points sampled uniformly on the surfaces at ~1 cm spacing, 3 mm noise, no colour) is written as a binary
PLY for each size; then ``python -m pointformer infer SCAN --checkpoint CKPT --out OUT`` runs in a child
process whose peak RSS (``ru_maxrss`` from ``os.wait4``) and wall time are recorded. The checkpoint is an
untrained tiny model reading only normals (``data.features=[normals]``; built here, seeded), so every run
also estimates normals (kNN PCA) and kNN superpoints (once per scan): the costs of a real colour-free scan.
Predictions of an untrained model are meaningless; only time and memory are measured.

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/infer_scale.py --sizes 1e6 5e6 10e6 20e6 --out /tmp/infer_scale

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/infer_scale.py --agreement CKPT --rooms RAW/scans --tile 8

``--agreement``: with a trained checkpoint, the synthetic rooms (meshes) under ``--rooms`` become one bare
cloud of 4 rooms on a 2 x 2 grid (8 m apart rounded up to the model's translation period, ``--spacing``
to set it; no faces; colour only if the model reads it), predicted in one pass, in tiles, and room by room;
prints the share of one-pass (and per-room) instances that the tiled prediction finds with IoU >= 0.9 (the
issue's criterion) and >= 0.5, and, as the model's own stability, the same share between room-by-room
predictions and those of the rooms without a random 2 % of their points. ``--query-radius M``:
``Predictor.predict(query_radius=M)``; ``--queries N|all``: ``Predictor.predict(num_queries=...)``;
``--override KEY=VALUE``: changes of the stored config (e.g. ``model.decoder.eval_num_queries=1000``);
``--per-room normals superpoints mesh``: estimate normals / kNN
superpoints once per room instead of once per scan, or (``mesh``) keep the rooms' faces: the scan is one mesh,
predicted as ``infer`` predicts a mesh file (segmentator superpoints over the whole mesh, vertex normals).

``--normals N``: the normals estimation alone (kNN PCA, ``cloud_normals``, as a colour-free model's tiles
run it) on one synthetic room of N points: seconds and the angle to the true normal (floor +z, walls inwards).

Prints one JSON line per size: points, tiles, superpoints (and voxel units), seconds (the whole child process,
including Python start-up), stages (read / predict / write, as ``infer`` reports them), peak_rss_gb,
us_per_point, tile_size, overlap.
"""
from __future__ import annotations

import argparse
import json
import math
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Optional

import numpy as np

ROOM = 6.0          # metres (square)
HEIGHT = 2.5
DENSITY = 10_000.0  # points per square metre of surface (~1 cm spacing)


def _box_surface(rng: np.random.Generator, n: int, low: np.ndarray, high: np.ndarray, *,
                 top: bool = True) -> np.ndarray:
    """n points uniformly on the four sides and (``top``) the top of the box [low, high]."""
    size = high - low
    areas = np.array([size[0] * size[1] * top, size[0] * size[2], size[0] * size[2], size[1] * size[2],
                      size[1] * size[2]])
    face = rng.choice(5, size=n, p=areas / areas.sum())
    uvw = rng.random((n, 3))
    pts = low + uvw * size
    pts[face == 0, 2] = high[2]
    pts[face == 1, 1] = low[1]
    pts[face == 2, 1] = high[1]
    pts[face == 3, 0] = low[0]
    pts[face == 4, 0] = high[0]
    return pts


def building_scan(num_points: int, *, seed: int = 0) -> np.ndarray:
    """float64 [num_points, 3]: rooms on a grid (module doc), z up, metres; as many rooms as the density needs."""
    rng = np.random.default_rng(seed)
    per_room_area = ROOM * ROOM + 4 * ROOM * HEIGHT + 3 * 2.5  # floor, walls, ~3 boxes
    rooms = max(1, int(round(num_points / (DENSITY * per_room_area))))
    cols = int(math.ceil(math.sqrt(rooms)))
    counts = np.full(rooms, num_points // rooms)
    counts[: num_points - counts.sum()] += 1
    parts = []
    for r, n in enumerate(counts):
        origin = np.array([(r % cols) * ROOM, (r // cols) * ROOM, 0.0])
        n_floor = int(n * ROOM * ROOM / per_room_area)
        n_walls = int(n * 4 * ROOM * HEIGHT / per_room_area)
        n_boxes = n - n_floor - n_walls
        floor = np.c_[rng.random((n_floor, 2)) * ROOM, np.zeros(n_floor)]
        walls = _box_surface(rng, n_walls, np.zeros(3), np.array([ROOM, ROOM, HEIGHT]), top=False)
        boxes = []
        for b, m in enumerate(np.array_split(np.arange(n_boxes), 3)):
            low = np.array([0.8 + 1.7 * b, 0.8 + rng.random() * 3.0, 0.0])
            boxes.append(_box_surface(rng, m.size, low, low + np.array([0.9, 0.7, 0.5 + 0.4 * rng.random()])))
        room = np.concatenate([floor, walls, *boxes]) + origin
        parts.append(room + rng.normal(scale=0.003, size=room.shape))
    xyz = np.concatenate(parts)
    return xyz[rng.permutation(xyz.shape[0])]


GEO_OFFSET = np.array([512_000.0, 4_123_000.0, 200.0])  # UTM-like: float32 would lose decimetres


def write_las(path: Path, xyz: np.ndarray) -> None:
    """A LAS 1.2 file (point format 0, no colour) of xyz float64 [N, 3] at a 1 mm scale."""
    import laspy

    header = laspy.LasHeader(point_format=0, version="1.2")
    header.offsets = xyz.min(axis=0)
    header.scales = [0.001, 0.001, 0.001]
    las = laspy.LasData(header)
    las.x, las.y, las.z = xyz[:, 0], xyz[:, 1], xyz[:, 2]
    las.write(str(path))


def tiny_normals_checkpoint(path: Path) -> Path:
    """An untrained tiny model (seeded) that reads only normals, as a checkpoint file."""
    import torch

    from pointformer.build import build_model
    from pointformer.config import RunSettings, compose_config
    from pointformer.config.compose import plain_config, to_yaml
    from pointformer.io.checkpoint import write_checkpoint

    torch.manual_seed(0)
    cfg = compose_config(["experiment=demo_cpu", "data.root=/nonexistent", "data.features=[normals]",
                          "data.in_channels=3", "data.color_mean=[0.5,0.5,0.5]", "data.color_std=[0.25,0.25,0.25]"])
    model = build_model(RunSettings.from_config(cfg))
    return write_checkpoint(path, {"model": model.state_dict(), "step": 0, "epoch": 0,
                                   "config": to_yaml(plain_config(cfg))})


def run_infer(scan: Path, checkpoint: Path, out: Path, tile: float, overlap: float) -> dict:
    """Wall seconds and peak RSS of one ``pointformer infer`` child process."""
    cmd = [sys.executable, "-m", "pointformer", "infer", str(scan), "--checkpoint", str(checkpoint), "--out", str(out),
           "--tile", str(tile), "--overlap", str(overlap), "--no-progress"]
    start = time.perf_counter()
    child = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env={**os.environ})
    _, status, usage = os.wait4(child.pid, 0)
    seconds = time.perf_counter() - start
    text = child.stdout.read().decode(errors="replace") if child.stdout else ""
    if os.waitstatus_to_exitcode(status) != 0:
        raise RuntimeError(f"infer failed on {scan}:\n{text[-3000:]}")
    return {"seconds": round(seconds, 1), "peak_rss_gb": round(usage.ru_maxrss / 1024 ** 2, 3), "log": text}


def _agreement(reference: np.ndarray, other: np.ndarray) -> np.ndarray:
    """Best IoU in ``other`` of every instance of ``reference`` (both int [N], -1 = none)."""
    ious = []
    for k in range(int(reference.max()) + 1):
        a = reference == k
        if not a.any():
            continue
        hit = other[a][other[a] >= 0]
        if hit.size == 0:
            ious.append(0.0)
            continue
        b = other == np.bincount(hit).argmax()
        ious.append(float((a & b).sum() / (a | b).sum()))
    return np.array(ious)


def tiling_agreement(checkpoint: Path, rooms: Path, tile: float, overlap: float, count: int = 4,
                      overrides: tuple[str, ...] = (), per_room_estimates: tuple[str, ...] = (),
                      spacing: Optional[float] = None, query_radius: Optional[float] = None,
                      queries: Optional[str] = None) -> dict:
    """Tiled vs one-pass vs room-by-room instances of a trained model on a 2 x 2 grid of rooms (module doc);
    ``overrides``: ``key=value`` changes of the checkpoint's stored config (e.g. the evaluation query count)."""
    from pointformer.inference import Predictor
    from pointformer.io.clouds import read_cloud
    from pointformer.preprocess.cloud_segmentator import cloud_normals, segment_cloud

    predictor = Predictor.from_checkpoint(checkpoint, overrides, device="cpu")
    wants_rgb = "rgb" in predictor.settings.data.features
    clouds = [read_cloud(p) for p in sorted(rooms.glob("*/*_vh_clean_2.ply"))[-count:]]
    parts, colours, room_of = [], [], []
    # rooms are < 7.3 m: 8 m or more apart (1 m gaps), rounded up to the model's translation period so that a
    # room predicted alone sees the same voxels as in the whole scan (a reference that tiling cannot change)
    if spacing is None:
        period = float(predictor.model.translation_period)
        spacing = math.ceil(8.0 / period) * period
    for i, cloud in enumerate(clouds):
        xyz = cloud.xyz - cloud.xyz.min(axis=0)
        xyz[:, :2] += [(i % 2) * spacing, (i // 2) * spacing]
        parts.append(xyz)
        colours.append(cloud.rgb)
        room_of.append(np.full(len(xyz), i))
    xyz, room_of = np.concatenate(parts), np.concatenate(room_of)
    rgb = np.concatenate(colours) if wants_rgb else None
    # per_room: normals and/or kNN superpoints made once per whole room and given to every prediction, so
    # that tiled and untiled passes differ only in what the model sees (diagnostic of the per-tile estimates)
    normals = superpoint = None
    if "normals" in per_room_estimates:
        normals = np.concatenate([cloud_normals(xyz[room_of == i].astype(np.float32)) for i in range(len(clouds))])
    if "superpoints" in per_room_estimates:
        superpoint = np.concatenate([segment_cloud(xyz[room_of == i].astype(np.float32)) + 100_000 * i
                                     for i in range(len(clouds))])
    if "mesh" in per_room_estimates:
        # the scan is the rooms' meshes as ONE mesh, predicted as `infer` predicts a mesh file: the mesh
        # segmentator over the whole mesh (as in training) and area-weighted vertex normals
        import dataclasses

        from pointformer.engine.infer import mesh_normals, mesh_superpoints

        starts = np.cumsum([0] + [c.num_points for c in clouds[:-1]])
        faces = np.concatenate([c.faces + start for c, start in zip(clouds, starts)])
        scan = dataclasses.replace(clouds[0], xyz=xyz, faces=faces, normals=None,
                                   rgb=None if rgb is None else rgb.astype(np.uint8))
        superpoint, normals = mesh_superpoints(scan), mesh_normals(scan)

    def predict(sel: np.ndarray, tile_size: Optional[float]):
        return predictor.predict(xyz[sel], None if rgb is None else rgb[sel],
                                 normals=None if normals is None else normals[sel],
                                 superpoint=None if superpoint is None else superpoint[sel],
                                 tile_size=tile_size, overlap=overlap, min_points=50, **predict_options)

    predict_options = {}  # unset: Predictor.predict's "auto" (scan_defaults)
    if query_radius is not None:
        predict_options["query_radius"] = None if query_radius <= 0 else query_radius
    if queries is not None:
        predict_options["num_queries"] = {"all": "all", "model": None}.get(queries) or int(queries)
    auto_queries, auto_radius = predictor.scan_defaults()
    everything = np.ones(len(xyz), bool)
    one = predict(everything, None).instance_ids
    tiled_result = predict(everything, tile)
    tiled = tiled_result.instance_ids
    # the model's own stability: each room alone, and each room alone without a random 2 % of its points
    # (compared on the points both have; -2 marks the dropped ones)
    keep = np.random.default_rng(0).random(len(xyz)) >= 0.02
    per_room, shifted = np.full(len(xyz), -1, np.int32), np.full(len(xyz), -2, np.int32)
    offset = shifted_offset = 0
    for i in range(len(clouds)):
        sel = room_of == i
        ids = predict(sel, None).instance_ids
        per_room[sel] = np.where(ids >= 0, ids + offset, -1)
        offset += int(ids.max()) + 1
        kept = sel & keep
        moved = predict(kept, None).instance_ids
        shifted[kept] = np.where(moved >= 0, moved + shifted_offset, -1)
        shifted_offset += int(moved.max()) + 1
    both = shifted != -2
    vs_one, vs_room = _agreement(one, tiled), _agreement(per_room, tiled)
    vs_shift = _agreement(per_room[both], shifted[both])
    return {"bench": "infer_tiling_agreement", "checkpoint": str(checkpoint), "overrides": list(overrides),
            "per_room_estimates": list(per_room_estimates),
            "query_radius": predict_options.get("query_radius", auto_radius),
            "queries": predict_options.get("num_queries", auto_queries),
            "rooms": len(clouds), "room_spacing": round(spacing, 3),
            "points": int(len(xyz)), "tile_size": tile, "overlap": overlap,
            "tiles": tiled_result.tiles["count"] if tiled_result.tiles else 1,
            "instances_one_pass": int(one.max()) + 1, "instances_per_room": offset,
            "instances_tiled": len(tiled_result.instances),
            "one_pass_iou90": round(float((vs_one >= 0.9).mean()), 3),
            "one_pass_iou50": round(float((vs_one >= 0.5).mean()), 3),
            "per_room_iou90": round(float((vs_room >= 0.9).mean()), 3),
            "per_room_iou50": round(float((vs_room >= 0.5).mean()), 3),
            "per_room_vs_dropout_iou90": round(float((vs_shift >= 0.9).mean()), 3),
            "per_room_vs_dropout_iou50": round(float((vs_shift >= 0.5).mean()), 3)}


def _room_truth(xyz: np.ndarray) -> np.ndarray:
    """float [M, 3] true normals of floor and wall points of the first room (zeros: not checked)."""
    truth = np.zeros_like(xyz)
    truth[xyz[:, 2] < 0.01, 2] = 1.0
    margin = 0.05  # wall points away from the room's corners; above the boxes
    for axis, side, sign in ((0, 0.0, 1.0), (0, ROOM, -1.0), (1, 0.0, 1.0), (1, ROOM, -1.0)):
        other = xyz[:, 1 - axis]
        near = (np.abs(xyz[:, axis] - side) < 0.01) & (xyz[:, 2] > 1.2) & (other > margin) & (other < ROOM - margin)
        truth[near, axis] = sign
    return truth


def normals_check(num_points: int, voxel: float = 0.04) -> list[dict]:
    """Time and accuracy of the kNN-PCA normals on one room (module doc): on the raw points, and on the
    ``voxel``-metre units that ``Predictor.predict`` estimates them on."""
    from pointformer.inference.tiling import voxel_units
    from pointformer.preprocess.cloud_segmentator import cloud_normals

    xyz = building_scan(num_points, seed=2)
    xyz = xyz[(xyz[:, 0] < ROOM) & (xyz[:, 1] < ROOM)]  # the first room
    out = []
    for name, points in (("points", xyz), ("voxel units", voxel_units(xyz - xyz.min(axis=0), voxel).xyz
                                            + xyz.min(axis=0))):
        truth = _room_truth(points)
        known = np.linalg.norm(truth, axis=1) > 0
        start = time.perf_counter()
        normals = cloud_normals(points.astype(np.float32))
        seconds = time.perf_counter() - start
        angle = np.degrees(np.arccos(np.clip((normals[known] * truth[known]).sum(axis=1), -1, 1)))
        out.append({"bench": "infer_normals", "on": name, "points": int(len(points)), "seconds": round(seconds, 2),
                    "us_per_point": round(1e6 * seconds / len(points), 2), "checked": int(known.sum()),
                    "median_angle_deg": round(float(np.median(angle)), 2),
                    "within_10deg": round(float((angle < 10).mean()), 4),
                    "flipped": round(float((angle > 90).mean()), 4)})
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", type=float, nargs="+", default=[1e6, 5e6, 10e6, 20e6])
    parser.add_argument("--tile", type=float, default=12.0)
    parser.add_argument("--overlap", type=float, default=4.0)
    parser.add_argument("--out", type=Path, default=Path("/tmp/infer_scale"))
    parser.add_argument("--keep", action="store_true", help="keep the scans and outputs")
    parser.add_argument("--format", choices=("ply", "las"), default="ply",
                        help="scan file: binary PLY (float32), or LAS 1.2 at UTM-like offsets (1 mm scale)")
    parser.add_argument("--agreement", type=Path, default=None, metavar="CKPT",
                        help="instead: tiled vs one-pass agreement of this trained checkpoint on --rooms")
    parser.add_argument("--rooms", type=Path, default=None, help="folder of synthetic rooms (RAW/scans)")
    parser.add_argument("--override", nargs="*", default=[], metavar="KEY=VALUE",
                        help="with --agreement: changes of the checkpoint's stored config")
    parser.add_argument("--spacing", type=float, default=None,
                        help="with --agreement: room spacing in metres (default: 8 m rounded up to the model's "
                             "translation period)")
    parser.add_argument("--queries", default=None, metavar="N|all|model",
                        help="with --agreement: Predictor.predict(num_queries=...) (all: one query per superpoint, "
                             "model: its evaluation count; default: predict's auto)")
    parser.add_argument("--query-radius", type=float, default=None,
                        help="with --agreement: Predictor.predict(query_radius=...) (0: none; default: predict's auto)")
    parser.add_argument("--per-room", nargs="*", default=[], choices=("normals", "superpoints", "mesh"),
                        help="with --agreement: estimate these once per whole room and give them to every "
                             "prediction (instead of once per scan)")
    parser.add_argument("--normals", type=float, default=None, metavar="N",
                        help="instead: time and accuracy of the normals estimation on a room of N points")
    args = parser.parse_args(argv)
    if args.normals is not None:
        for record in normals_check(int(args.normals)):
            print(json.dumps(record), flush=True)
        return 0
    if args.agreement is not None:
        if args.rooms is None:
            parser.error("--agreement needs --rooms")
        print(json.dumps(tiling_agreement(args.agreement, args.rooms, args.tile, args.overlap,
                                                    overrides=tuple(args.override),
                                                    per_room_estimates=tuple(args.per_room),
                                                    spacing=args.spacing, query_radius=args.query_radius,
                                                    queries=args.queries)),
              flush=True)
        return 0
    from pointformer.io.ply import write_ply

    args.out.mkdir(parents=True, exist_ok=True)
    checkpoint = tiny_normals_checkpoint(args.out / "tiny_normals.pt")
    for size in args.sizes:
        n = int(size)
        scan = args.out / f"building_{n}.{args.format}"
        if args.format == "ply":
            write_ply(scan, building_scan(n).astype(np.float32))
        else:
            write_las(scan, building_scan(n) + GEO_OFFSET)
        result = run_infer(scan, checkpoint, args.out / f"out_{n}", args.tile, args.overlap)
        meta = json.loads((args.out / f"out_{n}" / f"{scan.stem}.instances.json").read_text())
        tiles = meta["tiles"]["count"] if meta["tiles"] else 1
        stages = next(line for line in result["log"].splitlines() if line.startswith("seconds: "))
        stages = {k: float(v) for k, v in (part.split() for part in stages[len("seconds: "):].split(", "))}
        print(json.dumps({"bench": "infer_scale", "format": args.format, "points": n, "tiles": tiles,
                          "superpoints": meta["superpoints"],
                          "seconds": result["seconds"], "stages": stages, "peak_rss_gb": result["peak_rss_gb"],
                          "us_per_point": round(1e6 * result["seconds"] / n, 2), "tile_size": args.tile,
                          "overlap": args.overlap, "instances": len(meta["instances"])}), flush=True)
        if not args.keep:
            scan.unlink()
            for f in (args.out / f"out_{n}").iterdir():
                f.unlink()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
