"""The generator's "scannet" preset: ScanNet-sized rooms with many small objects and scan artefacts;
the "basic" preset (the default) unchanged."""
import hashlib
import json

import numpy as np
import pytest

from pointformer.cli.synth import main as synth_main
from pointformer.io.labels import SCANNET_INSTANCE_IDS
from pointformer.io.ply import read_ply
from pointformer.synthetic.presets import PRESETS, punch_holes, resolve_preset
from pointformer.synthetic.scannet import generate_scannet, generate_scene


@pytest.fixture(scope="module")
def rooms(tmp_path_factory):
    return generate_scannet(tmp_path_factory.mktemp("scannet_preset"), num_scenes=2, num_test_scenes=0, seed=1,
                            preset="scannet")


def test_scannet_preset_rooms_have_scannet_size_and_many_small_objects(rooms):
    for scene in rooms.scenes.values():
        assert 100_000 <= scene.num_vertices <= 200_000
        assert 25 <= len(scene.objects) <= 50               # annotated objects, walls and floor included
        ids, counts = np.unique(scene.instance[scene.instance > 0], return_counts=True)
        benchmark = [n for k, n in zip(ids, counts) if scene.nyu40[scene.instance == k][0] in SCANNET_INSTANCE_IDS]
        assert len(benchmark) >= 15
        assert np.mean(np.array(benchmark) < 2000) >= 1 / 3  # at least a third of the instances are small
        segs = json.loads(next(scene.folder.glob("*.segs.json")).read_text())["segIndices"]
        assert 1000 <= len(set(segs)) <= 3000                # segmentator superpoints, ScanNet's range
        groups = json.loads(next(scene.folder.glob("*.aggregation.json")).read_text())["segGroups"]
        assert len(groups) == len(scene.objects)


def test_basic_preset_is_the_default_and_its_scenes_are_unchanged(tmp_path):
    # the digest of this scene as generated before the presets existed (commit 31966b0)
    truth = generate_scene(tmp_path / "s", scene_id="scene0003_00", seed=3, target_vertices=3000, scene_type="Office")
    mesh = read_ply(tmp_path / "s" / "scene0003_00_vh_clean_2.ply")
    digest = hashlib.sha1()
    for array in (np.ascontiguousarray(mesh.vertices), truth.instance, truth.nyu40):
        digest.update(array.tobytes())
    assert (digest.hexdigest(), truth.num_vertices) == ("813555686e25e4fbb2dd6c895fab92ae8885c93c", 3026)
    assert resolve_preset("basic").default_vertices == 20000 and not PRESETS["basic"].has_artefacts
    with pytest.raises(ValueError, match="unknown preset"):
        generate_scannet(tmp_path / "x", num_scenes=1, preset="s3dis")


def test_holes_dent_objects_but_never_erase_one():
    rng = np.random.default_rng(0)
    vertices = np.concatenate([rng.uniform(0, 4, (4000, 3)), rng.uniform(1.0, 1.1, (50, 3))])  # a big and a tiny object
    owner = np.concatenate([np.zeros(4000, np.int64), np.ones(50, np.int64)])
    alive = punch_holes(vertices, owner, np.random.default_rng(1), count=60, radius=(0.3, 0.6), keep=0.6)
    assert not alive.all()                                   # holes were punched
    for k, n in ((0, 4000), (1, 50)):
        assert alive[owner == k].sum() >= np.ceil(0.6 * n)  # every object keeps at least 60 %
    again = punch_holes(vertices, owner, np.random.default_rng(1), count=60, radius=(0.3, 0.6), keep=0.6)
    assert np.array_equal(alive, again)
    assert punch_holes(vertices, owner, rng, count=0, radius=(0.1, 0.2), keep=0.5).all()


def test_cli_preset_option(tmp_path, capsys):
    assert synth_main(["scannet", str(tmp_path / "r"), "--preset", "scannet", "--scenes", "1", "--test-scenes", "0",
                       "--vertices", "30000"]) == 0
    assert "1 scenes" in capsys.readouterr().out
    assert synth_main(["scannet", str(tmp_path / "r2"), "--preset", "scannet", "--scenes", "1",
                       "--vertices", "100"]) == 1
    assert "at least 500" in capsys.readouterr().err
