"""data=scannet200: the ScanNet folders read with the ScanNet200 labels; a short training run learns."""
from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
import torch

from pointformer.config.compose import compose_config
from pointformer.data.dataset import DatasetConfigError, PreprocessedDataset
from pointformer.engine.metrics_log import read_metrics
from pointformer.engine.run import run_training
from pointformer.io.labels import SCANNET200_INSTANCE_IDS, SCANNET_INSTANCE_IDS
from pointformer.preprocess.scannet import preprocess_scannet
from pointformer.synthetic.scannet import generate_scannet


@pytest.fixture(scope="module")
def release(tmp_path_factory):
    raw = tmp_path_factory.mktemp("raw200")
    ds = generate_scannet(raw, num_scenes=3, num_test_scenes=0, seed=2, target_vertices=2500, label_set="scannet200")
    out = tmp_path_factory.mktemp("pre200")
    assert preprocess_scannet(raw, out, progress=False).ok
    return ds, out


def test_scannet200_dataset_uses_the_200_class_labels(release):
    ds, out = release
    data = PreprocessedDataset(out, "train", expected_dataset="scannet200")
    assert data.thing_class_ids == list(SCANNET200_INSTANCE_IDS) and len(data.thing_classes) == 198
    assert len(data.class_names) == 200
    v2 = PreprocessedDataset(out, "train", expected_dataset="scannet")
    assert v2.thing_class_ids == list(SCANNET_INSTANCE_IDS)
    for i, sid in enumerate(data.scene_ids):
        truth = ds.scenes[sid]
        sample, sample_v2 = data[i], v2[i]
        np.testing.assert_array_equal(sample.gt_ids, truth.scannet200_gt_ids)
        np.testing.assert_array_equal(sample_v2.gt_ids, np.where(truth.instance > 0,
                                                                 truth.nyu40 * 1000 + truth.instance, 0))
        # Targets: every instance of a ScanNet200 instance class, classes as raw ids; no wall/floor/void ones.
        classes = sorted(int(data.thing_class_ids[c]) for c in sample.targets.instance_class)
        expected = sorted(int(g) // 1000 for g in np.unique(truth.scannet200_gt_ids) if g // 1000 not in (0, 1, 3))
        assert classes == expected


def test_folder_without_scannet200_labels_is_refused_with_the_fix(release, tmp_path):
    _, out = release
    old = tmp_path / "old"
    shutil.copytree(out, old)
    manifest = json.loads((old / "train" / "manifest.json").read_text())
    for entry in manifest["scenes"].values():
        del entry["gt200_file"]
    (old / "train" / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(DatasetConfigError, match="no ScanNet200 labels.*re-run `pointformer preprocess scannet"):
        PreprocessedDataset(old, "train", expected_dataset="scannet200")
    PreprocessedDataset(old, "train", expected_dataset="scannet")  # ScanNet v2 still reads it


def test_short_scannet200_training_learns_and_validates_with_the_scannet200_protocol(release, tmp_path):
    torch.set_num_threads(1)
    _, out = release
    cfg = compose_config([
        "data=scannet200", f"data.root={out}", "data.color_mean=null", "data.color_std=null", "data.cache=true",
        f"run_dir={tmp_path / 'run'}", "trainer.progress=false", "trainer.tensorboard=false",
        "trainer.num_workers=0", "data.limit_train=1", "data.limit_val=1", "trainer.epochs=10",
        "trainer.batch_size=1", "trainer.lr=3e-3", "trainer.pct_start=0.05", "trainer.val_every_epochs=10",
        "trainer.log_every=1", "data.augment=null"])
    assert cfg.model.num_classes == 198
    result = run_training(cfg)
    losses = [r["loss"] for r in read_metrics(tmp_path / "run" / "metrics.jsonl", "train")]
    assert len(losses) == 10 and result.step == 10 and np.isfinite(losses).all()
    assert np.mean(losses[-3:]) < 0.8 * np.mean(losses[:3]), losses
    val = read_metrics(tmp_path / "run" / "metrics.jsonl", "val")
    assert len(val) == 1 and {"map", "map50", "map25"} <= set(val[0])
    assert "sofa chair" in val[0]["table"] or "office chair" in val[0]["table"]  # the 198-class table
