"""Typed settings of a 2D run, read once at the 2D composition root (``pointformer.image.run``).

Strict like ``pointformer.config.settings``: no field has a default, and an unknown or missing key is
a ``ConfigError`` naming the section. The loss, trainer and eval sections are the 3D run's own
classes (``LossSettings``, ``TrainerSettings``, ``EvalSettings``); ``data`` (configs/data/coco.yaml)
and ``model`` (configs/model/image_*.yaml) have image-specific forms.

A composed config is an image run when ``data.modality`` is ``image`` (``is_image_config``); the
train, evaluate-model and infer commands dispatch on it.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping, Optional

from omegaconf import DictConfig, OmegaConf

from pointformer.config import ConfigError, EvalSettings, LossSettings, TrainerSettings
from pointformer.config.compose import optional_path
from pointformer.config.settings import checked_fields  # the one strict section reader
from pointformer.image.tokens import TOKEN_KINDS

__all__ = ["IMAGE_MODALITY", "is_image_config", "ImageDataSettings", "ImageModelSettings", "ImageRunSettings"]

IMAGE_MODALITY = "image"


def is_image_config(cfg: Any) -> bool:
    """Whether a composed or stored config describes an image run (``data.modality: image``)."""
    data = cfg.get("data") if isinstance(cfg, (Mapping, DictConfig)) else None
    return bool(data is not None and data.get("modality") == IMAGE_MODALITY)


def _optional_int(value: Any) -> Optional[int]:
    return None if value in (None, "", "null") else int(value)


def _optional_str(value: Any) -> Optional[str]:
    return None if value in (None, "", "null") else str(value)


@dataclass(frozen=True)
class ImageDataSettings:
    """The ``data`` group of an image run (configs/data/coco.yaml documents every key)."""

    name: str
    modality: str                                   # always "image"
    root: Optional[Path]                            # dataset folder (COCO layout); None: not set yet
    train_split: str
    val_split: Optional[str]
    test_split: Optional[str]
    annotation_file: str                            # per split, relative to root; "{split}" is replaced
    image_dir: str                                  # per split, relative to root; "{split}" is replaced
    num_classes: int
    class_names: Optional[tuple[str, ...]]          # None: read from the training split at start (stored in runs)
    image_size: int                                 # the longer side is resized to this
    scale_jitter: Optional[tuple[float, float]]     # training: random scale of image_size (None: off)
    crop_size: Optional[int]                        # training: random square crop (None: off)
    flip: bool                                      # training: random horizontal flip
    tokens: str                                     # pixel | superpixel
    stride: int                                     # pixel tokens: input pixels per token side
    superpixels: Mapping[str, Any]                  # SuperpixelSettings keyword arguments
    limit_train: Optional[int]
    limit_val: Optional[int]

    @classmethod
    def from_mapping(cls, values: Any) -> "ImageDataSettings":
        v = checked_fields(cls, "data", values)
        jitter = v["scale_jitter"]
        settings = cls(
            name=str(v["name"]), modality=str(v["modality"]), root=optional_path(v["root"]),
            train_split=str(v["train_split"]), val_split=_optional_str(v["val_split"]),
            test_split=_optional_str(v["test_split"]), annotation_file=str(v["annotation_file"]),
            image_dir=str(v["image_dir"]), num_classes=int(v["num_classes"]),
            class_names=None if v["class_names"] is None else tuple(str(n) for n in v["class_names"]),
            image_size=int(v["image_size"]),
            scale_jitter=None if jitter is None else (float(jitter[0]), float(jitter[1])),
            crop_size=_optional_int(v["crop_size"]), flip=bool(v["flip"]), tokens=str(v["tokens"]),
            stride=int(v["stride"]), superpixels=dict(v["superpixels"] or {}),
            limit_train=_optional_int(v["limit_train"]), limit_val=_optional_int(v["limit_val"]))
        if settings.modality != IMAGE_MODALITY:
            raise ConfigError(f"data.modality must be {IMAGE_MODALITY!r} for an image run, got {settings.modality!r}")
        if settings.tokens not in TOKEN_KINDS:
            raise ConfigError(f"data.tokens must be one of {list(TOKEN_KINDS)}, got {settings.tokens!r}")
        if settings.image_size < 16 or settings.stride < 1 or settings.num_classes < 1:
            raise ConfigError(f"data: image_size >= 16, stride >= 1 and num_classes >= 1 are required (got "
                              f"{settings.image_size}, {settings.stride}, {settings.num_classes})")
        return settings

    def split_paths(self, split: str) -> tuple[str, str]:
        """(annotation file, image folder) of ``split``, relative to ``root``."""
        return self.annotation_file.replace("{split}", split), self.image_dir.replace("{split}", split)


@dataclass(frozen=True)
class ImageModelSettings:
    """The ``model`` group of an image run. ``backbone``, ``pixel_decoder`` and ``decoder`` are the keyword
    arguments of ``ResNet2D``, ``PixelDecoder`` (less ``output_stride``, which is ``data.stride``) and
    ``QueryDecoder`` (checked by ``pointformer.models.build.build_decoder``)."""

    name: str
    num_classes: int
    pixel_mean: tuple[float, float, float]
    pixel_std: tuple[float, float, float]
    backbone: Mapping[str, Any]
    pixel_decoder: Mapping[str, Any]
    decoder: Mapping[str, Any]

    @classmethod
    def from_mapping(cls, values: Any) -> "ImageModelSettings":
        v = checked_fields(cls, "model", values)
        mean, std = tuple(float(x) for x in v["pixel_mean"]), tuple(float(x) for x in v["pixel_std"])
        if len(mean) != 3 or len(std) != 3:
            raise ConfigError(f"model.pixel_mean / pixel_std need 3 values (RGB), got {list(mean)}, {list(std)}")
        return cls(name=str(v["name"]), num_classes=int(v["num_classes"]), pixel_mean=mean,  # type: ignore[arg-type]
                   pixel_std=std, backbone=dict(v["backbone"] or {}),  # type: ignore[arg-type]
                   pixel_decoder=dict(v["pixel_decoder"] or {}), decoder=dict(v["decoder"] or {}))


@dataclass(frozen=True)
class ImageRunSettings:
    """A whole image run: the typed form of a composed config whose data group is an image dataset."""

    name: str
    output_root: Path
    run_dir: Optional[Path]
    data: ImageDataSettings
    model: ImageModelSettings
    loss: LossSettings
    trainer: TrainerSettings
    eval: EvalSettings

    @classmethod
    def from_config(cls, cfg: DictConfig | Mapping[str, Any]) -> "ImageRunSettings":
        """Read a composed or stored config once (interpolations resolved)."""
        if isinstance(cfg, DictConfig):
            cfg = OmegaConf.to_container(cfg, resolve=True)  # type: ignore[assignment]
        v = checked_fields(cls, "config", cfg)
        model = v["model"]
        if isinstance(model, Mapping) and "pixel_decoder" not in model:
            raise ConfigError(f"data={v['data'].get('name')} is an image dataset (data.modality: image) but "
                              f"model={model.get('name')} is not an image model; use model=image_tiny (or "
                              "experiment=demo_2d)")
        settings = cls(name=str(v["name"]), output_root=Path(str(v["output_root"])).expanduser(),
                       run_dir=optional_path(v["run_dir"]), data=ImageDataSettings.from_mapping(v["data"]),
                       model=ImageModelSettings.from_mapping(v["model"]), loss=LossSettings.from_mapping(v["loss"]),
                       trainer=TrainerSettings.from_mapping(v["trainer"]), eval=EvalSettings.from_mapping(v["eval"]))
        if settings.model.num_classes != settings.data.num_classes:
            raise ConfigError(f"model.num_classes={settings.model.num_classes} but data.num_classes="
                              f"{settings.data.num_classes}")
        return settings

    def replace(self, **changes: Any) -> "ImageRunSettings":
        return dataclasses.replace(self, **changes)


def ranked_class_overrides(loss_name: str, num_classes: int) -> list[str]:
    """Overrides that let an ownership loss emit every mask with its ``num_classes`` best classes.

    COCO AP ranks (mask, class, score) triples per class, and the sigmoid rule already proposes its
    top-k (query, class) pairs; the ownership rule's default (one class per mask, the 3D setting)
    loses every instance whose class is the second guess. On the 2D demo data at step 400 this lifted
    held-out AP50 from 0.001 to 0.053 (docs/image.md). Empty for other losses (their postprocessing has
    no ``classes_per_mask``).
    """
    from pointformer.losses import get_loss

    if get_loss(loss_name).activation != "ownership":
        return []
    return [f"loss.postprocess.classes_per_mask={int(num_classes)}"]
