"""One scene's predicted instances, as the evaluator and the submission writer take them.

Masks come either dense (bool [M, V] over the mesh vertices) or as :class:`SegmentMasks` — a mask
per segment (superpoint) plus the segment id of every vertex — which is how a superpoint model
predicts and costs M*S instead of M*V memory (S ~ 2k superpoints vs V ~ 150k vertices per scene).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Union

import numpy as np


def _to_numpy(value: Any) -> np.ndarray:
    """np.asarray that also accepts torch tensors (on any device) without importing torch."""
    if hasattr(value, "detach") and hasattr(value, "cpu"):
        value = value.detach().cpu().numpy()
    return np.asarray(value)


def _as_bool(array: np.ndarray, what: str) -> np.ndarray:
    """Non-zero = member (the official rule for mask files); NaN is an error, not a member."""
    if array.dtype == np.bool_:
        return array
    if not (np.issubdtype(array.dtype, np.integer) or np.issubdtype(array.dtype, np.floating)):
        raise ValueError(f"{what} must be boolean or numeric; got dtype {array.dtype}")
    if np.issubdtype(array.dtype, np.floating) and not np.isfinite(array).all():
        raise ValueError(f"{what} contains NaN or infinite values")
    return array != 0


@dataclass
class SegmentMasks:
    """Instance masks stored per segment (superpoint).

    segment_masks: bool [M, S]  mask m covers segment s
    segment_ids:   int  [V]     segment of every vertex, in 0..S-1
    The dense mask of instance m is ``segment_masks[m, segment_ids]``.
    """

    segment_masks: np.ndarray
    segment_ids: np.ndarray

    def __post_init__(self) -> None:
        masks = _to_numpy(self.segment_masks)
        seg = _to_numpy(self.segment_ids)
        if masks.ndim != 2:
            raise ValueError(f"SegmentMasks.segment_masks must be 2-D [M, S]; got shape {masks.shape}")
        if seg.ndim != 1 or not np.issubdtype(seg.dtype, np.integer):
            raise ValueError(f"SegmentMasks.segment_ids must be a 1-D integer array [V]; got {seg.dtype} {seg.shape}")
        if seg.size and (seg.min() < 0 or seg.max() >= masks.shape[1]):
            raise ValueError(f"SegmentMasks.segment_ids must lie in 0..{masks.shape[1] - 1} "
                             f"(segment_masks has {masks.shape[1]} columns); got range {seg.min()}..{seg.max()}")
        self.segment_masks = _as_bool(masks, "SegmentMasks.segment_masks")
        self.segment_ids = seg.astype(np.int64, copy=False)

    @property
    def shape(self) -> tuple[int, int]:
        """(M, V) — the shape of the equivalent dense mask array."""
        return (self.segment_masks.shape[0], self.segment_ids.shape[0])

    def dense(self, rows: Union[slice, np.ndarray, None] = None) -> np.ndarray:
        """Dense bool masks [M', V] of the selected rows (all rows by default)."""
        masks = self.segment_masks if rows is None else self.segment_masks[rows]
        return masks[:, self.segment_ids]


MaskArray = Union[np.ndarray, SegmentMasks]


@dataclass
class ScenePrediction:
    """One scene's predicted instances.

    masks:     bool [M, V] over the scene's mesh vertices (any numeric array: non-zero = member),
               or :class:`SegmentMasks`
    class_ids: int [M]    dataset class ids (ScanNet: nyu40 ids; S3DIS: 1..13)
    scores:    float [M]  confidences (higher = more confident)
    """

    masks: MaskArray
    class_ids: np.ndarray
    scores: np.ndarray

    def __post_init__(self) -> None:
        if not isinstance(self.masks, SegmentMasks):
            masks = _to_numpy(self.masks)
            if masks.ndim != 2:
                raise ValueError(f"ScenePrediction.masks must be 2-D [M, V]; got shape {masks.shape}")
            self.masks = _as_bool(masks, "ScenePrediction.masks")
        class_ids = _to_numpy(self.class_ids)
        scores = _to_numpy(self.scores)
        m = self.num_masks
        if class_ids.shape != (m,):
            raise ValueError(f"ScenePrediction.class_ids must have shape ({m},) to match masks; got {class_ids.shape}")
        if scores.shape != (m,):
            raise ValueError(f"ScenePrediction.scores must have shape ({m},) to match masks; got {scores.shape}")
        if m and np.issubdtype(class_ids.dtype, np.floating):
            if not (np.isfinite(class_ids).all() and (class_ids == np.round(class_ids)).all()):
                raise ValueError("ScenePrediction.class_ids must be integers")
        elif m and not np.issubdtype(class_ids.dtype, np.integer):
            raise ValueError(f"ScenePrediction.class_ids must be integers; got dtype {class_ids.dtype}")
        if not (np.issubdtype(scores.dtype, np.floating) or np.issubdtype(scores.dtype, np.integer)):
            raise ValueError(f"ScenePrediction.scores must be numeric; got dtype {scores.dtype}")
        self.class_ids = class_ids.astype(np.int64)
        # float64 keeps every float32 score's value, so orderings and ties are unchanged.
        self.scores = scores.astype(np.float64)

    @property
    def num_masks(self) -> int:
        return int(self.masks.shape[0])

    @property
    def num_vertices(self) -> int:
        return int(self.masks.shape[1])

    def dense_masks(self, rows: Union[slice, np.ndarray, None] = None) -> np.ndarray:
        """bool [M', V] masks of the selected rows (all by default)."""
        if isinstance(self.masks, SegmentMasks):
            return self.masks.dense(rows)
        return self.masks if rows is None else self.masks[rows]

    @classmethod
    def empty(cls, num_vertices: int) -> "ScenePrediction":
        """A scene without predictions."""
        return cls(np.zeros((0, num_vertices), dtype=bool), np.zeros(0, np.int64), np.zeros(0))
