"""data=s3dis end to end on synthetic rooms: `synth s3dis` -> `preprocess s3dis` -> a few training steps."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from pointformer.config import compose_config
from pointformer.engine.metrics_log import read_metrics
from pointformer.engine.run import run_training
from pointformer.preprocess.s3dis import preprocess_s3dis
from pointformer.synthetic.s3dis import generate_s3dis


def test_data_s3dis_trains_on_synthetic_rooms(tmp_path: Path) -> None:
    torch.set_num_threads(1)
    synthetic = generate_s3dis(tmp_path / "raw", num_rooms=3, seed=0, points_per_room=2000, areas=(1, 2, 5))
    summary = preprocess_s3dis(synthetic.release, tmp_path / "pre", superpoints="knn")
    assert not summary.failed
    cfg = compose_config([
        "data=s3dis", f"data.root={tmp_path / 'pre'}", "model=tiny", "data.cache=true",
        f"run_dir={tmp_path / 'run'}", "trainer.progress=false", "trainer.tensorboard=false",
        "trainer.num_workers=0", "trainer.epochs=2", "trainer.batch_size=1", "trainer.val_every_epochs=2",
        "trainer.log_every=1", "data.augment.elastic=null"])
    result = run_training(cfg)  # trains on Area_1 + Area_2 (3..4 and 6 are absent: a warning), tests on Area_5
    losses = [r["loss"] for r in read_metrics(tmp_path / "run" / "metrics.jsonl", "train")]
    assert result.step == 4 and len(losses) == 4 and np.isfinite(losses).all()
    val = read_metrics(tmp_path / "run" / "metrics.jsonl", "val")
    assert len(val) == 1 and val[0]["num_scenes"] == 1 and val[0]["dataset"] == "s3dis"
    assert {"map50", "mcov", "mwcov", "mprec50", "mrec50"} <= set(val[0]) and val[0]["score_threshold"] == 0.8
