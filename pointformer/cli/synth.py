"""`pointformer synth scannet OUT_ROOT --scenes N --seed S ...`, `pointformer synth s3dis OUT --rooms N --seed S
[--defects]`: write synthetic raw-format scenes; `pointformer synth shapes2d OUT --images N --seed S`: a COCO-format
image set of textured shapes (the 2D branch)."""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Optional


def _positive(text: str) -> int:
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be >= 0, got {value}")
    return value


def main(argv: Optional[list[str]] = None) -> int:
    parser = argparse.ArgumentParser(prog="pointformer synth", description="Generate synthetic data in a "
                                     "dataset's raw file format (for tests, demos and benchmarks): 3D scenes "
                                     "(scannet, s3dis) or COCO-format images (shapes2d).")
    sub = parser.add_subparsers(dest="dataset", required=True)
    sc = sub.add_parser("scannet", help="ScanNet v2 raw layout: scans/, scans_test/, label tsv, split files")
    sc.add_argument("out_root", type=Path, help="output folder (the 'ScanNet release' root)")
    sc.add_argument("--scenes", type=_positive, default=4, help="annotated scenes under scans/ (default 4)")
    sc.add_argument("--test-scenes", type=_positive, default=1, help="unannotated scenes under scans_test/ (default 1)")
    sc.add_argument("--seed", type=int, default=0, help="random seed (same seed, same files)")
    sc.add_argument("--vertices", type=int, default=None,
                    help="target vertices per scene (default: the preset's, 20000 basic / 150000 scannet)")
    sc.add_argument("--preset", choices=("basic", "scannet"), default="basic",
                    help="basic (default: 10-20 mostly large objects, clean meshes) or scannet (ScanNet-like: "
                         "25-50 objects, many small, uneven density, holes; docs/convergence.md)")
    sc.add_argument("--val-fraction", type=float, default=0.25, help="share of scenes listed in the val split")
    sc.add_argument("--defects", action="store_true",
                    help="inject the real release's defects (invalid labels, duplicated segGroups, hi-res aggregation)")
    sc.add_argument("--no-split-files", action="store_true", help="do not write scannetv2_{train,val,test}.txt")
    sc.add_argument("--label-set", choices=("scannet", "scannet200"), default="scannet",
                    help="the label tsv's id column: scannet (default) or real ScanNet200 raw-category ids "
                         "(some objects outside the 200 classes)")
    s3 = sub.add_parser("s3dis", help="S3DIS raw layout: Stanford3dDataset_v1.2_Aligned_Version/Area_N/<room>/")
    s3.add_argument("out_root", type=Path, help="output folder (the release folder is created inside it)")
    s3.add_argument("--rooms", type=_positive, default=4, help="rooms, round-robin over Area_1..Area_6 (default 4)")
    s3.add_argument("--seed", type=int, default=0, help="random seed (same seed, same files)")
    s3.add_argument("--points", type=int, default=20000, help="target points per room (default 20000)")
    s3.add_argument("--defects", action="store_true",
                    help="inject every defect kind of the real release once (control bytes, a fused NUL, bad lines, "
                         "a duplicate file, a misnamed room file, stairs, CRLF, an empty file, a count mismatch, "
                         "an unreadable room)")
    s2 = sub.add_parser("shapes2d", help="COCO-format images of textured, overlapping shapes: "
                        "annotations/instances_{train,val}.json, train/, val/ (the 2D branch)")
    s2.add_argument("out_root", type=Path, help="output folder (the dataset root)")
    s2.add_argument("--images", type=_positive, default=64, help="training images (default 64)")
    s2.add_argument("--val-images", type=_positive, default=None,
                    help="validation images (default: a quarter of --images, at least 1)")
    s2.add_argument("--seed", type=int, default=0, help="random seed (same seed, same files)")
    s2.add_argument("--size", type=int, default=128, help="image width in pixels; height is the same or 3/4 "
                    "(default 128)")
    args = parser.parse_args(argv)
    if args.dataset == "s3dis":
        return _synth_s3dis(args)
    if args.dataset == "shapes2d":
        return _synth_shapes2d(args)

    from pointformer.synthetic.scannet import generate_scannet

    start = time.perf_counter()
    try:
        result = generate_scannet(args.out_root, num_scenes=args.scenes, num_test_scenes=args.test_scenes,
                                  seed=args.seed, target_vertices=args.vertices, defects=args.defects,
                                  val_fraction=args.val_fraction, split_files=not args.no_split_files,
                                  label_set=args.label_set, preset=args.preset)
    except (ValueError, OSError) as exc:
        print(f"pointformer synth scannet: {exc}", file=sys.stderr)
        return 1
    counts = ", ".join(f"{len(v)} {k}" for k, v in result.splits.items())
    vertices = sum(s.num_vertices for s in result.scenes.values())
    print(f"{result.root}: {len(result.scenes)} scenes ({counts}), {vertices} vertices, "
          f"{time.perf_counter() - start:.1f} s")
    return 0


def _synth_s3dis(args: argparse.Namespace) -> int:
    from pointformer.synthetic.s3dis import generate_s3dis

    start = time.perf_counter()
    try:
        result = generate_s3dis(args.out_root, num_rooms=args.rooms, seed=args.seed, points_per_room=args.points,
                                defects=args.defects)
    except (ValueError, OSError) as exc:
        print(f"pointformer synth s3dis: {exc}", file=sys.stderr)
        return 1
    points = sum(r.semantic.shape[0] for r in result.rooms.values())
    print(f"{result.release}: {len(result.rooms)} rooms, {points} annotated points, {len(result.defects)} injected "
          f"defects, {time.perf_counter() - start:.1f} s")
    return 0


def _synth_shapes2d(args: argparse.Namespace) -> int:
    from pointformer.image.synthetic import generate_shapes2d

    start = time.perf_counter()
    try:
        result = generate_shapes2d(args.out_root, num_images=args.images, num_val_images=args.val_images,
                                   seed=args.seed, size=args.size)
    except (ValueError, OSError) as exc:
        print(f"pointformer synth shapes2d: {exc}", file=sys.stderr)
        return 1
    parts = [f"{name}: {s.images} images, {s.instances} instances ({s.polygons} polygons, {s.rle_compressed} "
             f"compressed RLE, {s.rle_uncompressed} uncompressed RLE), {s.crowd_regions} crowd regions"
             for name, s in result.splits.items()]
    print(f"{result.root}: " + "; ".join(parts) + f", {time.perf_counter() - start:.1f} s")
    return 0
