"""``pointformer infer SCAN``: instances on one custom scan of any size (a room or a whole building).

Reads PLY (mesh or cloud), LAS/LAZ, PCD, NPY/NPZ and text (``x y z [r g b]``; ``--columns``). Scans
larger than ``--tile`` metres are cut into overlapping tiles whose instances are merged across the
borders. Writes to ``--out`` (docs/inference.md): ``S.instances.json``, ``S.instance_ids.{npy,txt}`` and
``S.class_ids.{npy,txt}`` (-1 = none), ``S.ply`` coloured by instance, and for LAS/LAZ input a copy with
``instance`` and ``class`` extra dimensions. The checkpoint's input features are the contract: a model
trained on colour refuses a scan without colour. The scan should be z-up and in metres.

``pointformer infer IMAGE.png --checkpoint CKPT`` (an image file and a 2D checkpoint): writes
IMAGE_instances.png (instances coloured, class and score labels) and IMAGE_instances.json.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Sequence, Union

from pointformer.cli.common import add_checkpoint_options, load_predictor


def _fail(message: str, status: int = 2) -> int:
    print(f"pointformer infer: error: {message}", file=sys.stderr)
    return status


def _tile(value: str) -> float | None:
    return None if value.lower() in ("none", "off", "0") else float(value)


def _metres(value: str) -> float:
    number = float(value)
    if not number > 0:
        raise argparse.ArgumentTypeError(f"must be a positive number of metres, got {value}")
    return number


def _queries(value: str) -> Union[int, str, None]:
    if value in ("all", "auto"):
        return value
    if value == "model":
        return None  # the model's evaluation count
    if not value.isdigit() or int(value) < 1:
        raise argparse.ArgumentTypeError(f"must be a positive whole number, 'all', 'auto' or 'model', got {value}")
    return int(value)


def _radius(value: str) -> Union[float, str, None]:
    if value == "auto":
        return value
    return None if value == "none" else _metres(value)


IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp")  # files that go to the 2D flow


def _infer_image(args: argparse.Namespace) -> int:
    """An image file: the 2D flow (``pointformer.image.commands.infer_image_file``)."""
    from pointformer.cli.common import import_modules
    from pointformer.config import ConfigError
    from pointformer.image.commands import infer_image_file
    from pointformer.io.checkpoint import CheckpointError

    if not args.checkpoint:
        return _fail("an image needs --checkpoint PATH (a 2D run's checkpoint, e.g. "
                     "demo_2d_output/run/checkpoints/best.pt)")
    try:
        import_modules(args.imports)
        result = infer_image_file(args.checkpoint, args.scan, out=args.out, overrides=args.overrides,
                                  device=args.device, score_threshold=args.score_threshold)
    except (ConfigError, CheckpointError, ValueError) as exc:
        return _fail(str(exc))
    shown = [i for i in range(len(result.prediction.scores)) if result.prediction.scores[i] >= args.score_threshold]
    print(f"{args.scan}: {len(shown)} instances with score >= {args.score_threshold:g}")
    print(f"wrote {result.overlay}\n      {result.instances_json}")
    return 0


def main(argv: Sequence[str]) -> int:
    parser = argparse.ArgumentParser(prog="pointformer infer", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("scan", help="a .ply/.las/.laz/.pcd/.npy/.npz/.txt/.xyz/.pts/.csv scan (mesh or point cloud)")
    parser.add_argument("--checkpoint", default=None,
                        help="trained checkpoint (default: the newest best.pt under ./outputs or ./demo_output)")
    parser.add_argument("--out", default=None, help="output folder (default: <scan name>_instances next to the scan)")
    parser.add_argument("--columns", default=None,
                        help="text/.npy column names, e.g. x,y,z,_,r,g,b ('_' skips; default by column count)")
    parser.add_argument("--tile", type=_tile, default=12.0,
                        help="tile size in metres for large scans (default 12; 'none': one pass)")
    parser.add_argument("--overlap", type=float, default=4.0,
                        help="tile overlap in metres (default 4: every labelled point has 2 m of context)")
    parser.add_argument("--superpoints", choices=("knn", "cells"), default="knn",
                        help="superpoints of a point cloud: the kNN-graph segmentator (default) or cubic cells")
    parser.add_argument("--cell", type=float, default=0.1, help="cell size in metres for --superpoints cells")
    parser.add_argument("--min-points", type=int, default=50, help="drop instances with fewer points (default 50)")
    parser.add_argument("--query-radius", type=_radius, default="auto", metavar="M|none|auto",
                        help="an instance reaches at most M metres from its query's seed (default auto: the model's "
                             "attention radius, none without one; docs/inference.md, tiles and one pass)")
    parser.add_argument("--queries", type=_queries, default="auto", metavar="N|all|model|auto",
                        help="queries per tile: a number, 'all' (one per superpoint: seeds that do not depend on the "
                             "tiling), 'model' (its evaluation count); default auto: all for models with seed-relative "
                             "positions, else model (docs/inference.md)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    parser.add_argument("--png", action="store_true",
                        help="also render a PNG view (Open3D offscreen, software fallback)")
    parser.add_argument("--show", action="store_true", help="open an Open3D viewer window")
    parser.add_argument("overrides", nargs="*", help="key=value overrides of the checkpoint config "
                                                     "(e.g. model.decoder.eval_num_queries=150)")
    add_checkpoint_options(parser)
    parser.add_argument("--score-threshold", type=float, default=0.3,
                        help="images: instances scoring below it are not drawn or listed (default 0.3)")
    args = parser.parse_args(list(argv))
    if Path(args.scan).suffix.lower() in IMAGE_SUFFIXES:
        return _infer_image(args)

    from pointformer.config import ConfigError
    from pointformer.engine.infer import InferOptions, find_default_checkpoint, infer_file
    from pointformer.io.checkpoint import CheckpointError

    scan_path = Path(args.scan)
    checkpoint = Path(args.checkpoint) if args.checkpoint else find_default_checkpoint()
    if checkpoint is None:
        return _fail("no --checkpoint given and no best.pt under ./outputs or ./demo_output; train one "
                     "(`pointformer demo` or `pointformer train ...`) and pass --checkpoint PATH")
    out = Path(args.out) if args.out else scan_path.parent / f"{scan_path.stem}_instances"
    options = InferOptions(columns=args.columns, tile_size=args.tile, overlap=args.overlap,
                           superpoints=args.superpoints, cell=args.cell, min_points=args.min_points,
                           query_radius=args.query_radius, num_queries=args.queries,
                           progress=not args.no_progress)
    try:
        predictor = load_predictor(args, checkpoint)
        result = infer_file(predictor, scan_path, out, options)
    except (ConfigError, CheckpointError, ValueError) as exc:
        return _fail(str(exc))

    prediction, files = result.prediction, result.files
    tiles = prediction.tiles
    print(f"{scan_path}: {result.cloud.num_points} points, {len(prediction.instances)} instances "
          f"({prediction.superpoints}; {'one pass' if tiles is None else str(tiles['count']) + ' tiles'})")
    print("seconds: " + ", ".join(f"{stage} {s:.1f}" for stage, s in result.seconds.items()))
    for inst in prediction.instances[:20]:
        print(f"  {inst.id:3d}  {inst.class_name:<16s} score {inst.score:.3f}  {inst.num_points} points")
    print(f"wrote {files.json}\n      {files.instance_npy} / .txt (instance id per point, -1 = none)\n"
          f"      {files.class_npy} / .txt (class id per point, -1 = none)\n      {files.ply}")
    if files.las is not None:
        print(f"      {files.las} (the input with 'instance' and 'class' dimensions)")
    if args.png or args.show:
        xyz = (result.cloud.xyz - result.cloud.xyz.min(axis=0)).astype("float32")
        if args.png:
            from pointformer.vis import render_png

            png = out / f"{scan_path.stem}.png"
            backend = render_png(png, xyz, result.colors, faces=result.cloud.faces)
            print(f"      {png} ({backend})")
        if args.show:
            from pointformer.vis.viewer import show_instances

            show_instances(xyz, result.colors, faces=result.cloud.faces, title=scan_path.name)
    return 0
