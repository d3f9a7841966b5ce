"""Options shared by several commands."""
from __future__ import annotations

import argparse
import importlib
from pathlib import Path
from typing import TYPE_CHECKING, Sequence, Union

if TYPE_CHECKING:
    from pointformer.inference import Predictor


def add_import_option(parser: argparse.ArgumentParser) -> None:
    """``--import MODULE`` (repeatable): modules imported before the config is read, e.g. one that declares
    a loss with ``pointformer.losses.register_loss``."""
    parser.add_argument("--import", dest="imports", action="append", default=[], metavar="MODULE",
                        help="import MODULE first (repeatable), e.g. a module that registers your own loss")


def import_modules(names: Sequence[str]) -> None:
    """Import every module of ``names``; ValueError naming the module when one cannot be imported."""
    for name in names:
        try:
            importlib.import_module(name)
        except ImportError as exc:
            raise ValueError(f"--import {name}: cannot import it ({exc}); is its folder on PYTHONPATH?") from None


def add_checkpoint_options(parser: argparse.ArgumentParser) -> None:
    """``--device`` and ``--import``: what a command that runs a checkpoint needs (a checkpoint of
    your own loss needs its module)."""
    parser.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"))
    add_import_option(parser)


def load_predictor(args: argparse.Namespace, checkpoint: Union[str, Path]) -> "Predictor":
    """The predictor of ``checkpoint`` with the parsed ``--import``, ``--device`` and ``overrides``."""
    from pointformer.inference import Predictor

    import_modules(args.imports)
    return Predictor.from_checkpoint(checkpoint, args.overrides, device=args.device)


def is_image_config(cfg: object) -> bool:
    """Whether a composed or stored config is a 2D run (``data.modality: image``), read without importing
    the 2D package (the 3D commands must not load it)."""
    data = getattr(cfg, "get", lambda key, default=None: default)("data")
    return bool(data is not None and data.get("modality") == "image")


def is_image_checkpoint(checkpoint: Union[str, Path]) -> bool:
    """Whether ``checkpoint`` stores a 2D run's config (raises CheckpointError for a bad file)."""
    from pointformer.config.compose import load_config_yaml
    from pointformer.io.checkpoint import load_checkpoint

    return is_image_config(load_config_yaml(load_checkpoint(checkpoint)["config"]))
