"""Prediction: postprocessing per loss family (``postprocess``), query masks → per-point instances
(``instances``, the one conversion) and the :class:`Predictor` (checkpoint → model → instances on
preprocessed splits or on arrays; ``Predictor.predict``: a scan of any size in tiles, ``tiling``)."""
from pointformer.inference.instances import InstancePrediction, PointInstances, point_instances
from pointformer.inference.postprocess import Postprocessor
from pointformer.inference.predictor import (
    Instance,
    MissingFeatureError,
    PredictedScene,
    Predictor,
    ScanInstances,
    predict_instances,
)

__all__ = ["Instance", "InstancePrediction", "MissingFeatureError", "PointInstances", "PredictedScene", "Predictor",
           "Postprocessor", "ScanInstances", "point_instances", "predict_instances"]
