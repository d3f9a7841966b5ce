"""2D training through the shared Trainer: a short run, checkpoints, exact resume; (slow) it learns."""
from __future__ import annotations

import json

import pytest
import torch

from pointformer.config import compose_config
from pointformer.image.run import run_image_training
from pointformer.io.checkpoint import load_checkpoint

from .shapes_fixture import write_shapes

TINY = ["experiment=demo_2d", "data.num_classes=2", "data.image_size=32", "trainer.batch_size=2",
        "trainer.progress=false", "trainer.val_every_epochs=0", "trainer.checkpoint_every_epochs=0",
        "model.decoder.num_layers=1", "model.decoder.num_queries=8", "model.decoder.eval_num_queries=8"]


@pytest.fixture(scope="module")
def root(tmp_path_factory):
    path = tmp_path_factory.mktemp("shapes")
    write_shapes(path, "train", images=4)
    write_shapes(path, "val", images=2, seed=1)
    return path


def _weights(path):
    return load_checkpoint(path)["model"]


def test_a_short_run_trains_validates_and_stores_its_config(root, tmp_path):
    cfg = compose_config([*TINY, f"data.root={root}", f"run_dir={tmp_path / 'run'}", "trainer.epochs=2",
                          "trainer.val_every_epochs=2", "trainer.checkpoint_every_epochs=2"])
    result = run_image_training(cfg)
    assert result.step == 4
    assert "ap50" in result.last_val and result.best["metric"] == "ap50"
    records = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    losses = [r["loss"] for r in records if r.get("kind") == "train" and "loss" in r]
    assert losses and all(torch.isfinite(torch.tensor(v)) for v in losses)
    stored = (tmp_path / "run" / "config.yaml").read_text()
    assert "modality: image" in stored and "class_names:" in stored and "- square" in stored
    assert (tmp_path / "run" / "checkpoints" / "best.pt").is_file()


def test_resume_continues_exactly(root, tmp_path):
    common = [*TINY, f"data.root={root}", "trainer.epochs=3", "trainer.checkpoint_every_steps=2"]
    straight = run_image_training(compose_config([*common, f"run_dir={tmp_path / 'straight'}"]))
    stopped = run_image_training(compose_config([*common, f"run_dir={tmp_path / 'resumed'}", "trainer.max_steps=2"]))
    assert stopped.step == 2
    resumed = run_image_training(compose_config([*common, f"run_dir={tmp_path / 'resumed'}", "trainer.resume=auto"]))
    assert resumed.resumed_from is not None and resumed.step == straight.step == 6
    a = _weights(tmp_path / "straight" / "checkpoints" / "step_00000006.pt")
    b = _weights(tmp_path / "resumed" / "checkpoints" / "step_00000006.pt")
    assert a.keys() == b.keys()
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_a_3d_model_config_with_image_data_is_a_clear_error(root, tmp_path):
    from pointformer.config import ConfigError

    cfg = compose_config(["data=coco", "model=tiny", f"data.root={root}", f"run_dir={tmp_path / 'x'}"])
    with pytest.raises(ConfigError, match="image model"):
        run_image_training(cfg)


@pytest.mark.slow
def test_training_on_the_synthetic_shapes_learns(tmp_path):
    """The 2D demo's setting (160 training images of 96 px, 800 steps of the tiny model with the Influencer
    Loss): held-out COCO AP50 ends well above the untrained model's (docs/image.md gives the numbers)."""
    from pointformer.image.demo import run_demo_2d

    summary = run_demo_2d(tmp_path / "demo", overlays=1)
    untrained, trained = summary["untrained"]["ap50"], summary["trained"]["ap50"]
    assert trained >= 0.03
    assert trained >= 3 * untrained + 0.02
