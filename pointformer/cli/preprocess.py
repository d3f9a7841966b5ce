"""Data preparation commands.

* ``pointformer preprocess scannet RAW_ROOT OUT_DIR [--workers N] ...``: raw dataset -> preprocessed scenes
  (``pointformer.preprocess.scannet``).
* ``pointformer preprocess s3dis RAW_ROOT OUT_DIR [--workers N]``: the S3DIS raw release -> preprocessed rooms
  (``pointformer.preprocess.s3dis``).
* ``pointformer superpoints SCAN [OUT.segs.json]``: the mesh segmentator (``pointformer.preprocess.segmentator``)
  or, for a point cloud, the kNN segmentator (``pointformer.preprocess.cloud_segmentator``), written in the
  official segs.json layout.
"""
from __future__ import annotations

import argparse
import logging
import os
import sys
from pathlib import Path
from typing import Any, Optional, Sequence


def _add_scannet(sub: Any) -> None:  # sub: the parser's subparsers action
    p = sub.add_parser("scannet", help="ScanNet v2 release (scans/, scans_test/, label tsv, split files)",
                       description="Convert a ScanNet v2 release into preprocessed scenes (OUT_DIR/<split>/"
                                   "<scene>.npz + manifest.json) and evaluation GT (OUT_DIR/gt/<split>/<scene>.txt). "
                                   "Re-running skips scenes that are already up to date.")
    p.add_argument("raw_root", type=Path, help="release root holding scans/ and/or scans_test/")
    p.add_argument("out_dir", type=Path, help="output folder")
    p.add_argument("--workers", type=int, default=max(1, min(8, os.cpu_count() or 1)),
                   help="parallel processes (default: CPU count, at most 8)")
    p.add_argument("--splits", default="train,val,test", help="comma-separated subset of train,val,test")
    p.add_argument("--label-map", type=Path, default=None,
                   help="scannetv2-labels.combined.tsv (default: RAW_ROOT/scannetv2-labels.combined.tsv)")
    p.add_argument("--split-dir", type=Path, default=None,
                   help="folder with scannetv2_{train,val,test}.txt (default: RAW_ROOT); without them every "
                        "scene under scans/ goes to train")
    p.add_argument("--scenes", default=None, help="comma-separated scene ids to process (default: all)")
    p.add_argument("--force", action="store_true", help="redo scenes even when they are up to date")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.add_argument("-q", "--quiet", action="store_true", help="only errors and the summary")


def _run_scannet(args: argparse.Namespace) -> int:
    from pointformer.preprocess.scannet import preprocess_scannet

    logging.basicConfig(level=logging.ERROR if args.quiet else logging.WARNING,
                        format="%(levelname)s %(message)s")
    try:
        summary = preprocess_scannet(
            args.raw_root, args.out_dir, workers=args.workers,
            splits=[s.strip() for s in args.splits.split(",") if s.strip()],
            label_map_path=args.label_map, split_dir=args.split_dir,
            scenes=[s.strip() for s in args.scenes.split(",") if s.strip()] if args.scenes else None,
            force=args.force, progress=not args.no_progress)
    except ValueError as exc:
        print(f"pointformer preprocess scannet: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("pointformer preprocess scannet: interrupted; finished scenes are kept, re-run to resume",
              file=sys.stderr)
        return 130
    print(summary.format())
    return 0 if summary.ok else 1


def _add_s3dis(sub: Any) -> None:  # sub: the parser's subparsers action
    from pointformer.preprocess.s3dis import DEFAULT_CELL, DEFAULT_SUPERPOINTS, SUPERPOINT_METHODS

    p = sub.add_parser("s3dis", help="S3DIS release (Stanford3dDataset_v1.2[_Aligned_Version]/Area_N/<room>/)",
                       description="Convert an S3DIS release into preprocessed rooms (OUT_DIR/Area_<n>/<room>.npz + "
                                   "manifest.json per area), evaluation GT (OUT_DIR/gt/Area_<n>/Area_<n>_<room>.txt) "
                                   "and OUT_DIR/preprocess_report.json (every repair and dropped line). Re-running "
                                   "skips rooms that are already up to date.")
    p.add_argument("raw_root", type=Path, help="the release folder (holding Area_N) or a folder holding it")
    p.add_argument("out_dir", type=Path, help="output folder")
    p.add_argument("--workers", type=int, default=max(1, min(8, os.cpu_count() or 1)),
                   help="parallel processes (default: CPU count, at most 8)")
    p.add_argument("--superpoints", choices=SUPERPOINT_METHODS, default=DEFAULT_SUPERPOINTS,
                   help=f"superpoints: voxel cells or the kNN point-cloud segmentator (default {DEFAULT_SUPERPOINTS})")
    p.add_argument("--cell", type=float, default=DEFAULT_CELL,
                   help=f"cell size in metres for --superpoints cells (default {DEFAULT_CELL})")
    p.add_argument("--force", action="store_true", help="redo rooms even when they are up to date")
    p.add_argument("-q", "--quiet", action="store_true", help="only errors and the summary")


def _run_s3dis(args: argparse.Namespace) -> int:
    from pointformer.preprocess.s3dis import preprocess_s3dis

    logging.basicConfig(level=logging.ERROR if args.quiet else logging.WARNING, format="%(levelname)s %(message)s")
    try:
        summary = preprocess_s3dis(args.raw_root, args.out_dir, workers=args.workers, superpoints=args.superpoints,
                                   cell=args.cell, force=args.force)
    except ValueError as exc:
        print(f"pointformer preprocess s3dis: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("pointformer preprocess s3dis: interrupted; finished rooms are kept, re-run to resume", file=sys.stderr)
        return 130
    print(summary.format())
    return 0 if summary.ok else 1


def preprocess_main(argv: Optional[Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(prog="pointformer preprocess",
                                     description="Convert a raw dataset into preprocessed scenes.")
    sub = parser.add_subparsers(dest="dataset", required=True)
    _add_scannet(sub)
    _add_s3dis(sub)
    args = parser.parse_args(None if argv is None else list(argv))
    if args.workers < 1:
        parser.error(f"--workers must be >= 1, got {args.workers}")
    return _run_s3dis(args) if args.dataset == "s3dis" else _run_scannet(args)


def _read_cloud_text(path: Path) -> tuple[Any, Any]:
    """``x y z [r g b]`` text (one point a line, spaces or commas): xyz float32 [V, 3], rgb uint8 [V, 3] or None."""
    import numpy as np

    try:
        data = np.loadtxt(path, dtype=np.float64, delimiter=None if "," not in _first_line(path) else ",", ndmin=2)
    except (OSError, ValueError) as exc:
        raise ValueError(f"{path}: not a readable 'x y z [r g b]' point file ({exc})") from None
    if data.shape[0] == 0 or data.shape[1] not in (3, 6):
        raise ValueError(f"{path}: expected 3 (x y z) or 6 (x y z r g b) columns per line, got "
                         f"{data.shape[1] if data.shape[0] else 'no lines'}")
    if not np.isfinite(data).all():
        raise ValueError(f"{path}: non-finite values (nan/inf) in the point file")
    rgb = np.clip(np.rint(data[:, 3:6]), 0, 255).astype(np.uint8) if data.shape[1] == 6 else None
    return data[:, :3].astype(np.float32), rgb


def _first_line(path: Path) -> str:
    with open(path, encoding="utf-8", errors="replace") as f:
        return f.readline()


def superpoints_main(argv: Optional[Sequence[str]] = None) -> int:
    """`pointformer superpoints SCAN [OUT.segs.json]`: write the official segs.json layout.

    A triangle mesh (.ply with faces) goes through the mesh segmentator; a bare point cloud (.ply without
    faces, or ``x y z [r g b]`` text) through the kNN point-cloud segmentator."""
    from pointformer.preprocess.cloud_segmentator import DEFAULT_K
    from pointformer.preprocess.segmentator import DEFAULT_K_THRESH, DEFAULT_SEG_MIN_VERTS

    parser = argparse.ArgumentParser(
        prog="pointformer superpoints",
        description="Over-segment a scan (ScanNet Segmentator algorithm) and write a segs.json file in the layout "
                    "of ScanNet's *_vh_clean_2.0.010000.segs.json. A triangle mesh uses its faces; a point cloud "
                    "(PLY without faces, or 'x y z [r g b]' text) uses a k-nearest-neighbour graph with PCA normals.")
    parser.add_argument("scan", type=Path, help="triangle mesh or point cloud (.ply), or x y z [r g b] text")
    parser.add_argument("out", type=Path, nargs="?",
                        help="output segs.json (default: next to the scan, <stem>.<kThresh>.segs.json)")
    parser.add_argument("--k-thresh", type=float, default=DEFAULT_K_THRESH, help="kThresh (default 0.01)")
    parser.add_argument("--seg-min-verts", type=int, default=DEFAULT_SEG_MIN_VERTS,
                        help="minimum vertices per segment (default 20)")
    parser.add_argument("--k", type=int, default=DEFAULT_K,
                        help=f"point clouds: neighbours per point in the graph (default {DEFAULT_K})")
    args = parser.parse_args(None if argv is None else list(argv))

    import numpy as np

    from pointformer.io.ply import read_ply
    from pointformer.io.scannet import write_segs_json
    from pointformer.preprocess.cloud_segmentator import segment_cloud
    from pointformer.preprocess.segmentator import segment_mesh

    path: Path = args.scan
    out = args.out or path.with_name(f"{path.stem}.{args.k_thresh:.6f}.segs.json")
    try:
        if path.suffix.lower() == ".ply":
            scan = read_ply(path)
            xyz, rgb, faces = scan.vertices, scan.colors, scan.faces
        elif not path.is_file():
            raise ValueError(f"{path}: no such file")
        else:
            (xyz, rgb), faces = _read_cloud_text(path), None
        if faces is not None and len(faces):
            kind = "vertices (mesh)"
            seg = segment_mesh(xyz, faces, args.k_thresh, args.seg_min_verts)
        else:
            kind = "points (cloud)"
            try:
                seg = segment_cloud(xyz, rgb, k=args.k, k_thresh=args.k_thresh, seg_min_verts=args.seg_min_verts)
            except ValueError as exc:
                raise ValueError(f"{path}: {exc}") from None
        write_segs_json(out, seg, scene_id=path.stem, k_thresh=args.k_thresh, seg_min_verts=args.seg_min_verts)
    except ValueError as exc:
        print(f"pointformer superpoints: {exc}", file=sys.stderr)
        return 1
    print(f"{out}: {len(np.unique(seg))} segments over {seg.shape[0]} {kind}")
    return 0
