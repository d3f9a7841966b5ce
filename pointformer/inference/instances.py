"""Query masks → instances over points: the one conversion, used by validation, export, ``infer`` and the demo.

Postprocessing (``pointformer.inference.postprocess``) turns a scene's query masks into
:class:`InstancePrediction` over tokens (superpoints). From there:

* :meth:`InstancePrediction.to_scene_prediction` gives the evaluator's and the submission writer's
  :class:`~pointformer.evaluation.ScenePrediction`: overlapping masks over the V points (kept per
  token as ``SegmentMasks`` when every point has a token: M·P memory instead of M·V).
* :func:`point_instances` turns a ``ScenePrediction`` into one instance id per point (what a
  coloured PLY or a per-vertex label file shows): a point covered by several masks goes to the
  best-scoring one.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Mapping, Optional, Sequence

import numpy as np
import torch
from torch import Tensor

if TYPE_CHECKING:  # the evaluator's types are imported where used: the 2D branch loads this module without them
    from pointformer.evaluation import ScenePrediction
    from pointformer.evaluation.prediction import MaskArray


@dataclass
class InstancePrediction:
    """Instances of one scene over its tokens.

    Attributes:
        masks: bool [M, P] over the P tokens.
        class_index: long [M], 0-based class index (into the model's C classes).
        scores: float [M] confidence in [0, 1].
        query_index: long [M], the query each instance came from.
    """

    masks: Tensor
    class_index: Tensor
    scores: Tensor
    query_index: Tensor

    def __len__(self) -> int:
        return int(self.scores.shape[0])

    def class_ids(self, dataset_ids: Sequence[int]) -> Tensor:
        """Dataset class ids (e.g. ScanNet nyu40 ids) of the instances: long [M] = dataset_ids[class_index]."""
        lut = torch.as_tensor(list(dataset_ids), dtype=torch.long)
        if len(self) and int(self.class_index.max()) >= lut.numel():
            raise ValueError(f"class index {int(self.class_index.max())} has no dataset id ({lut.numel()} given)")
        return lut[self.class_index.cpu()]

    def to_scene_prediction(self, token_index: Tensor, dataset_ids: Sequence[int]) -> ScenePrediction:
        """The evaluator's / submission writer's ``ScenePrediction`` over the V points.

        Args:
            token_index: long [V], the token of every point (-1: a point outside every token, e.g.
                dropped by voxelisation; it belongs to no mask).
            dataset_ids: dataset class id of each class index (e.g. SCANNET_INSTANCE_IDS).
        """
        from pointformer.evaluation import ScenePrediction, SegmentMasks

        ids = self.class_ids(dataset_ids).numpy()
        scores = self.scores.detach().float().cpu().numpy()
        if token_index.numel() and int(token_index.min()) >= 0:
            masks: MaskArray = SegmentMasks(self.masks.cpu().numpy(), token_index.cpu().numpy())
        else:
            masks = token_masks_to_points(self.masks, token_index).cpu().numpy()
        return ScenePrediction(masks=masks, class_ids=ids, scores=scores)


def token_masks_to_points(masks: Tensor, token_index: Tensor) -> Tensor:
    """bool [M, P] token masks -> bool [M, V] point masks through ``token_index`` long [V] (-1 = none)."""
    if token_index.dim() != 1 or token_index.dtype.is_floating_point:
        raise ValueError(f"token_index must be an integer vector [V], "
                         f"got {token_index.dtype} {tuple(token_index.shape)}")
    p = masks.shape[1]
    if token_index.numel() and (int(token_index.max()) >= p or int(token_index.min()) < -1):
        raise ValueError(f"token_index values must lie in [-1, {p}) for masks over {p} tokens, "
                         f"got range [{int(token_index.min())}, {int(token_index.max())}]")
    idx = token_index.to(masks.device).long()
    # A padded all-False column at index P absorbs the points without a token.
    padded = torch.cat([masks, masks.new_zeros(masks.shape[0], 1)], dim=1)
    return padded[:, torch.where(idx < 0, torch.full_like(idx, p), idx)]


@dataclass
class PointInstances:
    """One instance id per point (V points, K instances numbered 1..K by descending score).

    Attributes:
        instance: int32 [V], the instance of every point, 0 = none.
        class_ids: int64 [K] dataset class ids.
        class_names: K names (the class id as text where no name is known).
        scores: float64 [K], descending.
        num_points: int64 [K], the points each instance finally owns.
    """

    instance: np.ndarray
    class_ids: np.ndarray
    class_names: list[str]
    scores: np.ndarray
    num_points: np.ndarray


def point_instances(prediction: ScenePrediction, *, min_points: int = 1,
                    class_names: Optional[Mapping[int, str]] = None) -> PointInstances:
    """Disjoint per-point instances from a prediction's (possibly overlapping) masks [M, V].

    A point covered by several masks goes to the best-scoring one (the first in score order on
    ties); masks left with fewer than ``min_points`` points (at least 1) are dropped, and the rest
    are numbered 1..K in descending score. ``class_names`` maps dataset class ids to names.
    """
    order = np.argsort(-prediction.scores, kind="stable")
    masks = prediction.dense_masks(order)  # [M, V], best first
    num_masks, num_points = masks.shape
    owner = np.zeros(num_points, dtype=np.int64)  # 1 + the row in `masks` that owns the point, 0 = none
    if num_masks:
        covered = masks.any(axis=0)
        owner[covered] = masks[:, covered].argmax(axis=0) + 1  # argmax: the first covering row = best score
    counts = np.bincount(owner, minlength=num_masks + 1)[1:]
    keep = np.flatnonzero(counts >= max(min_points, 1))
    renumber = np.zeros(num_masks + 1, dtype=np.int32)
    renumber[keep + 1] = np.arange(1, keep.size + 1, dtype=np.int32)
    class_ids = prediction.class_ids[order[keep]]
    names = dict(class_names or {})
    return PointInstances(instance=renumber[owner], class_ids=class_ids,
                          class_names=[names.get(int(c), str(int(c))) for c in class_ids],
                          scores=prediction.scores[order[keep]], num_points=counts[keep])
