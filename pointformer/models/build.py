"""Build the 3D model from a model config (``configs/model/*.yaml``, ``pointformer.config.ModelSettings``
or a mapping).

A model config has four parts::

    in_channels: 3            # per-point input features (data decides: rgb 3, rgb+normals 6)
    num_classes: 18           # instance classes (data decides)
    voxel_size: 0.02
    backbone: {variant: 34C, backend: torch, ...}      # keyword arguments of Res16UNet
    decoder: {hidden_dim: 128, num_queries: 100, ...}  # keyword arguments of QueryDecoder

The packaged configs take ``in_channels`` and ``num_classes`` from the ``data`` group of the composed
experiment when it exists (``${oc.select:data.num_classes,18}``). The decoder's mask activation and
query initialisation belong to the loss: the caller passes them (``pointformer.build.build_model``
resolves them from the loss registry); ``decoder.query_init`` in a model config may only repeat or
override the query initialisation (null: the caller's).
"""
from __future__ import annotations

import dataclasses
import inspect
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, Union

from omegaconf import DictConfig, OmegaConf

from pointformer.config.compose import CONFIG_DIR as _CONFIG_ROOT
from pointformer.models.decoder import QueryDecoder

if TYPE_CHECKING:  # imported in build_model: the 2D branch uses build_decoder without the 3D model
    from pointformer.models.segmentor import InstanceSegmentor3D

__all__ = ["CONFIG_DIR", "available_model_configs", "load_model_config", "build_decoder", "build_model"]

CONFIG_DIR = _CONFIG_ROOT / "model"
_TOP_LEVEL_KEYS = {"name", "in_channels", "num_classes", "voxel_size", "backbone", "decoder"}
# Set by build_model from the backbone and the top level, never in the decoder section.
_DECODER_DERIVED = {"token_dim", "num_classes", "mask_activation"}


def available_model_configs() -> list[str]:
    """Names of the packaged model configs (``base``, ``tiny``, ...)."""
    return sorted(p.stem for p in CONFIG_DIR.glob("*.yaml"))


def load_model_config(name_or_path: Union[str, Path] = "base") -> DictConfig:
    """A packaged model config by name (``"base"``, ``"tiny"``) or a YAML file path."""
    path = Path(name_or_path)
    if path.suffix not in (".yaml", ".yml"):
        path = CONFIG_DIR / f"{name_or_path}.yaml"
        if not path.is_file():
            raise ValueError(f"unknown model config {str(name_or_path)!r}; packaged: {available_model_configs()}")
    elif not path.is_file():
        raise ValueError(f"model config file {str(path)!r} does not exist")
    return OmegaConf.load(path)


def _to_dict(cfg: Any, what: str) -> dict:
    if dataclasses.is_dataclass(cfg) and not isinstance(cfg, type):
        return {f.name: getattr(cfg, f.name) for f in dataclasses.fields(cfg)}
    if isinstance(cfg, DictConfig):
        # A node of a composed config resolves its interpolations against the whole tree.
        return OmegaConf.to_container(cfg, resolve=True)  # type: ignore[return-value]
    if isinstance(cfg, Mapping):
        return OmegaConf.to_container(OmegaConf.create(dict(cfg)), resolve=True)  # type: ignore[return-value]
    raise ValueError(f"{what} must be a DictConfig or a mapping, got {type(cfg).__name__}")


def build_decoder(decoder_cfg: Any, *, token_dim: int, num_classes: int, mask_activation: str,
                  query_init: str) -> QueryDecoder:
    """A ``QueryDecoder`` from the ``decoder`` section of a model config (2D and 3D share it).

    Args:
        mask_activation, query_init: what the loss requires (``pointformer.losses.query_setup``);
            the section's ``query_init`` may be null or the same value.
    """
    kwargs = _to_dict(decoder_cfg, "decoder config")
    allowed = set(inspect.signature(QueryDecoder.__init__).parameters) - {"self"} - _DECODER_DERIVED
    unknown = sorted(set(kwargs) - allowed)
    if unknown:
        raise ValueError(f"decoder config: unknown key(s) {unknown}; allowed: {sorted(allowed)} "
                         "(the mask activation is the loss's)")
    configured = kwargs.pop("query_init", None)
    if configured is not None and configured != query_init:
        raise ValueError(f"decoder config: query_init={configured!r} but the resolved query_init is {query_init!r}")
    if query_init == "learned":
        # Seeding and seed-relative positions apply to seeded queries only: an experiment that seeds by objectness
        # or measures distances from seeds for the Influencer Loss keeps working when its loss is switched to one
        # with learned queries (loss=hungarian), which then seeds nothing and uses Mask3D's scene position codes.
        kwargs["seed_sampling"] = "fps"
        kwargs["position_encoding"] = "scene"
    if kwargs.get("position_encoding", "scene") == "scene":
        kwargs["attention_radius"] = None  # a radius is measured from seeds: scene position codes have none
    return QueryDecoder(token_dim=token_dim, num_classes=num_classes, mask_activation=mask_activation,
                        query_init=query_init, **kwargs)


def build_model(cfg: Any, *, mask_activation: str, query_init: str) -> InstanceSegmentor3D:
    """An ``InstanceSegmentor3D`` from a model config.

    Args:
        cfg: the model node (ModelSettings, DictConfig or dict, see the module docstring), or a
            composed experiment config with a ``model`` node.
        mask_activation: "ownership" or "sigmoid", the loss's (``pointformer.losses.query_setup``).
        query_init: "seeded" or "learned" (the loss's unless the model config overrides it).
    """
    if isinstance(cfg, (DictConfig, Mapping)) and "model" in cfg and "decoder" not in cfg:
        cfg = cfg["model"]
    conf = _to_dict(cfg, "model config")
    unknown = sorted(set(conf) - _TOP_LEVEL_KEYS)
    if unknown:
        raise ValueError(f"model config: unknown key(s) {unknown}; allowed: {sorted(_TOP_LEVEL_KEYS)}")
    for key in ("in_channels", "num_classes", "backbone", "decoder"):
        if key not in conf:
            raise ValueError(f"model config: missing key {key!r}")
    in_channels, num_classes = int(conf["in_channels"]), int(conf["num_classes"])
    if in_channels < 1 or num_classes < 1:
        raise ValueError(
            f"model config: in_channels and num_classes must be positive, got {in_channels}, {num_classes}"
        )

    from pointformer.models.backbone3d import Res16UNet
    from pointformer.models.segmentor import InstanceSegmentor3D

    backbone_kwargs = _to_dict(conf["backbone"], "backbone config")
    try:
        backbone = Res16UNet(in_channels=in_channels, **backbone_kwargs)
    except TypeError as err:  # an unknown keyword: report it as a config error
        raise ValueError(f"backbone config {backbone_kwargs}: {err}") from err
    decoder = build_decoder(conf["decoder"], token_dim=int(backbone.out_channels), num_classes=num_classes,
                            mask_activation=mask_activation, query_init=query_init)
    return InstanceSegmentor3D(backbone=backbone, decoder=decoder, voxel_size=float(conf.get("voxel_size", 0.02)))
