"""The official file contract: folders written by the writer, the CLI, and clear errors on bad input."""
from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from pointformer.evaluation import ScenePrediction, evaluate_folders, evaluate_scenes, read_gt_ids, write_gt_file
from pointformer.cli.evaluate import evaluate_main
from pointformer.evaluation.files import EvaluationInputError, parse_int_lines
from pointformer.export import write_prediction_folder

REPO = Path(__file__).resolve().parents[2]


def _random_scenes(seed: int, n: int = 3, V: int = 1200):
    rng = np.random.default_rng(seed)
    names, gts, preds = [], [], []
    for s in range(n):
        gt = np.zeros(V, np.int64)
        start, inst = 0, 1
        while start < V:
            size = int(rng.choice([80, 150, 300]))
            label = int(rng.choice([3, 5, 7, 1, 0]))
            gt[start:start + size] = label * 1000 + inst if label else 0
            start += size
            inst += 1
        masks = np.zeros((12, V), bool)
        for m in range(12):
            a = int(rng.integers(0, V - 100))
            masks[m, a:a + int(rng.integers(100, 400))] = True
        preds.append(ScenePrediction(masks, rng.choice([3, 5, 7], 12), np.round(rng.random(12), 4)))
        gts.append(gt)
        names.append(f"scene{seed:04d}_{s:02d}")
    return names, gts, preds


def _write_gt(folder: Path, names, gts):
    for name, gt in zip(names, gts):
        write_gt_file(folder / f"{name}.txt", gt)


@pytest.fixture
def folders(tmp_path):
    names, gts, preds = _random_scenes(7)
    _write_gt(tmp_path / "gt", names, gts)
    write_prediction_folder(tmp_path / "pred", dict(zip(names, preds)))
    return tmp_path / "pred", tmp_path / "gt", names, gts, preds


def test_file_cli_and_in_memory_api_agree(folders, tmp_path, capsys):
    pred_dir, gt_dir, names, gts, preds = folders
    in_memory = evaluate_scenes(gts, preds, scene_names=names)
    from_files = evaluate_folders(pred_dir, gt_dir)
    np.testing.assert_array_equal(from_files.ap_matrix, in_memory.ap_matrix)
    assert np.isfinite(in_memory.ap_matrix).sum() >= 20 and 0 < in_memory.map < 1

    rc = evaluate_main([str(pred_dir), str(gt_dir), "--csv", str(tmp_path / "r.csv"), "--json",
                        str(tmp_path / "r.json"), "--quiet"])
    assert rc == 0
    out = capsys.readouterr().out
    assert in_memory.table() in out
    assert (tmp_path / "r.csv").read_text() == in_memory.csv_text()
    data = json.loads((tmp_path / "r.json").read_text())
    assert data["map"] == pytest.approx(in_memory.map) and data["num_scenes"] == 3


def test_pointformer_cli_dispatch_and_eval_script(folders, tmp_path):
    pred_dir, gt_dir, *_ = folders
    from pointformer.cli import main as cli_main

    assert cli_main(["evaluate", str(pred_dir), str(gt_dir), "--quiet", "--csv", str(tmp_path / "a.csv")]) == 0
    proc = subprocess.run([sys.executable, str(REPO / "eval" / "evaluate.py"), str(pred_dir), str(gt_dir),
                           "--csv", str(tmp_path / "b.csv"), "--quiet"], capture_output=True, text=True, cwd=REPO)
    assert proc.returncode == 0, proc.stderr
    assert (tmp_path / "a.csv").read_text() == (tmp_path / "b.csv").read_text()
    assert "average" in proc.stdout


def test_scenes_without_prediction_are_reported_or_rejected(folders, capsys):
    pred_dir, gt_dir, names, *_ = folders
    (pred_dir / f"{names[0]}.txt").unlink()
    assert evaluate_main([str(pred_dir), str(gt_dir), "--quiet"]) == 0
    assert "1 GT scene(s) have no prediction file" in capsys.readouterr().err
    with pytest.raises(EvaluationInputError, match=names[0]):
        evaluate_folders(pred_dir, gt_dir, require_all_scenes=True)


def _first_line(path: Path) -> str:
    return path.read_text().splitlines()[0]


def _set_lines(path: Path, lines: list[str]) -> None:
    path.write_text("".join(f"{ln}\n" for ln in lines))


def test_malformed_line_names_file_and_line(folders, capsys):
    pred_dir, gt_dir, names, *_ = folders
    f = pred_dir / f"{names[1]}.txt"
    lines = f.read_text().splitlines()
    lines[2] = lines[2].replace(" ", "  ", 1)
    _set_lines(f, lines)
    with pytest.raises(EvaluationInputError, match=rf"{names[1]}\.txt:3: expected exactly 3 fields"):
        evaluate_folders(pred_dir, gt_dir)
    assert evaluate_main([str(pred_dir), str(gt_dir), "--quiet"]) == 1
    assert f"{names[1]}.txt:3" in capsys.readouterr().err


@pytest.mark.parametrize("bad, message", [
    ("../outside.txt 3 0.5", "points outside the prediction folder"),
    ("predicted_masks/../../outside.txt 3 0.5", "points outside the prediction folder"),
    ("/abs/mask.txt 3 0.5", "must be relative"),
    ("predicted_masks/x.txt 3.5 0.5", "class id '3.5' is not an integer"),
    ("predicted_masks/x.txt 3 nan", "not finite"),
    ("predicted_masks/x.txt chair 0.5", "not a number"),
    ("predicted_masks/x.txt 3", "expected exactly 3 fields"),
    ("predicted_masks/x.txt\t3\t0.5", "expected exactly 3 fields"),
])
def test_bad_prediction_lines_are_rejected_with_file_and_line(folders, bad, message):
    pred_dir, gt_dir, names, *_ = folders
    f = pred_dir / f"{names[0]}.txt"
    lines = f.read_text().splitlines()
    _set_lines(f, lines[:1] + [bad] + lines[1:])
    with pytest.raises(EvaluationInputError, match=message) as info:
        evaluate_folders(pred_dir, gt_dir)
    assert f"{names[0]}.txt:2" in str(info.value)


def test_duplicate_mask_reference_is_rejected(folders):
    pred_dir, gt_dir, names, *_ = folders
    f = pred_dir / f"{names[0]}.txt"
    lines = f.read_text().splitlines()
    _set_lines(f, lines + [lines[0]])
    with pytest.raises(EvaluationInputError, match="listed twice"):
        evaluate_folders(pred_dir, gt_dir)


def test_missing_gt_file_names_the_prediction_file(folders):
    pred_dir, gt_dir, names, *_ = folders
    (gt_dir / f"{names[2]}.txt").unlink()
    with pytest.raises(EvaluationInputError, match=rf"{names[2]}\.txt: no GT file .*{names[2]}\.txt"):
        evaluate_folders(pred_dir, gt_dir)


def test_mask_of_wrong_length_names_mask_and_referencing_line(folders):
    pred_dir, gt_dir, names, *_ = folders
    rel = _first_line(pred_dir / f"{names[0]}.txt").split(" ")[0]
    mask = pred_dir / rel
    mask.write_text(mask.read_text() + "0\n")
    with pytest.raises(EvaluationInputError, match=r"1201 lines but the scene has 1200 vertices") as info:
        evaluate_folders(pred_dir, gt_dir)
    assert rel in str(info.value) and f"{names[0]}.txt:1" in str(info.value)


def test_bad_mask_value_and_bad_gt_line_name_the_line(folders):
    pred_dir, gt_dir, names, *_ = folders
    rel = _first_line(pred_dir / f"{names[0]}.txt").split(" ")[0]
    lines = (pred_dir / rel).read_text().splitlines()
    lines[41] = "x"
    _set_lines(pred_dir / rel, lines)
    with pytest.raises(EvaluationInputError, match=r"line 42: 'x' is not an integer"):
        evaluate_folders(pred_dir, gt_dir)
    gt_file = gt_dir / f"{names[0]}.txt"
    gt_lines = gt_file.read_text().splitlines()
    gt_lines[9] = "3001.5"
    _set_lines(gt_file, gt_lines)
    with pytest.raises(EvaluationInputError, match=rf"{names[0]}\.txt: line 10: '3001.5' is not an integer"):
        read_gt_ids(gt_file)
    ids = read_gt_ids(gt_dir / f"{names[1]}.txt")
    np.testing.assert_array_equal(ids, folders[3][1])  # write_gt_file -> read_gt_ids round trip
    gt_lines[9] = "-5"
    _set_lines(gt_file, gt_lines)
    with pytest.raises(EvaluationInputError, match="line 10: GT id -5 is negative"):
        read_gt_ids(gt_file)


def test_empty_prediction_folder_and_missing_folders(tmp_path):
    (tmp_path / "pred").mkdir()
    (tmp_path / "gt").mkdir()
    with pytest.raises(EvaluationInputError, match="no prediction files"):
        evaluate_folders(tmp_path / "pred", tmp_path / "gt")
    with pytest.raises(EvaluationInputError, match="prediction folder not found"):
        evaluate_folders(tmp_path / "nope", tmp_path / "gt")


def test_integer_parser_fast_paths_match_the_checked_path():
    rng = np.random.default_rng(0)
    values = rng.integers(0, 40000, 5000)
    text = "".join(f"{v}\n" for v in values).encode()
    np.testing.assert_array_equal(parse_int_lines(text, "x"), values)
    np.testing.assert_array_equal(parse_int_lines(text.replace(b"\n", b"\r\n"), "x"), values)
    np.testing.assert_array_equal(parse_int_lines(text[:-1], "x"), values)  # no final newline
    bits = rng.integers(0, 2, 1000)
    np.testing.assert_array_equal(parse_int_lines("".join(f"{b}\n" for b in bits).encode(), "x"), bits)
    assert parse_int_lines(b"", "x").shape == (0,)
    with pytest.raises(EvaluationInputError, match="f.txt: line 3"):
        parse_int_lines(b"1\n2\n\n4\n", "f.txt")


def test_s3dis_precision_recall_at_iou_0_5():
    V = 1000
    gt = np.zeros(V, np.int64)
    gt[0:200], gt[200:400], gt[400:600] = 8001, 8002, 9003   # two tables, one chair
    gt[600:] = 13004                                           # clutter everywhere else
    masks = np.zeros((4, V), bool)
    masks[0, 0:200] = True      # table 1: TP
    masks[1, 200:260] = True    # table 2 poorly covered (IoU 0.3): FP
    masks[2, 400:600] = True    # chair: TP
    masks[3, 0:200] = True      # a lower-scored duplicate of mask 0: painted over entirely -> gone
    pred = ScenePrediction(masks, np.array([8, 8, 9, 8]), np.array([0.9, 0.8, 0.7, 0.1]))
    result = evaluate_scenes([gt], [pred], dataset="s3dis")
    assert result.precision["table"] == 0.5 and result.recall["table"] == 0.5
    assert result.precision["chair"] == 1.0 and result.recall["chair"] == 1.0
    assert math.isnan(result.precision["clutter"]) and result.recall["clutter"] == 0.0
    assert math.isnan(result.precision["ceiling"]) and math.isnan(result.recall["ceiling"])
    assert result.mean_precision == pytest.approx(0.75)
    assert result.mean_recall == pytest.approx(0.5)
    assert "prec_50%" in result.table()
    assert result.as_dict()["mean_recall"] == pytest.approx(0.5)
    # ScanNet results carry no precision/recall.
    assert evaluate_scenes([np.full(V, 3001)], [ScenePrediction.empty(V)]).mean_precision is None


def test_in_memory_errors_name_the_scene():
    V = 300
    good = ScenePrediction(np.ones((1, V), bool), np.array([3]), np.array([0.5]))
    with pytest.raises(ValueError, match="scene0001_00: prediction masks cover 300 vertices but the GT has 299"):
        evaluate_scenes([np.zeros(V - 1, np.int64)], [good], scene_names=["scene0001_00"])
    with pytest.raises(ValueError, match="must have shape \\(1,\\)"):
        ScenePrediction(np.ones((1, V), bool), np.array([3, 4]), np.array([0.5]))
    with pytest.raises(ValueError, match="dataset must be one of"):
        evaluate_scenes([np.zeros(V, np.int64)], [good], dataset="kitti")
    with pytest.raises(ValueError, match="vertex 3 has -1"):
        evaluate_scenes([np.r_[0, 0, 0, -1, np.zeros(V - 4, int)]], [good])


def test_s3dis_folders_through_the_cli(tmp_path, capsys):
    V = 600
    gt = np.zeros(V, np.int64)
    gt[:300], gt[300:] = 9001, 13002     # a chair and clutter
    masks = np.zeros((2, V), bool)
    masks[0, :300] = True
    masks[1, 300:450] = True             # clutter half covered: IoU 0.5 -> TP for P/R (>=), not for AP50 (>)
    pred = ScenePrediction(masks, np.array([9, 13]), np.array([0.9, 0.8]))
    _write_gt(tmp_path / "gt", ["Area_5_office_1"], [gt])
    write_prediction_folder(tmp_path / "pred", {"Area_5_office_1": pred}, dataset="s3dis")
    assert evaluate_main([str(tmp_path / "pred"), str(tmp_path / "gt"), "--dataset", "s3dis", "--quiet",
                          "--csv", str(tmp_path / "s.csv")]) == 0
    out = capsys.readouterr().out
    assert "prec_50%" in out and "chair" in out and "clutter" in out
    rows = (tmp_path / "s.csv").read_text().splitlines()
    assert rows[9] == "chair,9,1.0,1.0,1.0" and rows[13].startswith("clutter,13,0.0,0.0,1.0")
    result = evaluate_scenes([gt], [pred], dataset="s3dis")
    assert result.precision["clutter"] == 1.0 and result.mean_recall == 1.0
    # The class set decides what an id means: under ScanNet, 9 is nyu40 "window" and 13 is not evaluated.
    scannet = evaluate_scenes([gt], [pred])
    assert scannet.ap["window"] == 1.0 and scannet.map == 1.0 and scannet.precision is None
