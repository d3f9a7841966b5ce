"""`pointformer infer` on files: the output contract, LAS in/out, text columns, and the features contract
with a colour-free model trained for a couple of steps (data.features=[normals])."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from pointformer.cli.infer import main as infer_main
from pointformer.cli.train import main as train_main
from pointformer.data.toy import make_toy_scene, write_toy_split
from pointformer.engine.infer import InferOptions, infer_file
from pointformer.inference import Predictor
from pointformer.io.ply import read_ply, write_ply

GEO = np.array([512_000.0, 4_123_000.0, 200.0])


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory):
    """A colour model and a colour-free model (normals only), each trained for 2 steps on toy scenes."""
    torch.set_num_threads(1)
    root = tmp_path_factory.mktemp("pre")
    write_toy_split(root, "train", num_scenes=2, seed=0, num_points=1000, num_objects=3)
    write_toy_split(root, "val", num_scenes=1, seed=1, num_points=1000, num_objects=3)
    out = {}
    for name, extra in (("rgb", []), ("normals", ["data.features=[normals]", "data.in_channels=3"])):
        run = root.parent / f"run_{name}"
        assert train_main([f"data.root={root}", f"run_dir={run}", "trainer.epochs=1", "trainer.batch_size=1",
                           "trainer.progress=false", "trainer.tensorboard=false", "trainer.num_workers=0",
                           "trainer.val_every_epochs=1", "model.decoder.eval_num_queries=20", *extra]) == 0
        out[name] = run / "checkpoints" / "best.pt"
    return out


@pytest.fixture(scope="module")
def scene():
    return make_toy_scene("scan", seed=5, num_points=1500, num_objects=3)


def _check_contract(out, stem, n, checkpoint):
    meta = json.loads((out / f"{stem}.instances.json").read_text())
    for key in ("source", "num_points", "checkpoint", "dataset", "features", "tiles", "classes", "instances"):
        assert key in meta, key
    assert meta["num_points"] == n and meta["checkpoint"] == str(checkpoint) and meta["dataset"] == "scannet"
    ids = np.load(out / f"{stem}.instance_ids.npy")
    classes = np.load(out / f"{stem}.class_ids.npy")
    assert ids.dtype == np.int32 and classes.dtype == np.int32 and ids.shape == classes.shape == (n,)
    np.testing.assert_array_equal(np.loadtxt(out / f"{stem}.instance_ids.txt", dtype=np.int64), ids)
    np.testing.assert_array_equal(np.loadtxt(out / f"{stem}.class_ids.txt", dtype=np.int64), classes)
    k = len(meta["instances"])
    assert ids.min() >= -1 and ids.max() == k - 1
    for inst in meta["instances"]:
        mask = ids == inst["id"]
        assert mask.sum() == inst["num_points"]
        assert (classes[mask] == inst["class_id"]).all()
        assert meta["classes"][str(inst["class_id"])] == inst["class_name"]
    np.testing.assert_array_equal(ids == -1, classes == -1)
    ply = read_ply(out / f"{stem}.ply", keep_double=True)
    assert ply.num_vertices == n
    np.testing.assert_array_equal(ply.extra["instance"], ids)
    return meta, ids, ply


def test_infer_ply_cloud_writes_the_contract(checkpoints, scene, tmp_path):
    scan = tmp_path / "room.ply"
    write_ply(scan, scene.xyz, colors=scene.rgb)
    predictor = Predictor.from_checkpoint(checkpoints["rgb"], device="cpu")
    result = infer_file(predictor, scan, tmp_path / "out", InferOptions(min_points=1, progress=False))
    meta, ids, ply = _check_contract(tmp_path / "out", "room", scene.num_points, checkpoints["rgb"])
    assert meta["features"] == ["rgb"] and meta["tiles"] is None and meta["format"] == "ply"
    np.testing.assert_array_equal(ids, result.prediction.instance_ids)
    # one colour per instance
    for k in range(len(meta["instances"])):
        assert len(np.unique(ply.colors[ids == k], axis=0)) == 1


@pytest.mark.parametrize("suffix", [".las", ".laz"])
def test_infer_las_keeps_the_file_and_adds_dimensions(checkpoints, scene, tmp_path, suffix):
    import laspy

    header = laspy.LasHeader(point_format=2, version="1.2")
    header.offsets = GEO
    header.scales = [0.001, 0.001, 0.001]
    las = laspy.LasData(header)
    xyz = scene.xyz.astype(np.float64) + GEO
    las.x, las.y, las.z = xyz.T
    las.red, las.green, las.blue = (scene.rgb.astype(np.uint16) * 257).T
    scan = tmp_path / f"site{suffix}"
    las.write(str(scan))
    assert infer_main([str(scan), "--checkpoint", str(checkpoints["rgb"]), "--out", str(tmp_path / "o"),
                       "--min-points", "1", "--tile", "2.5", "--overlap", "0.5", "--no-progress"]) == 0
    meta, ids, ply = _check_contract(tmp_path / "o", "site", scene.num_points, checkpoints["rgb"])
    assert meta["format"] == "las" and meta["tiles"]["count"] > 1
    original = laspy.read(str(scan))
    copy = laspy.read(str(tmp_path / "o" / f"site{suffix}"))
    assert list(copy.header.scales) == list(original.header.scales)
    assert list(copy.header.offsets) == list(original.header.offsets)
    np.testing.assert_array_equal(copy.X, original.X)  # the stored integers: nothing re-quantised
    np.testing.assert_array_equal(np.asarray(copy.red), np.asarray(original.red))
    np.testing.assert_array_equal(np.asarray(copy["instance"]), ids)
    np.testing.assert_array_equal(np.asarray(copy["class"]), np.load(tmp_path / "o" / "site.class_ids.npy"))
    # the PLY keeps the georeferenced coordinates in double precision
    assert ply.vertices.dtype == np.float64
    np.testing.assert_array_equal(ply.vertices[:, 0], np.asarray(original.x))


def test_features_contract_with_a_colour_free_model(checkpoints, scene, tmp_path, capsys):
    scan = tmp_path / "grey.txt"
    np.savetxt(scan, np.c_[scene.xyz, np.zeros(scene.num_points)], fmt="%.5f")  # x y z + an unused column
    # the colour model refuses a scan without colour, naming the feature, the file and the checkpoint
    assert infer_main([str(scan), "--columns", "x,y,z,_", "--checkpoint", str(checkpoints["rgb"]),
                       "--out", str(tmp_path / "o1"), "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert "grey.txt has no colour (rgb)" in err and str(checkpoints["rgb"]) in err
    assert not (tmp_path / "o1").exists()
    # the colour-free model (trained with data.features=[normals]) accepts it: normals are estimated
    assert infer_main([str(scan), "--columns", "x,y,z,_", "--checkpoint", str(checkpoints["normals"]),
                       "--out", str(tmp_path / "o2"), "--min-points", "1", "--no-progress"]) == 0
    meta, _, _ = _check_contract(tmp_path / "o2", "grey", scene.num_points, checkpoints["normals"])
    assert meta["features"] == ["normals"] and meta["format"] == "text"
    assert infer_main([str(scan), "--columns", "x,y,z,_", "--checkpoint", str(checkpoints["normals"]),
                       "--out", str(tmp_path / "o3"), "--min-points", "1", "--query-radius", "1.5",
                       "--no-progress"]) == 0  # an instance reaches at most 1.5 m from its query's seed
    _check_contract(tmp_path / "o3", "grey", scene.num_points, checkpoints["normals"])
    with pytest.raises(SystemExit):
        infer_main([str(scan), "--checkpoint", str(checkpoints["normals"]), "--query-radius", "0"])
    stored = Predictor.from_checkpoint(checkpoints["normals"], device="cpu").settings.data
    assert stored.features == ("normals",) and stored.in_channels == 3  # the checkpoint records its features


def test_bad_scan_files_name_the_file(checkpoints, tmp_path, capsys):
    bad = tmp_path / "broken.pcd"
    bad.write_bytes(b"VERSION 0.7\nFIELDS x y\n")
    assert infer_main([str(bad), "--checkpoint", str(checkpoints["rgb"]), "--no-progress"]) == 2
    assert "broken.pcd" in capsys.readouterr().err
    txt = tmp_path / "wide.txt"
    txt.write_text("1 2 3 4 5\n2 3 4 5 6\n")
    assert infer_main([str(txt), "--checkpoint", str(checkpoints["rgb"]), "--no-progress"]) == 2
    assert "wide.txt: 5 columns per point; name them with columns (--columns)" in capsys.readouterr().err
