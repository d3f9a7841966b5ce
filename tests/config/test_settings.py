"""Typed settings: the YAML tree is the only home of values, and a bad key is a clear error."""
from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
from omegaconf import OmegaConf

from pointformer.config import CONFIG_DIR, ConfigError, RunSettings, TrainerSettings, compose_config
from pointformer.config.compose import container


def test_config_tree_is_the_top_level_configs_folder() -> None:
    repo = Path(__file__).resolve().parents[2]
    assert CONFIG_DIR == repo / "configs"
    assert not (repo / "pointformer" / "configs").exists(), "one copy of the config tree"


def test_every_experiment_composes_into_settings() -> None:
    for experiment in sorted(p.stem for p in (CONFIG_DIR / "experiment").glob("*.yaml")):
        cfg = compose_config([f"experiment={experiment}"])
        if cfg.data.get("modality") == "image":
            continue  # read by ImageRunSettings (tests/image/test_isolation.py)
        settings = RunSettings.from_config(cfg)
        assert settings.trainer.epochs > 0 and settings.model.decoder["num_queries"] > 0


def test_trainer_settings_have_no_second_home_for_defaults() -> None:
    # No dataclass defaults: configs/trainer/default.yaml is where every value comes from.
    assert all(f.default is dataclasses.MISSING for f in dataclasses.fields(TrainerSettings))
    values = container(compose_config().trainer)
    assert TrainerSettings.from_mapping(values).num_workers == values["num_workers"]
    with pytest.raises(ConfigError, match=r"trainer: missing key\(s\) \['num_workers'\]"):
        TrainerSettings.from_mapping({k: v for k, v in values.items() if k != "num_workers"})
    with pytest.raises(ConfigError, match=r"trainer: unknown key\(s\) \['lr_max'\]"):
        TrainerSettings.from_mapping({**values, "lr_max": 1})
    with pytest.raises(ConfigError, match="trainer.amp must be"):
        TrainerSettings.from_mapping({**values, "amp": "fp8"})


def test_unknown_keys_name_their_section() -> None:
    cfg = compose_config()
    OmegaConf.set_struct(cfg, False)
    cfg.data.colour = 1
    with pytest.raises(ConfigError, match=r"data: unknown key\(s\) \['colour'\]"):
        RunSettings.from_config(cfg)


def test_one_home_for_the_eval_query_count() -> None:
    cfg = compose_config()
    assert "num_queries" not in cfg.eval
    with pytest.raises(ConfigError, match="cannot override 'eval.num_queries'"):
        compose_config(["eval.num_queries=10"])


def test_extra_search_path_adds_options(tmp_path: Path) -> None:
    (tmp_path / "trainer").mkdir()
    (tmp_path / "trainer" / "short.yaml").write_text(
        "defaults:\n  - default\n  - _self_\nepochs: 3\n")
    settings = RunSettings.from_config(compose_config(["trainer=short"], search_path=[tmp_path]))
    assert settings.trainer.epochs == 3
    with pytest.raises(ConfigError, match="does not exist"):
        compose_config([], search_path=[tmp_path / "missing"])
