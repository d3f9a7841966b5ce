"""Class sets of the supported datasets (facts of the benchmarks, not configuration)."""
from __future__ import annotations

# ScanNet v2: the 18 instance classes of the 3D instance benchmark, as nyu40 ids.
SCANNET_INSTANCE_IDS: tuple[int, ...] = (3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 14, 16, 24, 28, 33, 34, 36, 39)
SCANNET_INSTANCE_NAMES: tuple[str, ...] = (
    "cabinet", "bed", "chair", "sofa", "table", "door", "window", "bookshelf", "picture", "counter",
    "desk", "curtain", "refrigerator", "shower curtain", "toilet", "sink", "bathtub", "otherfurniture",
)
# The 20-class semantic set used for the preprocessed `semantic` array: wall, floor (stuff) + the 18.
SCANNET_SEMANTIC_IDS: tuple[int, ...] = (1, 2) + SCANNET_INSTANCE_IDS
SCANNET_SEMANTIC_NAMES: tuple[str, ...] = ("wall", "floor") + SCANNET_INSTANCE_NAMES
SCANNET_STUFF_IDS: tuple[int, ...] = (1, 2)

# S3DIS: 13 classes, evaluated as ids 1..13 (all are instance classes in the Mask3D protocol).
S3DIS_NAMES: tuple[str, ...] = (
    "ceiling", "floor", "wall", "beam", "column", "window", "door", "table", "chair", "sofa",
    "bookcase", "board", "clutter",
)
S3DIS_IDS: tuple[int, ...] = tuple(range(1, 14))
