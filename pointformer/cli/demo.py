"""``pointformer demo`` / ``make demo``: the whole pipeline on synthetic ScanNet-format rooms, on a CPU
(``pointformer.engine.demo.run_demo``; that module's docstring lists the steps and is the command's help).
``pointformer demo 2d``: the 2D branch on synthetic shapes (``pointformer.image.demo.run_demo_2d``)."""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Optional, Sequence


def main(argv: Optional[Sequence[str]] = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["2d"]:  # `pointformer demo 2d ...`: the 2D branch; the 3D demo stays the default
        return main_2d(argv[1:])
    from pointformer.engine import demo

    parser = argparse.ArgumentParser(prog="pointformer demo", description=demo.__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", default="demo_output", help="output folder (default ./demo_output)")
    parser.add_argument("--scenes", type=int, default=24, help="annotated rooms (a quarter become validation rooms)")
    parser.add_argument("--test-scenes", type=int, default=3, help="unannotated test rooms for the submission")
    parser.add_argument("--vertices", type=int, default=8000, help="mesh vertices per room")
    parser.add_argument("--epochs", type=int, default=None, help="training epochs (default: experiment demo_cpu)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--workers", type=int, default=2, help="preprocessing processes")
    parser.add_argument("--threads", type=int, default=1,
                        help="torch threads (default 1: the tiny model's tensors are small, and on a busy machine "
                             "2 spin-waiting OpenMP threads made each step 10x slower)")
    parser.add_argument("--no-render", action="store_true", help="skip the PNG")
    parser.add_argument("overrides", nargs="*", help="extra training overrides, e.g. trainer.batch_size=4")
    args = parser.parse_args(argv)

    import torch

    from pointformer.config import ConfigError
    from pointformer.io.checkpoint import CheckpointError

    if args.threads < 1:
        parser.error("--threads must be >= 1")
    torch.set_num_threads(args.threads)
    start = time.perf_counter()
    try:
        summary = demo.run_demo(Path(args.out), scenes=args.scenes, test_scenes=args.test_scenes,
                                vertices=args.vertices, seed=args.seed, epochs=args.epochs, workers=args.workers,
                                overrides=args.overrides, render=not args.no_render)
    except (ConfigError, CheckpointError, ValueError, RuntimeError) as exc:
        print(f"pointformer demo: error: {exc}", file=sys.stderr)
        return 1
    print(f"\nDemo finished in {time.perf_counter() - start:.0f} s. Validation mAP {summary['val_map']:.3f} / "
          f"mAP50 {summary['val_map50']:.3f} / mAP25 {summary['val_map25']:.3f}; submission "
          f"{'valid' if summary['submission_valid'] else 'INVALID'}.")
    print(f"Everything is in {summary['output_folder']}")
    return 0 if summary["submission_valid"] else 1


def main_2d(argv: Sequence[str]) -> int:
    """``pointformer demo 2d``: synthesise shapes -> train -> evaluate -> overlays."""
    from pointformer.image import demo

    parser = argparse.ArgumentParser(prog="pointformer demo 2d", description=demo.__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", default="demo_2d_output", help="output folder (default ./demo_2d_output)")
    parser.add_argument("--images", type=int, default=160, help="training images (default 160)")
    parser.add_argument("--val-images", type=int, default=40, help="held-out images (default 40)")
    parser.add_argument("--size", type=int, default=96, help="image width in pixels (default 96)")
    parser.add_argument("--epochs", type=int, default=None, help="training epochs (default: experiment demo_2d)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1, help="torch threads (default 1)")
    parser.add_argument("overrides", nargs="*", help="extra training overrides, e.g. data.tokens=superpixel")
    args = parser.parse_args(list(argv))

    import torch

    from pointformer.config import ConfigError
    from pointformer.io.checkpoint import CheckpointError

    if args.threads < 1:
        parser.error("--threads must be >= 1")
    torch.set_num_threads(args.threads)
    start = time.perf_counter()
    try:
        summary = demo.run_demo_2d(Path(args.out), images=args.images, val_images=args.val_images, size=args.size,
                                   seed=args.seed, epochs=args.epochs, overrides=args.overrides)
    except (ConfigError, CheckpointError, ValueError, RuntimeError) as exc:
        print(f"pointformer demo 2d: error: {exc}", file=sys.stderr)
        return 1
    trained, untrained = summary["trained"], summary["untrained"]
    print(f"\n2D demo finished in {time.perf_counter() - start:.0f} s. Held-out COCO segm AP {trained['ap']:.3f} / "
          f"AP50 {trained['ap50']:.3f} / AP75 {trained['ap75']:.3f} (untrained model: AP50 {untrained['ap50']:.3f}).")
    print(f"Everything is in {summary['output_folder']} (overlays in overlays/, COCO results in eval_val/)")
    return 0
