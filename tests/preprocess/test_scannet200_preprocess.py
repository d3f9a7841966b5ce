"""ScanNet200 labels from `preprocess scannet`: GT round trip, upgrade of older folders, bad label maps."""
from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

from pointformer.io.labels import SCANNET200_IDS
from pointformer.io.scannet import ScanNetFormatError, read_scannet200_map
from pointformer.io.scene import Manifest, load_scene, save_scene
from pointformer.preprocess.scannet import preprocess_scannet
from pointformer.synthetic.scannet import SCANNET200_VOID_CATEGORIES, generate_scannet


@pytest.fixture(scope="module")
def release(tmp_path_factory):
    root = tmp_path_factory.mktemp("raw200")
    return generate_scannet(root, num_scenes=6, num_test_scenes=1, seed=0, target_vertices=2500,
                            label_set="scannet200")


@pytest.fixture(scope="module")
def preprocessed(release, tmp_path_factory):
    out = tmp_path_factory.mktemp("out200")
    summary = preprocess_scannet(release.root, out, workers=1, progress=False)
    assert summary.ok and len(summary.done) == 7
    return out


def _read_gt(path):
    return np.loadtxt(path, dtype=np.int64).reshape(-1)


def test_gt200_round_trip(release, preprocessed):
    void_objects, stuff, classes = 0, set(), set()
    for split in ("train", "val"):
        manifest = Manifest.load(preprocessed / split / "manifest.json")
        for sid in release.splits[split]:
            truth = release.scenes[sid]
            entry = manifest.scenes[sid]
            assert entry["gt200_file"] == f"gt200/{split}/{sid}.txt"
            gt200 = _read_gt(preprocessed / entry["gt200_file"])
            np.testing.assert_array_equal(gt200, truth.scannet200_gt_ids)
            # ScanNet v2 GT unchanged: nyu40 * 1000 + instance.
            np.testing.assert_array_equal(_read_gt(preprocessed / entry["gt_file"]),
                                          np.where(truth.instance > 0, truth.nyu40 * 1000 + truth.instance, 0))
            scene = load_scene(preprocessed / split / f"{sid}.npz")
            np.testing.assert_array_equal(scene.scannet200_gt_ids(), gt200)
            expected = np.where(np.isin(truth.raw_id, SCANNET200_IDS) & (truth.instance > 0), truth.raw_id, 0)
            np.testing.assert_array_equal(scene.semantic200, expected)
            void_objects += len({int(i) for i in np.unique(truth.instance[(truth.instance > 0) & (gt200 == 0)])})
            stuff |= {int(c) for c in np.unique(gt200 // 1000)} & {1, 3}
            classes |= {int(c) for c in np.unique(gt200 // 1000)}
    assert void_objects > 0, f"no annotated object outside the 200 classes ({sorted(SCANNET200_VOID_CATEGORIES)})"
    assert stuff == {1, 3} and len(classes) > 20
    test_id = release.splits["test"][0]
    test_scene = load_scene(preprocessed / "test" / f"{test_id}.npz")
    assert test_scene.semantic200 is None and not (preprocessed / "gt200" / "test").exists()


def test_rerun_upgrades_a_folder_without_scannet200(release, preprocessed, tmp_path):
    out = tmp_path / "old"
    shutil.copytree(preprocessed, out)
    before = {}
    # Make it look like a folder written before ScanNet200 support: no semantic200, no gt200, no gt200_file.
    shutil.rmtree(out / "gt200")
    for split in ("train", "val"):
        manifest_path = out / split / "manifest.json"
        manifest = json.loads(manifest_path.read_text())
        for sid, entry in manifest["scenes"].items():
            del entry["gt200_file"]
            scene = load_scene(out / split / f"{sid}.npz")
            scene.semantic200 = None
            save_scene(scene, out / split / f"{sid}.npz")
            before[sid] = scene
        manifest_path.write_text(json.dumps(manifest))
    summary = preprocess_scannet(release.root, out, workers=1, progress=False)
    annotated = release.splits["train"] + release.splits["val"]
    assert sorted(summary.done) == sorted(annotated) and summary.skipped == release.splits["test"]
    for sid in annotated:
        truth = release.scenes[sid]
        np.testing.assert_array_equal(_read_gt(out / "gt200" / truth.split / f"{sid}.txt"), truth.scannet200_gt_ids)
        scene = load_scene(out / truth.split / f"{sid}.npz")
        for name in ("xyz", "rgb", "normals", "superpoint", "semantic", "instance", "gt_ids"):
            np.testing.assert_array_equal(getattr(scene, name), getattr(before[sid], name))
    # Only one scene lacks its gt200 file: only that scene is redone.
    (out / "gt200" / "val" / f"{release.splits['val'][0]}.txt").unlink()
    summary = preprocess_scannet(release.root, out, workers=1, progress=False)
    assert summary.done == [release.splits["val"][0]] and len(summary.skipped) == 6
    summary = preprocess_scannet(release.root, out, workers=1, progress=False)
    assert summary.done == [] and len(summary.skipped) == 7


@pytest.mark.parametrize("row, message", [
    ("x\tchair\tchair\t1\t5", "line 3: id 'x' is not an integer"),
    ("0\tchair\tchair\t1\t5", "line 3: id 0 of raw category 'chair' must be a positive integer"),
    ("7\twall\twall\t1\t1", "line 3: raw category 'wall' has id 7 but line 2 gives it id 1"),
])
def test_bad_label_map_ids_name_the_file(release, tmp_path, row, message):
    tsv = tmp_path / "labels.tsv"
    tsv.write_text("id\traw_category\tcategory\tcount\tnyu40id\n1\twall\twall\t1\t1\n" + row + "\n")
    with pytest.raises(ScanNetFormatError, match=message) as info:
        read_scannet200_map(tsv)
    assert str(tsv) in str(info.value)
    with pytest.raises(ValueError, match="labels.tsv"):
        preprocess_scannet(release.root, tmp_path / "out", label_map_path=tsv, progress=False)


def test_label_map_without_id_column_is_refused(release, tmp_path):
    tsv = tmp_path / "labels.tsv"
    tsv.write_text("raw_category\tnyu40id\nwall\t1\n")
    with pytest.raises(ValueError, match="labels.tsv: label map needs tab-separated columns 'raw_category' and 'id'"):
        preprocess_scannet(release.root, tmp_path / "out", label_map_path=tsv, progress=False)
