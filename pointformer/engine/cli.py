"""Commands of the training engine: ``train``, ``evaluate-model``, ``export``, ``infer``.

Each is ``main(argv) -> exit status``; configuration errors print one clear line and return 2.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import Sequence


def _fail(command: str, message: str, status: int = 2) -> int:
    print(f"pointformer {command}: error: {message}", file=sys.stderr)
    return status


def _configure_threads() -> None:
    # On CPU, torch otherwise takes every core per process; under torchrun K processes would oversubscribe.
    import torch

    local = int(os.environ.get("LOCAL_WORLD_SIZE", "1"))
    if "OMP_NUM_THREADS" not in os.environ and local > 1:
        torch.set_num_threads(max(1, (os.cpu_count() or 1) // local))


# ------------------------------------------------------------------------------------------- train
def train_main(argv: Sequence[str]) -> int:
    parser = argparse.ArgumentParser(
        prog="pointformer train",
        description="Train a model. Arguments are Hydra overrides of the packaged config tree, e.g.\n"
                    "  pointformer train experiment=scannet_mask3d data.root=/data/scannet_processed\n"
                    "  pointformer train experiment=scannet_mask3d_hungarian data.root=...   (the Hungarian baseline)\n"
                    "  pointformer train data=synthetic data.root=out/pre model=tiny trainer.epochs=50 trainer.lr=2e-3\n"
                    "  pointformer train ... trainer.resume=auto      (continue the newest run of this name)\n"
                    "  torchrun --nproc_per_node=2 -m pointformer train ...   (DDP; gloo on CPU, NCCL on GPU)",
        formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("overrides", nargs="*", help="key=value or group=option (groups: data, model, loss, trainer, experiment)")
    parser.add_argument("--print-config", action="store_true", help="print the composed config and exit")
    args = parser.parse_args(list(argv))

    from pointformer.engine.config import ConfigError, compose_config, to_yaml

    try:
        cfg = compose_config(args.overrides)
    except ConfigError as exc:
        return _fail("train", str(exc))
    if args.print_config:
        print(to_yaml(cfg))
        return 0
    _configure_threads()
    from pointformer.engine.distributed import init_distributed, shutdown_distributed
    from pointformer.engine.checkpoint import CheckpointError
    from pointformer.engine.run import run_training
    from pointformer.io.scene import SceneFormatError

    dist_info = init_distributed(str(cfg.trainer.device))
    try:
        result = run_training(cfg, dist_info=dist_info, overrides=args.overrides)
    except (ConfigError, CheckpointError, SceneFormatError) as exc:  # user-fixable: one line naming the cause
        return _fail("train", str(exc))
    finally:
        shutdown_distributed()
    if dist_info.is_main:
        summary = {"run_dir": str(result.run_dir), "step": result.step, "best": result.best,
                   **{k: result.last_val[k] for k in ("map", "map50", "map25") if k in result.last_val}}
        print(json.dumps(summary))
    return 0


# ------------------------------------------------------------------------------------------- evaluate-model
def evaluate_main(argv: Sequence[str]) -> int:
    parser = argparse.ArgumentParser(
        prog="pointformer evaluate-model",
        description="Evaluate a checkpoint on a labelled split with the ScanNet protocol (mAP, mAP50, mAP25, per class).\n"
                    "Overrides change plain keys of the checkpoint's config, e.g. data.root=/data/scannet_processed.",
        formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("checkpoint", help="a checkpoint (run_dir/checkpoints/best.pt or step_XXXXXXXX.pt)")
    parser.add_argument("overrides", nargs="*", help="key=value overrides (data.root=..., data.val_split=..., eval.num_queries=...)")
    parser.add_argument("--split", default=None, help="split to evaluate (default: data.val_split)")
    parser.add_argument("--limit", type=int, default=None, help="evaluate only the first N scenes")
    parser.add_argument("--out", default=None, help="folder for eval.csv and metrics.json")
    parser.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"))
    args = parser.parse_args(list(argv))

    from pointformer.engine.checkpoint import CheckpointError
    from pointformer.engine.config import ConfigError
    from pointformer.engine.predict import load_trained, predict_split

    try:
        cfg, model, payload = load_trained(args.checkpoint, args.overrides, device=args.device)
        split = args.split or str(cfg.data.val_split)
        _, task, results = predict_split(cfg, model, split, limit=args.limit)
        if any(gt is None for _, gt, _, _ in results):
            return _fail("evaluate-model", f"split {split!r} has no ground truth (a test split?); choose a labelled split")
        result = task.evaluate_result([gt for _, gt, _, _ in results], [p for _, _, p, _ in results],
                                      [s for s, _, _, _ in results])
    except (ConfigError, CheckpointError, ValueError) as exc:  # every input error is a ValueError with a message
        return _fail("evaluate-model", str(exc))
    print(result.table())
    print(f"{split}: {len(results)} scenes, checkpoint step {payload['step']}: mAP {result.map:.4f}  "
          f"mAP50 {result.map50:.4f}  mAP25 {result.map25:.4f}")
    if args.out:
        out = Path(args.out)
        out.mkdir(parents=True, exist_ok=True)
        result.to_csv(out / "eval.csv")
        (out / "metrics.json").write_text(json.dumps(result.as_dict(), indent=1, default=str))
        print(f"wrote {out / 'eval.csv'} and {out / 'metrics.json'}")
    return 0


# ------------------------------------------------------------------------------------------- export
def export_main(argv: Sequence[str]) -> int:
    from pointformer.engine.export import export_main as _export

    return _export(argv)


# ------------------------------------------------------------------------------------------- infer
def infer_main(argv: Sequence[str]) -> int:
    from pointformer.engine.infer import infer_main as _infer

    return _infer(argv)
