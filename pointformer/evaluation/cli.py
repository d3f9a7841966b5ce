"""`pointformer evaluate PRED_DIR GT_DIR [--dataset scannet|s3dis] [--csv OUT.csv] [--json OUT.json]`."""
from __future__ import annotations

import argparse
import json
import sys
import time
from typing import Optional

from pointformer.evaluation.files import EvaluationInputError, evaluate_folders, pair_scene_files
from pointformer.evaluation.protocol import DATASETS
from pointformer.io.scannet import atomic_write_text


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="pointformer evaluate",
        description="ScanNet-protocol 3D instance evaluation (AP 0.50:0.90, AP50, AP25) of a prediction "
                    "folder against a GT folder; prints the per-class table.")
    parser.add_argument("pred_dir", help="folder with <scene>.txt prediction files (masks in a subfolder)")
    parser.add_argument("gt_dir", help="folder with <scene>.txt GT files (label*1000+instance per vertex)")
    parser.add_argument("--dataset", choices=DATASETS, default="scannet",
                        help="class set: scannet (18 nyu40 classes) or s3dis (1..13; adds precision/recall)")
    parser.add_argument("--csv", metavar="OUT.csv", help="write the official result CSV (class,class id,ap,ap50,ap25)")
    parser.add_argument("--json", metavar="OUT.json", help="write all numbers as JSON")
    parser.add_argument("--require-all-scenes", action="store_true",
                        help="fail when a GT scene has no prediction file (the official script skips such scenes)")
    parser.add_argument("--quiet", action="store_true", help="no progress line")
    return parser


def main(argv: Optional[list[str]] = None) -> int:
    args = build_parser().parse_args(argv)
    start = time.perf_counter()
    try:
        pairs = pair_scene_files(args.pred_dir, args.gt_dir)
        if pairs.gt_without_prediction and not args.require_all_scenes:
            print(f"note: {len(pairs.gt_without_prediction)} GT scene(s) have no prediction file and are not "
                  f"evaluated (first: {pairs.gt_without_prediction[0]}); --require-all-scenes makes this an error",
                  file=sys.stderr)

        def progress(done: int, total: int, name: str) -> None:
            if not args.quiet:
                print(f"\rscenes evaluated: {done}/{total}", end="" if done < total else "\n", file=sys.stderr)

        result = evaluate_folders(args.pred_dir, args.gt_dir, dataset=args.dataset,
                                  require_all_scenes=args.require_all_scenes, progress=progress)
    except EvaluationInputError as exc:
        print(f"pointformer evaluate: error: {exc}", file=sys.stderr)
        return 1
    print(result.table())
    print(f"{result.num_scenes} scenes evaluated in {time.perf_counter() - start:.1f} s")
    if args.csv:
        result.to_csv(args.csv)
    if args.json:
        atomic_write_text(args.json, json.dumps(result.as_dict(), indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
