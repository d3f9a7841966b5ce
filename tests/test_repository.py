"""The set-up files a user runs first: a broken Makefile or CI script would fail before any test."""
import re
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.skipif(shutil.which("make") is None, reason="make is not installed")
def test_every_documented_make_target_parses():
    """Regression: an edit once left a Makefile that stopped with 'missing separator'."""
    readme = (ROOT / "README.md").read_text()
    targets = sorted(set(re.findall(r"`make ([a-z][a-z-]*)`", readme)))
    assert {"demo", "test", "minkowski", "test-minkowski"} <= set(targets)
    for target in targets:
        out = subprocess.run(["make", "-n", target], cwd=ROOT, capture_output=True, text=True)
        assert out.returncode == 0, f"make -n {target}: {out.stderr}"


def test_ci_runs_the_readme_test_command():
    readme = (ROOT / "README.md").read_text()
    assert readme.lstrip().startswith("# pointformer")
    top = readme.split("## ")[0]
    assert "make demo" in top and "make test" in top
    ci = (ROOT / ".ci" / "run").read_text()
    assert re.search(r"^make test$", ci, flags=re.M)
    subprocess.run(["bash", "-n", str(ROOT / ".ci" / "run")], check=True)
