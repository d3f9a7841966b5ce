"""The ScanNet200 protocol: 198 instance classes (raw-category ids), head / common / tail means, the CLI."""
from __future__ import annotations

import json
import math

import numpy as np
import pytest

from pointformer.cli.evaluate import evaluate_main
from pointformer.evaluation import ScenePrediction, class_set, evaluate_scenes, write_gt_file
from pointformer.export import write_prediction_folder
from pointformer.io.labels import (SCANNET200_COMMON_NAMES, SCANNET200_HEAD_NAMES, SCANNET200_IDS,
                                   SCANNET200_INSTANCE_IDS, SCANNET200_NAMES, SCANNET200_TAIL_NAMES)

ID = dict(zip(SCANNET200_NAMES, SCANNET200_IDS))
V = 2000


def _case() -> tuple[np.ndarray, ScenePrediction]:
    """chair (head) found, table (head) missed, cushion (common) found, floor predicted, no tail GT."""
    gt = np.zeros(V, np.int64)
    gt[0:200] = ID["chair"] * 1000 + 1
    gt[200:400] = ID["table"] * 1000 + 2
    gt[400:600] = ID["cushion"] * 1000 + 3
    gt[800:1200] = ID["floor"] * 1000 + 4
    gt[1200:1400] = ID["mattress"] * 1000 + 5      # common, id 1191 (GT ids up to 1191xxx)
    masks = np.zeros((5, V), bool)
    masks[0, 0:200] = masks[1, 400:600] = masks[2, 800:1200] = masks[3, 1200:1400] = True
    masks[4, 1400:1600] = True                      # a tail-class prediction on unannotated vertices: ignored
    classes = np.array([ID["chair"], ID["cushion"], ID["floor"], ID["mattress"], ID["paper"]])
    return gt, ScenePrediction(masks, classes, np.array([0.9, 0.8, 0.7, 0.6, 0.5]))


def test_scannet200_class_set_and_groups():
    classes = class_set("scannet200")
    assert classes.ids == SCANNET200_INSTANCE_IDS and len(classes.ids) == 198
    assert list(classes.ids) == sorted(classes.ids)
    groups = dict(classes.groups)
    assert list(groups) == ["head", "common", "tail"]
    assert (len(groups["head"]), len(groups["common"]), len(groups["tail"])) == (64, 68, 66)
    assert set(groups["head"]) == set(SCANNET200_HEAD_NAMES) - {"wall", "floor"}
    assert set(groups["common"]) == set(SCANNET200_COMMON_NAMES) and set(groups["tail"]) == set(SCANNET200_TAIL_NAMES)
    assert sorted(sum(groups.values(), ())) == sorted(classes.names)
    # The other datasets have no groups, and their results carry no group keys.
    assert class_set("scannet").groups == () and class_set("s3dis").groups == ()
    assert not any(k.startswith("map_") for k in evaluate_scenes([np.full(V, 3001)], [ScenePrediction.empty(V)])
                   .as_dict())


def test_head_common_tail_means():
    gt, pred = _case()
    result = evaluate_scenes([gt], [pred], dataset="scannet200")
    assert result.ap["chair"] == 1.0 and result.ap["table"] == 0.0 and result.ap["cushion"] == 1.0
    assert result.ap["mattress"] == 1.0 and math.isnan(result.ap["paper"])
    assert "floor" not in result.ap and "wall" not in result.ap     # stuff: void, its predictions dropped
    assert result.map == pytest.approx(0.75)
    for means in (result.group_map, result.group_map50, result.group_map25):
        assert means["head"] == pytest.approx(0.5) and means["common"] == 1.0 and math.isnan(means["tail"])
    metrics = result.as_dict()
    for key, value in (("map_head", 0.5), ("map50_head", 0.5), ("map25_head", 0.5), ("map_common", 1.0),
                       ("map50_common", 1.0), ("map25_common", 1.0)):
        assert metrics[key] == pytest.approx(value), key
    assert all(math.isnan(metrics[k]) for k in ("map_tail", "map50_tail", "map25_tail"))
    assert metrics["class_groups"]["tail"][0] == "paper"
    lines = result.table().splitlines()
    assert [ln.split(":")[0].strip() for ln in lines[-4:]] == ["average", "head", "common", "tail"]
    assert lines[-3].split()[-3:] == ["0.500", "0.500", "0.500"] and lines[-1].split()[-1] == "nan"
    assert any(ln.startswith("toilet seat cover dispenser:") for ln in lines)   # long names keep the columns
    assert len({len(ln) for ln in lines if ":" in ln}) == 1


def test_scannet_v2_table_is_unchanged_by_groups():
    gt = np.zeros(V, np.int64)
    gt[:200] = 5001
    pred = ScenePrediction(np.r_[np.ones(200, bool), np.zeros(V - 200, bool)][None], np.array([5]), np.array([0.5]))
    lines = evaluate_scenes([gt], [pred]).table().splitlines()
    assert lines[0] == "#" * 64 and lines[-1].startswith("average        :") and len(lines) == 18 + 5


def test_cli_scannet200_prints_head_common_tail(tmp_path, capsys):
    gt, pred = _case()
    keep = pred.class_ids != ID["floor"]   # the writer refuses non-benchmark ids (floor is stuff)
    pred = ScenePrediction(pred.masks[keep], pred.class_ids[keep], pred.scores[keep])
    with pytest.raises(ValueError, match=r"class ids \[3\] are not scannet200 benchmark ids \(allowed: the 198 ids"):
        write_prediction_folder(tmp_path / "bad", {"scene0000_00": _case()[1]}, dataset="scannet200")
    write_gt_file(tmp_path / "gt" / "scene0000_00.txt", gt)
    write_prediction_folder(tmp_path / "pred", {"scene0000_00": pred}, dataset="scannet200")
    rc = evaluate_main([str(tmp_path / "pred"), str(tmp_path / "gt"), "--dataset", "scannet200", "--quiet",
                        "--csv", str(tmp_path / "r.csv"), "--json", str(tmp_path / "r.json")])
    assert rc == 0
    out = capsys.readouterr().out
    expected = evaluate_scenes([gt], [pred], dataset="scannet200")
    assert expected.table() in out
    assert all(f"\n{group}" in out for group in ("head", "common", "tail"))
    rows = (tmp_path / "r.csv").read_text().splitlines()
    assert rows[0] == "class,class id,ap,ap50,ap25" and len(rows) == 1 + 198
    assert "chair,2,1.0,1.0,1.0" in rows and "mattress,1191,1.0,1.0,1.0" in rows
    data = json.loads((tmp_path / "r.json").read_text())
    assert data["dataset"] == "scannet200" and data["map_head"] == pytest.approx(0.5) and data["map_common"] == 1.0
    # The same files under the ScanNet v2 protocol mean other classes (2 is not an nyu40 instance class).
    assert evaluate_main([str(tmp_path / "pred"), str(tmp_path / "gt"), "--quiet"]) == 0
    assert "\nhead" not in capsys.readouterr().out
