"""The kNN point-cloud segmentator, the cell fallback and `pointformer superpoints` on clouds."""
import json

import numpy as np
import pytest

from pointformer.cli.preprocess import superpoints_main
from pointformer.io.ply import write_ply
from pointformer.preprocess.cloud_segmentator import cell_superpoints, cloud_normals, segment_cloud


def _two_planes(n: int = 3000, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """A floor (z = 0) and a wall (x = 0) meeting at a right angle, with 2 mm noise: xyz [2n, 3], labels [2n]."""
    rng = np.random.default_rng(seed)
    floor = np.c_[rng.uniform(0.0, 1.0, n), rng.uniform(0, 1, n), np.zeros(n)]
    wall = np.c_[np.zeros(n), rng.uniform(0, 1, n), rng.uniform(0.0, 1.0, n)]
    xyz = np.concatenate([floor, wall]) + rng.normal(0, 0.002, (2 * n, 3))
    return xyz, np.repeat([0, 1], n)


def _two_boxes(seed: int = 1) -> tuple[np.ndarray, np.ndarray]:
    """Surfaces of two unit boxes 0.5 m apart: xyz [V, 3], box labels [V]."""
    rng = np.random.default_rng(seed)
    pts = rng.uniform(0, 1, (6000, 3))
    axis = rng.integers(0, 3, 6000)
    pts[np.arange(6000), axis] = rng.integers(0, 2, 6000)
    return np.concatenate([pts, pts + [1.5, 0, 0]]), np.repeat([0, 1], 6000)


def test_ids_are_contiguous_and_deterministic():
    xyz, _ = _two_planes()
    a = segment_cloud(xyz)
    assert a.dtype == np.int64 and a.shape == (xyz.shape[0],)
    assert np.array_equal(np.unique(a), np.arange(a.max() + 1))
    assert np.array_equal(a, segment_cloud(xyz.copy()))


def test_no_superpoint_spans_two_separate_boxes():
    xyz, label = _two_boxes()
    seg = segment_cloud(xyz)
    for s in np.unique(seg):
        assert len(np.unique(label[seg == s])) == 1, f"superpoint {s} spans both boxes"


def test_a_right_angle_crease_separates_the_planes():
    """PCA normals of points within a neighbourhood of the crease are blended, so a few of them may join
    the other plane's superpoint; everything else is split along the crease."""
    xyz, label = _two_planes()
    seg = segment_cloud(xyz)
    majority = sum(np.bincount(label[seg == s]).max() for s in np.unique(seg))
    assert majority / len(label) > 0.99
    for plane in (0, 1):
        main = np.bincount(seg[label == plane]).argmax()
        assert (label[seg == main] == plane).mean() > 0.99


def test_normals_are_unit_and_face_the_viewpoint():
    xyz, label = _two_planes()
    n = cloud_normals(xyz, 10)
    np.testing.assert_allclose(np.linalg.norm(n, axis=1), 1.0, atol=1e-5)
    # Bounding-box centre (0.5, 0.5, 0.5): the floor's normals point up, the wall's towards +x.
    assert (n[label == 0, 2] > 0.9).mean() > 0.95 and (n[label == 1, 0] > 0.9).mean() > 0.95


@pytest.mark.parametrize("kwargs, message", [
    ({"k": 0}, "k \\(neighbours"), ({"k": 2.5}, "k \\(neighbours"), ({"k_thresh": -1.0}, "k_thresh"),
    ({"k_thresh": float("nan")}, "k_thresh"), ({"seg_min_verts": -1}, "seg_min_verts"),
    ({"seg_min_verts": 1.5}, "seg_min_verts"), ({"color_weight": 0.5}, "needs rgb"),
])
def test_parameters_are_validated(kwargs, message):
    xyz, _ = _two_planes(100)
    with pytest.raises(ValueError, match=message):
        segment_cloud(xyz, **kwargs)


def test_bad_clouds_are_rejected():
    with pytest.raises(ValueError, match="shape"):
        segment_cloud(np.zeros((5, 2)))
    with pytest.raises(ValueError, match="at least 2 points"):
        segment_cloud(np.zeros((1, 3)))
    with pytest.raises(ValueError, match="finite"):
        segment_cloud(np.array([[0.0, 0, 0], [np.nan, 0, 0]]))


def test_cells_are_contiguous_and_validated():
    xyz = np.array([[0, 0, 0], [0.05, 0, 0], [0.15, 0, 0], [0, 0, 0.31]], dtype=np.float32)
    assert cell_superpoints(xyz, 0.1).tolist() == [0, 0, 2, 1]  # ids in lexicographic order of the cells
    with pytest.raises(ValueError, match="--cell"):
        cell_superpoints(xyz, -1.0)


def _check_segs(path, scene_id, xyz):
    data = json.loads(path.read_text())
    assert set(data) == {"params", "sceneId", "segIndices"}
    assert data["params"] == {"kThresh": 0.01, "segMinVerts": 20} and data["sceneId"] == scene_id
    np.testing.assert_array_equal(data["segIndices"], segment_cloud(xyz))


def test_cli_cloud_ply_and_text(tmp_path, capsys):
    xyz, _ = _two_planes(800)
    xyz = xyz.astype(np.float32)
    ply = tmp_path / "room.ply"
    write_ply(ply, xyz, colors=np.full(xyz.shape, 200, np.uint8))
    assert superpoints_main([str(ply), str(tmp_path / "a.segs.json")]) == 0
    assert "points (cloud)" in capsys.readouterr().out
    _check_segs(tmp_path / "a.segs.json", "room", xyz)
    txt = tmp_path / "scan.txt"
    np.savetxt(txt, np.c_[xyz, np.full(xyz.shape, 7)], fmt="%.7g")
    assert superpoints_main([str(txt)]) == 0
    _check_segs(tmp_path / "scan.0.010000.segs.json", "scan", np.loadtxt(txt)[:, :3].astype(np.float32))
    xyz_only = tmp_path / "xyz.txt"
    np.savetxt(xyz_only, xyz, fmt="%.7g")
    assert superpoints_main([str(xyz_only), str(tmp_path / "b.json"), "--k", "8"]) == 0


def test_cli_errors_name_the_file(tmp_path, capsys):
    bad = tmp_path / "five_columns.txt"
    bad.write_text("0 0 0 1 2\n1 1 1 1 2\n")
    assert superpoints_main([str(bad)]) == 1
    assert "five_columns.txt" in capsys.readouterr().err
    junk = tmp_path / "junk.txt"
    junk.write_text("0 0 zero\n")
    assert superpoints_main([str(junk)]) == 1
    assert "junk.txt" in capsys.readouterr().err
    assert superpoints_main([str(tmp_path / "missing.txt")]) == 1
    assert "missing.txt" in capsys.readouterr().err
    one = tmp_path / "one.ply"
    write_ply(one, np.zeros((1, 3), np.float32))
    assert superpoints_main([str(one)]) == 1
    err = capsys.readouterr().err
    assert "one.ply" in err and "at least 2 points" in err
    assert superpoints_main([str(bad), "--k", "0"]) == 1
