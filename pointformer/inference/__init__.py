"""Prediction: postprocessing per loss family (``postprocess``), query masks → per-point instances
(``instances``, the one conversion) and the :class:`Predictor` (checkpoint → model → instances on
preprocessed splits or on arrays)."""
from pointformer.inference.instances import InstancePrediction, PointInstances, point_instances
from pointformer.inference.postprocess import Postprocessor
from pointformer.inference.predictor import PredictedScene, Predictor, predict_instances

__all__ = ["InstancePrediction", "PointInstances", "PredictedScene", "Predictor", "Postprocessor",
           "point_instances", "predict_instances"]
