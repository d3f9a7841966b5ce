"""Prediction: postprocessing per loss family (``postprocess``), query masks → per-point instances
(``instances``, the one conversion) and the :class:`Predictor` (checkpoint → model → instances on
preprocessed splits or on arrays).

The names below are imported on first use (PEP 562): the 2D branch uses ``postprocess`` alone and
must not load the 3D predictor (datasets, evaluation) with it.
"""
from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "InstancePrediction": "instances", "PointInstances": "instances", "point_instances": "instances",
    "Postprocessor": "postprocess",
    "PredictedScene": "predictor", "Predictor": "predictor", "predict_instances": "predictor",
}

__all__ = ["InstancePrediction", "PointInstances", "PredictedScene", "Predictor", "Postprocessor",
           "point_instances", "predict_instances"]


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f"{__name__}.{module}"), name)
