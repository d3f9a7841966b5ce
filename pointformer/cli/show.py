"""``pointformer show SCENE --pred OUT``: ground truth and prediction side by side, one colour per object.

SCENE is a scan file (.ply mesh or cloud, .las/.laz, .pcd, .npy/.npz, text) or a preprocessed scene
``<scene_id>.npz`` (which carries its own ground truth). --pred is the folder ``pointformer infer --out``
wrote (or its ``S.instances.json`` / ``S.instance_ids.npy``). --gt is a preprocessed scene .npz, a ScanNet
GT .txt (label*1000+instance per vertex) or an instance-id .npy (-1 = none; classes with --gt-classes).

A prediction takes the colour of the GT object it overlaps best when their point IoU is >= 0.5 (the
ScanNet AP50 threshold); unmatched predictions (FP) and unmatched GT objects (missed) are hatched and
labelled. Writes a PNG (Open3D offscreen, software renderer without EGL/Vulkan) and coloured PLYs;
--window also opens an Open3D window when a display exists.
"""
from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import Sequence


def _fail(message: str) -> int:
    print(f"pointformer show: error: {message}", file=sys.stderr)
    return 2


def has_display() -> bool:
    """Whether a window can open (X11 or Wayland session)."""
    return bool(os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY"))


def main(argv: Sequence[str]) -> int:
    parser = argparse.ArgumentParser(prog="pointformer show", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("scene", help="scan file or preprocessed scene .npz")
    parser.add_argument("--pred", required=True, help="`pointformer infer` output folder, or its S.instances.json")
    parser.add_argument("--gt", default=None,
                        help="ground truth: preprocessed scene .npz, ScanNet GT .txt or instance-id .npy "
                             "(default: the scene's own GT when SCENE is a preprocessed scene)")
    parser.add_argument("--gt-classes", default=None, help="per-point class ids .npy for an instance-id .npy --gt")
    parser.add_argument("--out", default=None, help="PNG to write (default: <pred folder>/<stem>.show.png)")
    parser.add_argument("--ply", default=None,
                        help="coloured PLY of the prediction (default: next to the PNG, <stem>.show.pred.ply); "
                             "the GT goes next to it with .gt.ply")
    parser.add_argument("--window", action="store_true", help="also open an Open3D window (needs a display)")
    parser.add_argument("--min-score", type=float, default=0.0, help="hide predictions scoring below this")
    parser.add_argument("--backend", default="auto", choices=("auto", "open3d", "software"),
                        help="renderer for the PNG (default auto: Open3D offscreen, else software)")
    parser.add_argument("--size", default="800x600", help="pixels of one panel, WxH (default 800x600)")
    args = parser.parse_args(list(argv))

    from pointformer.io.predictions import find_prediction_json, read_instance_predictions
    from pointformer.vis.show import render_show, show_window
    from pointformer.vis.sources import (build_show_scene, load_ground_truth, load_scene_points, restrict_classes,
                                         scene_ground_truth, find_manifest)

    try:
        width, height = (int(v) for v in args.size.lower().split("x"))
        if width < 64 or height < 64:
            raise ValueError
    except ValueError:
        return _fail(f"--size {args.size!r}: expected WxH with both at least 64, e.g. 800x600")
    try:
        points = load_scene_points(args.scene)
        predictions = read_instance_predictions(args.pred, stem=Path(args.scene).stem)
        n = len(points.xyz)
        if args.gt is not None:
            gt = load_ground_truth(args.gt, n, class_path=args.gt_classes)
        elif points.scene is not None and int(points.scene.instance.max()) > 0:
            gt = scene_ground_truth(points.scene, find_manifest(Path(args.scene)), str(args.scene))
        else:
            gt = None
        allowed = set(predictions.classes) or None
        if gt is not None and allowed is None and points.scene is not None:
            manifest = find_manifest(Path(args.scene))
            if manifest is not None:
                allowed = {manifest.class_ids[i] for i in manifest.thing_classes}
        if gt is not None:
            gt = restrict_classes(gt, allowed)
        scene = build_show_scene(points, predictions, gt, min_score=args.min_score)
        json_path = find_prediction_json(args.pred, Path(args.scene).stem)
        stem = predictions.stem
        png = Path(args.out) if args.out else json_path.parent / f"{stem}.show.png"
        pred_ply = Path(args.ply) if args.ply else png.with_name(png.name[: -len(png.suffix)] + ".pred.ply")
        gt_ply = pred_ply.with_name(pred_ply.name.removesuffix(".ply").removesuffix(".pred") + ".gt.ply")
        result = render_show(scene, png, pred_ply=pred_ply, gt_ply=gt_ply if gt is not None else None,
                             width=width, height=height, backend=args.backend)
    except (ValueError, OSError, RuntimeError) as exc:
        return _fail(str(exc))
    for line in result.colours.titles:
        print(line)
    print(f"wrote {result.png} ({result.backend})")
    for ply in result.plys:
        print(f"      {ply}")
    if args.window:
        if has_display():
            show_window(scene, result.colours, title=f"pointformer show {points.name}")
        else:
            print("no display (DISPLAY / WAYLAND_DISPLAY unset): no window; the PNG above shows the same view")
    return 0
