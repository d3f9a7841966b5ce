"""The convergence study (benchmarks/convergence.py + convergence_report.py): its measurements on
hand-built inputs, and a reduced study (two short runs) end to end, with skip and exact resume."""
import json
import shutil
from pathlib import Path

import pytest
import torch

from .bench_loader import BENCH, load_benchmark


conv = load_benchmark("convergence")
report = load_benchmark("convergence_report")


def test_step_clock_splits_steps_and_survives_a_checkpoint():
    clock = conv.StepClock()
    clock.add_step(data=0.25, model=1.0, loss=0.5, assign=0.2, backward=2.0)
    clock.add_step(data=0.75, model=1.0, loss=0.5, assign=0.0, backward=1.0)
    t = clock.summary()
    assert t["t_data"] == pytest.approx(0.5) and t["t_backward"] == pytest.approx(1.5)
    assert t["t_model"] == pytest.approx(1.0) and t["t_assign"] == pytest.approx(0.1)
    assert t["t_step"] == pytest.approx(3.5) and clock.train_seconds == pytest.approx(7.0)
    restored = conv.StepClock()
    restored.load_state_dict(clock.state_dict())
    assert restored == clock
    assert conv.StepClock().summary()["t_step"] is None


def test_the_study_patches_nothing_and_uses_the_public_seams():
    """No patched module attributes or private calls (tests/test_architecture.py checks every file);
    here: the study drives run_training with its hook and task and declares no run loop of its own."""
    import ast

    source = (BENCH / "convergence.py").read_text()
    calls = {node.func.attr if isinstance(node.func, ast.Attribute) else getattr(node.func, "id", None)
             for node in ast.walk(ast.parse(source)) if isinstance(node, ast.Call)}
    assert "run_training" in calls and not {"Trainer", "fit", "setattr"} & calls
    assert issubclass(conv.StudyHook, conv.Hook)


def test_bad_settings_are_rejected_with_clear_messages(tmp_path):
    with pytest.raises(ValueError, match="unknown variant"):
        conv.StudySize(**{**conv.SIZES["quick"].__dict__, "variants": ("hungarain",)}).validate()
    with pytest.raises(ValueError, match="multiple of the log interval"):
        conv.StudySize(**{**conv.SIZES["quick"].__dict__, "eval_every": 3, "log_every": 2}).validate()
    with pytest.raises(SystemExit):
        conv.main(["--quick"])  # --quick needs an explicit --out
    with pytest.raises(ValueError, match="expected a preprocessed dataset with train/ and val/"):
        conv.run_study(tmp_path / "out", conv.SIZES["quick"], data_root=tmp_path, data_config="scannet")
    with pytest.raises(ValueError, match="no runs/ folder"):
        report.write_report(tmp_path)


@pytest.mark.parametrize("preset", ["quick", "default", "full", "scannet_scale"])
def test_every_variant_composes_with_the_study_presets(preset, tmp_path):
    from pointformer.config.compose import compose_config

    size = conv.SIZES[preset]
    for spec in conv.plan_runs(tmp_path, size, tmp_path / "data", "cpu", 1):
        cfg = compose_config(list(spec.overrides))
        variant = conv.VARIANTS[spec.variant]
        assert cfg.loss.name == variant.loss and cfg.model.decoder.query_init == variant.query_init
        # identical query counts in training and evaluation; identical schedules across variants
        assert cfg.model.decoder.eval_num_queries == cfg.model.decoder.num_queries
        assert cfg.trainer.max_steps == size.steps and cfg.trainer.val_every_steps == size.eval_every
        assert cfg.trainer.checkpoint_every_steps == size.eval_every and cfg.trainer.resume == "auto"
        assert cfg.trainer.epochs * (size.train_scenes // cfg.trainer.batch_size) >= size.steps
        if spec.lr is not None:  # an lr sweep: the run's own rate
            assert cfg.trainer.lr == pytest.approx(spec.lr) and spec.name == f"{spec.variant}@lr{spec.lr:g}"
    fingerprints = {s.fingerprint for s in conv.plan_runs(tmp_path, size, tmp_path, "cpu", 1)}
    assert len(fingerprints) == len(size.variants) * len(size.seeds) * len(size.lrs or (None,))
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="CUDA is not available"):
            conv.run_study(tmp_path / "gpu", size, device="cuda")


@pytest.fixture(scope="module")
def quick_study(tmp_path_factory):
    torch.set_num_threads(1)
    out = tmp_path_factory.mktemp("convergence")
    size = conv.SIZES["quick"]
    summary = conv.run_study(out, size, device="cpu", jobs=1, threads=1)
    return out, size, summary


def test_reduced_study_end_to_end_writes_curves_table_and_plots(quick_study, capsys):
    out, size, summary = quick_study
    assert summary["trained"] == 2 and summary["runs"] == 2
    curves = (out / "curves.csv").read_text().splitlines()
    assert curves[0].startswith("variant,seed,step,map,map50,map25,duplicate_rate,unmatched_gt_rate")
    rows = [line.split(",") for line in curves[1:]]
    assert sorted((r[0], int(r[2])) for r in rows) == [("hungarian", 3), ("hungarian", 6), ("influencer", 3),
                                                        ("influencer", 6)]
    for variant in ("influencer", "hungarian"):
        run = out / "runs" / variant / "seed0"
        evals = json.loads((run / "evaluations.json").read_text())
        steps = [r["step"] for r in evals["evaluations"]]
        seconds = [r["train_seconds"] for r in evals["evaluations"]]
        assert steps == [3, 6] and 0 < seconds[0] < seconds[1]
        last = evals["evaluations"][-1]
        assert 0 <= last["map50"] <= 1 and 0 <= last["unmatched_gt_rate"] <= 1 and last["t_model"] > 0
        assert (last["t_assign"] > 0) == (variant == "hungarian")   # only the matching baseline assigns
        done = json.loads((run / "done.json").read_text())
        assert done["step"] == 6 and done["final"]["step"] == 6
        assert done["query_init"] == ("learned" if variant == "hungarian" else "seeded")
        # the trainer's own log carries the study's metrics too
        val = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines() if '"val"' in line]
        assert [v["step"] for v in val] == [3, 6] and all("duplicate_rate" in v for v in val)
        # seed coverage at the evaluation count and over the training batches: seeded queries only
        if variant == "influencer":
            assert 0 < last["seed_coverage"] <= 1 and 0 < last["train_seed_coverage"] <= 1
            assert last["seed_coverage/seeds_per_scene"] == 24    # the quick study's query count
            assert all("seed_coverage" in v for v in val)
            # the task itself logs the training batches' coverage (pointformer.engine.task)
            train = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()
                     if '"train"' in line]
            assert train and all(0 <= t["seed_coverage"] <= 1 for t in train)
        else:
            assert "seed_coverage" not in last
    table = (out / "table.md").read_text()
    assert "Influencer, seeded ownership" in table and "Hungarian, learned queries" in table
    assert "90 % of it" in table
    summary_json = json.loads((out / "summary.json").read_text())
    assert [v["variant"] for v in summary_json["variants"]] == ["influencer", "hungarian"]
    assert summary_json["data"]["val"]["scenes"] == size.val_scenes
    import matplotlib.image

    for name in ("map50_vs_step.png", "map50_vs_time.png", "diagnostics.png"):
        image = matplotlib.image.imread(out / name)
        assert image.shape[0] > 200 and image.shape[1] > 400


def test_rerun_skips_finished_runs_and_other_settings_are_refused(quick_study, capsys):
    out, size, _ = quick_study
    capsys.readouterr()
    summary = conv.run_study(out, size, device="cpu", report=False)
    events = [json.loads(line)["event"] for line in capsys.readouterr().out.splitlines()]
    assert summary["trained"] == 0 and events.count("run_skipped") == 2 and "eval" not in events
    other = conv.StudySize(**{**size.__dict__, "steps": 9})
    with pytest.raises(ValueError, match="different settings"):
        conv.run_study(out, other, device="cpu", report=False)


def test_an_interrupted_run_resumes_from_its_checkpoint_and_reproduces_the_uninterrupted_one(quick_study, tmp_path):
    out, size, _ = quick_study
    copy = tmp_path / "copy"
    shutil.copytree(out, copy)
    run = copy / "runs" / "influencer" / "seed0"
    # the same folder layout, but the run was killed after step 3's checkpoint
    for name in ("done.json",):
        (run / name).unlink()
    (run / "checkpoints" / "step_00000006.pt").unlink()
    original = {r["step"]: r for r in (json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines())
                if r["kind"] == "train"}
    spec = next(s for s in conv.plan_runs(copy, size, Path(json.loads((copy / "study.json").read_text())["data_root"]),
                                          "cpu", 1) if s.variant == "influencer")
    # the copy lives elsewhere: point the run at it (same fingerprint, other folder)
    done = conv.train_one(spec)
    assert done["resumed_from"].endswith("step_00000003.pt") and done["step"] == 6
    resumed = {r["step"]: r for r in (json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines())
               if r["kind"] == "train"}
    for step in (4, 5, 6):
        assert resumed[step]["loss"] == pytest.approx(original[step]["loss"], rel=1e-5, abs=1e-6)
    evals = json.loads((run / "evaluations.json").read_text())["evaluations"]
    before = json.loads((out / "runs" / "influencer" / "seed0" / "evaluations.json").read_text())["evaluations"]
    assert [r["step"] for r in evals] == [3, 6]
    assert evals[0] == before[0]                     # the finished evaluation was kept as it was
    assert evals[1]["map50"] == pytest.approx(before[1]["map50"])
    assert evals[1]["train_seconds"] > evals[0]["train_seconds"]
