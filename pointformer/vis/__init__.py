"""Visualisation: instance colours, coloured PLY, PNG rendering (Open3D offscreen, matplotlib fallback), viewer.

The names below are imported on first use (PEP 562): the 2D branch's overlays use ``colors`` alone and
must not load the PLY writer with it.
"""
from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {"color_instances": "colors", "palette": "colors", "write_instance_ply": "ply", "render_png": "render"}

__all__ = ["color_instances", "palette", "render_png", "write_instance_ply"]


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f"{__name__}.{module}"), name)
