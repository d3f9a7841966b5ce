"""Options shared by several commands."""
from __future__ import annotations

import argparse
import importlib
from typing import Sequence


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
