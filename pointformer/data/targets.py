"""Ground truth per token (superpoint): which instance a superpoint belongs to, and its class.

The decoder and the losses see superpoints, not points. A superpoint takes the label that covers the
most of its points, among three kinds of point labels:
  * an instance of a *thing* class (the instance classes of the benchmark),
  * background (stuff classes such as wall and floor),
  * ignore (void: unannotated points, and classes outside the dataset's class set).
Ties go to the lower label code, which ranks ignore first, then background, then instances: a token
that is as much void as object is left out of the loss rather than guessed.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np

IGNORE = -1
BACKGROUND = 0


@dataclass
class SceneTargets:
    """Per-token training targets of one scene (P tokens, K instances).

    token_instance int64 [P]: 1..K instance, 0 background, -1 ignore.
    token_weight  float32 [P]: points per token (the token's weight in every loss term).
    instance_class int64 [K]: class of instance k+1 as an index 0..C-1 among the thing classes.
    instance_points int64 [K]: points of each instance (before the superpoint vote), for diagnostics.
    """

    token_instance: np.ndarray
    token_weight: np.ndarray
    instance_class: np.ndarray
    instance_points: np.ndarray

    @property
    def num_instances(self) -> int:
        return int(self.instance_class.shape[0])


def point_labels(semantic: np.ndarray, instance: np.ndarray, thing_classes: Sequence[int]) -> np.ndarray:
    """Per-point label: instance id (>0) for points of a thing-class instance, 0 background, -1 ignore.

    semantic int [V] (class index, -1 void), instance int [V] (0 none) -> int64 [V].
    A thing-class point without an instance id cannot be assigned and is ignored.
    """
    semantic = np.asarray(semantic)
    instance = np.asarray(instance)
    is_thing = np.isin(semantic, np.asarray(thing_classes, dtype=semantic.dtype))
    labels = np.full(semantic.shape, IGNORE, dtype=np.int64)
    labels[(semantic >= 0) & ~is_thing] = BACKGROUND
    thing_with_instance = is_thing & (instance > 0)
    labels[thing_with_instance] = instance[thing_with_instance]
    return labels


def superpoint_targets(
    superpoint: np.ndarray,
    semantic: np.ndarray,
    instance: np.ndarray,
    *,
    thing_classes: Sequence[int],
    num_superpoints: int | None = None,
) -> SceneTargets:
    """Vote each superpoint's label by the majority of its points and renumber instances 1..K.

    superpoint int [V] in 0..S-1; semantic int [V]; instance int [V]. ``thing_classes`` lists the
    class indices that have instances, in the order that defines ``instance_class`` (index 0..C-1).
    An instance whose points never win a superpoint's vote disappears from the targets.
    """
    superpoint = np.asarray(superpoint, dtype=np.int64)
    num_sp = int(superpoint.max()) + 1 if num_superpoints is None else int(num_superpoints)
    if superpoint.size and (superpoint.min() < 0 or superpoint.max() >= num_sp):
        raise ValueError(f"superpoint ids must lie in 0..{num_sp - 1}, got {superpoint.min()}..{superpoint.max()}")
    labels = point_labels(semantic, instance, thing_classes)

    # Majority vote with one sort: codes are (superpoint, label) pairs; label shifted to be >= 0.
    unique_labels, label_index = np.unique(labels, return_inverse=True)
    num_labels = len(unique_labels)
    pair = superpoint * num_labels + label_index
    pair_ids, pair_counts = np.unique(pair, return_counts=True)
    pair_sp, pair_label = pair_ids // num_labels, pair_ids % num_labels
    # For each superpoint pick the pair with the highest count; ties -> smallest label (sorted order).
    order = np.lexsort((pair_label, -pair_counts, pair_sp))
    first = np.ones(len(order), dtype=bool)
    first[1:] = pair_sp[order][1:] != pair_sp[order][:-1]
    winners = order[first]
    token_label = np.full(num_sp, IGNORE, dtype=np.int64)  # superpoints without points: ignored
    token_label[pair_sp[winners]] = unique_labels[pair_label[winners]]

    token_weight = np.bincount(superpoint, minlength=num_sp).astype(np.float32)

    # Renumber the surviving instances 1..K (in order of their original ids) and find their classes.
    kept = np.unique(token_label[token_label > 0])
    token_instance = token_label.copy()
    if kept.size:
        token_instance[token_label > 0] = np.searchsorted(kept, token_label[token_label > 0]) + 1
    thing_index = {int(c): i for i, c in enumerate(thing_classes)}
    instance_class = np.empty(kept.size, dtype=np.int64)
    instance_points = np.empty(kept.size, dtype=np.int64)
    semantic = np.asarray(semantic)
    for k, inst in enumerate(kept):
        members = labels == inst
        classes, counts = np.unique(semantic[members], return_counts=True)
        instance_class[k] = thing_index[int(classes[np.argmax(counts)])]
        instance_points[k] = int(members.sum())
    return SceneTargets(token_instance=token_instance, token_weight=token_weight,
                        instance_class=instance_class, instance_points=instance_points)
