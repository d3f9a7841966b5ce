"""`pointformer preprocess s3dis`: round trip with every defect kind, GT files, report, resume, failures, dataset."""
from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

from pointformer.cli.preprocess import preprocess_main
from pointformer.data.dataset import PreprocessedDataset
from pointformer.io.labels import S3DIS_NAMES
from pointformer.io.scene import Manifest, load_scene
from pointformer.preprocess.s3dis import REPORT_NAME, preprocess_s3dis
from pointformer.synthetic.s3dis import generate_s3dis


@pytest.fixture(scope="module")
def release(tmp_path_factory):
    return generate_s3dis(tmp_path_factory.mktemp("raw"), num_rooms=6, seed=1, points_per_room=2500, defects=True,
                          areas=(1, 5))


@pytest.fixture(scope="module")
def processed(release, tmp_path_factory):
    out = tmp_path_factory.mktemp("out")
    return out, preprocess_s3dis(release.release.parent, out, workers=2)


def _same_up_to_renumbering(gt: np.ndarray, expected: np.ndarray) -> bool:
    """Equal classes and a one-to-one map between instance ids (gt ids: class*1000 + instance)."""
    if gt.shape != expected.shape or not np.array_equal(gt // 1000, expected // 1000):
        return False
    pairs = np.unique(np.stack([gt, expected], 1), axis=0)
    return len(np.unique(pairs[:, 0])) == len(pairs) == len(np.unique(pairs[:, 1]))


def test_round_trip_gt_equals_raw_files(release, processed):
    out, summary = processed
    assert sorted(summary.done) == sorted(release.rooms) and not summary.skipped
    for sid, room in release.rooms.items():
        gt = np.loadtxt(out / "gt" / room.area / f"{sid}.txt", dtype=np.int64)
        assert _same_up_to_renumbering(gt, room.gt_ids.astype(np.int64)), sid
        scene = load_scene(out / room.area / f"{room.room}.npz")
        assert scene.scene_id == sid and np.array_equal(scene.gt_ids, gt)
        assert np.array_equal(scene.semantic, room.semantic) and scene.instance.max() == len(room.files)
        first = (room.folder / "Annotations" / room.files[0]).read_bytes().split(b"\n")[0].split()[:3]
        assert np.allclose(scene.xyz[0], [float(v) for v in first], atol=1e-5)  # as written: not re-centred


def test_unreadable_room_named_others_finished(release, processed):
    out, summary = processed
    assert list(summary.failed) == ["Area_1_storage_99"] and not summary.ok
    assert "Area_1/storage_99" in summary.failed["Area_1_storage_99"]
    assert "Annotations" in summary.failed["Area_1_storage_99"]
    report = json.loads((out / REPORT_NAME).read_text())
    assert list(report["failed"]) == ["Area_1_storage_99"]


def test_every_repair_and_dropped_line_reported_by_file_and_line(release, processed):
    out, _ = processed
    report = json.loads((out / REPORT_NAME).read_text())
    issues = {(i["kind"], i["file"], i["line"]) for v in report["issues"].values() for i in v}
    expected = {
        "control_byte_in_number": "repaired", "nul_fused_colours": "repaired", "unrepairable_line": "dropped",
        "duplicate_file": "duplicate_ignored", "room_file_name": "room_file_name", "stairs": "class_alias",
        "crlf": "crlf", "empty_file": "empty_file", "count_mismatch": "count_mismatch",
    }
    for d in release.defects:
        if d.kind in expected:
            assert (expected[d.kind], d.file, d.line) in issues, d
    # Nothing silently lost: annotated lines = points kept + dropped lines (the two injected garbage lines
    # are extra lines, so every generated point is kept).
    total = sum(r.semantic.shape[0] for r in release.rooms.values())
    assert sum(Manifest.load(out / a / "manifest.json").scenes[s]["num_points"]
               for a in ("Area_1", "Area_5") for s in Manifest.load(out / a / "manifest.json").scenes) == total


def test_area_loads_as_a_split(release, processed):
    out, _ = processed
    ds = PreprocessedDataset(out, "Area_5", expected_dataset="s3dis")
    assert ds.class_names == list(S3DIS_NAMES) and ds.thing_class_ids == list(range(1, 14))
    sample = ds[0]
    assert sample.gt_ids is not None and sample.num_points > 0
    assert set(ds.scene_ids) == {s for s in release.rooms if s.startswith("Area_5_")}


def test_resume_skips_finished_rooms_and_redoes_changed(release, tmp_path):
    raw = tmp_path / "raw"
    shutil.copytree(release.release.parent, raw)
    shutil.rmtree(raw / release.release.name / "Area_1" / "storage_99")
    out = tmp_path / "out"
    first = preprocess_s3dis(raw, out)
    assert first.ok and len(first.done) == len(release.rooms)
    again = preprocess_s3dis(raw, out)
    assert not again.done and len(again.skipped) == len(release.rooms)
    room = next(iter(release.rooms.values()))
    with open(raw / release.release.name / room.area / room.room / "Annotations" / room.files[0], "ab") as f:
        f.write(b"0.5 0.5 0.5 1 2 3\n")
    third = preprocess_s3dis(raw, out)
    assert third.done == [room.scene_id] and len(third.skipped) == len(release.rooms) - 1
    assert load_scene(out / room.area / f"{room.room}.npz").num_points == room.semantic.shape[0] + 1
    knn = Manifest.load(out / room.area / "manifest.json").scenes[room.scene_id]
    cells = preprocess_s3dis(raw, out, superpoints="cells", cell=0.1)  # another superpoint method: redone
    assert len(cells.done) == len(release.rooms) and not cells.skipped
    entry = Manifest.load(out / room.area / "manifest.json").scenes[room.scene_id]
    assert entry["superpoints"] == "cells" and knn["superpoints"] == "knn"
    assert entry["num_superpoints"] > knn["num_superpoints"]


def test_cli_exit_status(release, tmp_path, capsys):
    assert preprocess_main(["s3dis", str(release.release), str(tmp_path / "o"), "--workers", "1"]) == 1
    assert "FAILED room Area_1/storage_99" in capsys.readouterr().out
    assert preprocess_main(["s3dis", str(tmp_path / "nothing"), str(tmp_path / "o2")]) == 2
