import importlib.util
from pathlib import Path

import numpy as np

from pointformer.cli import main as cli_main
from pointformer.io.gt import write_gt_file
from pointformer.io.instances_out import write_instance_files
from pointformer.io.ply import read_ply, write_ply
from pointformer.io.scene import Manifest, Scene, save_scene

_spec = importlib.util.spec_from_file_location("show_scenes", Path(__file__).parents[1] / "vis" / "show_scenes.py")
show_scenes = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(show_scenes)

NAMES = {5: "chair", 7: "table"}


def _infer_outputs(out, stem, scene):
    instances = [{"id": i, "class_id": int(c), "class_name": NAMES[int(c)], "score": float(s),
                  "num_points": int((scene.pred_ids == i).sum())}
                 for i, (c, s) in enumerate(zip(scene.pred_classes, scene.pred_scores))]
    class_ids = np.where(scene.pred_ids >= 0, scene.pred_classes[np.maximum(scene.pred_ids, 0)], -1)
    return write_instance_files(out, stem, xyz=scene.xyz, colors=scene.rgb, instance_ids=scene.pred_ids,
                                class_ids=class_ids, instances=instances, classes=NAMES,
                                meta={"source": f"{stem}.ply", "checkpoint": "c.pt", "dataset": "scannet",
                                      "features": ["rgb"], "tiles": None})


def _scannet_gt(scene):
    """label*1000+instance per vertex: the two GT objects, plus a floor (nyu40 2) that must not count."""
    gt = np.zeros(len(scene.xyz), dtype=np.int64)
    for g, label in enumerate(scene.gt_classes):
        gt[scene.gt_ids == g] = label * 1000 + g + 1
    floor = (scene.gt_ids < 0) & (scene.xyz[:, 2] < 0.03)
    gt[floor] = 2 * 1000 + 9
    return gt


def test_show_command_on_a_scan_with_infer_outputs_and_scannet_gt(tmp_path, capsys, monkeypatch):
    monkeypatch.delenv("DISPLAY", raising=False)
    monkeypatch.delenv("WAYLAND_DISPLAY", raising=False)
    scene = show_scenes.synthetic_room(ceiling=False)
    write_ply(tmp_path / "room.ply", scene.xyz, colors=scene.rgb)
    _infer_outputs(tmp_path / "out", "room", scene)
    write_gt_file(tmp_path / "room_gt.txt", _scannet_gt(scene))
    rc = cli_main(["show", str(tmp_path / "room.ply"), "--pred", str(tmp_path / "out"), "--gt",
                   str(tmp_path / "room_gt.txt"), "--backend", "software", "--size", "320x240", "--window"])
    text = capsys.readouterr().out
    assert rc == 0, text
    assert "no display" in text  # --window without a display: the PNG instead, said so
    assert "ground truth: 2 objects, 1 missed (FN)" in text and "prediction: 2 instances, TP 1, FP 1" in text
    png = tmp_path / "out" / "room.show.png"
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    pred = read_ply(tmp_path / "out" / "room.show.pred.ply")
    gt = read_ply(tmp_path / "out" / "room.show.gt.ply")
    assert pred.num_vertices == gt.num_vertices == len(scene.xyz)
    table = scene.pred_ids == 0
    assert (pred.colors[table] == gt.colors[scene.gt_ids == 0][0]).all()  # the same colour on both sides
    # --min-score hides the false positive (score 0.6), leaving one matched prediction
    assert cli_main(["show", str(tmp_path / "room.ply"), "--pred", str(tmp_path / "out" / "room.instances.json"),
                     "--gt", str(tmp_path / "room_gt.txt"), "--backend", "software", "--size", "200x150",
                     "--min-score", "0.7", "--out", str(tmp_path / "hi.png"), "--ply", str(tmp_path / "hi.ply")]) == 0
    assert "prediction: 1 instances, TP 1, FP 0" in capsys.readouterr().out
    assert (tmp_path / "hi.png").is_file() and (tmp_path / "hi.ply").is_file() and (tmp_path / "hi.gt.ply").is_file()


def test_show_command_on_a_preprocessed_scene_uses_its_own_gt(tmp_path, capsys):
    scene = show_scenes.synthetic_room(ceiling=False)
    n = len(scene.xyz)
    semantic = np.full(n, 1, dtype=np.int16)  # index into class_names below: 1 = floor (stuff)
    semantic[scene.gt_ids == 0] = 2
    semantic[scene.gt_ids == 1] = 3
    instance = (scene.gt_ids + 1).astype(np.int32)
    instance[semantic == 1] = 3  # the floor is an object too, as in ScanNet's instance field
    split = tmp_path / "pre" / "val"
    save_scene(Scene(scene_id="scene0001_00", xyz=scene.xyz, rgb=scene.rgb, normals=np.zeros_like(scene.xyz),
                     superpoint=np.zeros(n, np.int32), semantic=semantic, instance=instance, num_mesh_vertices=n),
               split / "scene0001_00.npz")
    Manifest(dataset="scannet", split="val", class_names=["wall", "floor", "table", "chair"], class_ids=[1, 2, 7, 5],
             thing_classes=[2, 3]).save(split / "manifest.json")
    _infer_outputs(tmp_path / "out", "scene0001_00", scene)
    rc = cli_main(["show", str(split / "scene0001_00.npz"), "--pred", str(tmp_path / "out"), "--backend", "software",
                   "--size", "240x180"])
    text = capsys.readouterr().out
    assert rc == 0 and "ground truth: 2 objects, 1 missed (FN)" in text and "TP 1, FP 1" in text


def test_show_command_errors_name_the_file(tmp_path, capsys):
    scene = show_scenes.synthetic_room(ceiling=False)
    write_ply(tmp_path / "room.ply", scene.xyz[:-10], colors=scene.rgb[:-10])
    _infer_outputs(tmp_path / "out", "room", scene)
    assert cli_main(["show", str(tmp_path / "room.ply"), "--pred", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert "room" in err and f"have {len(scene.xyz)} points" in err
    assert cli_main(["show", str(tmp_path / "nothing.ply"), "--pred", str(tmp_path / "out")]) == 2
    assert "nothing.ply" in capsys.readouterr().err
    assert cli_main(["show", str(tmp_path / "room.ply"), "--pred", str(tmp_path / "out"), "--size", "big"]) == 2
    assert "--size" in capsys.readouterr().err
