#!/usr/bin/env python
"""Evaluator speed: the ScanNet validation set size (312 scenes x ~150k vertices x 100 predictions).

Prints one JSON line per measurement:
  in_memory_dense     ScanNetEvaluator.add over dense bool [100, V] masks + result()
  in_memory_segments  the same predictions as SegmentMasks (masks per superpoint; the training form)
  files               write_prediction_folder + evaluate_folders on a subset, projected to all scenes
  submission          write_submission (zip) + validate_submission on the same subset, projected
Scene generation is not timed. Memory: peak traced allocations inside one ``add`` call (the working
set per scene, inputs excluded), the evaluator's retained state after all scenes, and process max RSS.

    python benchmarks/evaluate.py                       # full size, in memory; files for 6 scenes
    python benchmarks/evaluate.py --scenes 20 --file-scenes 2   # quick
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import tempfile
import time
import tracemalloc
from pathlib import Path

import numpy as np

from pointformer.evaluation import ScanNetEvaluator, ScenePrediction, SegmentMasks, evaluate_folders, write_gt_file
from pointformer.export import validate_submission, write_prediction_folder, write_submission
from pointformer.io.labels import SCANNET_INSTANCE_IDS
from pointformer.io.ply import write_ply


def make_scene(rng: np.random.Generator, num_vertices: int, num_preds: int, num_segments: int):
    """GT ids [V], segment ids [V] and a prediction whose masks are unions of segments.

    Mesh vertex order is spatially coherent, so objects and superpoints are runs of vertices here:
    ~20-50 instances (ScanNet has ~10-60), ~40% of vertices void (wall, floor, other classes).
    """
    seg_bounds = np.sort(rng.choice(np.arange(1, num_vertices), num_segments - 1, replace=False))
    segment_ids = np.zeros(num_vertices, np.int64)
    segment_ids[seg_bounds] = 1
    segment_ids = np.cumsum(segment_ids)
    # GT: consecutive runs of segments form objects.
    gt_of_segment = np.zeros(num_segments, np.int64)
    s, inst = 0, 1
    while s < num_segments:
        run = int(rng.integers(5, 120))
        if rng.random() < 0.4:
            label = int(rng.choice([1, 2, 40]))   # void for the instance benchmark
        else:
            label = int(rng.choice(SCANNET_INSTANCE_IDS))
        gt_of_segment[s:s + run] = label * 1000 + inst
        s += run
        inst += 1
    gt_ids = gt_of_segment[segment_ids]
    # Predictions: ~40% near a GT object (dropping / adding a few segments), the rest random runs.
    objects = np.unique(gt_of_segment)
    seg_masks = np.zeros((num_preds, num_segments), bool)
    classes = np.zeros(num_preds, np.int64)
    for i in range(num_preds):
        if i < int(0.4 * num_preds):
            obj = objects[int(rng.integers(0, objects.size))]
            segs = np.flatnonzero(gt_of_segment == obj)
            lo = max(0, segs[0] + int(rng.integers(-3, 4)))
            hi = min(num_segments, segs[-1] + 1 + int(rng.integers(-3, 4)))
            seg_masks[i, lo:hi] = True
            label = int(obj // 1000)
            classes[i] = label if label in SCANNET_INSTANCE_IDS and rng.random() < 0.85 \
                else int(rng.choice(SCANNET_INSTANCE_IDS))
        else:
            lo = int(rng.integers(0, num_segments))
            seg_masks[i, lo:lo + int(rng.integers(1, 60))] = True
            classes[i] = int(rng.choice(SCANNET_INSTANCE_IDS))
    scores = rng.random(num_preds).astype(np.float32)
    return gt_ids, segment_ids, seg_masks, classes, scores


def bench_in_memory(args, dense: bool) -> dict:
    rng = np.random.default_rng(args.seed)
    evaluator = ScanNetEvaluator(dataset="scannet")
    add_time, peak_add, vertices = 0.0, 0, 0
    tracemalloc.start()
    base = tracemalloc.get_traced_memory()[0]
    for _ in range(args.scenes):
        n = int(rng.integers(int(args.vertices * 0.7), int(args.vertices * 1.3)))
        gt, seg, seg_masks, classes, scores = make_scene(rng, n, args.preds, args.segments)
        masks = seg_masks[:, seg] if dense else SegmentMasks(seg_masks, seg)
        pred = ScenePrediction(masks, classes, scores)
        vertices += n
        tracemalloc.reset_peak()
        before = tracemalloc.get_traced_memory()[0]
        t0 = time.perf_counter()
        evaluator.add(gt, pred)
        add_time += time.perf_counter() - t0
        peak_add = max(peak_add, tracemalloc.get_traced_memory()[1] - before)
        del masks, pred
    t0 = time.perf_counter()
    result = evaluator.result()
    result_time = time.perf_counter() - t0
    retained = tracemalloc.get_traced_memory()[0] - base
    tracemalloc.stop()
    return {"bench": "in_memory_dense" if dense else "in_memory_segments", "scenes": args.scenes,
            "mean_vertices": vertices / args.scenes, "preds_per_scene": args.preds,
            "seconds": round(add_time + result_time, 3), "add_seconds": round(add_time, 3),
            "result_seconds": round(result_time, 3), "peak_add_MiB": round(peak_add / 2**20, 1),
            "retained_state_MiB": round(retained / 2**20, 2), "map": round(result.map, 4),
            "map50": round(result.map50, 4)}


def bench_files(args) -> list[dict]:
    rng = np.random.default_rng(args.seed + 1)
    work = Path(tempfile.mkdtemp(prefix="pf-eval-bench-", dir=args.tmp))
    try:
        preds, gts = {}, {}
        for i in range(args.file_scenes):
            n = int(rng.integers(int(args.vertices * 0.7), int(args.vertices * 1.3)))
            gt, seg, seg_masks, classes, scores = make_scene(rng, n, args.preds, args.segments)
            name = f"scene{i:04d}_00"
            preds[name] = ScenePrediction(seg_masks[:, seg], classes, scores)
            gts[name] = gt
        (work / "gt").mkdir()
        for name, gt in gts.items():
            write_gt_file(work / "gt" / f"{name}.txt", gt)
        scale = args.scenes / args.file_scenes
        t0 = time.perf_counter()
        write_prediction_folder(work / "pred", preds)
        write_time = time.perf_counter() - t0
        disk = sum(f.stat().st_size for f in (work / "pred").rglob("*") if f.is_file())
        t0 = time.perf_counter()
        result = evaluate_folders(work / "pred", work / "gt")
        eval_time = time.perf_counter() - t0
        rows = [{"bench": "files", "scenes_measured": args.file_scenes, "write_seconds": round(write_time, 2),
                 "evaluate_seconds": round(eval_time, 2),
                 "evaluate_seconds_per_scene": round(eval_time / args.file_scenes, 3),
                 "projected_evaluate_seconds": round(eval_time * scale, 1),
                 "projected_disk_GiB": round(disk * scale / 2**30, 2), "map": round(result.map, 4)}]
        # Submission zip + validator on the same scenes (a test split has 100 scenes).
        scans = work / "scans_test"
        for name, pred in preds.items():
            n = pred.num_vertices
            write_ply(scans / name / f"{name}_vh_clean_2.ply", np.zeros((n, 3), np.float32),
                      colors=np.zeros((n, 3), np.uint8), faces=np.zeros((1, 3), np.int32))
        t0 = time.perf_counter()
        zip_path = write_submission(work / "submission.zip", preds)
        zip_time = time.perf_counter() - t0
        t0 = time.perf_counter()
        report = validate_submission(zip_path, scans)
        validate_time = time.perf_counter() - t0
        per100 = 100 / args.file_scenes
        rows.append({"bench": "submission", "scenes_measured": args.file_scenes, "zip_seconds": round(zip_time, 2),
                     "validate_seconds": round(validate_time, 2), "valid": report.ok,
                     "zip_MiB": round(zip_path.stat().st_size / 2**20, 2),
                     "projected_100_scenes_zip_seconds": round(zip_time * per100, 1),
                     "projected_100_scenes_validate_seconds": round(validate_time * per100, 1),
                     "projected_100_scenes_zip_MiB": round(zip_path.stat().st_size * per100 / 2**20, 1)})
        return rows
    finally:
        shutil.rmtree(work, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scenes", type=int, default=312)
    parser.add_argument("--vertices", type=int, default=150_000, help="mean vertices per scene (+-30%)")
    parser.add_argument("--preds", type=int, default=100)
    parser.add_argument("--segments", type=int, default=2000, help="superpoints per scene")
    parser.add_argument("--file-scenes", type=int, default=6, help="scenes written to disk (projected to --scenes)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--tmp", default=None, help="folder for the temporary files")
    parser.add_argument("--skip", nargs="*", default=[], choices=["dense", "segments", "files"])
    args = parser.parse_args()
    info = {"bench": "machine", "cpus": os.cpu_count(), "omp_threads": os.environ.get("OMP_NUM_THREADS"),
            "numpy": np.__version__}
    print(json.dumps(info), flush=True)
    if "dense" not in args.skip:
        print(json.dumps(bench_in_memory(args, dense=True)), flush=True)
    if "segments" not in args.skip:
        print(json.dumps(bench_in_memory(args, dense=False)), flush=True)
    if "files" not in args.skip and args.file_scenes > 0:
        for row in bench_files(args):
            print(json.dumps(row), flush=True)
    max_rss_mib = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)
    print(json.dumps({"bench": "process", "max_rss_MiB": max_rss_mib}))


if __name__ == "__main__":
    main()
