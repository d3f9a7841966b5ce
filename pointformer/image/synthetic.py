"""``pointformer synth shapes2d``: a small COCO-format instance set of textured, overlapping shapes.

Layout (the one :class:`pointformer.image.dataset.CocoInstanceDataset` reads by default)::

    OUT/annotations/instances_train.json   OUT/train/000000.png ...
    OUT/annotations/instances_val.json     OUT/val/000000.png ...

Four classes that differ by shape only — ``disc`` (a 32-gon), ``triangle``, ``square`` and ``star``
(five points) — with COCO category ids 2, 5, 7, 11 (not contiguous, on purpose). Every shape and
the background are filled with a random texture (stripes, checkerboard or smooth noise between two
random colours, plus pixel noise) drawn from one distribution for all classes, so colour neither
identifies a class nor separates an object from the background by itself.

Shapes are painted in order, later ones covering earlier ones; each annotation is the shape's
VISIBLE part, exact: a shape's full mask is its polygon rasterised by pycocotools, the pixels
painted are exactly that mask, and the visible mask is the full mask minus the later shapes'.
A placement that would leave an earlier shape less than half visible is redrawn (or the shape is
dropped), so no instance is a sliver. Unoccluded shapes are written as their polygon (about 60%
of them), the others as RLE — compressed (``counts`` string) or uncompressed (``counts`` list) at
random. About a quarter of the images carry a crowd region: a cluster of tiny shapes annotated as
one ``iscrowd: 1`` uncompressed RLE (as COCO writes crowds), painted before the shapes. About one
image in twenty has no object; every fourth image is a JPEG (quality 95), the others PNG. Images are
``size`` wide and ``size`` or ``3/4 size`` high.

Deterministic: image ``i`` of a split depends only on (seed, split, i), so the same seed gives the
same files, and a larger ``--images`` keeps the first images unchanged.
"""
from __future__ import annotations

import io
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

import numpy as np
from PIL import Image
from pycocotools import mask as mask_utils

from pointformer.image.coco import decode_rles
from pointformer.io.atomic import atomic_write_bytes, atomic_write_json

CATEGORIES: list[dict[str, Any]] = [
    {"id": 2, "name": "disc", "supercategory": "shape"},
    {"id": 5, "name": "triangle", "supercategory": "shape"},
    {"id": 7, "name": "square", "supercategory": "shape"},
    {"id": 11, "name": "star", "supercategory": "shape"},
]
_SPLIT_CODE = {"train": 0, "val": 1}
_MIN_VISIBLE_FRACTION = 0.5
_MIN_VISIBLE_PIXELS = 30


@dataclass
class SplitSummary:
    """What one split holds: images, instances (non-crowd) by encoding, crowd regions."""

    images: int = 0
    instances: int = 0
    polygons: int = 0
    rle_compressed: int = 0
    rle_uncompressed: int = 0
    crowd_regions: int = 0
    empty_images: int = 0
    jpeg_images: int = 0


@dataclass
class Shapes2DResult:
    root: Path
    splits: dict[str, SplitSummary] = field(default_factory=dict)


def _texture(rng: np.random.Generator, height: int, width: int) -> np.ndarray:
    """float32 [H, W, 3] in [0, 1]: a random pattern between two random colours plus pixel noise."""
    colour_a, colour_b = rng.random(3), rng.random(3)
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
    kind = rng.integers(0, 3)
    if kind == 0:  # stripes at a random angle and period
        angle, period = rng.uniform(0, math.pi), rng.uniform(3.0, 10.0)
        phase = (xx * math.cos(angle) + yy * math.sin(angle)) / period
        pattern = 0.5 + 0.5 * np.sin(2 * math.pi * phase)
    elif kind == 1:  # checkerboard
        cell = int(rng.integers(3, 9))
        pattern = ((yy // cell + xx // cell) % 2).astype(np.float32)
    else:  # smooth noise: a coarse random grid upsampled bilinearly
        cells = int(rng.integers(3, 8))
        coarse = rng.random((cells + 1, cells + 1))
        gy, gx = yy / max(height - 1, 1) * cells, xx / max(width - 1, 1) * cells
        y0, x0 = np.minimum(gy.astype(int), cells - 1), np.minimum(gx.astype(int), cells - 1)
        fy, fx = gy - y0, gx - x0
        pattern = (coarse[y0, x0] * (1 - fy) * (1 - fx) + coarse[y0 + 1, x0] * fy * (1 - fx)
                   + coarse[y0, x0 + 1] * (1 - fy) * fx + coarse[y0 + 1, x0 + 1] * fy * fx)
    image = colour_a * (1 - pattern[..., None]) + colour_b * pattern[..., None]
    image += rng.normal(0.0, 0.04, size=image.shape)
    return np.clip(image, 0.0, 1.0).astype(np.float32)


def _shape_polygon(rng: np.random.Generator, name: str, cx: float, cy: float, radius: float) -> list[float]:
    """A flat polygon [x0, y0, ...] of class ``name`` around (cx, cy), randomly rotated, rounded to
    0.01 px (the rasterised mask is computed from exactly these numbers)."""
    rotation = rng.uniform(0, 2 * math.pi)
    if name == "disc":
        angles = rotation + np.linspace(0, 2 * math.pi, 32, endpoint=False)
        radii = np.full(32, radius)
    elif name == "triangle":
        angles = rotation + np.array([0.0, 2 * math.pi / 3, 4 * math.pi / 3])
        radii = np.full(3, radius * 1.15)
    elif name == "square":
        angles = rotation + np.array([0.25, 0.75, 1.25, 1.75]) * math.pi
        radii = np.full(4, radius)
    elif name == "star":
        angles = rotation + np.linspace(0, 2 * math.pi, 10, endpoint=False)
        radii = np.where(np.arange(10) % 2 == 0, radius * 1.2, radius * 0.5)
    else:
        raise ValueError(f"unknown shape {name!r}")
    xs, ys = cx + radii * np.cos(angles), cy + radii * np.sin(angles)
    return [round(float(v), 2) for pair in zip(xs, ys) for v in pair]


def _rasterise(polygons: list[list[float]], height: int, width: int) -> np.ndarray:
    """bool [H, W]: the union of the polygons as pycocotools rasterises them (the COCO reader's mask)."""
    return decode_rles([mask_utils.merge(mask_utils.frPyObjects(polygons, height, width))], height, width)[0]


def uncompressed_rle(mask: np.ndarray) -> dict[str, Any]:
    """COCO uncompressed RLE of bool [H, W]: run lengths of the column-major pixels, zeros first."""
    flat = np.asarray(mask, dtype=bool).reshape(-1, order="F")
    changes = np.flatnonzero(flat[1:] != flat[:-1]) + 1
    bounds = np.concatenate([[0], changes, [flat.size]])
    counts = np.diff(bounds).tolist()
    if flat.size and flat[0]:
        counts = [0] + counts
    return {"size": [int(mask.shape[0]), int(mask.shape[1])], "counts": [int(c) for c in counts]}


def compressed_rle(mask: np.ndarray) -> dict[str, Any]:
    """COCO compressed RLE of bool [H, W] (``counts`` a string, as JSON stores it)."""
    rle = mask_utils.encode(np.asfortranarray(mask.astype(np.uint8)))
    return {"size": [int(v) for v in rle["size"]], "counts": rle["counts"].decode("ascii")}


def _bbox(mask: np.ndarray) -> list[float]:
    rows, cols = np.flatnonzero(mask.any(1)), np.flatnonzero(mask.any(0))
    return [float(cols[0]), float(rows[0]), float(cols[-1] - cols[0] + 1), float(rows[-1] - rows[0] + 1)]


@dataclass
class _Shape:
    category_id: int
    polygon: list[float]
    full: np.ndarray


_Crowd = tuple[int, np.ndarray]  # (category id, bool [H, W] mask)


def _draw_image(rng: np.random.Generator, size: int) -> tuple[np.ndarray, list[_Shape], Optional[_Crowd]]:
    """One image: pixels float32 [H, W, 3], its shapes in painting order, and (category id, crowd mask)."""
    width = size
    height = size if rng.random() < 0.5 else max(8, (3 * size) // 4)
    image = _texture(rng, height, width)
    crowd: Optional[_Crowd] = None
    if rng.random() < 0.25:  # a crowd: a cluster of tiny shapes of one class
        category = CATEGORIES[int(rng.integers(0, len(CATEGORIES)))]
        cx, cy = rng.uniform(0.2, 0.8) * width, rng.uniform(0.2, 0.8) * height
        spread, tiny = 0.12 * min(height, width), max(1.5, 0.025 * min(height, width))
        polygons = []
        for _ in range(int(rng.integers(6, 11))):
            px = float(np.clip(cx + rng.normal(0, spread), tiny, width - tiny))
            py = float(np.clip(cy + rng.normal(0, spread), tiny, height - tiny))
            polygons.append(_shape_polygon(rng, category["name"], px, py, tiny))
        mask = _rasterise(polygons, height, width)
        image[mask] = _texture(rng, height, width)[mask]
        crowd = (int(category["id"]), mask)
    shapes: list[_Shape] = []
    count = 0 if rng.random() < 0.05 else int(rng.integers(1, 5))
    short = min(height, width)
    for _ in range(count):
        category = CATEGORIES[int(rng.integers(0, len(CATEGORIES)))]
        for _attempt in range(10):
            radius = rng.uniform(0.09, 0.22) * short
            margin = radius * 1.2
            cx, cy = rng.uniform(margin, width - margin), rng.uniform(margin, height - margin)
            polygon = _shape_polygon(rng, category["name"], cx, cy, radius)
            full = _rasterise([polygon], height, width)
            if full.sum() < _MIN_VISIBLE_PIXELS:
                continue
            cover = full.copy()
            acceptable = True
            for earlier in reversed(shapes):  # visible part of each earlier shape after this one is painted
                visible = earlier.full & ~cover
                if visible.sum() < max(_MIN_VISIBLE_PIXELS, _MIN_VISIBLE_FRACTION * earlier.full.sum()):
                    acceptable = False
                    break
                cover |= earlier.full
            if acceptable:
                image[full] = _texture(rng, height, width)[full]
                shapes.append(_Shape(int(category["id"]), polygon, full))
                break
    return image, shapes, crowd


def _encode(image: np.ndarray, jpeg: bool) -> bytes:
    buffer = io.BytesIO()
    pixels = Image.fromarray(np.round(image * 255).astype(np.uint8), mode="RGB")
    if jpeg:
        pixels.save(buffer, format="JPEG", quality=95)
    else:
        pixels.save(buffer, format="PNG")
    return buffer.getvalue()


def _write_split(out: Path, split: str, num_images: int, seed: int, size: int, *, first_image_id: int,
                 first_annotation_id: int) -> SplitSummary:
    summary = SplitSummary()
    images, annotations = [], []
    image_id, annotation_id = first_image_id, first_annotation_id
    for index in range(num_images):
        rng = np.random.default_rng(np.random.SeedSequence([int(seed) & 0xFFFFFFFF, _SPLIT_CODE[split], index]))
        pixels, shapes, crowd = _draw_image(rng, size)
        height, width = pixels.shape[:2]
        jpeg = index % 4 == 3
        file_name = f"{index:06d}.{'jpg' if jpeg else 'png'}"
        atomic_write_bytes(out / split / file_name, _encode(pixels, jpeg))
        images.append({"id": image_id, "file_name": file_name, "height": height, "width": width})
        summary.images += 1
        summary.jpeg_images += int(jpeg)
        summary.empty_images += int(not shapes)
        covered = np.zeros((height, width), dtype=bool)
        entries = []
        for shape in reversed(shapes):  # last painted first: it is fully visible
            visible = shape.full & ~covered
            covered |= shape.full
            if visible.sum() == shape.full.sum() and rng.random() < 0.6:
                segmentation: Any = [shape.polygon]
                summary.polygons += 1
            elif rng.random() < 0.5:
                segmentation = compressed_rle(visible)
                summary.rle_compressed += 1
            else:
                segmentation = uncompressed_rle(visible)
                summary.rle_uncompressed += 1
            entries.append({"image_id": image_id, "category_id": shape.category_id, "iscrowd": 0,
                            "segmentation": segmentation, "area": float(visible.sum()), "bbox": _bbox(visible)})
            summary.instances += 1
        if crowd is not None:
            visible = crowd[1] & ~covered
            if visible.any():
                entries.append({"image_id": image_id, "category_id": crowd[0], "iscrowd": 1,
                                "segmentation": uncompressed_rle(visible), "area": float(visible.sum()),
                                "bbox": _bbox(visible)})
                summary.crowd_regions += 1
        for entry in reversed(entries):  # painting order in the file
            annotations.append({"id": annotation_id, **entry})
            annotation_id += 1
        image_id += 1
    payload = {"info": {"description": "pointformer synthetic shapes2d", "seed": int(seed), "split": split},
               "licenses": [], "images": images, "annotations": annotations, "categories": CATEGORIES}
    atomic_write_json(out / "annotations" / f"instances_{split}.json", payload, indent=None)
    return summary


def generate_shapes2d(out: str | Path, *, num_images: int, num_val_images: Optional[int] = None, seed: int = 0,
                      size: int = 128) -> Shapes2DResult:
    """Write the train and val splits under ``out`` (see the module doc); returns what was written.

    num_images: training images; num_val_images: validation images (default ``max(1, round(N / 4))``);
    size: image width in pixels (height ``size`` or ``3/4 size``).
    """
    if int(num_images) != num_images or num_images < 0:
        raise ValueError(f"--images must be a non-negative integer, got {num_images!r}")
    if num_val_images is None:
        num_val_images = max(1, int(round(num_images / 4)))
    if int(num_val_images) != num_val_images or num_val_images < 0:
        raise ValueError(f"--val-images must be a non-negative integer, got {num_val_images!r}")
    if int(size) != size or size < 16:
        raise ValueError(f"--size must be an integer >= 16, got {size!r}")
    out = Path(out)
    result = Shapes2DResult(root=out)
    for split, count in (("train", num_images), ("val", num_val_images)):
        (out / split).mkdir(parents=True, exist_ok=True)
        # Ids differ between splits, as in COCO, and do not depend on the other split's size.
        code = _SPLIT_CODE[split]
        result.splits[split] = _write_split(out, split, int(count), seed, int(size),
                                            first_image_id=code * 1_000_000 + 1,
                                            first_annotation_id=code * 100_000_000 + 1)
    return result
