"""Evaluation commands.

* ``pointformer evaluate PRED_DIR GT_DIR [--dataset scannet|scannet200|s3dis] [--csv OUT.csv] [--json OUT.json]``:
  the official file contract (``pointformer.evaluation.files``).
* ``pointformer evaluate-model CHECKPOINT [key=value ...]``: predict a labelled split with a checkpoint
  (``pointformer.inference.Predictor``) and evaluate it.
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Optional, Sequence

from pointformer.cli.common import add_checkpoint_options, load_predictor


def _fail(command: str, message: str, status: int) -> int:
    print(f"pointformer {command}: error: {message}", file=sys.stderr)
    return status


# ------------------------------------------------------------------------------------------- evaluate
def build_parser() -> argparse.ArgumentParser:
    from pointformer.evaluation.protocol import DATASETS

    parser = argparse.ArgumentParser(
        prog="pointformer evaluate",
        description="ScanNet-protocol 3D instance evaluation (AP 0.50:0.90, AP50, AP25) of a prediction "
                    "folder against a GT folder; prints the per-class table.")
    parser.add_argument("pred_dir", help="folder with <scene>.txt prediction files (masks in a subfolder)")
    parser.add_argument("gt_dir", help="folder with <scene>.txt GT files (label*1000+instance per vertex)")
    parser.add_argument("--dataset", choices=DATASETS, default="scannet",
                        help="class set: scannet (18 nyu40 classes), scannet200 (198 raw-category ids; adds "
                             "head/common/tail means) or s3dis (1..13; adds precision/recall)")
    parser.add_argument("--csv", metavar="OUT.csv", help="write the official result CSV (class,class id,ap,ap50,ap25)")
    parser.add_argument("--json", metavar="OUT.json", help="write all numbers as JSON")
    parser.add_argument("--require-all-scenes", action="store_true",
                        help="fail when a GT scene has no prediction file (the official script skips such scenes)")
    parser.add_argument("--quiet", action="store_true", help="no progress line")
    return parser


def evaluate_main(argv: Optional[Sequence[str]] = None) -> int:
    args = build_parser().parse_args(None if argv is None else list(argv))

    from pointformer.evaluation.files import EvaluationInputError, evaluate_folders, pair_scene_files
    from pointformer.io.atomic import atomic_write_json

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
        return _fail("evaluate", str(exc), 1)
    print(result.table())
    print(f"{result.num_scenes} scenes evaluated in {time.perf_counter() - start:.1f} s")
    if args.csv:
        result.to_csv(args.csv)
    if args.json:
        atomic_write_json(args.json, result.as_dict(), indent=2)
    return 0


# ------------------------------------------------------------------------------------------- evaluate-model
def evaluate_model_main(argv: Sequence[str]) -> int:
    parser = argparse.ArgumentParser(
        prog="pointformer evaluate-model",
        description="Evaluate a checkpoint on a labelled split with the ScanNet protocol (mAP, mAP50, mAP25, per "
                    "class).\nOverrides change plain keys of the checkpoint's config, e.g. "
                    "data.root=/data/scannet_processed.",
        formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("checkpoint", help="a checkpoint (run_dir/checkpoints/best.pt or step_XXXXXXXX.pt)")
    parser.add_argument("overrides", nargs="*", help="key=value overrides (data.root=..., data.val_split=..., "
                                                     "model.decoder.eval_num_queries=...)")
    parser.add_argument("--split", default=None, help="split to evaluate (default: data.val_split)")
    parser.add_argument("--limit", type=int, default=None, help="evaluate only the first N scenes")
    parser.add_argument("--out", default=None, help="folder for eval.csv and metrics.json")
    add_checkpoint_options(parser)
    args = parser.parse_args(list(argv))

    from pointformer.config import ConfigError
    from pointformer.io.atomic import atomic_write_json
    from pointformer.io.checkpoint import CheckpointError

    try:
        predictor = load_predictor(args, args.checkpoint)
        split = args.split or predictor.settings.data.val_split
        if split is None:
            return _fail("evaluate-model", "the checkpoint's config has no data.val_split; pass --split", 2)
        _, scenes = predictor.predict_split(split, limit=args.limit)
        if any(scene.gt_ids is None for scene in scenes):
            return _fail("evaluate-model", f"split {split!r} has no ground truth (a test split?); "
                                           "choose a labelled split", 2)
        result = predictor.evaluate(scenes)
    except (ConfigError, CheckpointError, ValueError) as exc:  # every input error is a ValueError with a message
        return _fail("evaluate-model", str(exc), 2)
    print(result.table())
    print(f"{split}: {len(scenes)} scenes, checkpoint step {predictor.step}: mAP {result.map:.4f}  "
          f"mAP50 {result.map50:.4f}  mAP25 {result.map25:.4f}")
    if args.out:
        out = Path(args.out)
        result.to_csv(out / "eval.csv")
        atomic_write_json(out / "metrics.json", result.as_dict(), default=str)
        print(f"wrote {out / 'eval.csv'} and {out / 'metrics.json'}")
    return 0
