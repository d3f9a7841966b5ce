"""The ScanNet-scale study's additions to benchmarks/convergence.py: the lr sweep (planning, choosing the
lr, reusing the sweep's runs), the goal check of the report, and unchanged fingerprints of the recorded
study."""
import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from .bench_loader import BENCH, load_benchmark


conv = load_benchmark("convergence")
report = load_benchmark("convergence_report")


def test_the_recorded_cpu_study_keeps_its_fingerprints():
    """New study fields (scene preset, lr sweep) must not invalidate the recorded runs (resume/skip)."""
    recorded = BENCH / "results" / "convergence"
    specs = conv.plan_runs(recorded, conv.SIZES["default"], recorded / "data", "cpu", 1)
    checked = 0
    for spec in specs:
        done = Path(spec.run_dir) / "done.json"
        if done.is_file():
            assert json.loads(done.read_text())["fingerprint"] == spec.fingerprint, spec.run_dir
            checked += 1
    assert checked >= 6


def test_lr_sweep_plans_and_lr_for_reuses_the_sweep_runs(tmp_path):
    size = conv.SIZES["scannet_scale"]
    sweep = conv.plan_runs(tmp_path, size, tmp_path, "cpu", 1)
    assert len(sweep) == len(size.variants) * len(size.lrs)
    assert {s.name for s in sweep if s.variant == "influencer"} == {"influencer@lr0.0015", "influencer@lr0.003",
                                                                    "influencer@lr0.006"}
    chosen = replace(size, seeds=(0, 1, 2), variant_lrs=(("influencer", 0.003),), variants=("influencer",))
    runs = conv.plan_runs(tmp_path, chosen, tmp_path, "cpu", 1)
    assert [(s.name, s.seed) for s in runs] == [("influencer@lr0.003", k) for k in (0, 1, 2)]
    by_dir = {s.run_dir: s.fingerprint for s in sweep}
    assert by_dir[runs[0].run_dir] == runs[0].fingerprint   # the sweep's seed-0 run is the same run
    with pytest.raises(ValueError, match="learning rates must be positive"):
        replace(size, lrs=(0.0,)).validate()
    with pytest.raises(ValueError, match="unknown variant"):
        replace(size, variant_lrs=(("hungarain", 1e-3),)).validate()


def _write_run(out, variant, lr, seed, map50s, done=True):
    run = out / "runs" / f"{variant}@lr{lr:g}" / f"seed{seed}"
    run.mkdir(parents=True)
    records = [{"step": 10 * (i + 1), "map": m / 2, "map50": m, "map25": m, "train_seconds": float(i + 1)}
               for i, m in enumerate(map50s)]
    payload = {"variant": f"{variant}@lr{lr:g}", "loss_variant": variant, "lr": lr, "seed": seed,
               "label": variant, "evaluations": records}
    (run / "evaluations.json").write_text(json.dumps(payload))
    if done:
        (run / "done.json").write_text(json.dumps({"final": records[-1]}))


def test_choose_lrs_takes_the_best_final_map50_of_the_sweep_seed(tmp_path):
    _write_run(tmp_path, "influencer", 0.001, 0, [0.1, 0.3])
    _write_run(tmp_path, "influencer", 0.002, 0, [0.2, 0.5])
    _write_run(tmp_path, "influencer", 0.004, 0, [0.4, 0.5])        # same final, faster riser: chosen
    _write_run(tmp_path, "hungarian", 0.001, 0, [0.2, 0.4])
    _write_run(tmp_path, "hungarian", 0.002, 0, [0.1, 0.2])
    _write_run(tmp_path, "hungarian", 0.004, 0, [0.3, 0.9], done=False)  # unfinished: not a candidate
    assert report.choose_lrs(tmp_path) == {"influencer": 0.004, "hungarian": 0.001}
    args = type("Args", (), {})()
    for key, value in dict(quick=False, full=False, size="scannet_scale", variants=None, seeds="0,1,2", steps=None,
                           eval_every=None, train_scenes=None, val_scenes=None, vertices=None, override=[],
                           lrs=None, lr_for=[], scene_preset=None, lr_from_sweep=True, out=tmp_path).items():
        setattr(args, key, value)
    with pytest.raises(ValueError, match="no finished sweep run"):
        conv.build_size(args)                                      # greedy and sigmoid were never swept
    args.variants = "influencer,hungarian"
    size = conv.build_size(args)
    assert size.variant_lrs == (("influencer", 0.004), ("hungarian", 0.001)) and size.seeds == (0, 1, 2)
    args.lr_from_sweep, args.lr_for = False, ["influencer"]
    with pytest.raises(ValueError, match="VARIANT=LR"):
        conv.build_size(args)


def test_goal_check_reports_met_and_not_met(tmp_path):
    for seed in (0, 1, 2):
        _write_run(tmp_path, "influencer", 0.002, seed, [0.30, 0.50, 0.55, 0.6])
        _write_run(tmp_path, "hungarian", 0.001, seed, [0.05, 0.2, 0.4, 0.5])
    _write_run(tmp_path, "hungarian", 0.004, 0, [0.9, 0.9, 0.9, 0.9])   # one seed only: not the representative
    summaries = report.summarise(report.load_runs(tmp_path))
    goal = report.goal_check(summaries)
    assert goal["baseline"] == "hungarian@lr0.001" and goal["seeds"] == [3, 3]
    assert goal["seeded_step_reaching_baseline_final"] == 20 and goal["final_margin"] == pytest.approx(0.1)
    assert goal["met"]
    slow = tmp_path / "slow"
    for seed in (0, 1, 2):
        _write_run(slow, "influencer", 0.002, seed, [0.1, 0.2, 0.3, 0.52])
        _write_run(slow, "hungarian", 0.001, seed, [0.05, 0.2, 0.4, 0.5])
    goal = report.goal_check(report.summarise(report.load_runs(slow)))
    assert goal["seeded_step_reaching_baseline_final"] == 40 and not goal["met"]
    assert "not met" in report.goal_markdown(goal)
    summary = report.write_report(slow)
    written = json.loads((slow / "summary.json").read_text())
    assert summary["table"].endswith("table.md") and written["goal"]["met"] is False
    assert {(r["variant"], r["seed"]) for r in written["runs"]} == {
        (f"{v}@lr{lr:g}", k) for v, lr in (("influencer", 0.002), ("hungarian", 0.001)) for k in (0, 1, 2)}
    assert np.isclose(written["runs"][0]["evaluations"][-1]["map50"], 0.52) or written["runs"][0]["variant"]


def test_a_variant_with_overrides_composes_and_keeps_the_other_fingerprints(tmp_path):
    from pointformer.config.compose import compose_config

    size = replace(conv.SIZES["scannet_scale"], variants=("influencer", "influencer_objectness"), lrs=())
    specs = {s.variant: s for s in conv.plan_runs(tmp_path, size, tmp_path / "data", "cpu", 1)}
    seeded = compose_config(list(specs["influencer_objectness"].overrides))
    plain = compose_config(list(specs["influencer"].overrides))
    assert seeded.loss.name == "influencer" and seeded.model.decoder.query_init == "seeded"
    assert seeded.model.decoder.seed_sampling == "objectness" and plain.model.decoder.seed_sampling == "fps"
    assert specs["influencer_objectness"].fingerprint != specs["influencer"].fingerprint
    # run by name only: the default and --full studies keep their variants (and recorded fingerprints)
    assert "influencer_objectness" not in conv.SIZES["default"].variants + conv.SIZES["full"].variants


def test_report_applies_the_goal_to_the_other_seeded_forms(tmp_path):
    for seed in (0, 1):
        _write_run(tmp_path, "influencer", 0.003, seed, [0.0, 0.1])
        _write_run(tmp_path, "influencer_objectness", 0.003, seed, [0.3, 0.4])
        _write_run(tmp_path, "hungarian", 0.003, seed, [0.1, 0.2])
    report.write_report(tmp_path)
    written = json.loads((tmp_path / "summary.json").read_text())
    assert written["goal"]["seeded"] == "influencer@lr0.003" and not written["goal"]["met"]
    [other] = written["goal_other_seeded"]
    assert other["seeded"] == "influencer_objectness@lr0.003" and other["baseline"] == "hungarian@lr0.003"
    assert other["seeded_step_reaching_baseline_final"] == 10 and other["final_margin"] == pytest.approx(0.2)
    assert other["met"]
    assert "Goal (influencer_objectness@lr0.003 vs hungarian@lr0.003" in (tmp_path / "table.md").read_text()
