"""The 2D convergence study (benchmarks/convergence_2d.py) on top of the 3D study's hook and report:
a reduced study (two short runs) end to end, and a second call that keeps the finished runs."""
import json

from .bench_loader import load_benchmark


def test_quick_2d_study_runs_reports_and_skips_finished_runs(tmp_path, capsys):
    study = load_benchmark("convergence_2d")
    out = tmp_path / "study"
    assert study.main(["--quick", "--out", str(out), "--threads", "1"]) == 0
    summary = json.loads((out / "summary.json").read_text())
    assert sorted(run["variant"] for run in summary["runs"]) == ["hungarian", "influencer"]
    for run in summary["runs"]:
        assert run["finished"] and [e["step"] for e in run["evaluations"]] == [3, 6]
        assert all(0.0 <= e["map50"] <= 1.0 for e in run["evaluations"])
    for name in ("table.md", "curves.csv", "map50_vs_step.png"):
        assert (out / name).stat().st_size > 0
    capsys.readouterr()
    assert study.main(["--quick", "--out", str(out), "--threads", "1"]) == 0
    finished = [json.loads(line) for line in capsys.readouterr().out.splitlines()
                if line.startswith("{") and '"study_finished"' in line]
    assert finished and finished[-1]["trained"] == 0  # nothing re-trained: finished runs are kept
