"""An image with its predicted instances drawn over it: translucent colour per instance, its outline,
and a "class score" label at the instance's top-left (PIL). ``pointformer infer IMAGE.png`` and the
2D demo write these."""
from __future__ import annotations

import io
import os
from pathlib import Path
from typing import Sequence

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from pointformer.image.evaluation import ImagePrediction
from pointformer.io.atomic import atomic_write_bytes
from pointformer.vis.colors import palette

__all__ = ["overlay_instances", "write_overlay"]


def overlay_instances(image: np.ndarray, prediction: ImagePrediction, class_names: Sequence[str], *,
                      score_threshold: float = 0.3, alpha: float = 0.5) -> Image.Image:
    """The overlay of ``prediction`` on ``image``.

    Args:
        image: float [3, H, W] or [H, W, 3] RGB in [0, 1] (or uint8), the image the masks are at.
        prediction: masks bool [M, H, W], classes [M], scores [M].
        class_names: name of every class index.
        score_threshold: instances scoring below it are not drawn.
        alpha: opacity of the instance colour.
    Returns:
        an RGB ``PIL.Image`` of size W x H.
    """
    pixels = np.asarray(image)
    if pixels.ndim == 3 and pixels.shape[0] == 3 and pixels.shape[-1] != 3:
        pixels = pixels.transpose(1, 2, 0)
    if pixels.dtype != np.uint8:
        pixels = (np.clip(pixels, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)
    masks = np.asarray(prediction.masks, dtype=bool)
    if masks.ndim != 3 or masks.shape[1:] != pixels.shape[:2]:
        raise ValueError(f"prediction masks {masks.shape} do not match the image {pixels.shape[:2]}")
    order = [i for i in np.argsort(-np.asarray(prediction.scores), kind="stable")
             if float(prediction.scores[i]) >= score_threshold and masks[i].any()]
    colours = palette(max(len(order), 1))
    out = pixels.astype(np.float32)
    for rank, i in enumerate(reversed(order)):  # the best instance is painted last (on top)
        colour = colours[len(order) - 1 - rank].astype(np.float32)
        out[masks[i]] = (1.0 - alpha) * out[masks[i]] + alpha * colour
    canvas = Image.fromarray(out.astype(np.uint8))
    draw = ImageDraw.Draw(canvas)
    font = ImageFont.load_default()
    for rank, i in enumerate(order):
        colour = tuple(int(c) for c in colours[rank])
        mask = masks[i]
        edge = mask & ~(np.roll(mask, 1, 0) & np.roll(mask, -1, 0) & np.roll(mask, 1, 1) & np.roll(mask, -1, 1))
        ys, xs = np.nonzero(edge)
        draw.point(list(zip(xs.tolist(), ys.tolist())), fill=colour)
        c = int(prediction.classes[i])
        name = class_names[c] if 0 <= c < len(class_names) else str(c)
        rows, cols = np.nonzero(mask)
        label = f"{name} {float(prediction.scores[i]):.2f}"
        x, y = int(cols.min()), max(int(rows.min()) - 11, 0)
        box = draw.textbbox((x, y), label, font=font)
        draw.rectangle(box, fill=(0, 0, 0))
        draw.text((x, y), label, fill=colour, font=font)
    return canvas


def write_overlay(path: str | os.PathLike, image: np.ndarray, prediction: ImagePrediction,
                  class_names: Sequence[str], *, score_threshold: float = 0.3) -> Path:
    """Write the overlay as a PNG (atomically); returns the path."""
    buffer = io.BytesIO()
    overlay_instances(image, prediction, class_names, score_threshold=score_threshold).save(buffer, format="PNG")
    return atomic_write_bytes(path, buffer.getvalue())
