"""``pointformer infer SCAN.ply``: instances on one custom scan, written as a coloured PLY, a per-vertex
instance file and a JSON list of instances (and a PNG view with ``--png``).

Superpoints: a triangle mesh goes through the mesh segmentator (as ScanNet scenes do); a bare point
cloud is cut into cubic cells of ``--cell`` metres (superpoints need no mesh). The scan should be
z-up and in metres, like ScanNet; colours are used when present (grey otherwise).

``pointformer infer IMAGE.png --checkpoint CKPT`` (an image file and a 2D checkpoint): writes
IMAGE_instances.png (instances coloured, class and score labels) and IMAGE_instances.json.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Sequence

from pointformer.cli.common import add_checkpoint_options, load_predictor


def _fail(message: str, status: int = 2) -> int:
    print(f"pointformer infer: error: {message}", file=sys.stderr)
    return status


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
    parser.add_argument("scan", help="a .ply mesh or point cloud (x y z, optional red green blue, optional faces)")
    parser.add_argument("--checkpoint", default=None,
                        help="trained checkpoint (default: the newest best.pt under ./outputs or ./demo_output)")
    parser.add_argument("--out", default=None, help="output folder (default: <scan name>_instances next to the scan)")
    parser.add_argument("--cell", type=float, default=0.1,
                        help="superpoint cell size in metres for point clouds (default 0.1)")
    parser.add_argument("--min-points", type=int, default=50, help="drop instances with fewer points (default 50)")
    parser.add_argument("--png", action="store_true",
                        help="also render a PNG view (Open3D offscreen, matplotlib fallback)")
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
    from pointformer.engine.infer import find_default_checkpoint, predict_scan_file, read_scan, write_scan_instances
    from pointformer.io.checkpoint import CheckpointError

    scan_path = Path(args.scan)
    checkpoint = Path(args.checkpoint) if args.checkpoint else find_default_checkpoint()
    if checkpoint is None:
        return _fail("no --checkpoint given and no best.pt under ./outputs or ./demo_output; train one "
                     "(`pointformer demo` or `pointformer train ...`) and pass --checkpoint PATH")
    try:
        scan = read_scan(scan_path, cell=args.cell)
        predictor = load_predictor(args, checkpoint)
        result = predict_scan_file(predictor, scan, min_points=args.min_points)
    except (ConfigError, CheckpointError, ValueError) as exc:
        return _fail(str(exc))

    out = Path(args.out) if args.out else scan_path.parent / f"{scan_path.stem}_instances"
    written = write_scan_instances(out, scan_path.stem, scan, result,
                                   meta={"scan": str(scan_path), "checkpoint": str(checkpoint)})
    print(f"{scan_path}: {len(written.instances)} instances ({scan.superpoints})")
    for inst in written.instances[:20]:
        print(f"  {inst['id']:3d}  {inst['class']:<16s} score {inst['score']:.3f}  {inst['num_points']} points")
    print(f"wrote {written.ply}\n      {written.txt} (instance id per vertex, 0 = none)\n      {written.json}")
    if args.png:
        from pointformer.vis import render_png

        png = out / f"{scan_path.stem}_instances.png"
        backend = render_png(png, scan.xyz, written.colors, faces=scan.faces)
        print(f"      {png} ({backend})")
    if args.show:
        from pointformer.vis.viewer import show_instances

        show_instances(scan.xyz, written.colors, faces=scan.faces, title=scan_path.name)
    return 0
