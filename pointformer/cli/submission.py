"""Benchmark submission commands.

* ``pointformer export CHECKPOINT RAW_OR_PREPROCESSED OUT.zip``: predict the test split, write the
  submission and validate it (``pointformer.engine.export``).
* ``pointformer validate-submission SUBMISSION.zip --scans RAW_ROOT/scans_test``: check a submission zip
  before uploading it (``pointformer.export.validate``).
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Optional, Sequence

from pointformer.cli.common import add_checkpoint_options, load_predictor


def _fail(command: str, message: str, status: int = 2) -> int:
    print(f"pointformer {command}: error: {message}", file=sys.stderr)
    return status


def export_main(argv: Sequence[str]) -> int:
    parser = argparse.ArgumentParser(
        prog="pointformer export",
        description="Predict the test split with a checkpoint and write a validated ScanNet benchmark submission zip "
                    "(the checkpoint's data.dataset picks the class ids: scannet or scannet200).")
    parser.add_argument("checkpoint")
    parser.add_argument("input", help="preprocessed root (with test/manifest.json) or raw ScanNet root "
                                      "(with scans_test/)")
    parser.add_argument("out_zip", help="submission zip to write")
    parser.add_argument("overrides", nargs="*", help="key=value overrides of the checkpoint config "
                                                     "(e.g. model.decoder.eval_num_queries=150)")
    parser.add_argument("--split", default="test", help="split to export (default: test)")
    parser.add_argument("--scans", default=None,
                        help="raw scans folder for validation (default: INPUT/scans_test for raw input)")
    parser.add_argument("--preprocessed-dir", default=None,
                        help="where to preprocess a raw input (default: INPUT_preprocessed)")
    parser.add_argument("--workers", type=int, default=1, help="preprocessing processes for a raw input")
    parser.add_argument("--limit", type=int, default=None,
                        help="only the first N scenes (quick checks; fails validation)")
    add_checkpoint_options(parser)
    args = parser.parse_args(list(argv))

    from pointformer.config import ConfigError
    from pointformer.engine.export import export_submission
    from pointformer.io.checkpoint import CheckpointError

    try:
        predictor = load_predictor(args, args.checkpoint)
        report = export_submission(predictor, Path(args.input), Path(args.out_zip), split=args.split,
                                   scans=Path(args.scans) if args.scans else None,
                                   preprocessed_dir=Path(args.preprocessed_dir) if args.preprocessed_dir else None,
                                   workers=args.workers, limit=args.limit)
    except (ConfigError, CheckpointError, ValueError) as exc:
        return _fail("export", str(exc))
    for problem in report.problems:
        print(f"  PROBLEM {problem}")
    for warning in report.warnings:
        print(f"  warning {warning}")
    print(report.summary())
    return 0 if report.ok else 1


def validate_main(argv: Optional[Sequence[str]] = None) -> int:
    from pointformer.evaluation.protocol import DATASETS
    from pointformer.export import validate_submission

    parser = argparse.ArgumentParser(
        prog="pointformer validate-submission",
        description="Check a ScanNet 3D instance benchmark submission zip before uploading it. "
                    "Prints every problem; exits 1 if there is any.")
    parser.add_argument("submission", help="the submission .zip")
    parser.add_argument("--scans", required=True, help="RAW_ROOT/scans_test: one folder per test scene with its "
                                                       "<scene>_vh_clean_2.ply")
    parser.add_argument("--scene-list", help="file with the expected scene names, one a line (default: the scene "
                                             "folders of --scans)")
    parser.add_argument("--dataset", choices=DATASETS, default="scannet",
                        help="class id set: scannet (the 18 nyu40 ids, default), scannet200 (the 198 raw-category "
                             "ids of the ScanNet200 benchmark) or s3dis")
    parser.add_argument("--quiet", action="store_true", help="print problems only, no warnings")
    args = parser.parse_args(list(argv) if argv is not None else None)
    try:
        report = validate_submission(args.submission, args.scans, dataset=args.dataset, scene_list=args.scene_list)
    except ValueError as exc:
        return _fail("validate-submission", str(exc))
    for problem in report.problems:
        print(f"PROBLEM {problem}")
    if not args.quiet:
        for warning in report.warnings:
            print(f"warning {warning}")
    print(report.summary())
    return 0 if report.ok else 1
