"""Typed run settings: the composed config is read once, here, at the composition root.

``RunSettings.from_config(cfg)`` turns a composed (or stored) Hydra config into frozen dataclasses;
everything below the composition root (datasets, model, criterion, trainer) receives these objects,
never the config. The values have one home, the YAML tree in ``configs/``: no field here has a
default, and an unknown or missing key is a :class:`ConfigError` naming the section and the key.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping, Optional

from omegaconf import DictConfig, OmegaConf

from pointformer.config.compose import ConfigError, optional_path


def _plain(node: Any) -> Any:
    """Plain (resolved) Python containers of a config node; plain values pass through."""
    if OmegaConf.is_config(node):
        return OmegaConf.to_container(node, resolve=True)
    return node


def checked_fields(cls: type, section: str, values: Any) -> dict[str, Any]:
    """The mapping ``values`` checked against the dataclass fields of ``cls`` (no unknown, none missing)."""
    values = _plain(values)
    if not isinstance(values, Mapping):
        raise ConfigError(f"{section}: expected a mapping, got {type(values).__name__}")
    names = [f.name for f in dataclasses.fields(cls)]
    unknown = sorted(set(values) - set(names))
    if unknown:
        raise ConfigError(f"{section}: unknown key(s) {unknown}; known: {sorted(names)}")
    missing = [n for n in names if n not in values]
    if missing:
        raise ConfigError(f"{section}: missing key(s) {missing} (every setting is declared in configs/)")
    return dict(values)


def _optional_int(value: Any) -> Optional[int]:
    return None if value in (None, "", "null") else int(value)


def _optional_str(value: Any) -> Optional[str]:
    return None if value in (None, "", "null") else str(value)


@dataclass(frozen=True)
class DataSettings:
    """The ``data`` group: where preprocessed scenes are and how they are fed to the model."""

    name: str
    dataset: str                                  # evaluation protocol / manifest dataset name
    root: Optional[Path]                          # preprocessed folder (None: not set yet)
    train_split: str
    val_split: Optional[str]
    test_split: Optional[str]
    features: tuple[str, ...]                     # per-point input features (rgb, normals)
    in_channels: int
    num_classes: int
    color_mean: Optional[tuple[float, ...]]       # None: computed from the training split
    color_std: Optional[tuple[float, ...]]
    cache: bool
    limit_train: Optional[int]
    limit_val: Optional[int]
    augment: Optional[Mapping[str, Any]]          # transform name -> options (None entries: off)
    test_area: Optional[int]                      # S3DIS: the held-out area (None: not an area dataset)
    fold: Optional[int]                           # S3DIS 6-fold: fold k tests on Area k (overrides test_area)
    crop: Optional[Mapping[str, Any]]             # random cuboid crop options (training only; None: off)
    neighbours: Optional[Mapping[str, Any]]       # training pairs of rooms side by side (None: off)

    @classmethod
    def from_mapping(cls, values: Any) -> "DataSettings":
        values = _plain(values)
        if isinstance(values, Mapping) and "neighbours" not in values:
            values = {**values, "neighbours": None}  # stored configs of checkpoints older than the setting
        v = checked_fields(cls, "data", values)
        colour = {k: None if v[k] is None else tuple(float(x) for x in v[k]) for k in ("color_mean", "color_std")}
        return cls(name=str(v["name"]), dataset=str(v["dataset"]), root=optional_path(v["root"]),
                   train_split=str(v["train_split"]), val_split=_optional_str(v["val_split"]),
                   test_split=_optional_str(v["test_split"]), features=tuple(str(f) for f in v["features"]),
                   in_channels=int(v["in_channels"]), num_classes=int(v["num_classes"]), **colour,
                   cache=bool(v["cache"]), limit_train=_optional_int(v["limit_train"]),
                   limit_val=_optional_int(v["limit_val"]), augment=v["augment"],
                   test_area=_optional_int(v["test_area"]), fold=_optional_int(v["fold"]),
                   crop=None if v["crop"] is None else dict(v["crop"]),
                   neighbours=None if v["neighbours"] is None else dict(v["neighbours"]))


@dataclass(frozen=True)
class ModelSettings:
    """The ``model`` group. ``backbone`` and ``decoder`` are the keyword arguments of the backbone and
    of ``QueryDecoder`` (checked against their signatures by ``pointformer.models.build``)."""

    name: str
    in_channels: int
    num_classes: int
    voxel_size: float
    backbone: Mapping[str, Any]
    decoder: Mapping[str, Any]

    @classmethod
    def from_mapping(cls, values: Any) -> "ModelSettings":
        v = checked_fields(cls, "model", values)
        return cls(name=str(v["name"]), in_channels=int(v["in_channels"]), num_classes=int(v["num_classes"]),
                   voxel_size=float(v["voxel_size"]), backbone=dict(v["backbone"] or {}),
                   decoder=dict(v["decoder"] or {}))


@dataclass(frozen=True)
class LossSettings:
    """The ``loss`` group: a registered loss (``pointformer.losses.registry``) and its settings."""

    name: str
    params: Mapping[str, Any]                     # hyper-parameters (override the registry defaults)
    term_weights: Mapping[str, float]             # override the registry's default term weights
    layer_weights: Optional[tuple[float, ...]]    # one per decoder stage (None: all 1)
    objectness_weight: float
    postprocess: Mapping[str, Any]                # options of the Postprocessor

    @classmethod
    def from_mapping(cls, values: Any) -> "LossSettings":
        v = checked_fields(cls, "loss", values)
        layer_weights = v["layer_weights"]
        return cls(name=str(v["name"]), params=dict(v["params"] or {}),
                   term_weights={k: float(w) for k, w in (v["term_weights"] or {}).items()},
                   layer_weights=None if layer_weights is None else tuple(float(w) for w in layer_weights),
                   objectness_weight=float(v["objectness_weight"]), postprocess=dict(v["postprocess"] or {}))


@dataclass(frozen=True)
class TrainerSettings:
    """The ``trainer`` group (configs/trainer/default.yaml documents every key)."""

    epochs: int
    max_steps: Optional[int]          # stop after this global step; the LR schedule still spans `epochs`
    batch_size: int                   # scenes per optimiser step per process
    lr: float                         # AdamW peak learning rate (OneCycle max_lr)
    weight_decay: float
    betas: tuple[float, float]
    pct_start: float                  # OneCycle warm-up share
    div_factor: float                 # OneCycle initial lr = lr / div_factor
    final_div_factor: float
    grad_clip_norm: Optional[float]   # None or <= 0: no clipping
    amp: str                          # auto | bf16 | fp16 | off  (auto: bf16/fp16 on CUDA, off on CPU)
    device: str                       # auto | cpu | cuda
    seed: int
    deterministic: bool               # torch.use_deterministic_algorithms (slower on CUDA)
    num_workers: int
    log_every: int                    # steps between train metric records
    val_every_epochs: int             # 0: no periodic validation
    val_every_steps: Optional[int]    # additionally every N steps
    val_batch_size: int
    checkpoint_every_epochs: int
    checkpoint_every_steps: Optional[int]
    keep_last: int
    monitor: str                      # validation metric that selects best.pt (higher is better)
    resume: Optional[str]             # None | "auto" | path to a checkpoint
    progress: bool                    # tqdm bar on rank 0
    find_unused_parameters: bool      # DDP: some heads are unused by some losses
    tensorboard: bool

    @classmethod
    def from_mapping(cls, values: Any) -> "TrainerSettings":
        v = checked_fields(cls, "trainer", values)
        v["betas"] = tuple(float(b) for b in v["betas"])
        if isinstance(v["amp"], bool):  # YAML 1.1 reads a bare off/on as a boolean
            v["amp"] = "auto" if v["amp"] else "off"
        v["resume"] = _optional_str(v["resume"])
        for key in ("max_steps", "val_every_steps", "checkpoint_every_steps"):
            v[key] = _optional_int(v[key])
        settings = cls(**v)
        if settings.amp not in ("auto", "bf16", "fp16", "off"):
            raise ConfigError(f"trainer.amp must be auto, bf16, fp16 or off; got {settings.amp!r}")
        if settings.device not in ("auto", "cpu", "cuda"):
            raise ConfigError(f"trainer.device must be auto, cpu or cuda; got {settings.device!r}")
        if settings.epochs <= 0 or settings.batch_size <= 0 or settings.lr <= 0:
            raise ConfigError(f"trainer: epochs, batch_size and lr must be positive "
                              f"(got {settings.epochs}, {settings.batch_size}, {settings.lr})")
        return settings

    def replace(self, **changes: Any) -> "TrainerSettings":
        return dataclasses.replace(self, **changes)


@dataclass(frozen=True)
class EvalSettings:
    """The ``eval`` section: evaluation-time choices that are not part of the model."""

    seed: int                         # first FPS query at evaluation (reproducible predictions)

    @classmethod
    def from_mapping(cls, values: Any) -> "EvalSettings":
        return cls(seed=int(checked_fields(cls, "eval", values)["seed"]))


@dataclass(frozen=True)
class RunSettings:
    """A whole run: the typed form of a composed config (``configs/config.yaml``)."""

    name: str
    output_root: Path
    run_dir: Optional[Path]
    data: DataSettings
    model: ModelSettings
    loss: LossSettings
    trainer: TrainerSettings
    eval: EvalSettings

    @classmethod
    def from_config(cls, cfg: DictConfig | Mapping[str, Any]) -> "RunSettings":
        """Read a composed or stored config once (interpolations resolved)."""
        v = checked_fields(cls, "config", cfg)
        return cls(name=str(v["name"]), output_root=Path(str(v["output_root"])).expanduser(),
                   run_dir=optional_path(v["run_dir"]), data=DataSettings.from_mapping(v["data"]),
                   model=ModelSettings.from_mapping(v["model"]), loss=LossSettings.from_mapping(v["loss"]),
                   trainer=TrainerSettings.from_mapping(v["trainer"]), eval=EvalSettings.from_mapping(v["eval"]))
