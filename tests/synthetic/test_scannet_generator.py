"""The synthetic ScanNet-format generator: real file formats, determinism, classes, shapes, CLI."""
from __future__ import annotations

import hashlib
import json
import time

import numpy as np
import pytest
from scipy.spatial import cKDTree

from pointformer.io.labels import SCANNET_INSTANCE_IDS
from pointformer.io.ply import read_ply, read_ply_header
from pointformer.cli.synth import main as synth_main
from pointformer.synthetic.scannet import generate_scannet, generate_scene


def _digest(root):
    return {str(p.relative_to(root)): hashlib.sha1(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def six(tmp_path_factory):
    return generate_scannet(tmp_path_factory.mktemp("six"), num_scenes=6, num_test_scenes=1, seed=0,
                            target_vertices=4000)


def test_files_follow_the_scannet_layout(six):
    sid = six.splits["train"][0]
    folder = six.root / "scans" / sid
    assert sorted(p.name for p in folder.iterdir()) == sorted([
        f"{sid}_vh_clean_2.ply", f"{sid}_vh_clean_2.labels.ply", f"{sid}_vh_clean_2.0.010000.segs.json",
        f"{sid}.aggregation.json", f"{sid}.txt"])
    header = read_ply_header(folder / f"{sid}_vh_clean_2.ply")
    assert header.format == "binary_little_endian"
    assert header.properties == {"vertex": ["x", "y", "z", "red", "green", "blue", "alpha"], "face": ["vertex_indices"]}
    raw = (folder / f"{sid}_vh_clean_2.ply").read_bytes()
    assert b"property float x" in raw[:400] and b"property uchar alpha" in raw[:400]
    assert b"property list uchar int vertex_indices" in raw[:400]
    labels = read_ply(folder / f"{sid}_vh_clean_2.labels.ply")
    assert labels.extra["label"].dtype == np.uint16
    assert b"property ushort label" in (folder / f"{sid}_vh_clean_2.labels.ply").read_bytes()[:500]
    segs = json.loads((folder / f"{sid}_vh_clean_2.0.010000.segs.json").read_text())
    assert set(segs) == {"params", "sceneId", "segIndices"} and len(segs["segIndices"]) == labels.num_vertices
    agg = json.loads((folder / f"{sid}.aggregation.json").read_text())
    assert set(agg) == {"sceneId", "appId", "segGroups", "segmentsFile"}
    assert set(agg["segGroups"][0]) == {"id", "objectId", "segments", "label"}
    meta = (folder / f"{sid}.txt").read_text()
    assert "axisAlignment = " in meta and "sceneType = " in meta
    test_folder = six.root / "scans_test" / six.splits["test"][0]
    assert sorted(p.suffix for p in test_folder.iterdir()) == [".ply", ".txt"]
    assert "axisAlignment" not in next(test_folder.glob("*.txt")).read_text()
    tsv = (six.root / "scannetv2-labels.combined.tsv").read_text().splitlines()
    assert tsv[0].split("\t")[:5] == ["id", "raw_category", "category", "count", "nyu40id"]
    for split in ("train", "val", "test"):
        assert (six.root / f"scannetv2_{split}.txt").read_text().split() == six.splits[split]


def test_all_benchmark_classes_and_sizes(six):
    classes = {o[2] for s in six.scenes.values() for o in s.objects}
    assert set(SCANNET_INSTANCE_IDS) <= classes
    assert classes - set(SCANNET_INSTANCE_IDS) - {1, 2}  # non-benchmark objects exist too
    for s in six.scenes.values():
        assert 0.75 * 4000 < s.num_vertices < 1.25 * 4000
        if s.split != "test":
            assert (s.instance == 0).any()  # unannotated clutter
            assert len(s.objects) >= 8


def test_segments_never_straddle_objects(six):
    for s in six.scenes.values():
        if s.split == "test":
            continue
        seg = np.array(json.loads((s.folder / f"{s.scene_id}_vh_clean_2.0.010000.segs.json").read_text())["segIndices"])
        pairs = np.unique(np.stack([seg, s.instance], 1), axis=0)
        assert len(np.unique(pairs[:, 0])) == pairs.shape[0]


def test_shapes_are_plausible_and_objects_touch(tmp_path):
    truth = generate_scene(tmp_path / "s", scene_id="scene0003_00", seed=4, target_vertices=30000, scene_type="Kitchen")
    mesh = read_ply(tmp_path / "s" / "scene0003_00_vh_clean_2.ply")
    m = np.loadtxt(tmp_path / "s" / "scene0003_00.txt", comments=None, dtype=str, delimiter="=", max_rows=1)
    align = np.array(str(m[1]).split(), dtype=float).reshape(4, 4)
    xyz = mesh.vertices @ align[:3, :3].T + align[:3, 3]
    chairs = [oid + 1 for oid, _, nyu in truth.objects if nyu == 5]
    assert chairs
    for inst in chairs:
        pts = xyz[truth.instance == inst]
        height = pts[:, 2].max() - pts[:, 2].min()
        assert 0.7 < height < 1.05                         # seat + back, not a cube
        # Legs: near the floor the chair is much sparser than at seat height.
        assert (pts[:, 2] < 0.2).sum() < 0.2 * (np.abs(pts[:, 2] - 0.45) < 0.1).sum() + 50
    # Touching objects: some pair of distinct annotated objects (not floor/walls) within 3 cm.
    furniture = [oid + 1 for oid, _, nyu in truth.objects if nyu not in (1, 2)]
    trees = {i: cKDTree(xyz[truth.instance == i]) for i in furniture}
    close = sum(1 for a in furniture for b in furniture if a < b
                and trees[a].sparse_distance_matrix(trees[b], 0.03).count_nonzero() > 0)
    assert close >= 2


def test_deterministic_per_seed(tmp_path):
    a = generate_scannet(tmp_path / "a", num_scenes=2, num_test_scenes=1, seed=5, target_vertices=2000)
    b = generate_scannet(tmp_path / "b", num_scenes=2, num_test_scenes=1, seed=5, target_vertices=2000)
    c = generate_scannet(tmp_path / "c", num_scenes=2, num_test_scenes=1, seed=6, target_vertices=2000)
    assert _digest(a.root) == _digest(b.root)
    assert _digest(a.root) != _digest(c.root)


def test_small_scenes_are_fast(tmp_path):
    generate_scene(tmp_path / "warm", scene_id="scene0000_00", seed=0, target_vertices=3000)
    start = time.perf_counter()
    generate_scannet(tmp_path / "r", num_scenes=2, num_test_scenes=0, seed=1, target_vertices=3000)
    assert time.perf_counter() - start < 4.0  # ~0.2 s per scene when the machine is not shared


def test_defects_are_injected(tmp_path):
    ds = generate_scannet(tmp_path, num_scenes=2, num_test_scenes=0, seed=2, target_vertices=2000, defects=True)
    assert set(ds.scenes["scene0000_00"].defects) == {"invalid_labels", "hires_aggregation"}
    labels = read_ply(tmp_path / "scans" / "scene0000_00" / "scene0000_00_vh_clean_2.labels.ply").extra["label"]
    assert np.isin(labels, [50, 149]).any()
    agg = json.loads((tmp_path / "scans" / "scene0001_00" / "scene0001_00.aggregation.json").read_text())
    assert len(agg["segGroups"]) == 2 * len(ds.scenes["scene0001_00"].objects)
    assert (tmp_path / "scans" / "scene0001_00" / "scene0001_00_vh_clean.aggregation.json").exists()


@pytest.mark.parametrize("kwargs, message", [
    (dict(num_scenes=0, num_test_scenes=0), "at least one scene"),
    (dict(val_fraction=1.0), "val_fraction"),
    (dict(target_vertices=10), "target_vertices"),
])
def test_bad_arguments(tmp_path, kwargs, message):
    with pytest.raises(ValueError, match=message):
        generate_scannet(tmp_path, **kwargs)


def test_cli(tmp_path, capsys):
    assert synth_main(["scannet", str(tmp_path / "r"), "--scenes", "2", "--test-scenes", "1", "--seed", "3",
                       "--vertices", "2000", "--no-split-files"]) == 0
    assert "3 scenes" in capsys.readouterr().out
    assert not (tmp_path / "r" / "scannetv2_train.txt").exists()
    assert len(list((tmp_path / "r" / "scans").iterdir())) == 2
    assert synth_main(["scannet", str(tmp_path / "q"), "--vertices", "5"]) == 1
    with pytest.raises(SystemExit):
        synth_main(["scannet", str(tmp_path / "q"), "--scenes", "-1"])


def test_scannet200_label_set_changes_only_the_label_map_ids(tmp_path):
    from pointformer.io.labels import SCANNET200_IDS
    from pointformer.io.scannet import read_label_map, read_scannet200_map
    from pointformer.synthetic.rooms import RAW_CATEGORIES
    from pointformer.synthetic.scannet import SCANNET200_VOID_CATEGORIES

    default = generate_scannet(tmp_path / "a", num_scenes=2, num_test_scenes=1, seed=4, target_vertices=1500)
    s200 = generate_scannet(tmp_path / "b", num_scenes=2, num_test_scenes=1, seed=4, target_vertices=1500,
                            label_set="scannet200")
    files = sorted(p.relative_to(tmp_path / "a") for p in (tmp_path / "a").rglob("*") if p.is_file())
    assert files == sorted(p.relative_to(tmp_path / "b") for p in (tmp_path / "b").rglob("*") if p.is_file())
    differ = [f for f in files if (tmp_path / "a" / f).read_bytes() != (tmp_path / "b" / f).read_bytes()]
    assert [str(f) for f in differ] == ["scannetv2-labels.combined.tsv"]
    # Default: the id column numbers the rows (as before); scannet200: ScanNet200 ids, two raw categories void.
    assert list(read_scannet200_map(default.label_map).values()) == list(range(1, len(RAW_CATEGORIES) + 1))
    ids = read_scannet200_map(s200.label_map)
    assert read_label_map(s200.label_map) == read_label_map(default.label_map)
    assert {raw for raw, i in ids.items() if i not in SCANNET200_IDS} == set(SCANNET200_VOID_CATEGORIES)
    assert ids["office chair"] == 10 and ids["wall"] == 1 and ids["floor"] == 3
    for sid, truth in s200.scenes.items():
        np.testing.assert_array_equal(truth.instance, default.scenes[sid].instance)
        np.testing.assert_array_equal(truth.nyu40, default.scenes[sid].nyu40)
