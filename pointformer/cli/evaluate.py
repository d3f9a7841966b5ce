"""Evaluation commands.

* ``pointformer evaluate PRED_DIR GT_DIR [--dataset scannet|scannet200|s3dis] [--csv OUT.csv] [--json OUT.json]``:
  the official file contract (``pointformer.evaluation.files``). Several ``PRED_DIR GT_DIR`` pairs (S3DIS
  6-fold: one pair per held-out area) print each fold, the mean of the folds and all rooms pooled.
* ``pointformer evaluate-model CHECKPOINT [key=value ...]``: predict a labelled split with a checkpoint
  (``pointformer.inference.Predictor``) and evaluate it.
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Optional, Sequence

from pointformer.cli.common import add_checkpoint_options, import_modules, is_image_checkpoint, load_predictor


def _fail(command: str, message: str, status: int) -> int:
    print(f"pointformer {command}: error: {message}", file=sys.stderr)
    return status


# ------------------------------------------------------------------------------------------- evaluate
def build_parser() -> argparse.ArgumentParser:
    from pointformer.evaluation.coverage import DEFAULT_SCORE_THRESHOLD
    from pointformer.evaluation.protocol import DATASETS

    parser = argparse.ArgumentParser(
        prog="pointformer evaluate",
        description="ScanNet-protocol 3D instance evaluation (AP 0.50:0.90, AP50, AP25) of a prediction "
                    "folder against a GT folder; prints the per-class table.")
    parser.add_argument("pred_dir", help="folder with <scene>.txt prediction files (masks in a subfolder)")
    parser.add_argument("gt_dir", help="folder with <scene>.txt GT files (label*1000+instance per vertex)")
    parser.add_argument("more_pairs", nargs="*", metavar="PRED_DIR GT_DIR",
                        help="further PRED_DIR GT_DIR pairs, one per fold (S3DIS 6-fold: one per held-out area); "
                             "prints every fold, the mean of the folds and all rooms pooled")
    parser.add_argument("--dataset", choices=DATASETS, default="scannet",
                        help="class set: scannet (18 nyu40 classes), scannet200 (198 raw-category ids; adds "
                             "head/common/tail means) or s3dis (1..13; adds precision/recall and the ASIS "
                             "metrics mCov, mWCov, mPrec50, mRec50)")
    parser.add_argument("--score-threshold", type=float, default=DEFAULT_SCORE_THRESHOLD,
                        help="s3dis: only predictions with confidence >= this count for the ASIS mean precision / "
                             f"recall (default {DEFAULT_SCORE_THRESHOLD}, Mask3D's paper; 0 = every prediction, "
                             "as Mask3D's scripts); printed next to the numbers")
    parser.add_argument("--csv", metavar="OUT.csv", help="write the official result CSV (class,class id,ap,ap50,ap25)")
    parser.add_argument("--json", metavar="OUT.json", help="write all numbers as JSON")
    parser.add_argument("--require-all-scenes", action="store_true",
                        help="fail when a GT scene has no prediction file (the official script skips such scenes)")
    parser.add_argument("--quiet", action="store_true", help="no progress line")
    return parser


def evaluate_main(argv: Optional[Sequence[str]] = None) -> int:
    args = build_parser().parse_args(None if argv is None else list(argv))

    from pointformer.evaluation.coverage import mean_of_folds
    from pointformer.evaluation.evaluator import ScanNetEvaluator
    from pointformer.evaluation.files import EvaluationInputError, evaluate_folders, pair_scene_files
    from pointformer.io.atomic import atomic_write_json

    if len(args.more_pairs) % 2:
        return _fail("evaluate", f"folders must come in PRED_DIR GT_DIR pairs; {args.more_pairs[-1]!r} has no GT "
                                 "folder", 2)
    if args.score_threshold != args.score_threshold or not 0 <= args.score_threshold <= 1:
        return _fail("evaluate", f"--score-threshold must be in [0, 1], got {args.score_threshold}", 2)
    folders = [(args.pred_dir, args.gt_dir)] + list(zip(args.more_pairs[::2], args.more_pairs[1::2]))
    start = time.perf_counter()
    pooled = ScanNetEvaluator(dataset=args.dataset, score_threshold=args.score_threshold) if len(folders) > 1 else None
    results = []
    try:
        for pred_dir, gt_dir in folders:
            pairs = pair_scene_files(pred_dir, gt_dir)
            if pairs.gt_without_prediction and not args.require_all_scenes:
                print(f"note: {pred_dir}: {len(pairs.gt_without_prediction)} GT scene(s) have no prediction file "
                      f"and are not evaluated (first: {pairs.gt_without_prediction[0]}); --require-all-scenes makes "
                      "this an error", file=sys.stderr)

            def progress(done: int, total: int, name: str) -> None:
                if not args.quiet:
                    print(f"\rscenes evaluated: {done}/{total}", end="" if done < total else "\n", file=sys.stderr)

            results.append(evaluate_folders(pred_dir, gt_dir, dataset=args.dataset,
                                            require_all_scenes=args.require_all_scenes, progress=progress,
                                            score_threshold=args.score_threshold, pooled=pooled))
    except EvaluationInputError as exc:
        return _fail("evaluate", str(exc), 1)
    if pooled is None:
        result = results[0]
        print(result.table())
        print(f"{result.num_scenes} scenes evaluated in {time.perf_counter() - start:.1f} s")
        summary = result.as_dict()
    else:
        for k, ((pred_dir, gt_dir), fold) in enumerate(zip(folders, results), start=1):
            print(f"== fold {k}: {pred_dir} vs {gt_dir} ({fold.num_scenes} scenes)")
            print(fold.table())
        result = pooled.result()
        print(f"== pooled over all rooms of the {len(folders)} folds ({result.num_scenes} scenes)")
        print(result.table())
        fold_mean = mean_of_folds([fold.as_dict() for fold in results])
        print(f"== mean of the {len(folders)} folds (each fold weighted equally): "
              + "  ".join(f"{key} {value:.3f}" for key, value in fold_mean.items())
              + (f"  (precision/recall: score >= {args.score_threshold:g})" if "mprec50" in fold_mean else ""))
        print(f"{result.num_scenes} scenes evaluated in {time.perf_counter() - start:.1f} s")
        summary = {"folds": [dict(fold.as_dict(), pred_dir=str(p), gt_dir=str(g))
                             for (p, g), fold in zip(folders, results)],
                   "mean_of_folds": fold_mean, "pooled": result.as_dict()}
    if args.csv:
        result.to_csv(args.csv)  # several folds: the pooled result
    if args.json:
        atomic_write_json(args.json, summary, indent=2)
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
    parser.add_argument("--out", default=None, help="folder for eval.csv and metrics.json (image checkpoints: "
                                                    "coco_results.json and metrics.json; default <run>/eval_<split>)")
    add_checkpoint_options(parser)
    args = parser.parse_args(list(argv))

    from pointformer.config import ConfigError
    from pointformer.io.atomic import atomic_write_json
    from pointformer.io.checkpoint import CheckpointError

    try:
        if is_image_checkpoint(args.checkpoint):
            return _evaluate_image_model(args)
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


def _evaluate_image_model(args: argparse.Namespace) -> int:
    """evaluate-model on a 2D checkpoint: COCO segm AP, and the COCO results JSON (RLE)."""
    from pointformer.config import ConfigError
    from pointformer.image.commands import evaluate_image_checkpoint
    from pointformer.io.checkpoint import CheckpointError

    try:
        import_modules(args.imports)
        evaluation = evaluate_image_checkpoint(args.checkpoint, args.overrides, split=args.split, limit=args.limit,
                                               out=args.out, device=args.device)
    except (ConfigError, CheckpointError, ValueError) as exc:
        return _fail("evaluate-model", str(exc), 2)
    result = evaluation.result
    print(result.table())
    print(f"{evaluation.split}: {evaluation.num_images} images, checkpoint step {evaluation.step}: COCO segm "
          f"AP {result.ap:.4f}  AP50 {result.ap50:.4f}  AP75 {result.ap75:.4f}")
    print(f"wrote {evaluation.results_json} and {evaluation.metrics_json}")
    return 0
