import json

import numpy as np
import pytest

from pointformer.io.instances_out import write_instance_files
from pointformer.io.predictions import PredictionFormatError, find_prediction_json, read_instance_predictions

INSTANCES = [{"id": 0, "class_id": 5, "class_name": "chair", "score": 0.9, "num_points": 3},
             {"id": 1, "class_id": 7, "class_name": "table", "score": 0.4, "num_points": 2}]
IDS = np.array([0, 0, 0, -1, 1, 1, -1], dtype=np.int32)
CLASSES = np.array([5, 5, 5, -1, 7, 7, -1], dtype=np.int32)


def _by_hand(folder, stem="scan", ids=IDS, point_classes=CLASSES, npy=True, **changes):
    """The contract's files written by hand (not by the writer), as any other tool could."""
    folder.mkdir(parents=True, exist_ok=True)
    payload = {"source": "scan.ply", "num_points": len(ids), "checkpoint": "best.pt", "dataset": "scannet",
               "features": ["rgb"], "tiles": None, "classes": {"5": "chair", "7": "table"}, "instances": INSTANCES}
    payload.update(changes)
    (folder / f"{stem}.instances.json").write_text(json.dumps(payload))
    for kind, values in (("instance_ids", ids), ("class_ids", point_classes)):
        if npy:
            np.save(folder / f"{stem}.{kind}.npy", values)
        (folder / f"{stem}.{kind}.txt").write_text("".join(f"{v}\n" for v in values))
    return folder / f"{stem}.instances.json"


def test_reads_hand_written_files_from_folder_json_or_npy(tmp_path):
    json_path = _by_hand(tmp_path / "out")
    for where in (tmp_path / "out", json_path, tmp_path / "out" / "scan.instance_ids.npy"):
        pred = read_instance_predictions(where)
        assert pred.stem == "scan" and pred.num_points == 7 and pred.dataset == "scannet"
        assert (pred.instance_ids == IDS).all() and (pred.class_ids == CLASSES).all()
        assert pred.classes == {5: "chair", 7: "table"} and [i.class_name for i in pred.instances] == ["chair", "table"]
        assert pred.meta["checkpoint"] == "best.pt"


def test_text_files_when_no_npy(tmp_path):
    _by_hand(tmp_path, npy=False)
    pred = read_instance_predictions(tmp_path)
    assert (pred.instance_ids == IDS).all() and pred.instance_ids.dtype == np.int32


def test_reads_what_the_infer_writer_writes(tmp_path):
    xyz = np.random.default_rng(0).random((7, 3))
    files = write_instance_files(tmp_path, "room", xyz=xyz, colors=np.zeros((7, 3), np.uint8), instance_ids=IDS,
                                 class_ids=CLASSES, instances=INSTANCES, classes={5: "chair", 7: "table"},
                                 meta={"source": "room.ply", "checkpoint": "c.pt", "dataset": "scannet",
                                       "features": ["rgb"], "tiles": None})
    pred = read_instance_predictions(files.json)
    assert (pred.instance_ids == IDS).all() and (pred.class_ids == CLASSES).all()
    assert [(i.id, i.class_id, i.score) for i in pred.instances] == [(0, 5, 0.9), (1, 7, 0.4)]
    files.instance_npy.unlink()  # the text copy is the same
    assert (read_instance_predictions(tmp_path).instance_ids == IDS).all()


def test_several_scans_in_one_folder_need_a_stem(tmp_path):
    _by_hand(tmp_path, stem="a")
    _by_hand(tmp_path, stem="b")
    with pytest.raises(PredictionFormatError, match="2 prediction files"):
        find_prediction_json(tmp_path)
    assert read_instance_predictions(tmp_path, stem="b").stem == "b"
    (tmp_path / "empty").mkdir()
    with pytest.raises(PredictionFormatError, match="no \\*.instances.json in this folder"):
        find_prediction_json(tmp_path / "empty")


@pytest.mark.parametrize("change, message", [
    ({"num_points": 6}, "7 values, but scan.instances.json says num_points = 6"),
    ({"instances": INSTANCES[:1]}, "reach 1, but only 1 instances"),
    ({"instances": [INSTANCES[1], INSTANCES[0]]}, "ids must be 0..K-1"),
    ({"instances": [{"id": 0}]}, "instances\\[0\\] must have"),
    ({"classes": None}, "classes"),
])
def test_contract_violations_name_the_file(tmp_path, change, message):
    _by_hand(tmp_path, **change)
    with pytest.raises(PredictionFormatError, match=message):
        read_instance_predictions(tmp_path)


def test_bad_ids_and_broken_files(tmp_path):
    _by_hand(tmp_path / "a", point_classes=np.array([5, 5, 7, -1, 7, 7, -1]))
    with pytest.raises(PredictionFormatError, match="point 2 belongs to instance 0"):
        read_instance_predictions(tmp_path / "a")
    _by_hand(tmp_path / "b", ids=np.array([0, 0, 0, -2, 1, 1, -1]))
    with pytest.raises(PredictionFormatError, match="point 3 has id -2"):
        read_instance_predictions(tmp_path / "b")
    _by_hand(tmp_path / "c", npy=False)
    (tmp_path / "c" / "scan.instance_ids.txt").write_text("0\n0\nx\n")
    with pytest.raises(PredictionFormatError, match="line 3: 'x' is not an integer"):
        read_instance_predictions(tmp_path / "c")
    (tmp_path / "d").mkdir()
    (tmp_path / "d" / "scan.instances.json").write_text("{not json")
    with pytest.raises(PredictionFormatError, match="scan.instances.json: not valid JSON"):
        read_instance_predictions(tmp_path / "d")
    with pytest.raises(PredictionFormatError, match="missing.instances.json: prediction file not found"):
        read_instance_predictions(tmp_path / "missing.instances.json")
    (tmp_path / "e").mkdir()
    (tmp_path / "e" / "s.instances.json").write_text(json.dumps({"num_points": 1, "classes": {}, "instances": []}))
    with pytest.raises(PredictionFormatError, match="s.instance_ids.npy: not found"):
        read_instance_predictions(tmp_path / "e")
