"""`pointformer preprocess scannet`: round trip, GT files, splits, defects, resume, failures, exit status."""
from __future__ import annotations

import json
import logging
import shutil

import numpy as np
import pytest

from pointformer.io.labels import SCANNET_SEMANTIC_IDS, SCANNET_SEMANTIC_NAMES
from pointformer.io.scene import Manifest, load_scene
from pointformer.preprocess import scannet as P
from pointformer.cli.preprocess import preprocess_main as cli_main
from pointformer.synthetic.scannet import generate_scannet


@pytest.fixture(scope="module")
def release(tmp_path_factory):
    root = tmp_path_factory.mktemp("raw")
    return generate_scannet(root, num_scenes=3, num_test_scenes=1, seed=1, target_vertices=3000, defects=True)


@pytest.fixture(scope="module")
def processed(release, tmp_path_factory):
    out = tmp_path_factory.mktemp("out")
    summary = P.preprocess_scannet(release.root, out, workers=1, progress=False)
    return out, summary


def _copy_release(release, tmp_path):
    root = tmp_path / "raw"
    shutil.copytree(release.root, root)
    return root


def test_round_trip_recovers_generated_objects_vertex_for_vertex(release, processed):
    out, summary = processed
    assert summary.ok and len(summary.done) == 4
    lookup = {nyu: i for i, nyu in enumerate(SCANNET_SEMANTIC_IDS)}
    for sid in release.splits["train"] + release.splits["val"]:
        truth = release.scenes[sid]
        scene = load_scene(out / truth.split / f"{sid}.npz")
        assert scene.num_points == truth.num_vertices == scene.num_mesh_vertices
        np.testing.assert_array_equal(scene.instance, truth.instance)
        expected = np.array([lookup.get(int(n), -1) for n in truth.nyu40], dtype=np.int16)
        np.testing.assert_array_equal(scene.semantic, expected)
        # Superpoints are contiguous, and no superpoint mixes two objects.
        sp = scene.superpoint
        assert sp.min() == 0 and len(np.unique(sp)) == sp.max() + 1
        for s in np.unique(sp):
            assert len(np.unique(truth.instance[sp == s])) == 1
        # Axis alignment applied: the floor lies at z = 0 and the room starts at x = y = 0.
        floor = truth.nyu40 == 2
        assert abs(float(np.median(scene.xyz[floor, 2]))) < 0.01
        assert np.all(np.abs(scene.xyz[:, :2].min(0)) < 0.05)
        np.testing.assert_allclose(np.linalg.norm(scene.normals, axis=1), 1.0, atol=1e-4)


def test_gt_files_use_the_official_format(release, processed):
    out, _ = processed
    for sid in release.splits["train"] + release.splits["val"]:
        truth = release.scenes[sid]
        path = out / "gt" / truth.split / f"{sid}.txt"
        lines = path.read_text().splitlines()
        assert len(lines) == truth.num_vertices and all(line.strip().isdigit() for line in lines)
        gt = np.array(lines, dtype=np.int64)
        expected = np.where(truth.instance > 0, truth.nyu40.astype(np.int64) * 1000 + truth.instance, 0)
        np.testing.assert_array_equal(gt, expected)
        assert (gt == 0).any() and (gt // 1000 == 1).any()  # unannotated clutter and walls occur
        np.testing.assert_array_equal(load_scene(out / truth.split / f"{sid}.npz").gt_ids, gt)
    assert not (out / "gt" / "test").exists()


def test_splits_and_manifests(release, processed):
    out, _ = processed
    for split in ("train", "val", "test"):
        manifest = Manifest.load(out / split / "manifest.json")
        assert sorted(manifest.scenes) == sorted(release.splits[split])
        assert manifest.class_names == list(SCANNET_SEMANTIC_NAMES) and manifest.class_ids == list(SCANNET_SEMANTIC_IDS)
        assert manifest.thing_classes == list(range(2, 20))
        for sid, entry in manifest.scenes.items():
            assert entry["file"] == f"{sid}.npz" and entry["num_points"] == release.scenes[sid].num_vertices
            assert f"{sid}_vh_clean_2.ply" in entry["source_sha1"]
            if split != "test":
                assert entry["num_instances"] == len(release.scenes[sid].objects)
                assert "scannetv2-labels.combined.tsv" in entry["source_sha1"]
    test_scene = load_scene(out / "test" / f"{release.splits['test'][0]}.npz")
    assert (test_scene.semantic == -1).all() and (test_scene.instance == 0).all() and test_scene.gt_ids is None
    assert test_scene.superpoint.max() > 5  # computed by the segmentator


def test_defects_are_repaired_with_notes(release, processed):
    out, summary = processed
    train = Manifest.load(out / "train" / "manifest.json")
    notes = train.scenes["scene0000_00"]["notes"]
    assert any("invalid nyu40 label values" in n for n in notes)
    assert any("repeat earlier groups" in n for n in train.scenes["scene0001_00"]["notes"])
    assert set(summary.notes) == {"scene0000_00", "scene0001_00"}


def test_defect_notes_are_logged(release, tmp_path, caplog):
    with caplog.at_level(logging.WARNING):
        P.preprocess_scannet(release.root, tmp_path / "o", splits=["train"], progress=False)
    messages = [r.getMessage() for r in caplog.records]
    assert sum("scene scene0000_00" in m and "invalid nyu40" in m for m in messages) == 1  # once, not twice
    assert any("scene scene0001_00" in m and "repeat earlier groups" in m for m in messages)


def test_without_split_files_everything_goes_to_train(release, tmp_path, caplog):
    root = _copy_release(release, tmp_path)
    for name in ("scannetv2_train.txt", "scannetv2_val.txt", "scannetv2_test.txt"):
        (root / name).unlink()
    with caplog.at_level(logging.WARNING):
        summary = P.preprocess_scannet(root, tmp_path / "o", splits=["train", "val"], progress=False)
    assert summary.ok and len(summary.done) == 3
    assert sorted(Manifest.load(tmp_path / "o" / "train" / "manifest.json").scenes) == [
        "scene0000_00", "scene0001_00", "scene0002_00"
    ]
    assert not (tmp_path / "o" / "val").exists()
    assert any("go to the train split" in r.getMessage() for r in caplog.records)


def test_split_file_oddities_are_reported(release, tmp_path, caplog):
    root = _copy_release(release, tmp_path)
    (root / "scannetv2_train.txt").write_text("scene0000_00\nscene0999_00\n")  # scene0001_00 unlisted
    plan = P.plan_splits(root)
    assert list(plan.scenes["train"]) == ["scene0000_00"] and list(plan.scenes["val"]) == ["scene0002_00"]
    assert any("missing under scans/" in n for n in plan.notes)
    assert any("in no split file" in n for n in plan.notes)
    (root / "scannetv2_val.txt").write_text("scene0000_00\n")
    with pytest.raises(ValueError, match="both the train and the val"):
        P.plan_splits(root)


def test_resume_skips_verified_scenes_and_redoes_changed_ones(release, tmp_path):
    root = _copy_release(release, tmp_path)
    out = tmp_path / "o"
    first = P.preprocess_scannet(root, out, progress=False)
    assert len(first.done) == 4
    again = P.preprocess_scannet(root, out, progress=False)
    assert again.done == [] and len(again.skipped) == 4
    # A changed source, a damaged output and a missing GT file are each detected and redone.
    agg = root / "scans" / "scene0000_00" / "scene0000_00.aggregation.json"
    data = json.loads(agg.read_text())
    data["appId"] = "edited"
    agg.write_text(json.dumps(data))
    (out / "val" / "scene0002_00.npz").write_bytes(b"not a zip")
    (out / "gt" / "train" / "scene0001_00.txt").unlink()
    third = P.preprocess_scannet(root, out, progress=False)
    assert sorted(third.done) == ["scene0000_00", "scene0001_00", "scene0002_00"]
    assert third.skipped == [release.splits["test"][0]]
    assert load_scene(out / "val" / "scene0002_00.npz").num_points == release.scenes["scene0002_00"].num_vertices


def test_interrupted_run_resumes_without_half_written_scenes(release, tmp_path, monkeypatch):
    root = _copy_release(release, tmp_path)
    out = tmp_path / "o"
    real_save = P.save_scene
    calls = {"n": 0}

    def interrupting_save(scene, path):
        calls["n"] += 1
        if calls["n"] == 2:
            # Simulate a kill in the middle of writing: a temp file exists, then the run stops.
            (path.parent / f".{path.name}.abc123.tmp").write_bytes(b"partial")
            raise KeyboardInterrupt
        real_save(scene, path)

    monkeypatch.setattr(P, "save_scene", interrupting_save)
    with pytest.raises(KeyboardInterrupt):
        P.preprocess_scannet(root, out, progress=False)
    manifest = Manifest.load(out / "train" / "manifest.json")
    assert list(manifest.scenes) == ["scene0000_00"]          # the finished scene was recorded
    assert not (out / "train" / "scene0001_00.npz").exists()  # no half-written scene under its name
    monkeypatch.setattr(P, "save_scene", real_save)
    resumed = P.preprocess_scannet(root, out, progress=False)
    assert resumed.skipped == ["scene0000_00"] and len(resumed.done) == 3
    assert not list((out / "train").glob(".*.tmp"))           # leftovers of the interrupted run removed


def test_one_bad_scene_does_not_stop_the_others(release, tmp_path, capsys):
    root = _copy_release(release, tmp_path)
    mesh = root / "scans" / "scene0001_00" / "scene0001_00_vh_clean_2.ply"
    mesh.write_bytes(mesh.read_bytes()[:2000])
    out = tmp_path / "o"
    code = cli_main(["scannet", str(root), str(out), "--workers", "2", "--no-progress", "-q"])
    assert code == 1
    stdout = capsys.readouterr().out
    assert "3 done" in stdout and "1 failed" in stdout
    assert "scene0001_00" in stdout and "scene0001_00_vh_clean_2.ply" in stdout and "truncated" in stdout
    assert "scene0001_00" not in Manifest.load(out / "train" / "manifest.json").scenes
    assert (out / "train" / "scene0000_00.npz").exists() and (out / "val" / "scene0002_00.npz").exists()


def test_parallel_workers_give_identical_output(release, processed, tmp_path):
    out1, _ = processed
    out2 = tmp_path / "o"
    assert cli_main(["scannet", str(release.root), str(out2), "--workers", "2", "--no-progress", "-q"]) == 0
    for split in ("train", "val", "test"):
        for path in sorted((out1 / split).glob("*.npz")):
            a, b = load_scene(path), load_scene(out2 / split / path.name)
            for name in ("xyz", "rgb", "normals", "superpoint", "semantic", "instance"):
                np.testing.assert_array_equal(getattr(a, name), getattr(b, name))


def test_cli_usage_errors(tmp_path, capsys):
    assert cli_main(["scannet", str(tmp_path / "nowhere"), str(tmp_path / "o"), "--no-progress"]) == 2
    assert "not found" in capsys.readouterr().err
    (tmp_path / "raw" / "scans").mkdir(parents=True)
    assert cli_main(["scannet", str(tmp_path / "raw"), str(tmp_path / "o"), "--no-progress"]) == 2
    assert "no scene folders" in capsys.readouterr().err
    (tmp_path / "raw" / "scans" / "scene0000_00").mkdir(parents=True)
    assert cli_main(["scannet", str(tmp_path / "raw"), str(tmp_path / "o"), "--no-progress"]) == 2
    assert "scannetv2-labels.combined.tsv" in capsys.readouterr().err
    assert cli_main(["scannet", str(tmp_path / "raw"), str(tmp_path / "o"), "--splits", "dev"]) == 2
    with pytest.raises(SystemExit):
        cli_main(["scannet", str(tmp_path / "raw"), str(tmp_path / "o"), "--workers", "0"])


def test_only_selected_scenes(release, tmp_path):
    summary = P.preprocess_scannet(release.root, tmp_path / "o", scenes=["scene0002_00"], progress=False)
    assert summary.done == ["scene0002_00"]


@pytest.mark.skipif("fork" not in __import__("multiprocessing").get_all_start_methods(),
                    reason="the patched function reaches the workers only through fork")
def test_a_dying_worker_fails_its_scenes_instead_of_hanging(release, tmp_path, monkeypatch):
    import os
    root = _copy_release(release, tmp_path)
    real = P.process_scene

    def dies_on_one_scene(task, *args, **kwargs):
        if task.scene_id == "scene0001_00":
            os._exit(1)  # like the kernel's OOM killer
        return real(task, *args, **kwargs)

    monkeypatch.setattr(P, "process_scene", dies_on_one_scene)  # inherited by the forked workers
    summary = P.preprocess_scannet(root, tmp_path / "o", workers=2, progress=False)
    assert "scene0001_00" in summary.failed and "worker process died" in summary.failed["scene0001_00"]
    monkeypatch.setattr(P, "process_scene", real)
    again = P.preprocess_scannet(root, tmp_path / "o", workers=2, progress=False)
    assert again.ok and "scene0001_00" in again.done


@pytest.mark.slow
def test_scannet_sized_round_trip(tmp_path):
    """150k-vertex scenes (ScanNet's typical size) through generation and preprocessing, 2 workers."""
    ds = generate_scannet(tmp_path / "raw", num_scenes=2, num_test_scenes=1, seed=4, target_vertices=150_000)
    summary = P.preprocess_scannet(ds.root, tmp_path / "out", workers=2, progress=False)
    assert summary.ok and len(summary.done) == 3
    for sid, truth in ds.scenes.items():
        scene = load_scene(tmp_path / "out" / truth.split / f"{sid}.npz")
        assert 120_000 < scene.num_points == truth.num_vertices < 180_000
        np.testing.assert_array_equal(scene.instance, truth.instance)
        assert 200 < scene.superpoint.max() + 1 < 5000  # ScanNet scenes: ~1k-3k superpoints


def test_changed_split_files_never_leave_a_scene_in_two_splits(release, tmp_path, caplog):
    root = _copy_release(release, tmp_path)
    out = tmp_path / "o"
    assert P.preprocess_scannet(root, out, splits=["train", "val"], progress=False).ok
    # scene0001_00 moves from train to val.
    (root / "scannetv2_train.txt").write_text("scene0000_00\n")
    (root / "scannetv2_val.txt").write_text("scene0001_00\nscene0002_00\n")
    with caplog.at_level(logging.WARNING):
        summary = P.preprocess_scannet(root, out, splits=["train", "val"], progress=False)
    assert summary.done == ["scene0001_00"] and sorted(summary.skipped) == ["scene0000_00", "scene0002_00"]
    assert sorted(Manifest.load(out / "train" / "manifest.json").scenes) == ["scene0000_00"]
    assert sorted(Manifest.load(out / "val" / "manifest.json").scenes) == ["scene0001_00", "scene0002_00"]
    assert not (out / "train" / "scene0001_00.npz").exists()
    assert not (out / "gt" / "train" / "scene0001_00.txt").exists()
    assert any("no longer in the train split" in r.getMessage() for r in caplog.records)
    # Without split files everything is train: the val split is emptied, not left overlapping.
    for name in ("scannetv2_train.txt", "scannetv2_val.txt"):
        (root / name).unlink()
    P.preprocess_scannet(root, out, splits=["train", "val"], progress=False)
    assert Manifest.load(out / "val" / "manifest.json").scenes == {}
    assert len(Manifest.load(out / "train" / "manifest.json").scenes) == 3
