"""The Predictor: checkpoint → settings → model; the same predictions as validation during training."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from pointformer.build import build_model
from pointformer.config import ConfigError, RunSettings, compose_config
from pointformer.config.compose import plain_config, to_yaml
from pointformer.data.collate import collate_scenes
from pointformer.data.toy import write_toy_split
from pointformer.engine.task import InstanceSegmentationTask
from pointformer.inference import Predictor
from pointformer.io.checkpoint import CheckpointError, write_checkpoint


def _untrained_checkpoint(tmp_path_factory, position_encoding: str):
    """An untrained tiny model's checkpoint (predictions need not be good to be compared)."""
    torch.set_num_threads(1)
    root = tmp_path_factory.mktemp("pre")
    write_toy_split(root, "train", num_scenes=1, seed=0, num_points=900, num_objects=3)
    write_toy_split(root, "val", num_scenes=2, seed=1, num_points=900, num_objects=3)
    cfg = compose_config([f"data.root={root}", "data.color_mean=[120.0,110.0,100.0]", "data.color_std=[60.0,60.0,60.0]",
                          "model.decoder.eval_num_queries=20", f"model.decoder.position_encoding={position_encoding}"])
    torch.manual_seed(0)
    model = build_model(RunSettings.from_config(cfg))
    payload = {"model": model.state_dict(), "step": 3, "epoch": 0, "config": to_yaml(plain_config(cfg))}
    path = write_checkpoint(root.parent / f"ckpt_{position_encoding}.pt", payload)  # one file per fixture
    return root, path


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    """Scene-normalised position codes (Mask3D's): position-blind masks, what the query radius is for."""
    return _untrained_checkpoint(tmp_path_factory, "scene")


@pytest.fixture(scope="module")
def relative_checkpoint(tmp_path_factory):
    return _untrained_checkpoint(tmp_path_factory, "relative")


def test_split_predictions_equal_the_validation_path(checkpoint):
    root, path = checkpoint
    predictor = Predictor.from_checkpoint(path, device="cpu")
    assert predictor.step == 3 and not predictor.model.training
    dataset, scenes = predictor.predict_split("val", progress=False)
    assert [s.scene_id for s in scenes] == [dataset.scene_ids[i] for i in range(len(dataset))]
    task = InstanceSegmentationTask.from_settings(predictor.settings, class_ids=dataset.thing_class_ids)
    for i, scene in enumerate(scenes):
        expected = task.predict(predictor.model, collate_scenes([dataset[i]]))[0]
        np.testing.assert_array_equal(scene.prediction.dense_masks(), expected.dense_masks())
        np.testing.assert_array_equal(scene.prediction.scores, expected.scores)
        np.testing.assert_array_equal(scene.prediction.class_ids, expected.class_ids)
        assert scene.gt_ids is not None and scene.prediction.num_vertices == scene.num_mesh_vertices
    result = predictor.evaluate(scenes)
    assert 0.0 <= result.map <= 1.0


def test_predict_scan_on_arrays_matches_the_split_prediction(checkpoint):
    _, path = checkpoint
    predictor = Predictor.from_checkpoint(path, device="cpu")
    dataset, scenes = predictor.predict_split("val", limit=1, progress=False)
    raw = dataset.load(0)
    out = predictor.predict_scan(raw.xyz, raw.rgb, normals=raw.normals, superpoint=raw.superpoint)
    assert out.instance.shape == (raw.num_points,) and out.instance.dtype == np.int32
    assert out.instance.max() == len(out.class_ids) == len(out.class_names) == len(out.scores)
    assert all(out.num_points[k] == (out.instance == k + 1).sum() for k in range(len(out.scores)))
    assert set(out.class_names) <= {"cabinet", "bed", "chair", "sofa", "table", "door", "window", "bookshelf",
                                    "picture", "counter", "desk", "curtain", "refrigerator", "shower curtain",
                                    "toilet", "sink", "bathtub", "otherfurniture"}
    # the same scene through the dataset pipeline: the same best instance
    best = scenes[0].prediction
    assert out.scores[0] == pytest.approx(float(best.scores.max()))
    cells = predictor.predict_scan(raw.xyz, raw.rgb)  # no superpoints: 0.1 m cells, no normals
    assert cells.instance.shape == (raw.num_points,)
    with pytest.raises(ValueError, match="rgb has 3 rows"):
        predictor.predict_scan(raw.xyz, raw.rgb[:3])


def test_query_radius_keeps_instances_local(checkpoint):
    """Two copies of a scene far apart in one pass: the position-blind mask logits let instances claim the
    look-alike points of both copies; with a query radius, no instance reaches the other copy."""
    _, path = checkpoint
    predictor = Predictor.from_checkpoint(path, device="cpu")
    raw = predictor.dataset("val", limit=1).load(0)
    extent = float(np.ptp(raw.xyz, axis=0).max())
    spacing = math.ceil((extent + 10.0) / predictor.model.translation_period) * predictor.model.translation_period
    xyz = np.concatenate([raw.xyz, raw.xyz + [spacing, 0.0, 0.0]]).astype(np.float64)
    copy = np.repeat([0, 1], raw.num_points)
    args = dict(normals=np.concatenate([raw.normals] * 2),
                superpoint=np.concatenate([raw.superpoint, raw.superpoint + raw.superpoint.max() + 1]),
                tile_size=None, min_points=1)
    rgb = np.concatenate([raw.rgb] * 2)

    def spanning(result) -> int:
        return sum(np.unique(copy[result.instance_ids == k]).size > 1 for k in range(len(result.instances)))

    assert spanning(predictor.predict(xyz, rgb, **args)) >= 1
    local = predictor.predict(xyz, rgb, query_radius=extent + 1.0, **args)
    assert len(local.instances) >= 2 and spanning(local) == 0
    with pytest.raises(ValueError, match="query_radius must be a positive"):
        predictor.predict(xyz, rgb, query_radius=0.0, **args)


def test_relative_positions_and_all_queries_make_a_scene_independent_of_far_context(relative_checkpoint):
    """What tiled inference needs: a scene's instances do not change when another scene is added far away.

    Two copies 200 m apart (a multiple of the translation period, so both see their own voxel grid): with
    ``position_encoding: relative`` and one query per superpoint, each copy's instances in the joint pass
    equal those of the copy alone (IoU 1 for every instance), and none spans both copies."""
    _, path = relative_checkpoint
    predictor = Predictor.from_checkpoint(path, device="cpu")
    raw = predictor.dataset("val", limit=1).load(0)
    period = predictor.model.translation_period
    spacing = math.ceil(200.0 / period) * period
    xyz = np.concatenate([raw.xyz, raw.xyz + [spacing, 0.0, 0.0]]).astype(np.float64)
    rgb, normals = np.concatenate([raw.rgb] * 2), np.concatenate([raw.normals] * 2)
    superpoint = np.concatenate([raw.superpoint, raw.superpoint + raw.superpoint.max() + 1])
    args = dict(tile_size=None, min_points=1, num_queries="all")
    pair = predictor.predict(xyz, rgb, normals=normals, superpoint=superpoint, **args).instance_ids
    alone = predictor.predict(raw.xyz.astype(np.float64), raw.rgb, normals=raw.normals, superpoint=raw.superpoint,
                              **args).instance_ids
    first = pair[: raw.num_points]
    assert alone.max() >= 1 and not set(first[first >= 0]) & set(pair[raw.num_points:])  # nothing spans both
    for k in range(int(alone.max()) + 1):
        mask = alone == k
        assert np.unique(first[mask]).size == 1 and ((first == first[mask][0]) == mask).all()
    with pytest.raises(ValueError, match="num_queries must be"):
        predictor.predict(xyz, rgb, num_queries=0)
    # what predict does by default ("auto") for this decoder: every superpoint a query, instances within the
    # attention radius (tiny: 4 m); Mask3D's scene codes keep the evaluation count and no radius
    assert predictor.scan_defaults() == ("all", predictor.model.decoder.attention_radius == 4.0 and 4.0)
    auto = predictor.predict(xyz, rgb, normals=normals, superpoint=superpoint, tile_size=None, min_points=1)
    explicit = predictor.predict(xyz, rgb, normals=normals, superpoint=superpoint, tile_size=None, min_points=1,
                                 num_queries="all", query_radius=4.0)
    np.testing.assert_array_equal(auto.instance_ids, explicit.instance_ids)


def test_scene_position_codes_keep_the_evaluation_query_count(checkpoint):
    assert Predictor.from_checkpoint(checkpoint[1], device="cpu").scan_defaults() == (None, None)


def test_bad_checkpoints_and_overrides_are_clear_errors(checkpoint, tmp_path):
    _, path = checkpoint
    with pytest.raises(CheckpointError, match="not found"):
        Predictor.from_checkpoint(tmp_path / "nope.pt")
    with pytest.raises(ConfigError, match="fixed by the checkpoint"):
        Predictor.from_checkpoint(path, ["model=base"])
    with pytest.raises(CheckpointError, match="weights do not fit"):
        Predictor.from_checkpoint(path, ["model.decoder.hidden_dim=48"])
