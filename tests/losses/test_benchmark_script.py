"""benchmarks/losses.py stays runnable: a tiny grid, the criterion mode, and the summary."""
from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "losses.py"


@pytest.fixture(scope="module")
def bench():
    spec = importlib.util.spec_from_file_location("bench_losses", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_tiny_grid_and_summary(bench, capsys, tmp_path):
    assert bench.main(["--queries", "8", "16", "--instances", "2", "--tokens", "64", "--repeats", "1"]) == 0
    lines = [json.loads(x) for x in capsys.readouterr().out.splitlines()]
    losses = [r for r in lines if r["event"] == "loss"]
    assert {r["loss"] for r in losses} == set(bench.DEFAULT_LOSSES)
    assert all(r["cpu_ms"] >= 0 and r["mem_mb"] >= 0 for r in losses)
    assert sum(r["event"] == "ratio_to_hungarian" for r in lines) == 2
    path = tmp_path / "run.jsonl"
    path.write_text("\n".join(json.dumps(r) for r in lines))
    table = bench.summarize(str(path))
    assert "| 8 | 2 | 64 |" in table and "exponent N" in table


def test_criterion_mode(bench, capsys):
    assert bench.main(["--criterion", "2", "2", "--queries", "6", "--instances", "2", "--tokens", "40",
                       "--repeats", "1", "--losses", "influencer", "hungarian"]) == 0
    lines = [json.loads(x) for x in capsys.readouterr().out.splitlines()]
    assert [r["loss"] for r in lines] == ["influencer", "hungarian"]
    assert all(r["event"] == "criterion" and r["batch"] == 2 and r["layers"] == 2 for r in lines)
