"""The commands on the 2D branch: train (dispatch on data.modality), evaluate-model (COCO AP + results
JSON), infer IMAGE.png (overlay), demo 2d (slow)."""
from __future__ import annotations

import json

import pytest
from PIL import Image

from pointformer.cli import main

from .shapes_fixture import write_shapes

TINY = ["experiment=demo_2d", "data.num_classes=2", "data.image_size=32", "trainer.batch_size=2",
        "trainer.progress=false", "trainer.epochs=2", "trainer.val_every_epochs=2",
        "trainer.checkpoint_every_epochs=2", "model.decoder.num_layers=1", "model.decoder.num_queries=8",
        "model.decoder.eval_num_queries=8"]


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    root = tmp_path_factory.mktemp("shapes")
    write_shapes(root, "train", images=4)
    write_shapes(root, "val", images=2, seed=1)
    run = root / "run"
    assert main(["train", *TINY, f"data.root={root}", f"run_dir={run}"]) == 0
    return root, run / "checkpoints" / "best.pt"


def test_train_dispatches_image_configs_and_prints_coco_metrics(trained, capsys):
    root, checkpoint = trained
    assert checkpoint.is_file()
    assert main(["train", *TINY, f"data.root={root}", f"run_dir={root / 'run2'}", "trainer.epochs=1",
                 "trainer.val_every_epochs=1"]) == 0
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert summary["step"] == 2 and {"ap", "ap50", "ap75"} <= set(summary)


def test_evaluate_model_prints_ap_and_writes_the_coco_results(trained, tmp_path, capsys):
    _, checkpoint = trained
    assert main(["evaluate-model", str(checkpoint), "--out", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "COCO segm AP" in out and "AP50" in out and "AP75" in out
    results = json.loads((tmp_path / "coco_results.json").read_text())
    assert isinstance(results, list)
    for r in results:
        assert {"image_id", "category_id", "segmentation", "score"} <= set(r)
        assert r["category_id"] in (3, 7) and isinstance(r["segmentation"]["counts"], str)  # compressed RLE
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    assert metrics["split"] == "val" and 0.0 <= metrics["ap50"] <= 1.0


def test_evaluate_model_names_a_missing_checkpoint(tmp_path, capsys):
    assert main(["evaluate-model", str(tmp_path / "nope.pt")]) == 2
    assert "nope.pt" in capsys.readouterr().err


def test_infer_on_an_image_writes_an_overlay_and_a_json(trained, tmp_path, capsys):
    root, checkpoint = trained
    image = root / "val" / "val_000.png"
    assert main(["infer", str(image), "--checkpoint", str(checkpoint), "--out", str(tmp_path),
                 "--score-threshold", "0"]) == 0
    overlay = Image.open(tmp_path / "val_000_instances.png")
    assert overlay.size == Image.open(image).size and overlay.mode == "RGB"
    listed = json.loads((tmp_path / "val_000_instances.json").read_text())
    assert all(i["class"] in ("square", "triangle") for i in listed["instances"])
    assert "instances with score" in capsys.readouterr().out


def test_infer_on_an_image_needs_a_checkpoint_and_a_readable_file(trained, tmp_path, capsys):
    _, checkpoint = trained
    assert main(["infer", str(tmp_path / "x.png")]) == 2
    assert "--checkpoint" in capsys.readouterr().err
    broken = tmp_path / "broken.png"
    broken.write_bytes(b"not a png")
    assert main(["infer", str(broken), "--checkpoint", str(checkpoint)]) == 2
    assert "broken.png" in capsys.readouterr().err


@pytest.mark.slow
def test_demo_2d_runs_end_to_end(tmp_path, capsys):
    out = tmp_path / "demo"
    assert main(["demo", "2d", "--out", str(out), "--images", "16", "--val-images", "4", "--size", "48",
                 "--epochs", "2"]) == 0
    summary = json.loads((out / "summary.json").read_text())
    assert summary["steps"] == 8 and len(summary["overlays"]) == 4
    assert (out / "eval_val" / "coco_results.json").is_file()
    assert "2D demo finished" in capsys.readouterr().out
