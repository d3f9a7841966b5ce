"""Datasets over preprocessed scenes, Mask3D augmentations, per-token targets and collation.

The names below are imported on first use (PEP 562): ``pointformer.data.sampler`` is modality-free
(the 2D branch's trainer uses it) and must not pull the 3D dataset in with it.
"""
from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "SceneBatch": "collate", "collate_scenes": "collate",
    "DatasetConfigError": "dataset", "PreprocessedDataset": "dataset", "SceneSample": "dataset",
    "augmentation_rng": "dataset", "compute_color_stats": "dataset",
    "ResumableBatchSampler": "sampler", "ShardedEvalSampler": "sampler", "epoch_permutation": "sampler",
    "SceneTargets": "targets", "point_labels": "targets", "superpoint_targets": "targets",
    "build_transforms": "transforms",
}

__all__ = list(_EXPORTS)


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f"{__name__}.{module}"), name)
