#!/usr/bin/env python
"""Cross-check pointformer's evaluator against a Python-3 port of the official ScanNet script.

Nothing of that script is shipped here. Point ``--official-dir`` at a folder holding a ``benchmark``
package with ``evaluate_semantic_instance.py``, ``util.py`` and ``util_3d.py``, for example
Mask3D's ``benchmark/`` folder (github.com/JonasSchult/Mask3D). That port uses the
``id // 1000`` void rule that published numbers use; see docs/evaluation.md. This script feeds the
same random scenes to both implementations through that module's in-memory functions
(``assign_instances_for_scan`` + ``evaluate_matches``) and prints one JSON line with the largest
AP difference.

    python benchmarks/crosscheck_official.py --official-dir /path/to/Mask3D --cases 40 --big-scenes 4
"""
from __future__ import annotations

import argparse
import importlib
import importlib.util
import json
import os
import sys
import tempfile
import types
from pathlib import Path

import numpy as np

from pointformer.evaluation import ScenePrediction, SegmentMasks, evaluate_scenes

REPO = Path(__file__).resolve().parents[1]


def _load(path: Path, name: str):
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def load_official(folder: Path):
    """Load ``benchmark/evaluate_semantic_instance.py`` from ``folder`` under current NumPy.

    ``np.in1d`` was removed in NumPy 2.4 and the port still calls it: its calls are compiled against
    a local equivalent instead of patching numpy for the whole process."""
    sys.modules.setdefault("imageio", types.ModuleType("imageio"))  # imported by util.py, unused here
    sys.path.insert(0, str(folder))
    path = folder / "benchmark" / "evaluate_semantic_instance.py"
    source = path.read_text()
    if not hasattr(np, "in1d"):
        source = source.replace("np.in1d(", "_isin_flat(")
    module = types.ModuleType("benchmark.evaluate_semantic_instance")
    namespace = vars(module)
    namespace.update(__file__=str(path), __package__="benchmark",
                     _isin_flat=lambda a, b: np.isin(np.ravel(a), b))
    exec(compile(source, str(path), "exec"), namespace)
    return module


def official_ap(official, gts, preds, tmp: str) -> np.ndarray:
    matches = {}
    for i, (gt, pred) in enumerate(zip(gts, preds)):
        gt_file = os.path.join(tmp, f"scene{i}.txt")
        np.savetxt(gt_file, gt, fmt="%d")
        info = {"pred_masks": pred.dense_masks().T, "pred_classes": pred.class_ids, "pred_scores": pred.scores}
        gt2pred, pred2gt = official.assign_instances_for_scan(info, gt_file)
        matches[gt_file] = {"gt": gt2pred, "pred": pred2gt}
    return official.evaluate_matches(matches)[0]


def compare(a: np.ndarray, b: np.ndarray) -> tuple[bool, int, float]:
    finite = np.isfinite(a)
    diff = float(np.abs(a[finite] - b[finite]).max()) if finite.any() else 0.0
    return bool(np.array_equal(np.isnan(a), np.isnan(b))), int(finite.sum()), diff


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--official-dir", required=True, type=Path, help="folder containing benchmark/")
    parser.add_argument("--cases", type=int, default=40, help="random small multi-scene cases (adversarial)")
    parser.add_argument("--big-scenes", type=int, default=4, help="realistic 150k-vertex scenes")
    args = parser.parse_args()
    official = load_official(args.official_dir)
    adversarial = _load(REPO / "tests" / "evaluation" / "test_reference_crosscheck.py", "_pf_crosscheck")
    realistic = _load(REPO / "benchmarks" / "evaluate.py", "_pf_bench")
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        same_nan, values, worst = True, 0, 0.0
        for seed in range(args.cases):
            rng = np.random.default_rng(1000 + seed)
            scenes = [adversarial.random_scene(rng, int(rng.integers(600, 2500)))
                      for _ in range(int(rng.integers(1, 6)))]
            gts, preds = [s[0] for s in scenes], [s[1] for s in scenes]
            ok, n, d = compare(official_ap(official, gts, preds, tmp), evaluate_scenes(gts, preds).ap_matrix)
            same_nan &= ok
            values += n
            worst = max(worst, d)
        rows.append({"check": "adversarial", "cases": args.cases, "nan_pattern_equal": same_nan,
                     "ap_values": values, "max_abs_diff": worst})
        if args.big_scenes:
            rng = np.random.default_rng(7)
            gts, preds = [], []
            for _ in range(args.big_scenes):
                gt, seg, seg_masks, classes, scores = realistic.make_scene(rng, 150_000, 100, 2000)
                gts.append(gt)
                preds.append(ScenePrediction(SegmentMasks(seg_masks, seg), classes, scores))
            ok, n, d = compare(official_ap(official, gts, preds, tmp), evaluate_scenes(gts, preds).ap_matrix)
            rows.append({"check": "realistic", "scenes": args.big_scenes, "vertices": 150_000,
                         "nan_pattern_equal": ok, "ap_values": n, "max_abs_diff": d})
    for row in rows:
        print(json.dumps(row))


if __name__ == "__main__":
    main()
