"""Superpixels on images: speed, count, purity and boundary recall vs GT masks, against grid cells.

On ``pointformer synth shapes2d`` images (generated here, at each --sizes width), for the graph
superpixels of :mod:`pointformer.image.superpixels` at several thresholds and for square grid cells
(the pixel tokens of a stride-s feature map), per image:

    ms          wall time of ``image_superpixels`` (grid cells: 0) on one thread, median over images
    count       superpixels (cells) per image, mean
    purity      pixel-weighted share of pixels in their superpixel's majority GT label (background,
                each instance, crowd) — the best mask accuracy a per-superpixel prediction can reach
    recall      boundary recall: share of GT boundary pixels with a superpixel boundary within 1 pixel

Prints one JSON line per (size, method).

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/superpixels_2d.py --images 40 --sizes 128 256
"""
from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import numpy as np
from scipy import ndimage

from pointformer.image.coco import CocoAnnotations
from pointformer.image.dataset import read_image
from pointformer.image.superpixels import SuperpixelSettings, image_superpixels
from pointformer.image.synthetic import generate_shapes2d


def label_map(coco: CocoAnnotations, image_id: int) -> np.ndarray:
    """int [H, W]: 0 background, 1..K the instances, K+1 the crowd regions."""
    inst = coco.instances(image_id)
    labels = np.zeros(inst.crowd.shape, dtype=np.int64)
    for k, mask in enumerate(inst.masks):
        labels[mask] = k + 1
    labels[inst.crowd] = len(inst.masks) + 1
    return labels


def boundaries(ids: np.ndarray) -> np.ndarray:
    """bool [H, W]: pixels with a different id to the right or below (4-neighbour edges)."""
    edge = np.zeros(ids.shape, dtype=bool)
    edge[:, :-1] |= ids[:, :-1] != ids[:, 1:]
    edge[:-1, :] |= ids[:-1, :] != ids[1:, :]
    return edge


def purity(ids: np.ndarray, labels: np.ndarray) -> float:
    pairs, counts = np.unique(np.stack([ids.ravel(), labels.ravel()]), axis=1, return_counts=True)
    best = np.zeros(ids.max() + 1, dtype=np.int64)
    np.maximum.at(best, pairs[0], counts)
    return float(best.sum() / ids.size)


def boundary_recall(ids: np.ndarray, labels: np.ndarray) -> float:
    truth = boundaries(labels)
    if not truth.any():
        return float("nan")
    near = ndimage.binary_dilation(boundaries(ids), structure=np.ones((3, 3), dtype=bool))
    return float((truth & near).sum() / truth.sum())


def grid_cells(shape: tuple[int, int], stride: int) -> np.ndarray:
    rows = np.arange(shape[0]) // stride
    cols = np.arange(shape[1]) // stride
    return rows[:, None] * (cols.max() + 1) + cols[None, :]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", type=int, default=40)
    parser.add_argument("--sizes", type=int, nargs="+", default=[128, 256])
    parser.add_argument("--thresholds", type=float, nargs="+", default=[0.25, 0.5, 1.0])
    parser.add_argument("--min-size", type=int, default=16)
    parser.add_argument("--strides", type=int, nargs="+", default=[4, 8])
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    # compile (or load the numba cache) before timing
    image_superpixels(np.zeros((8, 8, 3), np.float32), settings=SuperpixelSettings())
    with tempfile.TemporaryDirectory() as tmp:
        for size in args.sizes:
            root = Path(tmp) / str(size)
            generate_shapes2d(root, num_images=args.images, num_val_images=0, seed=args.seed, size=size)
            coco = CocoAnnotations.load(root / "annotations" / "instances_train.json")
            data = [(read_image(root / "train" / im.file_name), label_map(coco, im.image_id)) for im in coco.images]
            methods: list[tuple[str, dict]] = [(f"superpixels t={t}", {"threshold": t}) for t in args.thresholds]
            methods += [(f"grid stride={s}", {"stride": s}) for s in args.strides]
            for name, spec in methods:
                times, counts, purities, recalls = [], [], [], []
                for pixels, labels in data:
                    if "stride" in spec:
                        ids = grid_cells(labels.shape, spec["stride"])
                        times.append(0.0)
                    else:
                        settings = SuperpixelSettings(threshold=spec["threshold"], min_size=args.min_size)
                        start = time.perf_counter()
                        ids = image_superpixels(pixels, settings=settings)
                        times.append(1000 * (time.perf_counter() - start))
                    counts.append(int(ids.max()) + 1)
                    purities.append(purity(ids, labels))
                    recalls.append(boundary_recall(ids, labels))
                print(json.dumps({"size": size, "method": name, "images": len(data),
                                  "ms": round(float(np.median(times)), 2), "count": round(float(np.mean(counts)), 1),
                                  "purity": round(float(np.mean(purities)), 4),
                                  "recall": round(float(np.nanmean(recalls)), 4)}), flush=True)


if __name__ == "__main__":
    main()
