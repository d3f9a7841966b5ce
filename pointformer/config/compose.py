"""Compose run configs from the Hydra config tree (``configs/`` at the repository root).

The tree is installed with the package (as package data under ``pointformer/configs``) and composed with \
``hydra.compose`` on its absolute path,
so ``pointformer train ...`` works from any working directory, and no Hydra-managed output folder
or working-directory change happens (the trainer owns its run directory; under DDP only rank 0
creates it). Composition errors become :class:`ConfigError` with a message that names the group,
the bad option and the available ones.
"""
from __future__ import annotations

import difflib
import re
from pathlib import Path
from typing import Any, Optional, Sequence

from omegaconf import DictConfig, OmegaConf



def _config_dir() -> Path:
    """The Hydra tree: package data of an installed wheel, else ``configs/`` of the source checkout
    (an editable install imports the package from the checkout)."""
    package = Path(__file__).resolve().parents[1]
    for candidate in (package / "configs", package.parent / "configs"):
        if (candidate / "config.yaml").is_file():
            return candidate
    raise RuntimeError(f"pointformer's config tree is missing (looked in {package / 'configs'} and "
                       f"{package.parent / 'configs'}); reinstall the package")


CONFIG_DIR = _config_dir()
GROUPS = ("data", "model", "loss", "trainer", "experiment")


class ConfigError(ValueError):
    """A run configuration cannot be composed or is inconsistent (the message says how to fix it)."""


def group_options(group: str, config_dir: Path = CONFIG_DIR) -> list[str]:
    """Option names of a config group (the YAML files in ``configs/<group>/``)."""
    return sorted(p.stem for p in (config_dir / group).glob("*.yaml"))


def _explain(exc: Exception, overrides: Sequence[str]) -> str:
    text = str(exc)
    match = re.search(r"Could not (?:find|load) '([^/']+)/([^']+)'", text)
    if match:
        group, option = match.groups()
        options = group_options(group)  # the packaged options (an extra search path may add more)
        close = difflib.get_close_matches(option, options, n=1)
        hint = f"; did you mean {group}={close[0]}?" if close else ""
        return f"unknown option {option!r} for config group {group!r}; available: {', '.join(options)}{hint}"
    match = re.search(r"Could not override '([^']+)'", text)
    if match:
        key = match.group(1)
        return (f"cannot override {key!r}: no such key in the composed config "
                f"(to add a new key use +{key}=...; groups are {', '.join(GROUPS)})")
    match = re.search(r"Key '([^']+)' is not in struct", text)
    if match:
        return f"unknown config key {match.group(1)!r} ({text.splitlines()[0]})"
    return f"{type(exc).__name__}: {text.splitlines()[0] if text else exc!r}"


def compose_config(overrides: Sequence[str] = (), *, config_name: str = "config",
                   search_path: Sequence[Path | str] = ()) -> DictConfig:
    """The run config for Hydra-style ``overrides`` (e.g. ``["data=scannet", "trainer.lr=2e-4"]``).

    Args:
        search_path: extra config folders searched before the packaged tree, with the same group
            layout (e.g. ``DIR/loss/my_loss.yaml`` adds the option ``loss=my_loss``).
    """
    from hydra import compose, initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra

    overrides = list(overrides)
    for override in overrides:
        if "=" not in override:
            raise ConfigError(f"override {override!r} must look like key=value (e.g. trainer.lr=2e-4 or data=scannet)")
    extra = [Path(p).expanduser().resolve() for p in search_path]
    for folder in extra:
        if not folder.is_dir():
            raise ConfigError(f"config folder {str(folder)!r} does not exist")
    if extra:
        overrides.append("hydra.searchpath=[" + ",".join(f"file://{folder}" for folder in extra) + "]")
    if GlobalHydra.instance().is_initialized():
        GlobalHydra.instance().clear()
    try:
        with initialize_config_dir(config_dir=str(CONFIG_DIR), version_base="1.3", job_name="pointformer"):
            cfg = compose(config_name=config_name, overrides=overrides)
    except Exception as exc:  # hydra raises several exception types; all become one clear message
        raise ConfigError(_explain(exc, overrides)) from None
    finally:
        GlobalHydra.instance().clear()
    return cfg


def to_yaml(cfg: DictConfig, *, resolve: bool = True) -> str:
    return OmegaConf.to_yaml(cfg, resolve=resolve)


def plain_config(cfg: DictConfig) -> DictConfig:
    """A resolved copy without interpolations (what checkpoints and run folders store)."""
    return OmegaConf.create(OmegaConf.to_container(cfg, resolve=True))


def load_config_yaml(text: str) -> DictConfig:
    """A config saved in a checkpoint or run folder (a resolved YAML string)."""
    cfg = OmegaConf.create(text)
    if not isinstance(cfg, DictConfig):
        raise ConfigError("the stored config is not a mapping")
    return cfg


def apply_overrides(cfg: DictConfig, overrides: Sequence[str]) -> DictConfig:
    """Apply ``key=value`` dot-list overrides to a stored (already resolved) config.

    Used by evaluate-model/export/infer on the config inside a checkpoint: only plain keys can change
    there (e.g. ``data.root=...``); a group switch (``model=base``) would not match the weights.
    """
    bad = [o for o in overrides if "=" not in o]
    if bad:
        raise ConfigError(f"override(s) {bad} must look like key=value (e.g. data.root=/data/scannet_processed)")
    for override in overrides:
        key = override.split("=", 1)[0].lstrip("+")
        if key in ("model", "loss"):
            raise ConfigError(
                f"{override!r}: the model and loss are fixed by the checkpoint; only their keys can change"
            )
        if OmegaConf.select(cfg, key, default="__missing__") == "__missing__" and not override.startswith("+"):
            raise ConfigError(
                f"override {override!r}: the checkpoint's config has no key {key!r} (use +{key}=... to add one)"
            )
    merged = OmegaConf.merge(cfg, OmegaConf.from_dotlist([o.lstrip("+") for o in overrides]))
    assert isinstance(merged, DictConfig)
    return merged


def container(cfg: Any) -> Any:
    """Plain Python containers (resolved) of a config node; non-config values pass through."""
    if isinstance(cfg, DictConfig) or OmegaConf.is_config(cfg):
        return OmegaConf.to_container(cfg, resolve=True)
    return cfg


def optional_path(value: Optional[str]) -> Optional[Path]:
    return None if value in (None, "", "null") else Path(str(value)).expanduser()
