"""Colours for instance visualisation: a fixed, well-separated palette (deterministic per id)."""
from __future__ import annotations

import colorsys

import numpy as np

NO_INSTANCE_RGB = np.array([190, 190, 190], dtype=np.uint8)  # points no instance claims


def palette(n: int) -> np.ndarray:
    """uint8 [n, 3] distinct colours: golden-ratio hue steps, alternating saturation/value bands."""
    hues = (np.arange(n) * 0.618033988749895) % 1.0
    out = np.empty((n, 3), dtype=np.uint8)
    for i, h in enumerate(hues):
        s = 0.65 + 0.3 * ((i // 2) % 2)
        v = 0.95 - 0.25 * (i % 2)
        out[i] = np.round(np.array(colorsys.hsv_to_rgb(h, s, v)) * 255)
    return out


def color_instances(instance: np.ndarray, *, base_rgb: np.ndarray | None = None, dim: float = 0.35) -> np.ndarray:
    """uint8 [V, 3]: instance k > 0 gets palette colour k-1; points with 0 (or < 0) are grey, or the
    scan's own colour dimmed towards grey when ``base_rgb`` uint8 [V, 3] is given."""
    instance = np.asarray(instance)
    if instance.ndim != 1:
        raise ValueError(f"instance ids must be a vector [V], got shape {instance.shape}")
    colors = background_colors(instance.shape[0], base_rgb=base_rgb, dim=dim)
    members = instance > 0
    if members.any():
        colors[members] = palette(int(instance.max()))[instance[members] - 1]
    return colors


def background_colors(num_points: int, *, base_rgb: np.ndarray | None = None, dim: float = 0.35) -> np.ndarray:
    """uint8 [V, 3] colours of points no instance claims: grey, or the scan's own colour base_rgb uint8 [V, 3]
    blended towards grey (``dim`` of the scan colour), so that instance colours stand out."""
    if base_rgb is None:
        return np.tile(NO_INSTANCE_RGB, (num_points, 1))
    base_rgb = np.asarray(base_rgb)
    if base_rgb.shape != (num_points, 3):
        raise ValueError(f"base_rgb has shape {base_rgb.shape}, expected {(num_points, 3)}")
    return np.round(base_rgb * dim + NO_INSTANCE_RGB * (1 - dim)).astype(np.uint8)
