#!/usr/bin/env python
"""``pointformer show`` on large scans: time and peak memory of the picture, by scan size and renderer.

A synthetic building floor (a grid of 5 m x 4 m rooms, each with a floor, walls and 6 box objects;
every 7th object missed, every 5th prediction a false positive), N points. Each size runs in its own
child process so its peak RSS is its own. Prints one JSON line per (points, backend):

  colour_s   matching + colours + legend (``colour_scene``)
  total_s    ``render_show``: colours, subsample, camera, render, compose, PNG (no PLY)
  peak_rss_gb  the child's max RSS (scene arrays included)
The Open3D render runs in a grandchild process (it can abort without EGL); its own RSS is not in
peak_rss_gb (Linux charges it the forked pages of its parent before exec, so no honest figure is printed).

    python benchmarks/show.py                          # 0.1M, 1M, 4M points; software and open3d
    python benchmarks/show.py --points 100000 --backends software
"""
from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np


def building(num_points: int, seed: int = 0):
    """xyz float32 [N, 3], gt ids, pred ids (int64 [N], -1 none), gt / pred classes and scores."""
    from pointformer.vis.show import ShowScene

    rng = np.random.default_rng(seed)
    rooms_x, rooms_y = 8, 6
    room = rng.integers(0, rooms_x * rooms_y, num_points)
    origin = np.stack([(room % rooms_x) * 5.0, (room // rooms_x) * 4.0], axis=1)
    kind = rng.random(num_points)
    xyz = np.empty((num_points, 3), dtype=np.float32)
    local = rng.random((num_points, 3)) * [5.0, 4.0, 2.8]
    floor = kind < 0.4
    local[floor, 2] = rng.random(floor.sum()) * 0.02
    wall = (kind >= 0.4) & (kind < 0.7)
    local[wall, 1] = np.where(rng.random(wall.sum()) < 0.5, 0.0, 3.98)
    objects = kind >= 0.7
    slot = rng.integers(0, 6, objects.sum())
    centre = np.stack([0.8 + (slot % 3) * 1.6, 1.0 + (slot // 3) * 2.0], axis=1)
    local[objects, :2] = centre + (rng.random((objects.sum(), 2)) - 0.5) * 0.9
    local[objects, 2] = rng.random(objects.sum()) * 0.9
    xyz[:, :2] = origin + local[:, :2]
    xyz[:, 2] = local[:, 2]
    gt = np.full(num_points, -1, dtype=np.int64)
    gt[objects] = room[objects] * 6 + slot
    num_gt = rooms_x * rooms_y * 6
    pred = gt.copy()
    pred[objects & (rng.random(num_points) < 0.1)] = -1      # ragged masks
    pred[np.isin(gt, np.arange(0, num_gt, 7))] = -1          # missed objects
    false_pos = floor & (rng.random(num_points) < 0.05)
    pred[false_pos] = num_gt + (room[false_pos] % 9)          # some floor patches as false positives
    pred = np.unique(pred, return_inverse=True)[1].reshape(-1) - (1 if (pred < 0).any() else 0)
    num_pred = int(pred.max()) + 1
    gt_classes = rng.choice([3, 4, 5, 7], num_gt)
    pred_classes = rng.choice([3, 4, 5, 7], num_pred)  # false positives: any class
    from_gt = (pred >= 0) & (gt >= 0)
    pred_classes[pred[from_gt]] = gt_classes[gt[from_gt]]  # found objects: their class
    rgb = rng.integers(60, 200, (num_points, 3)).astype(np.uint8)
    return ShowScene(xyz=xyz, rgb=rgb, pred_ids=pred, pred_classes=pred_classes,
                     pred_scores=rng.random(num_pred), class_names={3: "cabinet", 4: "bed", 5: "chair", 7: "table"},
                     gt_ids=gt, gt_classes=gt_classes, name=f"synthetic floor, {num_points} points")


def one(num_points: int, backend: str, keep: str | None = None) -> dict:
    from pointformer.vis.show import colour_scene, render_show

    scene = building(num_points)
    start = time.perf_counter()
    colour_scene(scene)
    colour_s = time.perf_counter() - start
    with tempfile.TemporaryDirectory() as tmp:
        start = time.perf_counter()
        result = render_show(scene, Path(tmp) / "show.png", backend=backend)
        total_s = time.perf_counter() - start
        if keep:
            Path(keep).mkdir(parents=True, exist_ok=True)
            (Path(keep) / f"show_{num_points}_{result.backend}.png").write_bytes(result.png.read_bytes())
    return {"bench": "show", "points": num_points, "backend": result.backend, "requested": backend,
            "colour_s": round(colour_s, 2), "total_s": round(total_s, 2),
            "peak_rss_gb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20, 2),
            "titles": result.colours.titles}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--points", type=int, nargs="+", default=[100_000, 1_000_000, 4_000_000])
    parser.add_argument("--backends", nargs="+", default=["software", "open3d"])
    parser.add_argument("--keep", default=None, help="copy each PNG into this folder")
    parser.add_argument("--child", nargs=2, metavar=("POINTS", "BACKEND"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(one(int(args.child[0]), args.child[1], args.keep)), flush=True)
        return
    for points in args.points:
        for backend in args.backends:
            keep = ["--keep", args.keep] if args.keep else []
            subprocess.run([sys.executable, __file__, "--child", str(points), backend, *keep], check=True)


if __name__ == "__main__":
    main()
