"""Commands of the training engine: ``train``, ``evaluate-model``, ``export``, ``infer``.

Each is ``main(argv) -> exit status``; configuration errors print one clear line and return 2.
"""
from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from pathlib import Path
from typing import Optional, Sequence

log = logging.getLogger("pointformer")


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
                    "  pointformer train data=synthetic data.root=out/pre loss=hungarian trainer.epochs=50\n"
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
    from pointformer.engine.run import run_training
    from pointformer.engine.checkpoint import CheckpointError

    dist_info = init_distributed(str(cfg.trainer.device))
    try:
        result = run_training(cfg, dist_info=dist_info, overrides=args.overrides)
    except (ConfigError, CheckpointError) as exc:
        return _fail("train", str(exc))
    finally:
        shutdown_distributed()
    if dist_info.is_main:
        summary = {"run_dir": str(result.run_dir), "step": result.step, "best": result.best,
                   **{k: result.last_val[k] for k in ("map", "map50", "map25") if k in result.last_val}}
        print(json.dumps(summary))
    return 0


# ------------------------------------------------------------------------------------------- shared
def load_trained(checkpoint: str | os.PathLike, overrides: Sequence[str], *, device: str = "auto"):
    """(cfg, model in eval mode on its device, payload) from a checkpoint + plain-key overrides."""
    import torch

    from pointformer.engine.build import build_model
    from pointformer.engine.checkpoint import load_checkpoint
    from pointformer.engine.config import apply_overrides, load_config_yaml

    payload = load_checkpoint(checkpoint)
    cfg = apply_overrides(load_config_yaml(payload["config"]), overrides)
    model = build_model(cfg)
    model.load_state_dict(payload["model"])
    use_cuda = torch.cuda.is_available() and device in ("auto", "cuda")
    model = model.to("cuda" if use_cuda else "cpu").eval()
    return cfg, model, payload


def predict_split(cfg, model, split: str, *, limit: Optional[int] = None, progress: bool = True):
    """(dataset, task, list of (scene_id, gt_ids or None, ScenePrediction, num_mesh_vertices))."""
    import torch
    from torch.utils.data import DataLoader

    from pointformer.data.collate import collate_scenes
    from pointformer.engine.build import build_task, check_classes, make_dataset

    dataset = make_dataset(cfg, split, train=False, limit=limit)
    task = build_task(cfg, check_classes(cfg, dataset))
    device = next(model.parameters()).device
    loader = DataLoader(dataset, batch_size=1, shuffle=False, collate_fn=collate_scenes)
    if progress:
        from tqdm import tqdm

        loader = tqdm(loader, desc=f"predict {split}", dynamic_ncols=True)
    results = []
    with torch.no_grad():
        for batch in loader:
            predictions = task.predict(model, batch.to(device))
            results.extend(zip(batch.scene_ids, batch.gt_ids, predictions, batch.num_mesh_vertices))
    return dataset, task, results


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

    try:
        cfg, model, payload = load_trained(args.checkpoint, args.overrides, device=args.device)
        split = args.split or str(cfg.data.val_split)
        _, task, results = predict_split(cfg, model, split, limit=args.limit)
        if any(gt is None for _, gt, _, _ in results):
            return _fail("evaluate-model", f"split {split!r} has no ground truth (a test split?); choose a labelled split")
        metrics = task.evaluate([gt for _, gt, _, _ in results], [p for _, _, p, _ in results], [s for s, _, _, _ in results])
    except (ConfigError, CheckpointError) as exc:
        return _fail("evaluate-model", str(exc))
    print(metrics["table"])
    print(f"{split}: {len(results)} scenes, step {payload['step']}: mAP {metrics['map']:.4f}  "
          f"mAP50 {metrics['map50']:.4f}  mAP25 {metrics['map25']:.4f}")
    if args.out:
        from pointformer.evaluation import evaluate_scenes

        out = Path(args.out)
        out.mkdir(parents=True, exist_ok=True)
        result = evaluate_scenes([gt for _, gt, _, _ in results], [p for _, _, p, _ in results],
                                 dataset=str(cfg.data.dataset), scene_names=[s for s, _, _, _ in results])
        result.to_csv(out / "eval.csv")
        (out / "metrics.json").write_text(json.dumps({k: v for k, v in metrics.items() if k != "table"}, indent=1, default=str))
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
