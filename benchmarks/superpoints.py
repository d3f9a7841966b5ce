"""Superpoints for bare point clouds: kNN segmentator vs voxel cells on labelled synthetic S3DIS rooms.

Prints one JSON line per (room, method) and one summary line per method:
purity (point-weighted share of points in their superpoint's majority instance), boundary recall
(share of GT instance-boundary points with a superpoint-boundary point within TOL metres; a point is on a
boundary when one of its 8 nearest neighbours carries another id), superpoints per room, seconds.

    OMP_NUM_THREADS=1 python benchmarks/superpoints.py --rooms 3 --points 300000
"""
from __future__ import annotations

import argparse
import json
import tempfile
import time

import numpy as np
from scipy.spatial import cKDTree

from pointformer.io.s3dis import read_room
from pointformer.preprocess.cloud_segmentator import cell_superpoints, segment_cloud
from pointformer.synthetic.s3dis import generate_s3dis

TOL = 0.05  # metres: boundary recall tolerance
BOUNDARY_K = 8


def boundary_mask(nearest: np.ndarray, ids: np.ndarray) -> np.ndarray:
    """bool [V]: points with another id among their neighbours nearest int [V, BOUNDARY_K+1] (self first)."""
    return (ids[nearest[:, 1:]] != ids[:, None]).any(axis=1)


def purity(seg: np.ndarray, instance: np.ndarray) -> float:
    """Point-weighted share of points in their superpoint's majority instance."""
    pairs = np.unique(np.stack([seg, instance]), axis=1, return_counts=True)
    (sp, _), counts = pairs
    best = np.zeros(seg.max() + 1, dtype=np.int64)
    np.maximum.at(best, sp, counts)
    return float(best.sum() / seg.shape[0])


def boundary_recall(xyz: np.ndarray, nearest: np.ndarray, seg: np.ndarray, instance: np.ndarray) -> float:
    gt = boundary_mask(nearest, instance)
    sp = boundary_mask(nearest, seg)
    if not gt.any():
        return 1.0
    if not sp.any():
        return 0.0
    dist, _ = cKDTree(xyz[sp]).query(xyz[gt], k=1, distance_upper_bound=TOL)
    return float(np.isfinite(dist).mean())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--rooms", type=int, default=3)
    ap.add_argument("--points", type=int, default=300000)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    methods = {"knn k=10": lambda xyz: segment_cloud(xyz, k=10),
               "knn k=16": lambda xyz: segment_cloud(xyz, k=16),
               "cells 5 cm": lambda xyz: cell_superpoints(xyz, 0.05),
               "cells 10 cm": lambda xyz: cell_superpoints(xyz, 0.10)}
    segment_cloud(np.random.default_rng(0).random((100, 3)))  # numba compile / cache load outside the timings
    rows: dict[str, list[dict]] = {m: [] for m in methods}
    with tempfile.TemporaryDirectory() as tmp:
        data = generate_s3dis(tmp, num_rooms=args.rooms, seed=args.seed, points_per_room=args.points)
        for room in data.rooms.values():
            raw = read_room(data.release, room.area, room.room)
            _, nearest = cKDTree(raw.xyz).query(raw.xyz, k=BOUNDARY_K + 1, workers=-1)
            for name, fn in methods.items():
                t = time.perf_counter()
                seg = fn(raw.xyz)
                sec = time.perf_counter() - t
                row = {"room": raw.scene_id, "method": name, "points": int(raw.xyz.shape[0]),
                       "instances": int(raw.instance.max()), "superpoints": int(seg.max() + 1),
                       "purity": round(purity(seg, raw.instance), 4),
                       "boundary_recall": round(boundary_recall(raw.xyz, nearest, seg, raw.instance), 4),
                       "seconds": round(sec, 2)}
                rows[name].append(row)
                print(json.dumps(row), flush=True)
    for name, rs in rows.items():
        print(json.dumps({"summary": name, "rooms": len(rs),
                          **{key: round(float(np.mean([r[key] for r in rs])), 4 if key != "superpoints" else 0)
                             for key in ("points", "superpoints", "purity", "boundary_recall", "seconds")}}))


if __name__ == "__main__":
    main()
