"""data=s3dis: areas as splits (test area / 6-fold), the 13-class set, random cuboid crops."""
from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest
import torch

from pointformer.build import make_dataset, resolve_splits
from pointformer.config import ConfigError, RunSettings, compose_config
from pointformer.data.dataset import PreprocessedDataset
from pointformer.data.toy import make_toy_scene
from pointformer.data.transforms import RandomCuboidCrop, build_crop
from pointformer.engine.metrics_log import read_metrics
from pointformer.engine.run import run_training
from pointformer.io.gt import write_gt_file
from pointformer.io.labels import S3DIS_IDS, S3DIS_NAMES
from pointformer.io.scene import Manifest, save_scene


def write_s3dis_area(root: Path, area: int, *, rooms: int = 2, seed: int = 0) -> None:
    """Hand-written tiny S3DIS area in the scene contract (toy scenes relabelled to the 13 classes)."""
    manifest = Manifest(dataset="s3dis", split=f"Area_{area}", class_names=list(S3DIS_NAMES),
                        class_ids=list(S3DIS_IDS), thing_classes=list(range(13)))
    for r in range(rooms):
        scene_id = f"Area_{area}_office_{r + 1}"
        scene = make_toy_scene(scene_id, seed=seed, num_points=2000)
        semantic = np.where(scene.semantic >= 0, scene.semantic % 13, -1).astype(np.int16)
        gt_ids = np.where(semantic >= 0, (semantic + 1) * 1000 + scene.instance, 0).astype(np.int32)
        scene = dataclasses.replace(scene, semantic=semantic, gt_ids=gt_ids)
        save_scene(scene, root / f"Area_{area}" / f"office_{r + 1}.npz")
        write_gt_file(root / "gt" / f"Area_{area}" / f"{scene_id}.txt", gt_ids)
        manifest.scenes[scene_id] = {"file": f"office_{r + 1}.npz", "num_points": scene.num_points,
                                     "num_superpoints": int(scene.superpoint.max()) + 1,
                                     "num_instances": int(len(np.unique(scene.instance[scene.instance > 0]))),
                                     "source_sha1": {}}
    manifest.save(root / f"Area_{area}" / "manifest.json")


@pytest.fixture(scope="module")
def s3dis_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("s3dis")
    for area in range(1, 7):
        write_s3dis_area(root, area, seed=area)
    return root


def settings(root: Path, *overrides: str) -> RunSettings:
    return RunSettings.from_config(compose_config(["data=s3dis", f"data.root={root}", "model=tiny", *overrides]))


def test_area5_default_trains_on_the_other_five(s3dis_root: Path) -> None:
    data = settings(s3dis_root).data
    assert (data.test_area, data.fold, data.num_classes) == (5, None, 13)
    assert resolve_splits(data, "train") == ["Area_1", "Area_2", "Area_3", "Area_4", "Area_6"]
    assert resolve_splits(data, "val") == "Area_5" and resolve_splits(data, "Area_2") == "Area_2"
    train = make_dataset(data, data.train_split, train=False, seed=0, transform=False)
    assert len(train) == 10 and all(not s.startswith("Area_5_") for s in train.scene_ids)
    assert train.thing_class_ids == list(range(1, 14))  # ceiling, floor, wall are instance classes
    sample = train[(1, 9)]
    assert sample.scene_id == "Area_6_office_2" and sample.gt_ids is not None
    val = make_dataset(data, data.val_split, train=False, seed=0, transform=False)
    assert val.scene_ids == ["Area_5_office_1", "Area_5_office_2"]


def test_fold_overrides_test_area(s3dis_root: Path) -> None:
    data = settings(s3dis_root, "data.fold=3").data
    assert resolve_splits(data, "train") == ["Area_1", "Area_2", "Area_4", "Area_5", "Area_6"]
    assert resolve_splits(data, "val") == "Area_3"
    with pytest.raises(ConfigError, match=r"data.fold=7: S3DIS has areas 1..6"):
        resolve_splits(settings(s3dis_root, "data.fold=7").data, "val")


def test_missing_training_area_is_reported(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    write_s3dis_area(tmp_path, 1, rooms=1)
    write_s3dis_area(tmp_path, 5, rooms=1)
    data = settings(tmp_path).data
    with caplog.at_level("WARNING", logger="pointformer.build"):
        assert resolve_splits(data, "train") == ["Area_1"]
    assert "S3DIS training areas [2, 3, 4, 6] are missing" in caplog.text
    only_test = tmp_path / "only5"
    write_s3dis_area(only_test, 5, rooms=1)
    with pytest.raises(ConfigError, match="no training area folder"):
        resolve_splits(dataclasses.replace(data, root=only_test), "train")


def test_area_settings_are_s3dis_only(s3dis_root: Path) -> None:
    data = settings(s3dis_root).data
    scannet = dataclasses.replace(data, dataset="scannet", name="scannet")
    with pytest.raises(ConfigError, match="S3DIS settings"):
        resolve_splits(scannet, "train")
    scannet = dataclasses.replace(scannet, test_area=None)
    assert resolve_splits(scannet, "train") == "train"


def test_crop_keeps_a_non_empty_cuboid() -> None:
    rng = np.random.default_rng(0)
    xyz = rng.random((5000, 3)) * np.array([10.0, 10.0, 3.0])
    crop = RandomCuboidCrop(size=2.0)
    for seed in range(20):
        keep = crop(xyz, np.random.default_rng(seed))
        assert keep.size > 0 and np.all(np.ptp(xyz[keep, :2], axis=0) <= 2.0)
        assert np.ptp(xyz[keep, 2]) > 2.5  # z unbounded
    single = crop(xyz[:1], np.random.default_rng(1))
    assert single.tolist() == [0]
    assert build_crop(None) is None
    with pytest.raises(ValueError, match="data.crop.size"):
        build_crop({"size": -1})
    with pytest.raises(ValueError, match="unknown option"):
        build_crop({"edge": 2})


def test_crop_subsets_labels_and_only_in_training(s3dis_root: Path) -> None:
    data = settings(s3dis_root, "data.crop.size=1.5", "data.color_mean=[0.5,0.5,0.5]",
                    "data.color_std=[0.2,0.2,0.2]").data
    train = make_dataset(data, data.train_split, train=True, seed=0)
    full = make_dataset(data, data.train_split, train=False, seed=0)
    assert train.crop is not None and full.crop is None
    sample, whole = train[(0, 0)], full[(0, 0)]
    assert 0 < sample.num_points < whole.num_points
    assert sample.features.shape[0] == sample.gt_ids.shape[0] == sample.superpoint.shape[0] == sample.num_points
    assert sample.superpoint.max() + 1 == sample.num_superpoints == len(np.unique(sample.superpoint))
    again = train[(0, 0)]
    np.testing.assert_array_equal(sample.xyz, again.xyz)  # a pure function of the key


def test_no_crop_draws_nothing_extra(s3dis_root: Path) -> None:
    """Without data.crop the augmentation of a key is what it was before crops existed."""
    data = settings(s3dis_root, "data.crop=null", "data.color_mean=[0.5,0.5,0.5]",
                    "data.color_std=[0.2,0.2,0.2]").data
    train = make_dataset(data, data.train_split, train=True, seed=3)
    plain = PreprocessedDataset(s3dis_root, ["Area_1", "Area_2", "Area_3", "Area_4", "Area_6"],
                                transform=train.transform, seed=3)
    np.testing.assert_array_equal(train[(2, 1)].xyz, plain[(2, 1)].xyz)
    assert train.crop is None


def test_areas_with_different_classes_are_refused(tmp_path: Path) -> None:
    write_s3dis_area(tmp_path, 1, rooms=1)
    write_s3dis_area(tmp_path, 2, rooms=1)
    manifest = Manifest.load(tmp_path / "Area_2" / "manifest.json")
    manifest.thing_classes = list(range(3, 13))
    manifest.save(tmp_path / "Area_2" / "manifest.json")
    with pytest.raises(ValueError, match="classes differ"):
        PreprocessedDataset(tmp_path, ["Area_1", "Area_2"])


def test_data_s3dis_trains_a_few_steps_and_validates_with_the_s3dis_metrics(s3dis_root: Path, tmp_path: Path) -> None:
    torch.set_num_threads(1)
    cfg = compose_config([
        "data=s3dis", f"data.root={s3dis_root}", "model=tiny", "data.cache=true", "data.crop.size=3.0",
        f"run_dir={tmp_path / 'run'}", "trainer.progress=false", "trainer.tensorboard=false",
        "trainer.num_workers=0", "trainer.epochs=1", "trainer.max_steps=4", "trainer.batch_size=2",
        "trainer.val_every_epochs=1", "trainer.log_every=1", "data.limit_val=1"])
    result = run_training(cfg)
    losses = [r["loss"] for r in read_metrics(tmp_path / "run" / "metrics.jsonl", "train")]
    assert result.step == 4 and len(losses) == 4 and np.isfinite(losses).all()
    val = read_metrics(tmp_path / "run" / "metrics.jsonl", "val")
    assert len(val) == 1 and {"map", "map50", "map25", "mcov", "mwcov", "mprec50", "mrec50"} <= set(val[0])
    assert "ceiling" in val[0]["table"] and "ASIS metrics" in val[0]["table"]
