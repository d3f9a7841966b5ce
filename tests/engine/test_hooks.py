"""Trainer hooks: a hook written in a test sees every step and validation, adds metrics, and its
state is checkpointed and restored on resume exactly like the built-in hooks' state."""
import importlib.util
import math
from pathlib import Path

import pytest

from pointformer.engine import checkpoint as ckpt
from pointformer.engine.hooks import Hook, StepOutput
from pointformer.engine.metrics_log import read_metrics


def _sibling(name):
    """A test module of this folder (the suite imports in importlib mode: no sys.path entry for it)."""
    spec = importlib.util.spec_from_file_location(f"_engine_tests_{name}", Path(__file__).with_name(f"{name}.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


mechanics = _sibling("test_trainer_mechanics")
_trainer = mechanics._trainer
data_root = mechanics.data_root  # the toy data fixture


class Recorder(Hook):
    """Counts steps and sums the loss (state); lists every event of this process (not state)."""

    name = "recorder"

    def __init__(self):
        self.steps = 0
        self.loss_sum = 0.0
        self.events = []

    def on_fit_start(self, trainer):
        self.events.append(("start", trainer.step))

    def after_step(self, trainer, output):
        assert isinstance(output, StepOutput) and output.step == trainer.step and output.finite
        assert set(output.seconds) == {"data", "forward", "backward"} and output.total_seconds > 0
        self.steps += 1
        self.loss_sum += output.logs["loss"]
        self.events.append(("step", output.step))

    def after_validation(self, trainer, metrics):
        self.events.append(("val", trainer.step))
        return {"steps_seen": self.steps, "map50_doubled": 2 * metrics["map50"]}

    def on_log(self, trainer, kind, step, record):
        self.events.append((f"log_{kind}", step))

    def on_fit_end(self, trainer, result):
        self.events.append(("end", result.step))

    def state_dict(self):
        return {"steps": self.steps, "loss_sum": self.loss_sum}

    def load_state_dict(self, state):
        self.steps, self.loss_sum = int(state["steps"]), float(state["loss_sum"])


def test_a_hook_sees_every_step_and_validation_and_adds_metrics(data_root, tmp_path):
    recorder = Recorder()
    result = _trainer(data_root, tmp_path / "run", hooks=[recorder], epochs=2, log_every=3).fit()
    assert result.step == 6 and recorder.steps == 6
    events = recorder.events
    assert events[0] == ("start", 0) and events[-1] == ("end", 6)
    assert [s for kind, s in events if kind == "step"] == list(range(1, 7))
    # at a step: the built-in train record (every 3 steps here), the extra hooks, then validation
    # (epoch 2 = step 6), whose extras are merged before the val record is written
    assert events[events.index(("log_train", 6)):-1] == [("log_train", 6), ("step", 6), ("val", 6), ("log_val", 6)]
    val = read_metrics(tmp_path / "run" / "metrics.jsonl", "val")
    assert [(r["step"], r["steps_seen"]) for r in val] == [(6, 6)]
    assert val[0]["map50_doubled"] == pytest.approx(2 * val[0]["map50"])
    payload = ckpt.load_checkpoint(ckpt.step_checkpoint_path(tmp_path / "run", 6))
    assert payload["hooks"]["recorder"] == {"steps": 6, "loss_sum": recorder.loss_sum}
    assert list(payload["hooks"]) == ["lr_scheduler", "train_log", "progress", "recorder", "validation", "checkpoint"]
    assert payload["hooks"]["validation"]["best"] == payload["best"] == result.best


def test_hook_state_survives_a_resume_exactly(data_root, tmp_path):
    full = Recorder()
    _trainer(data_root, tmp_path / "full", hooks=[full]).fit()
    _trainer(data_root, tmp_path / "cut", hooks=[Recorder()], max_steps=5, checkpoint_every_steps=5).fit()
    resumed = Recorder()
    result = _trainer(data_root, tmp_path / "cut", hooks=[resumed], resume="auto").fit()
    assert result.resumed_from.endswith("step_00000005.pt")
    assert resumed.events[0] == ("start", 5) and [s for k, s in resumed.events if k == "step"] == list(range(6, 13))
    # the state continued from step 5: the same count and (bit for bit) the same loss sum as uninterrupted
    assert resumed.steps == full.steps == 12 and resumed.loss_sum == full.loss_sum


def test_hook_names_are_unique_and_a_failing_hook_still_ends_the_fit(data_root, tmp_path):
    with pytest.raises(ValueError, match="unique names.*recorder"):
        _trainer(data_root, tmp_path / "dup", hooks=[Recorder(), Recorder()])

    class Failing(Recorder):
        name = "failing"

        def after_step(self, trainer, output):
            super().after_step(trainer, output)
            if output.step == 2:
                raise RuntimeError("boom")

    failing = Failing()
    with pytest.raises(RuntimeError, match="boom"):
        _trainer(data_root, tmp_path / "fail", hooks=[failing]).fit()
    assert failing.events[-1] == ("end", 2)   # on_fit_end ran (resources are released)


def test_step_output_timing_and_the_synchronised_clock(data_root, tmp_path):
    class Timed(Recorder):
        name = "timed"
        synchronise_timing = True

    trainer = _trainer(data_root, tmp_path / "run", hooks=[Timed()], max_steps=2)
    # CPU: synchronising is a no-op, but the request reaches the phase clocks
    assert all(watch.device == trainer.device for watch in trainer.phase_watches.values())
    assert all(watch.device is None for watch in _trainer(data_root, tmp_path / "plain").phase_watches.values())
    trainer.fit()
    train = read_metrics(tmp_path / "run" / "metrics.jsonl", "train")
    assert all(math.isfinite(r["s_per_step"]) and r["s_per_step"] > 0 and r["scenes_per_s"] > 0 for r in train)
