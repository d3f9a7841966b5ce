"""``pointformer train [overrides...]``: compose the run config and train (``pointformer.engine.run``).

Configuration errors print one clear line and return 2.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
from typing import Sequence

from pointformer.cli.common import add_import_option, import_modules, is_image_config


def _fail(message: str, status: int = 2) -> int:
    print(f"pointformer train: error: {message}", file=sys.stderr)
    return status


def _configure_threads() -> None:
    # On CPU, torch otherwise takes every core per process; under torchrun K processes would oversubscribe.
    import torch

    local = int(os.environ.get("LOCAL_WORLD_SIZE", "1"))
    if "OMP_NUM_THREADS" not in os.environ and local > 1:
        torch.set_num_threads(max(1, (os.cpu_count() or 1) // local))


def main(argv: Sequence[str]) -> int:
    parser = argparse.ArgumentParser(
        prog="pointformer train",
        description="Train a model. Arguments are Hydra overrides of the packaged config tree, e.g.\n"
                    "  pointformer train experiment=scannet_mask3d data.root=/data/scannet_processed\n"
                    "  pointformer train experiment=scannet_mask3d_hungarian data.root=...   (the Hungarian baseline)\n"
                    "  pointformer train data=synthetic data.root=out/pre model=tiny trainer.epochs=50 "
                    "trainer.lr=2e-3\n"
                    "  pointformer train ... trainer.resume=auto      (continue the newest run of this name)\n"
                    "  pointformer train experiment=demo_2d data.root=SHAPES   (2D: data with modality: image)\n"
                    "  pointformer train --import my_losses --config-dir my_configs loss=my_loss ...  (own loss)\n"
                    "  torchrun --nproc_per_node=2 -m pointformer train ...   (DDP; gloo on CPU, NCCL on GPU)",
        formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("overrides", nargs="*",
                        help="key=value or group=option (groups: data, model, loss, trainer, experiment)")
    parser.add_argument("--print-config", action="store_true", help="print the composed config and exit")
    parser.add_argument("--config-dir", action="append", default=[], metavar="DIR",
                        help="a config folder searched before the packaged one, with the same groups "
                             "(e.g. DIR/loss/my_loss.yaml adds loss=my_loss); repeatable")
    add_import_option(parser)
    args = parser.parse_args(list(argv))

    from pointformer.config import ConfigError, compose_config
    from pointformer.config.compose import to_yaml

    try:
        import_modules(args.imports)
        cfg = compose_config(args.overrides, search_path=args.config_dir)
    except (ConfigError, ValueError) as exc:
        return _fail(str(exc))
    if args.print_config:
        print(to_yaml(cfg))
        return 0
    _configure_threads()
    from pointformer.engine.distributed import init_distributed, shutdown_distributed
    from pointformer.engine.run import run_training
    from pointformer.io.checkpoint import CheckpointError
    from pointformer.io.scene import SceneFormatError

    image = is_image_config(cfg)
    dist_info = init_distributed(str(cfg.trainer.device))
    try:
        if image:  # the 2D composition root, imported only for an image dataset
            from pointformer.image.run import run_image_training

            result = run_image_training(cfg, dist_info=dist_info, overrides=args.overrides)
        else:
            result = run_training(cfg, dist_info=dist_info, overrides=args.overrides)
    except (ConfigError, CheckpointError, SceneFormatError) as exc:  # user-fixable: one line naming the cause
        return _fail(str(exc))
    finally:
        shutdown_distributed()
    if dist_info.is_main:
        summary = {"run_dir": str(result.run_dir), "step": result.step, "best": result.best,
                   **{k: result.last_val[k] for k in ("map", "map50", "map25", "ap", "ap50", "ap75")
                      if k in result.last_val}}
        print(json.dumps(summary))
    return 0
