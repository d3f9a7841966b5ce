"""Submission writer -> validator round trip, and every kind of broken submission caught."""
from __future__ import annotations

import zipfile
from pathlib import Path

import numpy as np
import pytest
from plyfile import PlyData, PlyElement

from pointformer.evaluation import ScenePrediction, SegmentMasks, evaluate_folders, evaluate_scenes
from pointformer.export import validate_submission, write_prediction_folder, write_submission
from pointformer.cli.submission import validate_main

SCENES = {"scene0707_00": 700, "scene0708_00": 450, "scene0709_00": 1200}


def _write_mesh(path: Path, num_vertices: int, seed: int) -> None:
    """A ScanNet-layout mesh: binary little-endian, x y z float32 + red green blue alpha uchar, faces."""
    rng = np.random.default_rng(seed)
    vertex = np.zeros(num_vertices, dtype=[("x", "<f4"), ("y", "<f4"), ("z", "<f4"), ("red", "u1"),
                                           ("green", "u1"), ("blue", "u1"), ("alpha", "u1")])
    for axis in "xyz":
        vertex[axis] = rng.random(num_vertices, dtype=np.float32)
    vertex["alpha"] = 255
    faces = np.zeros(num_vertices // 2, dtype=[("vertex_indices", "i4", (3,))])
    faces["vertex_indices"] = rng.integers(0, num_vertices, (num_vertices // 2, 3))
    path.parent.mkdir(parents=True, exist_ok=True)
    PlyData([PlyElement.describe(vertex, "vertex"), PlyElement.describe(faces, "face")],
            byte_order="<").write(str(path))


@pytest.fixture
def scans(tmp_path) -> Path:
    root = tmp_path / "scans_test"
    for i, (name, n) in enumerate(SCENES.items()):
        _write_mesh(root / name / f"{name}_vh_clean_2.ply", n, i)
    return root


def _predictions(seed: int = 0) -> dict[str, ScenePrediction]:
    rng = np.random.default_rng(seed)
    out = {}
    for name, n in SCENES.items():
        m = int(rng.integers(3, 7))
        masks = rng.random((m, n)) < 0.2
        out[name] = ScenePrediction(masks, rng.choice([3, 5, 39], m), rng.random(m).astype(np.float32))
    return out


def _rewrite_zip(src: Path, dst: Path, edit) -> None:
    """Copy a zip entry by entry through ``edit(name, data) -> list[(name, data)]``."""
    with zipfile.ZipFile(src) as zin, zipfile.ZipFile(dst, "w", zipfile.ZIP_DEFLATED) as zout:
        for info in zin.infolist():
            if info.is_dir():
                continue
            for name, data in edit(info.filename, zin.read(info.filename)):
                zout.writestr(name, data)


@pytest.fixture
def good_zip(tmp_path) -> Path:
    return write_submission(tmp_path / "submission.zip", _predictions())


def test_writer_layout_and_validator_round_trip(good_zip, scans, capsys):
    with zipfile.ZipFile(good_zip) as zf:
        names = zf.namelist()
        assert sorted(n for n in names if "/" not in n) == [f"{s}.txt" for s in SCENES]
        first = zf.read("scene0707_00.txt").decode().splitlines()[0]
        rel, cls, conf = first.split(" ")
        assert rel == "predicted_masks/scene0707_00_000.txt" and cls in {"3", "5", "39"} and 0 <= float(conf) <= 1
        mask = zf.read(rel).decode().splitlines()
        assert len(mask) == SCENES["scene0707_00"] and set(mask) <= {"0", "1"}
    report = validate_submission(good_zip, scans)
    assert report.ok, [str(p) for p in report.problems]
    assert report.scene_files == 3 and report.masks_checked == sum(p.num_masks for p in _predictions().values())
    assert validate_main([str(good_zip), "--scans", str(scans)]) == 0
    assert "OK: ready to upload" in capsys.readouterr().out


def test_written_masks_and_scores_read_back_exactly(tmp_path):
    preds = _predictions(3)
    write_prediction_folder(tmp_path / "pred", preds)
    gts = {}
    (tmp_path / "gt").mkdir()
    rng = np.random.default_rng(1)
    for name, n in SCENES.items():
        gt = np.repeat(rng.choice([3001, 5002, 39003, 0, 1004], 10), n // 10 + 1)[:n]
        gts[name] = gt
        (tmp_path / "gt" / f"{name}.txt").write_text("".join(f"{v}\n" for v in gt))
    from_files = evaluate_folders(tmp_path / "pred", tmp_path / "gt")
    in_memory = evaluate_scenes(list(gts.values()), list(preds.values()))
    np.testing.assert_array_equal(from_files.ap_matrix, in_memory.ap_matrix)
    assert np.isfinite(in_memory.ap_matrix).any()


def test_segment_masks_are_written_dense(tmp_path):
    seg = np.repeat(np.arange(10), 45)  # 450 vertices = scene0708_00
    sm = np.zeros((2, 10), bool)
    sm[0, :3] = sm[1, 5:] = True
    pred = ScenePrediction(SegmentMasks(sm, seg), np.array([3, 5]), np.array([0.5, 0.25]))
    out = write_submission(tmp_path / "s.zip", {"scene0708_00": pred})
    with zipfile.ZipFile(out) as zf:
        m1 = np.array(zf.read("predicted_masks/scene0708_00_001.txt").decode().split(), int)
        assert zf.read("scene0708_00.txt").decode() == ("predicted_masks/scene0708_00_000.txt 3 0.5\n"
                                                         "predicted_masks/scene0708_00_001.txt 5 0.25\n")
    np.testing.assert_array_equal(m1, sm[1, seg].astype(int))


def test_writer_rejects_non_benchmark_class_nan_score_and_bad_names(tmp_path):
    masks = np.ones((2, 10), bool)
    with pytest.raises(ValueError, match=r"scene0000_00: class ids \[1\] are not scannet benchmark ids"):
        write_submission(tmp_path / "a.zip", {"scene0000_00": ScenePrediction(masks, np.array([3, 1]), np.ones(2))})
    with pytest.raises(ValueError, match="confidence of instance 1 is nan"):
        write_submission(tmp_path / "a.zip", {"scene0000_00": ScenePrediction(masks, np.array([3, 4]),
                                                                              np.array([0.5, np.nan]))})
    with pytest.raises(ValueError, match="plain file name"):
        write_submission(tmp_path / "a.zip", {"../x": ScenePrediction(masks, np.array([3, 4]), np.ones(2))})
    assert not (tmp_path / "a.zip").exists()                  # nothing half-written under the target name
    assert not list(tmp_path.glob(".a.zip*"))                 # and no temp file left behind


def test_prediction_folder_refuses_to_mix_with_an_old_run(tmp_path):
    preds = _predictions()
    write_prediction_folder(tmp_path / "pred", preds)
    (tmp_path / "pred" / "scene9999_00.txt").write_text("")  # a stale scene from an earlier run
    with pytest.raises(ValueError, match="not empty"):
        write_prediction_folder(tmp_path / "pred", preds)
    write_prediction_folder(tmp_path / "pred", preds, overwrite=True)
    assert not (tmp_path / "pred" / "scene9999_00.txt").exists()
    assert len(list((tmp_path / "pred").glob("*.txt"))) == 3


def _problems(zip_path: Path, scans: Path) -> list[str]:
    return [str(p) for p in validate_submission(zip_path, scans).problems]


def test_extra_folder_level_is_caught_and_the_rest_still_checked(good_zip, scans, tmp_path):
    bad = tmp_path / "bad.zip"
    _rewrite_zip(good_zip, bad, lambda n, d: [(f"submission/{n}", d)])
    problems = _problems(bad, scans)
    assert len(problems) == 1 and "must be at the archive ROOT" in problems[0] and problems[0].startswith("submission/")


def test_wrong_vertex_count_is_caught(good_zip, scans, tmp_path):
    bad = tmp_path / "bad.zip"
    target = "predicted_masks/scene0708_00_001.txt"
    _rewrite_zip(good_zip, bad, lambda n, d: [(n, d + b"0\n" if n == target else d)])
    problems = _problems(bad, scans)
    assert problems == [f"{target}: 451 lines but the scene's mesh has 450 vertices; listed at scene0708_00.txt:2"]


def _edit_scene_line(good_zip: Path, bad: Path, scene: str, line: int, edit) -> None:
    def f(name, data):
        if name != f"{scene}.txt":
            return [(name, data)]
        lines = data.decode().splitlines()
        lines[line] = edit(lines[line])
        return [(name, ("\n".join(lines) + "\n").encode())]
    _rewrite_zip(good_zip, bad, f)


@pytest.mark.parametrize("edit, expected", [
    (lambda ln: "/" + ln, "is absolute"),
    (lambda ln: " ".join([ln.split(" ")[0], "2", ln.split(" ")[2]]), "class id 2 is not a scannet benchmark class id"),
    (lambda ln: ln.replace(" ", "  ", 1), "two consecutive spaces"),
    (lambda ln: " ".join(ln.split(" ")[:2] + ["nan"]), "confidence 'nan' is not finite"),
    (lambda ln: " ".join(ln.split(" ")[:2] + ["high"]), "confidence 'high' is not a number"),
    (lambda ln: ln.replace(" ", "\t"), "tab character"),
    (lambda ln: ln + " ", "leading or trailing space"),
    (lambda ln: "../" + ln, "points outside the archive"),
    (lambda ln: ln.replace("predicted_masks/", "masks/"), "is not in the archive"),
])
def test_each_broken_line_is_caught(good_zip, scans, tmp_path, edit, expected):
    bad = tmp_path / "bad.zip"
    _edit_scene_line(good_zip, bad, "scene0709_00", 1, edit)
    problems = _problems(bad, scans)
    assert any(p.startswith("scene0709_00.txt:2: ") and expected in p for p in problems), problems


def test_missing_scene_extra_file_and_bad_mask_values_are_all_reported_together(good_zip, scans, tmp_path, capsys):
    bad = tmp_path / "bad.zip"

    def f(name, data):
        if name == "scene0707_00.txt":
            return []                                              # missing scene
        if name == "predicted_masks/scene0708_00_000.txt":
            return [(name, data.replace(b"1\n", b"2\n", 3))]       # non-0/1 values
        if name == "scene0709_00.txt":
            return [(name, data), ("scene0001_00.txt", b""), ("README.md", b"hi")]  # not test scenes
        return [(name, data)]
    _rewrite_zip(good_zip, bad, f)
    problems = _problems(bad, scans)
    text = "\n".join(problems)
    assert "scene0707_00.txt: missing" in text
    assert "'scene0001_00' is not one of the 3 expected scenes" in text
    assert "README.md: unexpected file at the archive root" in text
    assert "is not 0 or 1 (3 such line(s))" in text
    assert len(problems) == 4
    assert validate_main([str(bad), "--scans", str(scans)]) == 1
    out = capsys.readouterr().out
    assert out.count("PROBLEM ") == 4 and "4 problem(s)" in out


def test_duplicate_mask_reference_and_missing_mesh(good_zip, scans, tmp_path):
    bad = tmp_path / "bad.zip"
    _edit_scene_line(good_zip, bad, "scene0707_00", 1, lambda ln: ln.replace("_001.txt", "_000.txt"))
    problems = _problems(bad, scans)
    assert any("is already used at scene0707_00.txt:1" in p for p in problems)
    (scans / "scene0709_00" / "scene0709_00_vh_clean_2.ply").unlink()
    problems = _problems(good_zip, scans)
    assert (len(problems) == 1 and "cannot check mask lengths" in problems[0]
            and "scene0709_00_vh_clean_2.ply" in problems[0])


def test_not_a_zip_and_bad_arguments(tmp_path, scans, capsys):
    fake = tmp_path / "fake.zip"
    fake.write_bytes(b"not a zip")
    assert "not a readable zip archive" in _problems(fake, scans)[0]
    assert validate_main([str(fake), "--scans", str(tmp_path / "nowhere")]) == 2
    assert "folder not found" in capsys.readouterr().err


def test_scene_list_defines_the_expected_scenes(good_zip, scans, tmp_path):
    lst = tmp_path / "scannetv2_test.txt"
    lst.write_text("scene0707_00\nscene0708_00\nscene0709_00\nscene0710_00\n")
    report = validate_submission(good_zip, scans, scene_list=lst)
    assert [str(p) for p in report.problems][0].startswith("scene0710_00.txt: missing")
    # warns that a ScanNet test split has 100 scenes
    assert any("100" in str(w) for w in report.warnings)


def test_validate_submission_through_the_pointformer_cli(good_zip, scans, capsys):
    from pointformer.cli import main as cli_main

    assert cli_main(["validate-submission", str(good_zip), "--scans", str(scans)]) == 0
    assert "OK: ready to upload" in capsys.readouterr().out


def test_scannet200_submission_carries_raw_ids_and_the_validator_checks_them(scans, tmp_path, capsys):
    rng = np.random.default_rng(3)
    raw_ids = np.array([2, 39, 1191])   # chair, cushion, mattress: ScanNet200 raw-category ids
    predictions = {name: ScenePrediction(rng.random((3, n)) < 0.2, raw_ids, rng.random(3))
                   for name, n in SCENES.items()}
    sub = write_submission(tmp_path / "s200.zip", predictions, dataset="scannet200")
    with zipfile.ZipFile(sub) as zf:
        assert zf.read("scene0707_00.txt").decode().splitlines()[2].split()[1] == "1191"
    report = validate_submission(sub, scans, dataset="scannet200")
    assert report.ok, report.problems
    assert any("the ScanNet test split has 100" in w.message for w in report.warnings)
    assert validate_main([str(sub), "--scans", str(scans), "--dataset", "scannet200"]) == 0
    # Under ScanNet v2 rules the raw ids are not benchmark ids (2 is nyu40 floor, 1191 is no nyu40 id).
    v2 = validate_submission(sub, scans)
    assert any("class id 1191 is not a scannet benchmark class id" in p.message for p in v2.problems)
    # A ScanNet v2 submission (nyu40 ids) validated as ScanNet200: 3 is floor, 5 is not one of the 200.
    capsys.readouterr()
    v2_zip = write_submission(tmp_path / "v2.zip", _predictions())
    assert validate_main([str(v2_zip), "--scans", str(scans), "--dataset", "scannet200", "--quiet"]) == 1
    out = capsys.readouterr().out
    assert "class id 3 is not a scannet200 benchmark class id (allowed: the 198 ids of class_set('scannet200')" in out
    # The writer refuses the stuff classes wall (1) and floor (3) under ScanNet200.
    stuff = {"scene0707_00": ScenePrediction(np.ones((1, 700), bool), np.array([1]), np.array([0.5]))}
    with pytest.raises(ValueError, match=r"class ids \[1\] are not scannet200 benchmark ids"):
        write_submission(tmp_path / "stuff.zip", stuff, dataset="scannet200")
    assert not (tmp_path / "stuff.zip").exists()
