"""Prediction: postprocessing per loss family (``postprocess``), query masks → per-point instances
(``instances``, the one conversion) and the :class:`Predictor` (checkpoint → model → instances on
preprocessed splits or on arrays; ``Predictor.predict``: a scan of any size in tiles, ``tiling``).

The names below are imported on first use (PEP 562): the 2D branch uses ``postprocess`` alone and
must not load the 3D predictor (datasets, evaluation) with it.
"""
from pointformer.lazy import lazy_exports

_EXPORTS = {
    "InstancePrediction": "instances", "PointInstances": "instances", "point_instances": "instances",
    "Postprocessor": "postprocess",
    "MissingFeatureError": "predictor", "PredictedScene": "predictor",
    "Predictor": "predictor", "ScanInstances": "predictor", "predict_instances": "predictor",
}
__all__ = list(_EXPORTS)
__getattr__ = lazy_exports(__name__, _EXPORTS)
