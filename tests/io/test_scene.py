import numpy as np
import pytest

from pointformer.io.scene import Manifest, Scene, SceneFormatError, load_scene, save_scene


def _scene(n=50):
    rng = np.random.default_rng(0)
    return Scene(
        scene_id="scene0000_00",
        xyz=rng.normal(size=(n, 3)).astype(np.float32),
        rgb=rng.integers(0, 255, size=(n, 3), dtype=np.uint8),
        normals=np.zeros((n, 3), np.float32),
        superpoint=(np.arange(n) % 5).astype(np.int32),
        semantic=np.full(n, -1, np.int16),
        instance=np.zeros(n, np.int32),
        num_mesh_vertices=n,
        gt_ids=np.zeros(n, np.int32),
    )


def test_round_trip(tmp_path):
    scene = _scene()
    save_scene(scene, tmp_path / "s.npz")
    back = load_scene(tmp_path / "s.npz")
    assert back.scene_id == scene.scene_id and back.num_mesh_vertices == 50
    np.testing.assert_array_equal(back.xyz, scene.xyz)
    np.testing.assert_array_equal(back.gt_ids, scene.gt_ids)
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]


def test_wrong_dtype_names_array_and_file(tmp_path):
    scene = _scene()
    scene.superpoint = scene.superpoint.astype(np.int64)
    with pytest.raises(SceneFormatError, match=r"s\.npz.*'superpoint'"):
        save_scene(scene, tmp_path / "s.npz")


def test_non_contiguous_superpoints_rejected():
    scene = _scene()
    scene.superpoint[:] = 3
    with pytest.raises(SceneFormatError, match="contiguous"):
        scene.validate()


def test_truncated_file_is_a_clear_error(tmp_path):
    save_scene(_scene(), tmp_path / "s.npz")
    data = (tmp_path / "s.npz").read_bytes()
    (tmp_path / "s.npz").write_bytes(data[: len(data) // 2])
    with pytest.raises(SceneFormatError, match="not a readable preprocessed scene"):
        load_scene(tmp_path / "s.npz")


def test_manifest_round_trip_and_errors(tmp_path):
    m = Manifest(dataset="scannet", split="val", class_names=["wall"], class_ids=[1], thing_classes=[],
                 scenes={"scene0000_00": {"file": "scene0000_00.npz", "num_points": 5}})
    m.save(tmp_path / "manifest.json")
    assert Manifest.load(tmp_path / "manifest.json") == m
    (tmp_path / "bad.json").write_text("{")
    with pytest.raises(SceneFormatError, match="bad.json"):
        Manifest.load(tmp_path / "bad.json")
