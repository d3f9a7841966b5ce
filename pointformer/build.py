"""Build the run's parts from typed settings: datasets, model, criterion.

The composition root (``pointformer.engine.run``, the predictor) reads the config once into
:class:`pointformer.config.RunSettings` and hands the sections here; nothing below receives the
config. Errors in the settings become :class:`ConfigError` with a message that says how to fix them.
"""
from __future__ import annotations

import dataclasses
import logging
from pathlib import Path
from typing import Any, Optional, Union

from torch import nn

from pointformer.config import ConfigError, DataSettings, RunSettings
from pointformer.data.dataset import DatasetConfigError, PreprocessedDataset, compute_color_stats
from pointformer.data.transforms import build_crop, build_neighbours, build_transforms
from pointformer.losses import query_setup
from pointformer.losses.registry import QuerySetup

log = logging.getLogger(__name__)


def data_root(data: DataSettings) -> Path:
    """``data.root``; ConfigError when unset or missing on disk."""
    if data.root is None:
        raise ConfigError(
            f"data.root is not set for data={data.name}: preprocess the dataset first "
            f"(`pointformer preprocess scannet RAW_ROOT OUT_DIR`) and pass data.root=OUT_DIR")
    if not data.root.is_dir():
        raise ConfigError(f"data.root={str(data.root)!r} does not exist (run `pointformer preprocess scannet RAW_ROOT "
                          f"{data.root}` or fix the path)")
    return data.root


S3DIS_AREAS: tuple[int, ...] = (1, 2, 3, 4, 5, 6)


def s3dis_test_area(data: DataSettings) -> int:
    """The held-out S3DIS area: ``data.fold`` when set (6-fold cross-validation), else ``data.test_area``."""
    area = data.fold if data.fold is not None else data.test_area
    key = "data.fold" if data.fold is not None else "data.test_area"
    if area is None:
        raise ConfigError("data=s3dis needs data.test_area=<1..6> (default 5) or data.fold=<1..6>")
    if area not in S3DIS_AREAS:
        raise ConfigError(f"{key}={area}: S3DIS has areas 1..6")
    return area


def resolve_splits(data: DataSettings, split: str) -> Union[str, list[str]]:
    """The folder(s) of the logical ``split``. S3DIS: ``data.train_split`` is every ``Area_<n>`` folder
    under ``data.root`` except the test area (a warning names missing areas), ``data.val_split`` and
    ``data.test_split`` are ``Area_<test area>``; any other name (e.g. ``Area_3``) is a folder.
    Other datasets: ``split`` itself; ``data.test_area`` / ``data.fold`` must be null there."""
    if data.dataset != "s3dis":
        if data.test_area is not None or data.fold is not None:
            raise ConfigError(f"data.test_area / data.fold are S3DIS settings; set them to null for "
                              f"data={data.name} (dataset {data.dataset})")
        return split
    test_area = s3dis_test_area(data)
    if split == data.train_split:
        root = data_root(data)
        wanted = [a for a in S3DIS_AREAS if a != test_area]
        present = [a for a in wanted if (root / f"Area_{a}" / "manifest.json").is_file()]
        if not present:
            raise ConfigError(f"data.root={str(root)!r} has no training area folder (Area_<n>/manifest.json for "
                              f"n in {wanted}); preprocess S3DIS with `pointformer preprocess s3dis RAW_ROOT {root}`")
        if len(present) < len(wanted):
            log.warning("S3DIS training areas %s are missing under %s; training on %s (test area %d)",
                        sorted(set(wanted) - set(present)), root, present, test_area)
        return [f"Area_{a}" for a in present]
    if split in (data.val_split, data.test_split):
        return f"Area_{test_area}"
    return split


def make_dataset(data: DataSettings, split: str, *, train: bool, seed: int, limit: Optional[int] = None,
                 transform: Any = None) -> PreprocessedDataset:
    """A split of the configured dataset with the train or eval transform pipeline
    (``transform=False``: raw scenes, no transform). ``seed`` seeds the augmentations.
    ``split`` is resolved by :func:`resolve_splits` (S3DIS: areas); ``data.crop`` and ``data.neighbours`` apply
    when ``train``."""
    if data.in_channels != 3 * len(data.features):
        raise ConfigError(f"data.in_channels={data.in_channels} but data.features={list(data.features)} give "
                          f"{3 * len(data.features)} channels; set data.in_channels={3 * len(data.features)}")
    if transform is None:
        if data.color_mean is None or data.color_std is None:
            raise ConfigError("data.color_mean / data.color_std are unset; use resolve_color_stats(data) first")
        transform = build_transforms(train=train, color_mean=list(data.color_mean), color_std=list(data.color_std),
                                     augment=dict(data.augment) if train and data.augment is not None else None)
    try:
        crop = build_crop(data.crop) if train and transform is not False else None
        neighbours = build_neighbours(data.neighbours) if train and transform is not False else None
    except ValueError as exc:
        raise ConfigError(str(exc)) from None
    try:
        return PreprocessedDataset(data_root(data), resolve_splits(data, split),
                                   transform=None if transform is False else transform, seed=seed,
                                   features=list(data.features), expected_dataset=data.dataset, limit=limit,
                                   cache=data.cache, crop=crop, neighbours=neighbours)
    except DatasetConfigError as exc:
        raise ConfigError(str(exc)) from None


def resolve_color_stats(data: DataSettings) -> DataSettings:
    """``data`` with ``color_mean/std`` computed from the training split when they are None."""
    if data.color_mean is not None and data.color_std is not None:
        return data
    train = make_dataset(data, data.train_split, train=False, seed=0, transform=False)
    mean, std = compute_color_stats(train)
    log.info("colour normalisation from %d training scenes: mean %s std %s", len(train),
             [round(v, 4) for v in mean], [round(v, 4) for v in std])
    return dataclasses.replace(data, color_mean=tuple(mean), color_std=tuple(std))


def check_classes(settings: RunSettings, dataset: PreprocessedDataset) -> list[int]:
    """The dataset class ids of the model's classes; ConfigError when the counts disagree."""
    class_ids = dataset.thing_class_ids
    if settings.model.num_classes != len(class_ids):
        raise ConfigError(f"model.num_classes={settings.model.num_classes} but data={settings.data.name} "
                          f"({settings.data.dataset}) has {len(class_ids)} instance classes; "
                          f"set data.num_classes={len(class_ids)}")
    return class_ids


def dataset_class_ids(settings: RunSettings) -> list[int]:
    """The class ids of the training split's manifest, checked against the model."""
    return check_classes(settings, make_dataset(settings.data, settings.data.train_split, train=False, seed=0,
                                                transform=False))


def decoder_query_setup(settings: RunSettings) -> QuerySetup:
    """The decoder's mask activation and query initialisation: the loss's, unless
    ``model.decoder.query_init`` overrides the initialisation (the one resolver for both)."""
    try:
        return query_setup(settings.loss.name, settings.model.decoder.get("query_init"))
    except ValueError as exc:
        raise ConfigError(f"loss={settings.loss.name}: {exc}") from None


def build_model(settings: RunSettings) -> nn.Module:
    """The model of ``settings.model`` with the decoder setup its loss requires."""
    from pointformer.models.build import build_model as build_from_model_settings

    setup = decoder_query_setup(settings)
    try:
        return build_from_model_settings(settings.model, mask_activation=setup.mask_activation,
                                         query_init=setup.query_init)
    except ValueError as exc:
        raise ConfigError(f"model={settings.model.name}: {exc}") from None
