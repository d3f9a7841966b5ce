"""The convergence study (benchmarks/convergence.py + convergence_report.py): its measurements on
hand-built inputs, and a reduced study (two short runs) end to end, with skip and exact resume."""
import importlib.util
import json
import shutil
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

BENCH = Path(__file__).resolve().parents[2] / "benchmarks"


def _load(name):
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(name, BENCH / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # dataclasses resolve their module while the class body runs
    spec.loader.exec_module(module)
    return module


conv = _load("convergence")
report = _load("convergence_report")


class _Instances:
    def __init__(self, masks, scores, queries):
        self.masks = torch.tensor(masks, dtype=torch.bool)
        self.scores = torch.tensor(scores, dtype=torch.float32)
        self.query_index = torch.tensor(queries, dtype=torch.long)


# tokens: 0-3 instance 1 (weights 50 each = 200 points), 4-5 instance 2 (2 x 60), 6 instance 3 (30 points:
# below the evaluator's 100-point minimum), 7 background, 8 ignore
TOKEN_INSTANCE = torch.tensor([1, 1, 1, 1, 2, 2, 3, 0, -1])
TOKEN_WEIGHT = torch.tensor([50, 50, 50, 50, 60, 60, 30, 100, 500], dtype=torch.float32)


def test_scene_diagnostics_counts_duplicates_unmatched_and_the_covering_query():
    inst = _Instances(
        masks=[[1, 1, 1, 1, 0, 0, 0, 0, 1],    # query 7: instance 1 exactly (the ignore token is out of the IoU)
               [1, 1, 1, 0, 0, 0, 0, 0, 0],    # query 3: IoU 0.75 with instance 1 -> a duplicate (lower score)
               [1, 1, 1, 0, 0, 0, 0, 0, 0],    # query 3 again with another class: counted once
               [0, 0, 0, 0, 1, 0, 0, 1, 0],    # query 5: instance 2 at IoU 60/220 -> no hit
               [0, 0, 0, 0, 0, 0, 1, 0, 0]],   # query 9: exactly the too-small instance 3 -> not a GT
        scores=[0.9, 0.8, 0.1, 0.7, 0.95], queries=[7, 3, 3, 5, 9])
    d = conv.scene_diagnostics(inst, TOKEN_INSTANCE, TOKEN_WEIGHT, min_region_size=100)
    assert d.num_gt == 2 and d.num_queries == 4
    assert d.hits == 2 and d.duplicates == 1
    assert d.covered_by == {1: 7}
    # the higher-scored of two covering queries owns the instance
    swapped = _Instances(masks=inst.masks[:2].tolist(), scores=[0.3, 0.8], queries=[7, 3])
    assert conv.scene_diagnostics(swapped, TOKEN_INSTANCE, TOKEN_WEIGHT, 100).covered_by == {1: 3}
    empty = _Instances(masks=np.zeros((0, 9)).tolist(), scores=[], queries=[])
    d = conv.scene_diagnostics(empty, TOKEN_INSTANCE, TOKEN_WEIGHT, 100)
    assert (d.hits, d.duplicates, d.num_queries, d.covered_by, d.num_gt) == (0, 0, 0, {}, 2)


def test_assignment_stability_compares_covering_queries_between_evaluations():
    previous = {"a": {"1": 4, "2": 5, "3": 6}, "b": {"1": 0}}
    current = {"a": {"1": 4, "2": 9}, "b": {"1": 0, "2": 3}}
    s = conv.assignment_stability(previous, current)
    # covered at both: a1 (same), a2 (changed), b1 (same) -> 2/3; retained of the 4 covered before: 2/4
    assert s["assignment_stability"] == pytest.approx(2 / 3)
    assert s["assignment_retention"] == pytest.approx(0.5)
    assert conv.assignment_stability({}, current) == {"assignment_stability": None, "assignment_retention": None}


def test_step_clock_splits_steps_and_skips_intervals_with_an_evaluation():
    clock = conv.StepClock()
    clock.start_step(0.0)
    clock.forward_done(model_s=1.0, loss_s=0.5, assign_s=0.2, now=1.5)
    clock.optimizer_done(3.5)                      # backward 2.0, no data time for the first step
    clock.start_step(3.75)                         # data 0.25
    clock.forward_done(1.0, 0.5, 0.2, 5.25)
    clock.optimizer_done(6.25)                     # backward 1.0
    clock.interrupt()                              # an evaluation: the gap is not data time
    clock.start_step(100.0)
    clock.forward_done(1.0, 0.5, 0.2, 101.5)
    clock.optimizer_done(102.5)
    t = clock.summary()
    assert t["t_data"] == pytest.approx(0.25) and t["t_backward"] == pytest.approx(4.0 / 3)
    assert t["t_model"] == pytest.approx(1.0) and t["t_assign"] == pytest.approx(0.2)
    # a step without a measured data time takes the mean of those measured so far (none for the first)
    assert clock.train_seconds == pytest.approx((0.0 + 1.5 + 2.0) + (0.25 + 1.5 + 1.0) + (0.25 + 1.5 + 1.0))
    clock.optimizer_done(200.0)                    # a hook call outside a study step changes nothing
    assert clock.counts["step"] == 3


def test_assignment_timer_times_the_matching_baselines_only_and_restores_the_losses():
    from pointformer.losses import greedy_loss, hungarian, hungarian_loss, influencer_loss, matching

    torch.manual_seed(0)
    n, p = 12, 40
    args = (torch.randn(n, p), torch.randn(p), torch.randn(n, 6), torch.randint(0, 4, (p,)), torch.ones(p),
            torch.tensor([0, 1, 2]))
    saved = (hungarian.matching_cost, dict(matching.ASSIGNERS))
    for fn in (hungarian_loss, greedy_loss):
        timer = conv.AssignmentTimer(torch.device("cpu"))
        with timer.active():
            out = fn(*args)
        assert timer.seconds > 0 and torch.isfinite(out["loss"])
    timer = conv.AssignmentTimer(torch.device("cpu"))
    with timer.active():
        influencer_loss(*args, query_seed_token=torch.arange(n) % p)
    assert timer.seconds == 0.0
    assert hungarian.matching_cost is saved[0] and matching.ASSIGNERS == saved[1]
    # the batched criterion path: timed once per call (no double counting of nested wrappers)
    from pointformer.losses import build_criterion, criterion as criterion_module
    from pointformer.losses.targets import TokenTargets

    crit = build_criterion({"name": "hungarian"})
    layer = type("Layer", (), {"mask_logits": [args[0]], "class_logits": [args[2]], "background_logits": None})
    targets = [TokenTargets(token_instance=args[3], token_weight=args[4], instance_class=args[5])]
    before = {n: getattr(criterion_module, n, None) for n in ("matching_cost", "assign_many")}
    timer = conv.AssignmentTimer(torch.device("cpu"))
    with timer.active(crit):
        crit([layer, layer], None, targets)
    assert timer.seconds > 0 and timer._depth == 0
    assert "_assign_layer" not in crit.__dict__
    assert {n: getattr(criterion_module, n, None) for n in before} == before


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


@pytest.mark.parametrize("preset", ["quick", "default", "full"])
def test_every_variant_composes_with_the_study_presets(preset, tmp_path):
    from pointformer.engine.config import compose_config

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
    assert len({s.fingerprint for s in conv.plan_runs(tmp_path, size, tmp_path, "cpu", 1)}) == len(size.variants) * len(size.seeds)
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
    assert sorted((r[0], int(r[2])) for r in rows) == [("hungarian", 3), ("hungarian", 6), ("influencer", 3), ("influencer", 6)]
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
    original = {r["step"]: r for r in (json.loads(l) for l in (run / "metrics.jsonl").read_text().splitlines())
                if r["kind"] == "train"}
    spec = next(s for s in conv.plan_runs(copy, size, Path(json.loads((copy / "study.json").read_text())["data_root"]),
                                          "cpu", 1) if s.variant == "influencer")
    # the copy lives elsewhere: point the run at it (same fingerprint, other folder)
    done = conv.train_one(spec)
    assert done["resumed_from"].endswith("step_00000003.pt") and done["step"] == 6
    resumed = {r["step"]: r for r in (json.loads(l) for l in (run / "metrics.jsonl").read_text().splitlines())
               if r["kind"] == "train"}
    for step in (4, 5, 6):
        assert resumed[step]["loss"] == pytest.approx(original[step]["loss"], rel=1e-5, abs=1e-6)
    evals = json.loads((run / "evaluations.json").read_text())["evaluations"]
    before = json.loads((out / "runs" / "influencer" / "seed0" / "evaluations.json").read_text())["evaluations"]
    assert [r["step"] for r in evals] == [3, 6]
    assert evals[0] == before[0]                     # the finished evaluation was kept as it was
    assert evals[1]["map50"] == pytest.approx(before[1]["map50"]) and evals[1]["train_seconds"] > evals[0]["train_seconds"]
