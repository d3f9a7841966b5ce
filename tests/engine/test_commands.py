"""export / infer / the demo's steps at reduced size."""
import json
import zipfile

import numpy as np
import pytest
import torch

from pointformer.data.toy import make_toy_scene, write_toy_split
from pointformer.cli.infer import main as infer_main
from pointformer.cli.submission import export_main
from pointformer.cli.train import main as train_main
from pointformer.preprocess.cloud_segmentator import cell_superpoints
from pointformer.io.ply import write_ply


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    torch.set_num_threads(1)
    root = tmp_path_factory.mktemp("pre")
    write_toy_split(root, "train", num_scenes=2, seed=0, num_points=1200, num_objects=3)
    write_toy_split(root, "val", num_scenes=1, seed=1, num_points=1200, num_objects=3)
    write_toy_split(root, "test", num_scenes=2, seed=2, num_points=1200, num_objects=3)
    run = root.parent / "run"
    assert train_main([f"data.root={root}", f"run_dir={run}", "trainer.epochs=1", "trainer.batch_size=1",
                       "trainer.progress=false", "trainer.tensorboard=false", "trainer.num_workers=0",
                       "trainer.val_every_epochs=1"]) == 0
    return root, run / "checkpoints" / "best.pt"


def test_export_writes_a_valid_submission_from_preprocessed_input(trained, tmp_path, capsys):
    root, ckpt = trained
    out = tmp_path / "sub.zip"
    assert export_main([str(ckpt), str(root), str(out)]) == 0
    text = capsys.readouterr().out
    assert "OK: ready to upload" in text and "2 scenes" in text
    names = zipfile.ZipFile(out).namelist()
    scene_files = sorted(n for n in names if "/" not in n)
    assert scene_files == ["scene9000_02.txt", "scene9001_02.txt"]
    assert all(n.startswith("predicted_masks/") for n in names if "/" in n)
    # bad inputs: clear messages, non-zero status
    assert export_main([str(ckpt), str(tmp_path), str(out)]) == 2
    assert "neither a preprocessed root" in capsys.readouterr().err
    assert export_main([str(ckpt), str(root), str(tmp_path / "sub.tar")]) == 2
    assert export_main([str(ckpt), str(root), str(out), "model=base"]) == 2
    assert "fixed by the checkpoint" in capsys.readouterr().err


def test_infer_on_a_bare_point_cloud(trained, tmp_path, capsys):
    _, ckpt = trained
    scene = make_toy_scene("scene_custom", seed=5, num_points=1500, num_objects=3)
    scan = tmp_path / "my_scan.ply"
    write_ply(scan, scene.xyz, colors=scene.rgb)
    assert infer_main([str(scan), "--checkpoint", str(ckpt), "--out", str(tmp_path / "o"), "--min-points", "1",
                       "--superpoints", "cells", "--no-progress"]) == 0
    out = capsys.readouterr().out
    assert "0.1 m cells" in out
    ids = np.loadtxt(tmp_path / "o" / "my_scan.instance_ids.txt", dtype=np.int64)
    meta = json.loads((tmp_path / "o" / "my_scan.instances.json").read_text())
    assert ids.shape == (scene.num_points,)
    assert ids.max() == len(meta["instances"]) - 1
    assert all(inst["num_points"] == int((ids == inst["id"]).sum()) for inst in meta["instances"])
    assert (tmp_path / "o" / "my_scan.ply").is_file()
    assert infer_main([str(tmp_path / "missing.ply"), "--checkpoint", str(ckpt)]) == 2
    assert "missing.ply" in capsys.readouterr().err


def test_cell_superpoints_are_contiguous_cells():
    xyz = np.array([[0, 0, 0], [0.05, 0, 0], [0.15, 0, 0], [0, 0, 0.31]], dtype=np.float32)
    sp = cell_superpoints(xyz, 0.1)
    assert sp[0] == sp[1] and len(set(sp.tolist())) == 3 and sorted(set(sp.tolist())) == [0, 1, 2]
    with pytest.raises(ValueError, match="--cell"):
        cell_superpoints(xyz, 0.0)


def test_demo_steps_at_reduced_size(tmp_path, capsys):
    """generate -> preprocess -> train -> evaluate -> export + validate -> PLY, at toy size."""
    from pointformer.engine.demo import run_demo

    torch.set_num_threads(1)
    summary = run_demo(tmp_path / "demo", scenes=4, test_scenes=1, vertices=2500, epochs=1, workers=1,
                       progress=False, render=False,
                       overrides=["trainer.val_every_epochs=1", "trainer.tensorboard=false"])
    out = capsys.readouterr().out
    assert "validation (1 rooms): mAP" in out and "OK: ready to upload" in out
    assert summary["submission_valid"] and summary["train_steps"] == 1
    for key in ("val_map", "val_map50", "val_map25"):
        assert 0.0 <= summary[key] <= 1.0
    demo = tmp_path / "demo"
    for rel in ("summary.json", "submission.zip", "eval_val.csv", "train/config.yaml", "train/metrics.jsonl"):
        assert (demo / rel).is_file(), rel
    assert len(list((demo / "visualisation").glob("*_pred.ply"))) == 1
    # export straight from the raw release: preprocesses scans_test, validates against the raw meshes
    assert export_main([summary["best_checkpoint"], str(demo / "raw"), str(tmp_path / "raw_sub.zip"),
                        "--preprocessed-dir", str(tmp_path / "pp")]) == 0
    text = capsys.readouterr().out
    assert "preprocessing" in text and "OK: ready to upload" in text
    assert (tmp_path / "pp" / "test" / "manifest.json").is_file()
    # infer on a real mesh (faces -> segmentator superpoints)
    mesh = next((demo / "raw" / "scans_test").glob("*/*_vh_clean_2.ply"))
    assert infer_main([str(mesh), "--checkpoint", summary["best_checkpoint"], "--out", str(tmp_path / "inf")]) == 0
    assert "mesh segmentator" in capsys.readouterr().out


LOSS_MODULE = '''
import torch.nn.functional as F
from pointformer.losses import LossDefinition, register_loss


def quiet_terms(inputs, *, scale):
    logits = inputs.class_logits.float()
    no_object = logits.new_full((logits.shape[0],), logits.shape[1] - 1).long()
    return {"mask": scale * inputs.mask_logits.float().sigmoid().mean(), "cls": F.cross_entropy(logits, no_object)}


register_loss(LossDefinition(name="cli_quiet", terms=quiet_terms, activation="sigmoid", query_init="learned",
                             uses_seeds=False, term_weights={"mask": 1.0, "cls": 1.0}, defaults={"scale": 1.0}))
'''

LOSS_CONFIG = """name: cli_quiet
params: {scale: 0.5}
term_weights: {mask: 1.0, cls: 1.0}
layer_weights: null
objectness_weight: 1.0
postprocess: {topk: 20}
"""


def test_train_imports_a_users_loss_module_and_reads_their_config_folder(trained, tmp_path, monkeypatch, capsys):
    root, _ = trained
    (tmp_path / "code" / "cli_quiet_loss.py").parent.mkdir()
    (tmp_path / "code" / "cli_quiet_loss.py").write_text(LOSS_MODULE)
    (tmp_path / "configs" / "loss").mkdir(parents=True)
    (tmp_path / "configs" / "loss" / "cli_quiet.yaml").write_text(LOSS_CONFIG)
    monkeypatch.syspath_prepend(str(tmp_path / "code"))
    run = tmp_path / "run"
    common = [f"data.root={root}", f"run_dir={run}", "trainer.epochs=1", "trainer.max_steps=1", "trainer.batch_size=1",
              "trainer.progress=false", "trainer.tensorboard=false", "trainer.num_workers=0",
              "trainer.val_every_epochs=1", "model.decoder.eval_num_queries=null"]
    assert train_main(["--import", "no_such_module_here", *common]) == 2
    assert "--import no_such_module_here: cannot import it" in capsys.readouterr().err
    assert train_main(["loss=cli_quiet", *common]) == 2  # no --config-dir: Hydra does not know the option
    assert "cli_quiet" in capsys.readouterr().err
    assert train_main(["--config-dir", str(tmp_path / "configs"), "--print-config", "loss=cli_quiet", *common]) == 0
    assert "name: cli_quiet" in capsys.readouterr().out
    assert train_main(["--import", "cli_quiet_loss", "--config-dir", str(tmp_path / "configs"), "loss=cli_quiet",
                       *common]) == 0
    capsys.readouterr()
    from pointformer.cli.evaluate import evaluate_model_main

    assert evaluate_model_main([str(run / "checkpoints" / "best.pt"), "--import", "cli_quiet_loss"]) == 0
    assert "checkpoint step 1" in capsys.readouterr().out


def test_scannet200_end_to_end_raw_release_to_validated_submission(tmp_path, capsys):
    """synth (ScanNet200 ids) -> preprocess -> train data=scannet200 -> export from the raw release: the
    submission is validated against the raw meshes with the ScanNet200 rules and carries raw ids only."""
    from pointformer.cli.preprocess import preprocess_main
    from pointformer.io.labels import SCANNET200_INSTANCE_IDS
    from pointformer.synthetic.scannet import generate_scannet

    torch.set_num_threads(1)
    raw, pre, run = tmp_path / "raw", tmp_path / "pre", tmp_path / "run"
    generate_scannet(raw, num_scenes=3, num_test_scenes=1, target_vertices=3000, label_set="scannet200")
    assert preprocess_main(["scannet", str(raw), str(pre)]) == 0
    assert train_main(["data=scannet200", f"data.root={pre}", f"run_dir={run}", "trainer.epochs=1",
                       "trainer.batch_size=1", "trainer.progress=false", "trainer.tensorboard=false",
                       "trainer.num_workers=0", "trainer.val_every_epochs=1"]) == 0
    capsys.readouterr()
    out = tmp_path / "sub.zip"
    assert export_main([str(run / "checkpoints" / "best.pt"), str(raw), str(out)]) == 0
    assert "OK: ready to upload" in capsys.readouterr().out
    archive = zipfile.ZipFile(out)
    rows = [line.split() for name in archive.namelist() if "/" not in name
            for line in archive.read(name).decode().splitlines()]
    assert rows and {int(label) for _, label, _ in rows} <= set(SCANNET200_INSTANCE_IDS)
