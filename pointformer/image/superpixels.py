"""Superpixels: the segmentator's graph segmentation on the image grid (the 2D superpoints).

The same Felzenszwalb–Huttenlocher union–find the mesh segmentator runs
(:func:`pointformer.preprocess.segmentator.segment_sorted_edges`, compiled by numba), on a different
graph: pixels are the vertices, each pixel is joined to its 8 neighbours, and an edge weighs the
Euclidean RGB distance of its two pixels (colours in [0, 1], after an optional Gaussian blur of
``sigma`` pixels that suppresses single-pixel noise, as in Felzenszwalb & Huttenlocher 2004).
Edges are visited by increasing weight; two regions merge when the edge weight is at most each
region's ``internal difference + threshold / size``; a second pass merges regions smaller than
``min_size`` pixels into a neighbour. Regions are 8-connected.

Scale: with colours in [0, 1], ``threshold`` 1.0 corresponds to the paper's k = 255 on 0..255
colours; larger thresholds give fewer, larger superpixels.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.ndimage import gaussian_filter

from pointformer.preprocess.jit import jit
from pointformer.preprocess.segmentator import segment_sorted_edges_compiled, stable_argsort_nonnegative


@dataclass(frozen=True)
class SuperpixelSettings:
    """threshold: merge scale (see module doc; default 0.5); min_size: smallest superpixel in pixels
    (default 16; smaller regions are merged into a neighbour); sigma: Gaussian blur in pixels before
    the graph is built (default 0.5; 0 = none)."""

    threshold: float = 0.5
    min_size: int = 16
    sigma: float = 0.5

    def __post_init__(self) -> None:
        if not (self.threshold >= 0):
            raise ValueError(f"superpixel threshold must be >= 0, got {self.threshold!r}")
        if int(self.min_size) != self.min_size or self.min_size < 1:
            raise ValueError(f"superpixel min_size must be a positive integer, got {self.min_size!r}")
        if not (self.sigma >= 0):
            raise ValueError(f"superpixel sigma must be >= 0, got {self.sigma!r}")


def _grid_edges_loop(image: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Edges of the 8-connected pixel grid of float32 [H, W, C]: endpoints a, b int64 [E] (flat
    pixel indices) and weights float32 [E] (Euclidean colour distance); E = 4HW - 3(H+W) + 2."""
    height, width, channels = image.shape
    count = 0
    if height > 0 and width > 0:
        count = height * (width - 1) + (height - 1) * width + 2 * (height - 1) * (width - 1)
    ea = np.empty(count, dtype=np.int64)
    eb = np.empty(count, dtype=np.int64)
    w = np.empty(count, dtype=np.float32)
    e = 0
    for y in range(height):
        for x in range(width):
            for k in range(4):  # right, down, down-right, down-left
                dy = 0 if k == 0 else 1
                dx = 1 if k == 0 or k == 2 else (0 if k == 1 else -1)
                ny, nx = y + dy, x + dx
                if ny >= height or nx < 0 or nx >= width:
                    continue
                total = np.float32(0.0)
                for c in range(channels):
                    d = image[y, x, c] - image[ny, nx, c]
                    total += d * d
                ea[e] = y * width + x
                eb[e] = ny * width + nx
                w[e] = np.sqrt(total)
                e += 1
    return ea, eb, w


def _relabel_loop(roots: np.ndarray) -> np.ndarray:
    """Root ids [N] -> contiguous ids 0..S-1 in order of first appearance (raster order)."""
    lookup = np.full(roots.shape[0], -1, dtype=np.int64)
    out = np.empty(roots.shape[0], dtype=np.int64)
    next_id = 0
    for i in range(roots.shape[0]):
        r = roots[i]
        if lookup[r] < 0:
            lookup[r] = next_id
            next_id += 1
        out[i] = lookup[r]
    return out


grid_edges = jit(_grid_edges_loop)
relabel_first_appearance = jit(_relabel_loop)


def image_superpixels(image: np.ndarray, *, settings: SuperpixelSettings) -> np.ndarray:
    """Superpixels of one image.

    image: [H, W, 3] (or [H, W, C], or [H, W] grey) uint8 in 0..255 or float in [0, 1].
    Returns int64 [H, W]: contiguous superpixel ids 0..S-1, numbered in raster order of their first
    pixel. Deterministic (stable edge order). Every superpixel is 8-connected and has at least
    ``settings.min_size`` pixels unless the whole image is smaller.
    """
    array = np.asarray(image)
    if array.ndim == 2:
        array = array[:, :, None]
    if array.ndim != 3 or array.shape[0] < 1 or array.shape[1] < 1:
        raise ValueError(f"image must have shape [H, W, C] with H, W >= 1, got {np.asarray(image).shape}")
    if array.dtype == np.uint8:
        colours = array.astype(np.float32) / np.float32(255.0)
    elif np.issubdtype(array.dtype, np.floating):
        colours = array.astype(np.float32)
        if not np.isfinite(colours).all():
            raise ValueError("image contains NaN or inf")
    else:
        raise ValueError(f"image must be uint8 (0..255) or float ([0, 1]), got dtype {array.dtype}")
    if settings.sigma > 0:
        colours = gaussian_filter(colours, sigma=(settings.sigma, settings.sigma, 0), mode="nearest",
                                  truncate=4.0)
    height, width = colours.shape[:2]
    ea, eb, w = grid_edges(np.ascontiguousarray(colours, dtype=np.float32))
    order = stable_argsort_nonnegative(w)
    roots = segment_sorted_edges_compiled(height * width, ea[order], eb[order], w[order],
                                          np.float32(settings.threshold), int(settings.min_size))
    return relabel_first_appearance(roots).reshape(height, width)
