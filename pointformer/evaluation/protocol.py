"""Constants of the ScanNet 3D instance evaluation protocol and the evaluated class sets.

The values reproduce the official ``evaluate_semantic_instance.py`` bit for bit: the IoU thresholds
are built with the same ``np.arange`` call (so 0.6 is ``0.6000000000000001`` exactly as there, which
matters for the strict ``IoU > t`` comparison), followed by 0.25.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from pointformer.io.labels import (S3DIS_IDS, S3DIS_NAMES, SCANNET200_COMMON_NAMES, SCANNET200_HEAD_NAMES,
                                   SCANNET200_INSTANCE_IDS, SCANNET200_INSTANCE_NAMES, SCANNET200_TAIL_NAMES,
                                   SCANNET_INSTANCE_IDS, SCANNET_INSTANCE_NAMES)

# [10]: 0.50, 0.55, ..., 0.90 (nine values; 0.95 is excluded by arange) and 0.25 last.
IOU_THRESHOLDS: np.ndarray = np.append(np.arange(0.5, 0.95, 0.05), 0.25)
assert IOU_THRESHOLDS.shape == (10,)
# Column indices into IOU_THRESHOLDS (same isclose selection as the official script).
AP_COLUMNS: np.ndarray = np.flatnonzero(~np.isclose(IOU_THRESHOLDS, 0.25))   # the nine of mAP
AP50_COLUMN: int = int(np.flatnonzero(np.isclose(IOU_THRESHOLDS, 0.5))[0])
AP25_COLUMN: int = int(np.flatnonzero(np.isclose(IOU_THRESHOLDS, 0.25))[0])

# Predictions and GT instances with fewer vertices than this are not counted (see evaluation.md).
MIN_REGION_SIZE: int = 100
# GT ids per vertex are label * GT_LABEL_DIVISOR + instance.
GT_LABEL_DIVISOR: int = 1000
# IoU at which S3DIS mean precision / mean recall are reported (>=, as Mask3D does).
S3DIS_PR_IOU: float = 0.5

DATASETS: tuple[str, ...] = ("scannet", "scannet200", "s3dis")


@dataclass(frozen=True)
class ClassSet:
    """The evaluated classes of a dataset: ids as they appear in GT ids // 1000 and in predictions.

    groups: named subsets of ``names`` whose AP means are reported too (ScanNet200: head, common,
            tail), each in the order of ``names``; empty for datasets without such a split.
    """

    dataset: str
    ids: tuple[int, ...]
    names: tuple[str, ...]
    groups: tuple[tuple[str, tuple[str, ...]], ...] = ()

    @property
    def ids_array(self) -> np.ndarray:
        """int64 [C], sorted ascending (every dataset lists its ids sorted)."""
        return np.asarray(self.ids, dtype=np.int64)

    def ids_text(self) -> str:
        """The ids for an error message: listed when there are few, else counted with their range."""
        if len(self.ids) <= 20:
            return str(list(self.ids))
        return f"the {len(self.ids)} ids of class_set({self.dataset!r}), {self.ids[0]}..{self.ids[-1]}"

    def index_of(self, class_ids: np.ndarray) -> np.ndarray:
        """Map dataset class ids to class indices 0..C-1; ids outside the set map to -1.  int64 [N]."""
        class_ids = np.asarray(class_ids, dtype=np.int64)
        ids = self.ids_array
        pos = np.clip(np.searchsorted(ids, class_ids), 0, len(ids) - 1)
        return np.where(ids[pos] == class_ids, pos, -1)


def _evaluated_subset(names: tuple[str, ...], subset: tuple[str, ...]) -> tuple[str, ...]:
    """The evaluated ``names`` that are in ``subset``, in the order of ``names``."""
    members = set(subset)
    return tuple(name for name in names if name in members)


_CLASS_SETS = {
    "scannet": ClassSet("scannet", SCANNET_INSTANCE_IDS, SCANNET_INSTANCE_NAMES),
    # ScanNet200: the 198 raw-category ids without wall and floor; head/common/tail restricted to them.
    "scannet200": ClassSet("scannet200", SCANNET200_INSTANCE_IDS, SCANNET200_INSTANCE_NAMES, groups=tuple(
        (group, _evaluated_subset(SCANNET200_INSTANCE_NAMES, subset))
        for group, subset in (("head", SCANNET200_HEAD_NAMES), ("common", SCANNET200_COMMON_NAMES),
                              ("tail", SCANNET200_TAIL_NAMES)))),
    "s3dis": ClassSet("s3dis", S3DIS_IDS, S3DIS_NAMES),
}
assert all(list(cs.ids) == sorted(cs.ids) for cs in _CLASS_SETS.values())


def class_set(dataset: str) -> ClassSet:
    """The evaluated class set of ``dataset`` ("scannet", "scannet200" or "s3dis"); ValueError otherwise."""
    try:
        return _CLASS_SETS[dataset]
    except KeyError:
        raise ValueError(f"dataset must be one of {', '.join(DATASETS)}; got {dataset!r}") from None
