"""Datasets over preprocessed scenes, Mask3D augmentations, per-token targets and collation.

The names below are imported on first use (PEP 562): ``pointformer.data.sampler`` is modality-free
(the 2D branch's trainer uses it) and must not pull the 3D dataset in with it.
"""
from pointformer.lazy import lazy_exports

_EXPORTS = {
    "SceneBatch": "collate", "collate_scenes": "collate",
    "DatasetConfigError": "dataset", "PreprocessedDataset": "dataset", "SceneSample": "dataset",
    "augmentation_rng": "dataset", "compute_color_stats": "dataset",
    "ResumableBatchSampler": "sampler", "ShardedEvalSampler": "sampler", "epoch_permutation": "sampler",
    "SceneTargets": "targets", "point_labels": "targets", "superpoint_targets": "targets",
    "build_transforms": "transforms",
}
__all__ = list(_EXPORTS)
__getattr__ = lazy_exports(__name__, _EXPORTS)
