"""``pointformer export CHECKPOINT RAW_OR_PREPROCESSED OUT.zip``: predict the test split, write the
benchmark submission, and validate it before anyone uploads it.

The input is either a preprocessed root (``<root>/test/manifest.json``) or a raw ScanNet release
(``<root>/scans_test/``), which is preprocessed first (resumable; cached next to the zip unless
``--preprocessed-dir`` says where). Validation uses the raw meshes' vertex counts when the raw release
is known (raw input or ``--scans``); for a preprocessed input alone it uses the vertex counts stored
in the preprocessed scenes, written as PLY vertex sets for the validator.
"""
from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path
from typing import Optional, Sequence

import numpy as np


def _fail(message: str, status: int = 2) -> int:
    print(f"pointformer export: error: {message}", file=sys.stderr)
    return status


def _prepare_input(source: Path, split: str, cache: Optional[Path], workers: int) -> tuple[Path, Optional[Path]]:
    """(preprocessed root, raw scans folder or None) for a raw or preprocessed input folder."""
    if (source / split / "manifest.json").is_file():
        return source, None
    raw_scans = source / ("scans_test" if split == "test" else "scans")
    if raw_scans.is_dir():
        from pointformer.preprocess.scannet import preprocess_scannet

        target = cache or source.parent / f"{source.name}_preprocessed"
        print(f"preprocessing {raw_scans} -> {target} (resumable; re-runs skip finished scenes)")
        summary = preprocess_scannet(source, target, workers=workers, splits=[split])
        print(summary.format())
        if not summary.ok:
            raise ValueError(f"preprocessing failed for {len(summary.failed)} scene(s); see above")
        return target, raw_scans
    raise ValueError(f"{source}: neither a preprocessed root ({split}/manifest.json) nor a raw ScanNet release "
                     f"({raw_scans.name}/ folder)")


def _scans_from_preprocessed(folder: Path, scenes: Sequence[tuple[str, np.ndarray]]) -> Path:
    """A scans folder whose <scene>_vh_clean_2.ply files carry the preprocessed vertices (for the validator)."""
    from pointformer.io.ply import write_ply

    for scene_id, xyz in scenes:
        write_ply(folder / scene_id / f"{scene_id}_vh_clean_2.ply", np.asarray(xyz, dtype=np.float32))
    return folder


def export_main(argv: Sequence[str]) -> int:
    parser = argparse.ArgumentParser(
        prog="pointformer export",
        description="Predict the test split with a checkpoint and write a validated ScanNet benchmark submission zip.")
    parser.add_argument("checkpoint")
    parser.add_argument("input", help="preprocessed root (with test/manifest.json) or raw ScanNet root (with scans_test/)")
    parser.add_argument("out_zip", help="submission zip to write")
    parser.add_argument("overrides", nargs="*", help="key=value overrides of the checkpoint config (e.g. eval.num_queries=150)")
    parser.add_argument("--split", default="test", help="split to export (default: test)")
    parser.add_argument("--scans", default=None, help="raw scans folder for validation (default: INPUT/scans_test for raw input)")
    parser.add_argument("--preprocessed-dir", default=None, help="where to preprocess a raw input (default: INPUT_preprocessed)")
    parser.add_argument("--workers", type=int, default=1, help="preprocessing processes for a raw input")
    parser.add_argument("--limit", type=int, default=None, help="only the first N scenes (quick checks; fails validation)")
    parser.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"))
    args = parser.parse_args(list(argv))

    from pointformer.engine.checkpoint import CheckpointError
    from pointformer.engine.config import ConfigError, apply_overrides
    from pointformer.engine.predict import load_trained, predict_split
    from pointformer.export import validate_submission, write_submission

    out_zip = Path(args.out_zip)
    if out_zip.suffix != ".zip":
        return _fail(f"{out_zip}: the submission must be a .zip file")
    try:
        cfg, model, payload = load_trained(args.checkpoint, args.overrides, device=args.device)
        root, raw_scans = _prepare_input(Path(args.input), args.split,
                                         Path(args.preprocessed_dir) if args.preprocessed_dir else None, args.workers)
        cfg = apply_overrides(cfg, [f"data.root={root}"])
        dataset, _, results = predict_split(cfg, model, args.split, limit=args.limit)
        predictions = {}
        for scene_id, _, prediction, num_vertices in results:
            if prediction.num_vertices != num_vertices:
                raise ValueError(f"{scene_id}: prediction covers {prediction.num_vertices} points but the mesh has "
                                 f"{num_vertices} vertices (the preprocessed scene does not keep the mesh vertex order)")
            predictions[scene_id] = prediction
        write_submission(out_zip, predictions, dataset=str(cfg.data.dataset))
        num_masks = sum(p.num_masks for p in predictions.values())
        print(f"wrote {out_zip}: {len(predictions)} scenes, {num_masks} instances (checkpoint step {payload['step']})")
        scans = Path(args.scans) if args.scans else raw_scans
        with tempfile.TemporaryDirectory(prefix="pointformer_scans_") as tmp:
            if scans is None:
                print("validating against the vertex counts of the preprocessed scenes (pass --scans RAW/scans_test "
                      "to check against the raw meshes)")
                scans = _scans_from_preprocessed(Path(tmp), [(scene_id, dataset.load(i).xyz)
                                                             for i, (scene_id, *_) in enumerate(results)])
            report = validate_submission(out_zip, scans, dataset=str(cfg.data.dataset))
    except (ConfigError, CheckpointError, ValueError) as exc:
        return _fail(str(exc))
    for problem in report.problems:
        print(f"  PROBLEM {problem}")
    for warning in report.warnings:
        print(f"  warning {warning}")
    print(report.summary())
    return 0 if report.ok else 1
