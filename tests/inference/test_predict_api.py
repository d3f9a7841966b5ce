"""Predictor.predict: the Python API of `pointformer infer` (typed instances, features contract, tiles,
georeferenced coordinates)."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from pointformer.build import build_model
from pointformer.config import RunSettings, compose_config
from pointformer.config.compose import plain_config, to_yaml
from pointformer.data.toy import make_toy_scene
from pointformer.inference import Predictor
from pointformer.inference.predictor import MissingFeatureError, ScanInstances
from pointformer.io.predictions import PredictedInstance
from pointformer.io.checkpoint import write_checkpoint


def _checkpoint(path, features):
    torch.set_num_threads(1)
    torch.manual_seed(0)
    cfg = compose_config(["data.root=/nonexistent", "data.color_mean=[120.0,110.0,100.0]",
                          "data.color_std=[60.0,60.0,60.0]", "model.decoder.eval_num_queries=20",
                          f"data.features=[{','.join(features)}]", f"data.in_channels={3 * len(features)}"])
    model = build_model(RunSettings.from_config(cfg))
    return write_checkpoint(path, {"model": model.state_dict(), "step": 1, "epoch": 0,
                                   "config": to_yaml(plain_config(cfg))})


@pytest.fixture(scope="module")
def predictors(tmp_path_factory):
    root = tmp_path_factory.mktemp("ckpt")
    return (Predictor.from_checkpoint(_checkpoint(root / "rgb.pt", ["rgb"]), device="cpu"),
            Predictor.from_checkpoint(_checkpoint(root / "normals.pt", ["normals"]), device="cpu"))


@pytest.fixture(scope="module")
def scene():
    return make_toy_scene("api", seed=3, num_points=2500, num_objects=3)


def _check(result: ScanInstances, n: int) -> None:
    assert result.instance_ids.shape == (n,) and result.instance_ids.dtype == np.int32
    assert result.class_ids.shape == (n,) and result.class_ids.dtype == np.int32
    k = len(result.instances)
    assert result.instance_ids.min() >= -1 and result.instance_ids.max() < k
    np.testing.assert_array_equal(result.instance_ids == -1, result.class_ids == -1)
    scores = [inst.score for inst in result.instances]
    assert scores == sorted(scores, reverse=True)
    for inst in result.instances:
        assert isinstance(inst, PredictedInstance)
        mask = result.mask(inst.id)
        assert mask.sum() == inst.num_points > 0
        assert (result.class_ids[mask] == inst.class_id).all()
    assert result.masks().shape == (k, n)


def test_predict_returns_typed_instances(predictors, scene):
    rgb_model, _ = predictors
    result = rgb_model.predict(scene.xyz, scene.rgb, min_points=1)
    _check(result, scene.num_points)
    assert result.features == ("rgb",) and result.tiles is None and "kNN segmentator" in result.superpoints
    cells = rgb_model.predict(scene.xyz, scene.rgb, superpoints="cells", cell=0.2, min_points=1)
    _check(cells, scene.num_points)
    assert "0.2 m cells" in cells.superpoints
    given = rgb_model.predict(scene.xyz, scene.rgb, superpoint=scene.superpoint, min_points=1)
    _check(given, scene.num_points)
    with pytest.raises(IndexError):
        result.mask(len(result.instances))


def test_georeferenced_coordinates_give_the_same_instances(predictors, scene):
    """A float64 origin is subtracted first: 4,000 km from the origin predicts as at the origin (float32 of
    such coordinates has a 0.25 m resolution in y, which would merge 4 cm voxels)."""
    rgb_model, _ = predictors
    local = scene.xyz.astype(np.float64)
    far = local + np.array([512_345.678, 4_123_456.789, 231.5])
    a = rgb_model.predict(local, scene.rgb, min_points=1)
    b = rgb_model.predict(far, scene.rgb, min_points=1)
    assert len(a.instances) == len(b.instances)
    assert (a.instance_ids == b.instance_ids).mean() > 0.99
    assert np.abs(far.astype(np.float32) - far).max() > 0.1  # what a plain float32 cast would have done


def test_features_are_the_checkpoints_contract(predictors, scene):
    rgb_model, normals_model = predictors
    with pytest.raises(MissingFeatureError) as info:
        rgb_model.predict(scene.xyz, None, source="room.ply")
    message = str(info.value)
    assert "room.ply has no colour (rgb)" in message and "rgb.pt" in message and "['rgb']" in message
    # a colour-free model: no colour needed; normals are estimated when missing, used when given
    estimated = normals_model.predict(scene.xyz, None, min_points=1)
    _check(estimated, scene.num_points)
    assert estimated.features == ("normals",)
    given = normals_model.predict(scene.xyz, None, normals=scene.normals, min_points=1)
    _check(given, scene.num_points)
    normals_model.check_features([], "scan.las")  # normals count as available: they are estimated


def test_tiled_prediction_through_the_model(predictors, scene):
    _, normals_model = predictors
    result = normals_model.predict(scene.xyz, None, tile_size=2.0, overlap=0.5, min_points=1)
    _check(result, scene.num_points)
    assert result.tiles is not None and result.tiles["count"] > 1 and result.tiles["size_m"] == 2.0
    assert (result.instance_ids >= 0).mean() > 0.5  # most points land in an instance after merging


def test_bad_arrays_are_clear_errors(predictors, scene):
    rgb_model, _ = predictors
    with pytest.raises(ValueError, match="rgb has 3 rows"):
        rgb_model.predict(scene.xyz, scene.rgb[:3])
    with pytest.raises(ValueError, match=r"xyz must have shape \[N, 3\]"):
        rgb_model.predict(scene.xyz[:, :2], scene.rgb)
    with pytest.raises(ValueError, match="superpoints must be one of"):
        rgb_model.predict(scene.xyz, scene.rgb, superpoints="voxels")
