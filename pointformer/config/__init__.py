"""Run configuration: Hydra composition of the ``configs/`` tree (compose) and the typed settings
it is read into once, at the composition root (settings). The bottom layer: imports no other
pointformer package."""
from pointformer.config.compose import CONFIG_DIR, ConfigError, apply_overrides, compose_config
from pointformer.config.settings import (DataSettings, EvalSettings, LossSettings, ModelSettings, RunSettings,
                                         TrainerSettings)

__all__ = ["CONFIG_DIR", "ConfigError", "DataSettings", "EvalSettings", "LossSettings", "ModelSettings", "RunSettings",
           "TrainerSettings", "apply_overrides", "compose_config"]
