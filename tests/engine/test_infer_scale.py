"""`pointformer infer` at scale (benchmarks/infer_scale.py): a colour-free 20-million-point scan on a CPU
within 8 GB peak memory (slow: ~2.5 min on 2 cores), and the benchmark's scan writer at a small size."""
from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import numpy as np
import pytest

BENCH = Path(__file__).resolve().parents[2] / "benchmarks" / "infer_scale.py"


def _bench():
    spec = importlib.util.spec_from_file_location("infer_scale", BENCH)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_building_scan_is_rooms_at_the_requested_size():
    bench = _bench()
    xyz = bench.building_scan(250_000, seed=1)
    assert xyz.shape == (250_000, 3) and np.isfinite(xyz).all()
    assert 0 <= xyz[:, 2].min() + 0.02 and xyz[:, 2].max() < bench.HEIGHT + 0.02  # floor to wall tops
    assert np.ptp(xyz[:, 0]) > bench.ROOM - 0.1  # a whole room


@pytest.mark.slow
def test_twenty_million_points_within_8_gb(tmp_path, capsys):
    bench = _bench()
    assert bench.main(["--sizes", "20e6", "--out", str(tmp_path)]) == 0
    record = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert record["points"] == 20_000_000 and record["tiles"] > 1
    assert record["peak_rss_gb"] < 8.0
