"""Datasets over preprocessed scenes, Mask3D augmentations, per-token targets and collation."""
from pointformer.data.collate import SceneBatch, collate_scenes
from pointformer.data.dataset import (DatasetConfigError, PreprocessedDataset, SceneSample, augmentation_rng,
                                      compute_color_stats)
from pointformer.data.sampler import ResumableBatchSampler, ShardedEvalSampler, epoch_permutation
from pointformer.data.targets import SceneTargets, point_labels, superpoint_targets
from pointformer.data.transforms import build_transforms

__all__ = [
    "SceneBatch", "collate_scenes", "DatasetConfigError", "PreprocessedDataset",
    "SceneSample", "augmentation_rng", "compute_color_stats", "ResumableBatchSampler", "ShardedEvalSampler",
    "epoch_permutation", "SceneTargets", "point_labels", "superpoint_targets", "build_transforms",
]
