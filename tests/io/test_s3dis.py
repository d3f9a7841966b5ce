"""The S3DIS raw reader: every defect of the real release survived, repaired only where certain, reported."""
from __future__ import annotations

import pytest

from pointformer.io.labels import S3DIS_NAMES
from pointformer.io.s3dis import (
    S3DISFormatError, annotation_order, discover_rooms, read_alignment_angles, read_point_file, read_room,
    release_root,
)


def _write(path, data: bytes):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path


def _kinds(issues):
    return [(i.kind, i.line) for i in issues]


def test_clean_file_fast_path(tmp_path):
    p = _write(tmp_path / "a.txt", b"1.0 2.0 3.0 10 20 30\n4 5 6 40 50 60\n")
    pf = read_point_file(p, "a.txt")
    assert pf.issues == [] and pf.points.tolist() == [[1, 2, 3, 10, 20, 30], [4, 5, 6, 40, 50, 60]]


@pytest.mark.parametrize("line, expected, how", [
    (b"103.0\x100000 1 2 3 4 5", [103.0, 1, 2, 3, 4, 5], "deleted"),             # office_19 ceiling_1
    (b"-9.1\x160 1 2 3 4 5", [-9.1, 1, 2, 3, 4, 5], "deleted"),                    # hallway_2
    (b"1 2 3 4 185\x00187", [1, 2, 3, 4, 185, 187], "separator"),                 # hallway_6 ceiling_1
])
def test_control_bytes_repaired_when_one_reading_is_valid(tmp_path, line, expected, how):
    p = _write(tmp_path / "c.txt", b"0 0 0 1 1 1\n" + line + b"\n0 0 0 1 1 1\n")
    pf = read_point_file(p, "Area_5/x/Annotations/c.txt")
    assert pf.points.shape == (3, 6) and pf.points[1].tolist() == pytest.approx(expected)
    (issue,) = pf.issues
    assert issue.kind == "repaired" and issue.line == 2 and issue.file == "Area_5/x/Annotations/c.txt"
    assert how in issue.detail


@pytest.mark.parametrize("line", [
    b"1.2\x003.4 5.6\x00 7 8 9 10",   # no valid reading
    b"1 2 3 4 5",                      # five columns, no control byte
    b"1 2 3 4 5 6 7",
    b"1 2 3 4 5 300",                  # colour out of range
    b"1 2 x 4 5 6",                    # a letter: never guessed
    b"1 2 3.3.3 4 5 6",                # number bytes, but not a number
    b"1 2 3 4 5 6\x01 7",              # seven columns either way
])
def test_unrepairable_lines_are_dropped_and_reported(tmp_path, line):
    p = _write(tmp_path / "d.txt", b"0 0 0 1 1 1\n" + line + b"\n0 0 0 1 1 1\n")
    pf = read_point_file(p, "d.txt")
    assert pf.points.shape == (2, 6)
    assert _kinds(pf.issues) == [("dropped", 2)]


def test_crlf_and_blank_lines(tmp_path):
    p = _write(tmp_path / "w.txt", b"1 2 3 4 5 6\r\n7 8 9 10 11 12\r\n\r\n")
    pf = read_point_file(p, "w.txt")
    assert pf.points.shape == (2, 6) and [i.kind for i in pf.issues] == ["crlf"]


def _room(root, area="Area_5", room="office_36", files=None, room_file=None, room_lines=None):
    folder = root / "Stanford3dDataset_v1.2_Aligned_Version" / area / room
    files = files or {"wall_1.txt": b"0 0 0 1 2 3\n1 0 0 1 2 3\n", "chair_1.txt": b"2 2 0 9 9 9\n",
                      "wall_2.txt": b"5 5 5 7 7 7\n"}
    for name, data in files.items():
        _write(folder / "Annotations" / name, data)
    lines = room_lines if room_lines is not None else sum(d.count(b"\n") for d in files.values())
    _write(folder / (room_file or f"{room}.txt"), b"0 0 0 1 1 1\n" * lines)
    return folder


def test_room_points_classes_instances_in_annotation_order(tmp_path):
    _room(tmp_path)
    release = release_root(tmp_path)
    assert discover_rooms(release) == {"Area_5": ["office_36"]}
    raw = read_room(release, "Area_5", "office_36")
    assert raw.instance_files == ["chair_1.txt", "wall_1.txt", "wall_2.txt"]
    assert raw.instance.tolist() == [1, 2, 2, 3]
    assert [S3DIS_NAMES[s] for s in raw.semantic] == ["chair", "wall", "wall", "wall"]
    assert raw.gt_ids.tolist() == [9001, 3002, 3002, 3003] and raw.issues == []
    assert raw.scene_id == "Area_5_office_36"


def test_room_defects_reported(tmp_path):
    files = {"wall_3.txt": b"0 0 0 1 2 3\n", "wall_3 (1).txt": b"0 0 0 1 2 3\n", "stairs_1.txt": b"1 1 1 5 5 5\n",
             "clutter_2.txt": b"", "notes.md": b"x", "wall_10.txt": b"3 3 3 1 1 1\n"}
    _room(tmp_path, room="copyRoom_1", files=files, room_file="copy_Room_1.txt", room_lines=5)
    raw = read_room(release_root(tmp_path), "Area_5", "copyRoom_1")
    kinds = {i.kind: i for i in raw.issues}
    assert set(kinds) == {"duplicate_ignored", "ignored_file", "class_alias", "empty_file", "room_file_name",
                          "count_mismatch"}
    assert "identical" in kinds["duplicate_ignored"].detail
    assert kinds["count_mismatch"].detail.endswith("(difference +2)")
    assert raw.instance_files == ["stairs_1.txt", "wall_3.txt", "wall_10.txt"]  # numeric order of k
    assert [S3DIS_NAMES[s] for s in raw.semantic] == ["clutter", "wall", "wall"]


def test_unreadable_rooms_name_room_and_file(tmp_path):
    _room(tmp_path, files={"dragon_1.txt": b"0 0 0 1 1 1\n"})
    with pytest.raises(S3DISFormatError, match=r"Area_5/office_36.*dragon_1\.txt.*unknown class 'dragon'"):
        read_room(release_root(tmp_path), "Area_5", "office_36")
    folder = tmp_path / "Stanford3dDataset_v1.2_Aligned_Version" / "Area_5" / "lobby_1"
    folder.mkdir()
    with pytest.raises(S3DISFormatError, match=r"Area_5/lobby_1.*no Annotations folder"):
        read_room(release_root(tmp_path), "Area_5", "lobby_1")


def test_non_aligned_release_alignment_angles(tmp_path):
    area = tmp_path / "Stanford3dDataset_v1.2" / "Area_1"
    _write(area / "Area_1_alignmentAngle.txt", b"## Global alignment angle per disjoint space in Area_1 ##\n"
           b"## Disjoint Space Name Global Alignment Angle ##\r\nconferenceRoom_1 180\r\noffice_1 90\n")
    assert release_root(tmp_path) == tmp_path / "Stanford3dDataset_v1.2"
    assert read_alignment_angles(area) == {"conferenceRoom_1": 180.0, "office_1": 90.0}
    with pytest.raises(S3DISFormatError, match="no Area_N folders"):
        release_root(area)


def test_annotation_order_is_numeric():
    assert annotation_order(["wall_10.txt", "wall_2.txt", "beam_1.txt"]) == ["beam_1.txt", "wall_2.txt", "wall_10.txt"]
