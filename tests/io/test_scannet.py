"""Reading raw ScanNet scene folders: annotations, defects with a logged note, bad input messages."""
from __future__ import annotations

import json
import logging

import numpy as np
import pytest

from pointformer.io.ply import read_ply, write_ply
from pointformer.io.scannet import (
    ScanNetFormatError, read_aggregation, read_label_map, read_scannet_scene, read_scene_meta, read_segs_json,
    read_split_file,
)
from pointformer.synthetic.scannet import generate_scannet, generate_scene


@pytest.fixture(scope="module")
def release(tmp_path_factory):
    root = tmp_path_factory.mktemp("scannet")
    return generate_scannet(root, num_scenes=2, num_test_scenes=1, seed=3, target_vertices=3000)


@pytest.fixture()
def scene(tmp_path):
    """A fresh annotated scene folder that a test may damage."""
    truth = generate_scene(tmp_path / "scene0042_00", scene_id="scene0042_00", seed=11, target_vertices=2500,
                           scene_type="Office")
    from pointformer.synthetic.rooms import RAW_CATEGORIES
    return truth, {raw: nyu for raw, (_, nyu) in RAW_CATEGORIES.items()}


def test_reads_annotated_scene_as_generated(release):
    label_map = read_label_map(release.label_map)
    for sid in release.splits["train"] + release.splits["val"]:
        truth = release.scenes[sid]
        raw = read_scannet_scene(truth.folder, label_map, require_annotations=True)
        assert raw.annotated and raw.num_vertices == truth.num_vertices
        np.testing.assert_array_equal(raw.instance, truth.instance)
        np.testing.assert_array_equal(raw.nyu40, truth.nyu40)
        assert [(g.object_id, g.label) for g in raw.objects] == [(o[0], o[1]) for o in truth.objects]
        assert raw.meta.axis_alignment.shape == (4, 4) and raw.meta.scene_type == truth.scene_type
        assert raw.notes == []
        np.testing.assert_array_equal(raw.labels_ply, truth.nyu40)


def test_reads_test_scene_without_annotations(release):
    truth = release.scenes[release.splits["test"][0]]
    raw = read_scannet_scene(truth.folder, None, require_annotations=False)
    assert not raw.annotated and raw.seg_indices is None and raw.meta.axis_alignment is None
    assert raw.faces.shape[1] == 3 and raw.colors.dtype == np.uint8
    # Auto-detection: no aggregation file -> read as a test scene.
    assert not read_scannet_scene(truth.folder, None).annotated


def test_label_map_split_files_and_meta(release, tmp_path):
    lm = read_label_map(release.label_map)
    assert lm["office chair"] == 5 and lm["wall"] == 1 and lm["nightstand"] == 32
    assert read_split_file(release.root / "scannetv2_val.txt") == release.splits["val"]
    bad = tmp_path / "labels.tsv"
    bad.write_text("id\tname\n1\tchair\n")
    with pytest.raises(ScanNetFormatError, match="raw_category") as info:
        read_label_map(bad)
    assert "labels.tsv" in str(info.value)
    bad.write_text("id\traw_category\tnyu40id\n1\tchair\tfive\n")
    with pytest.raises(ScanNetFormatError, match="line 2"):
        read_label_map(bad)
    with pytest.raises(ScanNetFormatError, match="not found"):
        read_label_map(tmp_path / "none.tsv")
    meta = tmp_path / "scene.txt"
    meta.write_text("axisAlignment = 1 0 0\nsceneType = Office\n")
    with pytest.raises(ScanNetFormatError, match="16 finite numbers") as info:
        read_scene_meta(meta, "scene0001_00")
    assert "scene0001_00" in str(info.value) and "scene.txt" in str(info.value)
    splits = tmp_path / "split.txt"
    splits.write_text("scene0000_00\nnot_a_scene\n")
    with pytest.raises(ScanNetFormatError, match="not_a_scene"):
        read_split_file(splits)


def test_defect_invalid_label_values_logged(tmp_path, caplog):
    truth = generate_scene(tmp_path / "scene0270_00", scene_id="scene0270_00", seed=5, target_vertices=2500,
                           defects=("invalid_labels",))
    lm = _label_map()
    with caplog.at_level(logging.WARNING, logger="pointformer.io.scannet"):
        raw = read_scannet_scene(truth.folder, lm)
    np.testing.assert_array_equal(raw.instance, truth.instance)  # classes still from the aggregation
    np.testing.assert_array_equal(raw.nyu40, truth.nyu40)
    assert any("invalid nyu40 label values" in r.getMessage() and "scene0270_00" in r.getMessage()
               for r in caplog.records)
    assert len(raw.notes) == 1


def test_defect_duplicated_seggroups_logged(tmp_path, caplog):
    truth = generate_scene(tmp_path / "scene0217_00", scene_id="scene0217_00", seed=6, target_vertices=2500,
                           defects=("duplicate_groups",))
    groups = read_aggregation(truth.folder / "scene0217_00.aggregation.json")
    assert len(groups) == 2 * len(truth.objects)
    with caplog.at_level(logging.WARNING, logger="pointformer.io.scannet"):
        raw = read_scannet_scene(truth.folder, _label_map())
    np.testing.assert_array_equal(raw.instance, truth.instance)
    assert len(raw.objects) == len(truth.objects)
    assert any("repeat earlier groups" in r.getMessage() for r in caplog.records)


def test_hires_aggregation_is_never_read(tmp_path, caplog):
    truth = generate_scene(tmp_path / "scene0001_00", scene_id="scene0001_00", seed=7, target_vertices=2500,
                           defects=("hires_aggregation",))
    assert (truth.folder / "scene0001_00_vh_clean.aggregation.json").exists()
    with caplog.at_level(logging.INFO, logger="pointformer.io.scannet"):
        raw = read_scannet_scene(truth.folder, _label_map())
    np.testing.assert_array_equal(raw.instance, truth.instance)
    assert any("ignoring scene0001_00_vh_clean.aggregation.json" in r.getMessage() for r in caplog.records)
    # Without the real aggregation the reader refuses, and says why the hi-res one cannot stand in.
    (truth.folder / "scene0001_00.aggregation.json").unlink()
    with pytest.raises(ScanNetFormatError, match="hi-res mesh"):
        read_scannet_scene(truth.folder, _label_map(), require_annotations=True)


def _label_map():
    from pointformer.synthetic.rooms import RAW_CATEGORIES
    return {raw: nyu for raw, (_, nyu) in RAW_CATEGORIES.items()}


def _damage(name, folder, sid):
    """Apply one kind of damage; return (file name expected in the message, message fragment)."""
    mesh = folder / f"{sid}_vh_clean_2.ply"
    labels = folder / f"{sid}_vh_clean_2.labels.ply"
    segs = folder / f"{sid}_vh_clean_2.0.010000.segs.json"
    agg = folder / f"{sid}.aggregation.json"
    if name == "missing mesh":
        mesh.unlink()
        return mesh.name, "mesh file not found"
    if name == "truncated mesh":
        data = mesh.read_bytes()
        mesh.write_bytes(data[: len(data) // 2])
        return mesh.name, "truncated"
    if name == "corrupt mesh header":
        data = mesh.read_bytes()
        mesh.write_bytes(b"ply\nformat binary_little_endian 1.0\nelement vertex 12\x00garbage")
        return mesh.name, "header"
    if name == "empty mesh":
        write_ply(mesh, np.zeros((0, 3)), colors=np.zeros((0, 3), np.uint8), faces=np.zeros((0, 3), int))
        return mesh.name, "mesh is empty"
    if name == "missing labels":
        labels.unlink()
        return labels.name, "annotation file not found"
    if name == "labels vertex count":
        m = read_ply(labels)
        write_ply(labels, m.vertices[:-5], colors=m.colors[:-5], extra={"label": m.extra["label"][:-5]})
        return labels.name, "vertices but the mesh"
    if name == "labels coordinates":
        m = read_ply(labels)
        write_ply(labels, m.vertices + 0.5, colors=m.colors, extra={"label": m.extra["label"]})
        return labels.name, "coordinates differ"
    if name == "segIndices length":
        data = json.loads(segs.read_text())
        data["segIndices"] = data["segIndices"][:-3]
        segs.write_text(json.dumps(data))
        return segs.name, "segIndices has"
    if name == "segs not json":
        segs.write_text('{"segIndices": [1, 2,')
        return segs.name, "not valid JSON"
    if name == "unknown segments":
        data = json.loads(agg.read_text())
        data["segGroups"][2]["segments"].append(987654321)
        agg.write_text(json.dumps(data))
        return agg.name, "absent from"
    if name == "unknown raw category":
        data = json.loads(agg.read_text())
        data["segGroups"][1]["label"] = "flux capacitor"
        agg.write_text(json.dumps(data))
        return agg.name, "flux capacitor"
    if name == "malformed segGroup":
        data = json.loads(agg.read_text())
        del data["segGroups"][0]["segments"]
        agg.write_text(json.dumps(data))
        return agg.name, "lacks one of"
    raise AssertionError(name)


DAMAGES = ["missing mesh", "truncated mesh", "corrupt mesh header", "empty mesh", "missing labels",
           "labels vertex count", "labels coordinates", "segIndices length", "segs not json", "unknown segments",
           "unknown raw category", "malformed segGroup"]


@pytest.mark.parametrize("damage", DAMAGES)
def test_bad_input_names_scene_and_file(scene, damage):
    truth, label_map = scene
    file_name, fragment = _damage(damage, truth.folder, truth.scene_id)
    with pytest.raises(ValueError, match=fragment) as info:
        read_scannet_scene(truth.folder, label_map, require_annotations=True)
    message = str(info.value)
    assert "scene0042_00" in message and file_name in message, message


def test_segs_json_reader_and_writer_round_trip(tmp_path):
    from pointformer.io.scannet import write_segs_json
    path = tmp_path / "x.segs.json"
    write_segs_json(path, np.array([5, 5, 9, 9, 9]), scene_id="x")
    assert json.loads(path.read_text())["params"] == {"kThresh": 0.01, "segMinVerts": 20}
    np.testing.assert_array_equal(read_segs_json(path), [5, 5, 9, 9, 9])
    path.write_text('{"segIndices": [[1], [2]]}')
    with pytest.raises(ScanNetFormatError, match="flat list"):
        read_segs_json(path, "sceneX")
