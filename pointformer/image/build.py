"""Build a 2D run's parts from typed settings: datasets, model, criterion, postprocessor.

The 2D counterpart of ``pointformer.build``; the decoder, criterion and postprocessor come from the
same shared builders as in 3D (``models.build.build_decoder``, ``losses.build_criterion``,
``losses.query_setup``, ``inference.postprocess.Postprocessor``).
"""
from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Optional

from pointformer.config import ConfigError, LossSettings
from pointformer.image.backbone import ResNet2D
from pointformer.image.model import InstanceSegmentor2D
from pointformer.image.pixel_decoder import PixelDecoder
from pointformer.image.settings import ImageDataSettings, ImageRunSettings
from pointformer.inference.postprocess import Postprocessor
from pointformer.losses import query_setup
from pointformer.models.build import build_decoder

if TYPE_CHECKING:  # the dataset (pycocotools, PIL) and superpixels (numba) are imported when used
    from pointformer.image.dataset import CocoInstanceDataset
    from pointformer.image.superpixels import SuperpixelSettings

__all__ = ["image_data_root", "make_image_dataset", "build_image_model", "build_postprocessor"]


def image_data_root(data: ImageDataSettings) -> Path:
    """``data.root``; ConfigError when unset or missing."""
    if data.root is None:
        raise ConfigError(f"data.root is not set for data={data.name}: pass data.root=FOLDER (a COCO-format set; "
                          "`pointformer synth shapes2d OUT` makes a synthetic one)")
    if not data.root.is_dir():
        raise ConfigError(f"data.root={str(data.root)!r} does not exist")
    return data.root


def superpixel_settings(data: ImageDataSettings) -> Optional["SuperpixelSettings"]:
    """The dataset's superpixel settings when the tokens are superpixels, else None."""
    if data.tokens != "superpixel":
        return None
    from pointformer.image.superpixels import SuperpixelSettings

    try:
        return SuperpixelSettings(**dict(data.superpixels))
    except TypeError as exc:
        raise ConfigError(f"data.superpixels {dict(data.superpixels)}: {exc}") from None


def make_image_dataset(data: ImageDataSettings, split: str, *, train: bool, seed: int,
                       limit: Optional[int] = None) -> "CocoInstanceDataset":
    """A split of the configured COCO-format dataset (training augmentations when ``train``)."""
    from pointformer.image.dataset import CocoInstanceDataset

    root = image_data_root(data)
    annotation_file, image_dir = data.split_paths(split)
    try:
        return CocoInstanceDataset(root=root, split=split, annotation_file=annotation_file, image_dir=image_dir,
                                   train=train, image_size=data.image_size,
                                   scale_jitter=data.scale_jitter if train else None,
                                   crop_size=data.crop_size if train else None, flip=data.flip and train,
                                   superpixels=superpixel_settings(data), seed=seed, limit=limit)
    except (OSError, KeyError, ValueError) as exc:  # the dataset's messages name the file
        raise ConfigError(f"data={data.name} split {split!r} under {root}: {exc}") from None


def build_image_model(settings: ImageRunSettings) -> InstanceSegmentor2D:
    """The image model of ``settings.model`` with the decoder setup its loss requires."""
    model = settings.model
    try:
        setup = query_setup(settings.loss.name, model.decoder.get("query_init"))
    except ValueError as exc:
        raise ConfigError(f"loss={settings.loss.name}: {exc}") from None
    try:
        backbone = ResNet2D(in_channels=3, **dict(model.backbone))
        pixel_decoder = PixelDecoder(in_channels=backbone.out_channels, strides=backbone.strides,
                                     output_stride=settings.data.stride, **dict(model.pixel_decoder))
        decoder = build_decoder(model.decoder, token_dim=pixel_decoder.dim, num_classes=model.num_classes,
                                mask_activation=setup.mask_activation, query_init=setup.query_init)
        return InstanceSegmentor2D(backbone=backbone, pixel_decoder=pixel_decoder, decoder=decoder,
                                   tokens=settings.data.tokens, pixel_mean=model.pixel_mean, pixel_std=model.pixel_std)
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"model={model.name}: {exc}") from None


def build_postprocessor(loss: LossSettings) -> Postprocessor:
    """The loss family's postprocessing rule (the same as in 3D)."""
    try:
        return Postprocessor.from_settings(loss)
    except ValueError as exc:
        raise ConfigError(f"loss={loss.name}: {exc}") from None
