"""The user-facing entry points: `pointformer synth / preprocess / superpoints` and data_prep/scannet.py."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from pointformer.cli import main as pointformer_main
from pointformer.io.scene import Manifest, load_scene

REPO = Path(__file__).resolve().parents[2]


def test_synth_preprocess_superpoints_through_the_main_cli(tmp_path, capsys):
    raw, out = tmp_path / "raw", tmp_path / "out"
    assert pointformer_main(["synth", "scannet", str(raw), "--scenes", "2", "--test-scenes", "1",
                             "--vertices", "2000", "--seed", "9"]) == 0
    assert pointformer_main(["preprocess", "scannet", str(raw), str(out), "--workers", "1", "--no-progress"]) == 0
    assert "3 done" in capsys.readouterr().out
    assert sorted(Manifest.load(out / "train" / "manifest.json").scenes) == ["scene0000_00"]
    mesh = raw / "scans_test" / "scene0707_00" / "scene0707_00_vh_clean_2.ply"
    segs = tmp_path / "test.segs.json"
    assert pointformer_main(["superpoints", str(mesh), str(segs)]) == 0
    seg_ids = json.loads(segs.read_text())["segIndices"]
    test_scene = load_scene(out / "test" / "scene0707_00.npz")
    assert len(seg_ids) == test_scene.num_points
    # Preprocessing used the same segmentator for the test scene.
    assert len(set(seg_ids)) == test_scene.superpoint.max() + 1


def test_data_prep_script_runs_as_a_file(tmp_path):
    raw = tmp_path / "raw"
    assert pointformer_main(["synth", "scannet", str(raw), "--scenes", "1", "--test-scenes", "0",
                             "--vertices", "1500"]) == 0
    done = subprocess.run([sys.executable, str(REPO / "data_prep" / "scannet.py"), str(raw), str(tmp_path / "o"),
                           "--no-progress", "--workers", "1"], capture_output=True, text=True, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert "1 done" in done.stdout
    assert (tmp_path / "o" / "train" / "scene0000_00.npz").exists()
