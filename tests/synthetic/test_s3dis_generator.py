"""`pointformer synth s3dis`: rooms in the exact raw layout, all 13 classes, every defect kind injected."""
from __future__ import annotations

import numpy as np

from pointformer.cli.synth import main as synth_main
from pointformer.io.labels import S3DIS_NAMES
from pointformer.synthetic.s3dis import DEFECTS, generate_s3dis


def test_clean_rooms_raw_layout_and_classes(tmp_path):
    result = generate_s3dis(tmp_path, num_rooms=2, seed=3, points_per_room=3000)
    assert result.release.name == "Stanford3dDataset_v1.2_Aligned_Version" and not result.defects
    for room in result.rooms.values():
        files = sorted(p.name for p in (room.folder / "Annotations").iterdir())
        assert files == sorted(room.files)
        lines = (room.folder / f"{room.room}.txt").read_bytes().splitlines()
        assert len(lines) == room.semantic.shape[0] and len(lines[0].split()) == 6
        assert {"ceiling", "floor", "wall", "beam", "column", "door"} <= {S3DIS_NAMES[s] for s in room.semantic}
        assert room.instance.max() == len(room.files) and 2000 < room.semantic.shape[0] < 4500


def test_every_defect_kind_is_injected_and_deterministic(tmp_path):
    a = generate_s3dis(tmp_path / "a", num_rooms=3, seed=5, points_per_room=2000, defects=True)
    b = generate_s3dis(tmp_path / "b", num_rooms=3, seed=5, points_per_room=2000, defects=True)
    assert {d.kind for d in a.defects} == set(DEFECTS)
    assert a.unreadable == ["Area_1_storage_99"]
    for d in a.defects:
        assert (a.release / d.file).exists(), d
    for sid, room in a.rooms.items():
        assert np.array_equal(room.gt_ids, b.rooms[sid].gt_ids)


def test_cli(tmp_path, capsys):
    assert synth_main(["s3dis", str(tmp_path), "--rooms", "1", "--seed", "2", "--points", "1000", "--defects"]) == 0
    assert "1 rooms" in capsys.readouterr().out
