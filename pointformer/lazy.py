"""Lazy package exports (PEP 562): a package lists ``name -> submodule`` and imports a submodule only
when one of its names is first used, so importing a light submodule (the modality-free sampler, the
postprocessor, the colour palette) does not load its heavy siblings (the 3D datasets and predictor)."""
from __future__ import annotations

import importlib
from typing import Any, Callable


def lazy_exports(package: str, exports: dict[str, str]) -> Callable[[str], Any]:
    """The module-level ``__getattr__`` of ``package`` for ``exports`` (exported name -> submodule name)."""

    def __getattr__(name: str) -> Any:
        module = exports.get(name)
        if module is None:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        return getattr(importlib.import_module(f"{package}.{module}"), name)

    return __getattr__
