"""Trainer mechanics with a small stand-in model (no 3D backbone): learning, exact resume,
corrupt-checkpoint fallback, best checkpoint, metrics files."""
import json
import time

import numpy as np
import pytest
import torch
from torch import nn

from pointformer.data import PreprocessedDataset, build_transforms
from pointformer.data.toy import write_toy_split
from pointformer.engine import checkpoint as ckpt
from pointformer.engine.metrics_log import read_metrics
from pointformer.config import ConfigError, TrainerSettings, compose_config
from pointformer.config.compose import container
from pointformer.engine.trainer import Trainer


class TokenClassifier(nn.Module):
    """Per-point MLP (with dropout, to exercise the RNG) mean-pooled per superpoint -> fg/bg logits."""

    def __init__(self):
        super().__init__()
        self.mlp = nn.Sequential(nn.Linear(6, 32), nn.ReLU(), nn.Dropout(0.3), nn.Linear(32, 2))

    def forward(self, batch):
        logits = self.mlp(torch.cat([batch.features, batch.xyz], dim=1))
        num_tokens = int(batch.token_offsets[-1])
        pooled = torch.zeros(num_tokens, 2, dtype=logits.dtype).index_add_(0, batch.superpoint, logits)
        counts = torch.bincount(batch.superpoint, minlength=num_tokens).clamp(min=1).to(logits.dtype)
        return pooled / counts[:, None]


class ForegroundTask:
    def _labels(self, batch):
        inst = torch.cat([t.token_instance for t in batch.targets])
        return (inst > 0).long(), inst >= 0

    def training_loss(self, model, batch):
        logits = model(batch)
        labels, valid = self._labels(batch)
        loss = nn.functional.cross_entropy(logits[valid], labels[valid])
        return loss, {"ce": float(loss.detach())}

    def predict(self, model, batch):
        labels, valid = self._labels(batch)
        correct = (model(batch).argmax(1) == labels) & valid
        return [float(correct.sum() / valid.sum())] * batch.batch_size

    def evaluate(self, gt_ids, predictions, scene_ids):
        return {"map50": float(np.mean(predictions)), "scenes": list(scene_ids)}


@pytest.fixture(scope="module")
def data_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("toy")
    write_toy_split(root, "train", num_scenes=6, seed=0, num_points=600)
    write_toy_split(root, "val", num_scenes=2, seed=1, num_points=600)
    return root


DEFAULTS = container(compose_config().trainer)  # configs/trainer/default.yaml: the one home of the defaults


def trainer_settings(**overrides):
    values = dict(epochs=4, batch_size=2, lr=1e-2, seed=3, log_every=1, val_every_epochs=2, num_workers=0,
                  checkpoint_every_steps=None, progress=False, tensorboard=False)
    return TrainerSettings.from_mapping({**DEFAULTS, **values, **overrides})


def _trainer(data_root, run_dir, hooks=(), **overrides):
    torch.set_num_threads(1)
    settings = trainer_settings(**overrides)
    train = PreprocessedDataset(data_root, "train", transform=build_transforms(train=True), seed=settings.seed)
    val = PreprocessedDataset(data_root, "val", transform=build_transforms(train=False))
    torch.manual_seed(123)  # model init; identical in every run of a test
    return Trainer(model=TokenClassifier(), task=ForegroundTask(), train_set=train, val_set=val, settings=settings,
                   run_dir=run_dir, config_yaml="name: test\n", hooks=list(hooks))


def test_training_decreases_loss_and_writes_metrics_and_checkpoints(data_root, tmp_path):
    result = _trainer(data_root, tmp_path / "run", epochs=8).fit()
    train = read_metrics(tmp_path / "run" / "metrics.jsonl", "train")
    assert [r["step"] for r in train] == list(range(1, 25))
    first, last = np.mean([r["loss"] for r in train[:3]]), np.mean([r["loss"] for r in train[-3:]])
    assert last < 0.7 * first, (first, last)
    assert all(r["scenes_per_s"] > 0 and "lr" in r and "grad_norm" in r for r in train)
    val = read_metrics(tmp_path / "run" / "metrics.jsonl", "val")
    assert [r["step"] for r in val] == [6, 12, 18, 24]
    assert result.best["metric"] == "map50" and result.best["value"] == max(r["map50"] for r in val)
    assert (tmp_path / "run" / "checkpoints" / "best.pt").is_file()
    # keep_last=3 step checkpoints, one per epoch
    assert [s for s, _ in ckpt.list_step_checkpoints(tmp_path / "run")] == [24, 21, 18]
    # the schedule is OneCycle over every step: lr ends near lr / (div_factor * final_div_factor)
    assert train[-1]["lr"] < 1e-5 and max(r["lr"] for r in train) > 0.9e-2


@pytest.mark.parametrize("log_every", [1, 4])
def test_killed_run_resumed_matches_uninterrupted_losses(data_root, tmp_path, log_every):
    full = _trainer(data_root, tmp_path / "full", log_every=log_every).fit()
    # "killed" after step 5 (mid-epoch: 3 steps per epoch) with a checkpoint there
    _trainer(data_root, tmp_path / "cut", max_steps=5, checkpoint_every_steps=5, log_every=log_every).fit()
    assert ckpt.list_step_checkpoints(tmp_path / "cut")[0][0] == 5
    # an unrelated process writes more records before dying: they must be dropped on resume
    with open(tmp_path / "cut" / "metrics.jsonl", "a") as f:
        f.write(json.dumps({"kind": "train", "step": 6, "loss": 123.0}) + "\n")
    resumed = _trainer(data_root, tmp_path / "cut", resume="auto", log_every=log_every).fit()
    assert resumed.resumed_from.endswith("step_00000005.pt") and full.step == resumed.step == 12
    a = read_metrics(tmp_path / "full" / "metrics.jsonl", "train")
    b = read_metrics(tmp_path / "cut" / "metrics.jsonl", "train")
    logged = [r["step"] for r in a]
    assert logged == (list(range(1, 13)) if log_every == 1 else [3, 4, 6, 8, 9, 12])  # every 4 steps + epoch ends
    # the cut run also logged when it stopped at step 5; the means over the log windows still agree
    b = [r for r in b if r["step"] != 5 or 5 in logged]
    assert [r["step"] for r in b] == logged
    for ra, rb in zip(a, b):
        assert ra["loss"] == rb["loss"] and ra["lr"] == rb["lr"], (ra, rb)
    va = read_metrics(tmp_path / "full" / "metrics.jsonl", "val")
    vb = read_metrics(tmp_path / "cut" / "metrics.jsonl", "val")
    # the cut run validated when it stopped at step 5; from there on both runs validate identically
    assert [(r["step"], r["map50"]) for r in va] == [(r["step"], r["map50"]) for r in vb if r["step"] > 5]


def test_corrupt_newest_checkpoint_falls_back_and_explicit_path_errors(data_root, tmp_path):
    run = tmp_path / "run"
    _trainer(data_root, run, max_steps=6, checkpoint_every_steps=3, keep_last=5).fit()
    good = ckpt.step_checkpoint_path(run, 6)
    data = good.read_bytes()
    truncated = ckpt.step_checkpoint_path(run, 9)
    truncated.write_bytes(data[: len(data) // 2])  # a newest checkpoint cut off mid-write
    ckpt.step_checkpoint_path(run, 10).write_bytes(b"")
    with pytest.raises(ckpt.CheckpointError, match="step_00000009.pt.*corrupt or truncated"):
        ckpt.load_checkpoint(truncated)
    with pytest.raises(ckpt.CheckpointError, match="empty"):
        ckpt.load_checkpoint(ckpt.step_checkpoint_path(run, 10))
    path, payload, problems = ckpt.find_resume_checkpoint(run)
    assert path == good and payload["step"] == 6 and len(problems) == 2
    resumed = _trainer(data_root, run, resume="auto", max_steps=7).fit()
    assert resumed.resumed_from == str(good) and resumed.step == 7
    # the skipped newer files are set aside, so they can never shadow the new run's checkpoints
    assert [s for s, _ in ckpt.list_step_checkpoints(run)] == [7, 6, 3]
    assert (run / "checkpoints" / "step_00000009.pt.abandoned").is_file()
    with pytest.raises(ckpt.CheckpointError, match="step_00000009.pt.abandoned.*corrupt"):
        _trainer(data_root, run, resume=str(truncated) + ".abandoned").fit()
    # a foreign torch file is refused too
    torch.save({"hello": torch.zeros(1)}, tmp_path / "foreign.pt")
    with pytest.raises(ckpt.CheckpointError, match="not a pointformer checkpoint"):
        ckpt.load_checkpoint(tmp_path / "foreign.pt")
    # changing the schedule and resuming is refused with a clear message
    with pytest.raises(ckpt.CheckpointError, match="schedule"):
        _trainer(data_root, run, resume=str(good), epochs=5).fit()


def test_checkpoint_holds_everything_and_loads_weights_only(data_root, tmp_path):
    _trainer(data_root, tmp_path / "run", max_steps=2, checkpoint_every_steps=2).fit()
    payload = ckpt.load_checkpoint(ckpt.step_checkpoint_path(tmp_path / "run", 2))
    for key in ("model", "optimizer", "scheduler", "scaler", "rng", "epoch", "step", "config"):
        assert key in payload
    assert payload["config"] == "name: test\n" and payload["step"] == 2
    assert isinstance(payload["rng"]["torch"], torch.Tensor) and isinstance(payload["rng"]["python"], torch.Tensor)


def test_trainer_settings_errors():
    with pytest.raises(ConfigError, match="unknown key.*'lr_max'"):
        TrainerSettings.from_mapping({**DEFAULTS, "lr_max": 1})
    with pytest.raises(ConfigError, match="trainer.amp"):
        trainer_settings(amp="fp8")


def test_worker_processes_do_not_change_the_run(data_root, tmp_path):
    _trainer(data_root, tmp_path / "w0", max_steps=4, num_workers=0).fit()
    _trainer(data_root, tmp_path / "w2", max_steps=4, num_workers=2).fit()
    a = [r["loss"] for r in read_metrics(tmp_path / "w0" / "metrics.jsonl", "train")]
    b = [r["loss"] for r in read_metrics(tmp_path / "w2" / "metrics.jsonl", "train")]
    assert len(a) == 4 and a == b


def test_validation_time_is_not_counted_as_training_time(data_root, tmp_path, monkeypatch):
    """Regression: the window after a validation reported the validation's seconds as step time."""
    trainer = _trainer(data_root, tmp_path / "run", epochs=4, log_every=4, val_every_epochs=1)
    real_validate = trainer.validate

    def slow_validate():
        time.sleep(1.5)
        return real_validate()

    monkeypatch.setattr(trainer, "validate", slow_validate)
    trainer.fit()
    train = read_metrics(tmp_path / "run" / "metrics.jsonl", "train")
    # 3 steps per epoch and a log every 4 steps: every window spans a (1.5 s) validation
    assert len(train) >= 2
    assert all(r["s_per_step"] < 0.3 for r in train), [r["s_per_step"] for r in train]
