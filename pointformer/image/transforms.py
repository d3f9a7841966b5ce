"""Geometric transforms of an image with its instance masks and crowd (ignore) mask.

Every transform maps an :class:`AnnotatedImage` to a new one; the random ones draw from a numpy
``Generator`` they are given (the dataset seeds it per (seed, epoch, index)), so augmentation is a
pure function of that seed. Masks follow the image exactly: the same resize (bilinear with
antialiasing on the mask as a 0/1 image, kept where >= 0.5), the same flip, the same crop window.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor


_MASK_CHUNK = 32


@dataclass
class AnnotatedImage:
    """image: float32 [3, H, W]; masks: bool [K, H, W]; ignore: bool [H, W] (crowd regions)."""

    image: Tensor
    masks: Tensor
    ignore: Tensor

    @property
    def size(self) -> tuple[int, int]:
        """(H, W)."""
        return int(self.image.shape[-2]), int(self.image.shape[-1])


def scaled_size(size: tuple[int, int], longer_side: float) -> tuple[int, int]:
    """(h, w) of an image of ``size`` (H, W) resized so that its longer side is ``longer_side``
    (rounded, at least 1 pixel each)."""
    height, width = size
    scale = longer_side / max(height, width)
    return max(1, int(round(height * scale))), max(1, int(round(width * scale)))


def _resize_channels(x: Tensor, size: tuple[int, int]) -> Tensor:
    """Bilinear resize of float [C, H, W] to [C, h, w]; antialiased when shrinking."""
    if tuple(x.shape[-2:]) == tuple(size) or x.shape[0] == 0:
        return x.new_zeros((x.shape[0], *size)) if x.shape[0] == 0 else x
    shrink = size[0] < x.shape[-2] or size[1] < x.shape[-1]
    return F.interpolate(x[None], size=size, mode="bilinear", align_corners=False, antialias=shrink)[0]


def resize(item: AnnotatedImage, size: tuple[int, int]) -> AnnotatedImage:
    """Resize to ``size`` (h, w): the image bilinearly, masks as 0/1 images kept where >= 0.5."""
    size = (int(size[0]), int(size[1]))
    if size[0] < 1 or size[1] < 1:
        raise ValueError(f"resize target must be at least 1x1, got {size}")
    image = _resize_channels(item.image.float(), size).clamp_(0.0, 1.0)
    # in chunks: a COCO image can hold ~100 instances, and a float copy of all of them is 4x their bytes
    chunks = [_resize_channels(part.float(), size) >= 0.5 for part in item.masks.split(_MASK_CHUNK)]
    masks = torch.cat(chunks) if chunks else torch.zeros((0, *size), dtype=torch.bool)
    ignore = _resize_channels(item.ignore[None].float(), size)[0] >= 0.5
    return AnnotatedImage(image=image, masks=masks, ignore=ignore)


def resize_longer_side(item: AnnotatedImage, longer_side: float) -> AnnotatedImage:
    """Resize keeping the aspect ratio so that the longer side is ``longer_side`` pixels."""
    return resize(item, scaled_size(item.size, longer_side))


def hflip(item: AnnotatedImage) -> AnnotatedImage:
    """Mirror left-right."""
    return AnnotatedImage(image=item.image.flip(-1), masks=item.masks.flip(-1), ignore=item.ignore.flip(-1))


def crop(item: AnnotatedImage, top: int, left: int, height: int, width: int) -> AnnotatedImage:
    """The window [top, top + height) x [left, left + width); it must lie inside the image."""
    h, w = item.size
    if not (0 <= top and 0 <= left and height >= 1 and width >= 1 and top + height <= h and left + width <= w):
        raise ValueError(f"crop window top={top} left={left} {height}x{width} does not fit a {h}x{w} image")
    rows, cols = slice(top, top + height), slice(left, left + width)
    return AnnotatedImage(image=item.image[:, rows, cols], masks=item.masks[:, rows, cols],
                          ignore=item.ignore[rows, cols])


def random_crop(item: AnnotatedImage, crop_size: int, rng: np.random.Generator) -> AnnotatedImage:
    """A uniformly placed ``crop_size`` square window, clipped to the image where it is smaller
    (no padding here: batches are padded at collation)."""
    h, w = item.size
    ch, cw = min(crop_size, h), min(crop_size, w)
    top = int(rng.integers(0, h - ch + 1))
    left = int(rng.integers(0, w - cw + 1))
    return crop(item, top, left, ch, cw)


def drop_empty(item: AnnotatedImage, classes: Tensor) -> tuple[AnnotatedImage, Tensor]:
    """Remove masks without a pixel (e.g. cropped away) and their classes."""
    keep = item.masks.flatten(1).any(1) if item.masks.shape[0] else torch.zeros(0, dtype=torch.bool)
    return AnnotatedImage(image=item.image, masks=item.masks[keep], ignore=item.ignore), classes[keep]


def eval_transform(item: AnnotatedImage, *, image_size: int) -> AnnotatedImage:
    """Validation / prediction: resize the longer side to ``image_size`` only."""
    return resize_longer_side(item, image_size)


def train_transform(item: AnnotatedImage, *, image_size: int, scale_jitter: Optional[tuple[float, float]],
                    crop_size: Optional[int], flip: bool, rng: np.random.Generator) -> AnnotatedImage:
    """Training augmentation: resize the longer side to ``image_size * s`` with ``s`` uniform in
    ``scale_jitter`` (or 1), mirror with probability 1/2 when ``flip``, then a random ``crop_size``
    window when given. The draws happen in a fixed order (scale, flip, crop) whether or not each
    option is on, so turning one option off does not change the others' randomness."""
    scale = float(rng.uniform(*scale_jitter)) if scale_jitter is not None else 1.0
    mirror = bool(rng.random() < 0.5)
    crop_rng = np.random.default_rng(rng.integers(0, 2 ** 63 - 1))
    item = resize_longer_side(item, image_size * scale)
    if flip and mirror:
        item = hflip(item)
    if crop_size is not None:
        item = random_crop(item, crop_size, crop_rng)
    return item


def check_augmentation(*, image_size: int, scale_jitter: Optional[tuple[float, float]],
                       crop_size: Optional[int]) -> None:
    """Raise ValueError naming the bad setting."""
    if int(image_size) != image_size or image_size < 1:
        raise ValueError(f"image_size must be a positive integer, got {image_size!r}")
    if scale_jitter is not None:
        low, high = scale_jitter
        if not (0 < low <= high):
            raise ValueError(f"scale_jitter must be (low, high) with 0 < low <= high, got {scale_jitter!r}")
    if crop_size is not None and (int(crop_size) != crop_size or crop_size < 1):
        raise ValueError(f"crop_size must be a positive integer or None, got {crop_size!r}")
