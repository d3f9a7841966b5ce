"""A tiny COCO-format set written by the tests themselves: coloured rectangles and triangles on a
noisy background (polygon annotations, one crowd region in some images). Not the package's synthetic
generator (``pointformer synth shapes2d``): a fixed, minimal set that the model/task tests build on."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from PIL import Image

CATEGORIES = [{"id": 3, "name": "square"}, {"id": 7, "name": "triangle"}]


def _shape(kind: str, x: int, y: int, s: int) -> list[float]:
    if kind == "square":
        return [x, y, x + s, y, x + s, y + s, x, y + s]
    return [x, y + s, x + s / 2, y, x + s, y + s]


def write_shapes(root: Path, split: str, *, images: int, size: int = 48, seed: int = 0, crowd: bool = True) -> Path:
    """Write ``root/<split>/*.png`` and ``root/annotations/instances_<split>.json``; returns root."""
    rng = np.random.default_rng(seed)
    (root / split).mkdir(parents=True, exist_ok=True)
    (root / "annotations").mkdir(parents=True, exist_ok=True)
    image_entries, annotations = [], []
    for i in range(images):
        height, width = size, size + 8 * (i % 2)
        canvas = Image.fromarray((rng.uniform(0.35, 0.5, (height, width, 3)) * 255).astype(np.uint8))
        from PIL import ImageDraw

        draw = ImageDraw.Draw(canvas)
        for k in range(2):
            kind = ("square", "triangle")[(i + k) % 2]
            s = int(rng.integers(size // 4, size // 2))
            x = int(rng.integers(0, width - s)) if k == 0 else int(rng.integers(0, width - s))
            y = 2 + k * (height // 2 - 2) if s < height // 2 else int(rng.integers(0, height - s))
            y = min(y, height - s - 1)
            polygon = _shape(kind, x, y, s)
            colour = (220, 40, 40) if kind == "square" else (40, 60, 220)
            draw.polygon(polygon, fill=colour)
            category = 3 if kind == "square" else 7
            annotations.append({"id": len(annotations) + 1, "image_id": i + 1, "category_id": category,
                                "segmentation": [polygon], "area": float(s * s), "bbox": [x, y, s, s], "iscrowd": 0})
        if crowd and i % 3 == 0:
            polygon = [0, 0, 6, 0, 6, 6, 0, 6]
            annotations.append({"id": len(annotations) + 1, "image_id": i + 1, "category_id": 3,
                                "segmentation": [polygon], "area": 36.0, "bbox": [0, 0, 6, 6], "iscrowd": 1})
        name = f"{split}_{i:03d}.png"
        canvas.save(root / split / name)
        image_entries.append({"id": i + 1, "file_name": name, "height": height, "width": width})
    payload = {"images": image_entries, "annotations": annotations, "categories": CATEGORIES}
    (root / "annotations" / f"instances_{split}.json").write_text(json.dumps(payload))
    return root
