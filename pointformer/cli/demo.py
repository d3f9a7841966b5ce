"""``pointformer demo`` / ``make demo``: the whole pipeline on synthetic ScanNet-format rooms, on a CPU
(``pointformer.engine.demo.run_demo``; that module's docstring lists the steps and is the command's help)."""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Optional, Sequence


def main(argv: Optional[Sequence[str]] = None) -> int:
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
    args = parser.parse_args(list(sys.argv[1:] if argv is None else argv))

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
