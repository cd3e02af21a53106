"""The benchmarks run: each one, on a small problem, prints its table and exits 0.

The figures they print are for people (the README quotes them); what a test can keep
is that they still run against today's code. `bench_sweep.py` once called a function
that no longer existed, and nothing noticed.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _bench(name: str, *args: str, tmp_path: Path) -> str:
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3", TMPDIR=str(tmp_path))
    r = subprocess.run([sys.executable, str(ROOT / "benchmarks" / name), *args],
                       capture_output=True, text=True, cwd=tmp_path, env=env, timeout=300)
    assert r.returncode == 0, r.stderr[-3000:]
    assert "Traceback" not in r.stderr
    return r.stdout


def test_bench_reference_prints_its_ratios(tmp_path):
    out = _bench("bench_reference.py", "--n", "20000", "--repeat", "1", tmp_path=tmp_path)
    assert out.splitlines()[1].startswith("fast kernel: ")
    for reduction in ("mean", "none"):
        rows = [line for line in out.splitlines() if line.startswith(reduction)]
        assert any("reference evaluate()" in r and r.rstrip().endswith("x") for r in rows)


def test_bench_sweep_projects_a_full_sweep(tmp_path):
    out = _bench("bench_sweep.py", "--n", "4096", "--windows", "2", "--backend", "numpy",
                 "--workers", "1,16", tmp_path=tmp_path)
    assert "reference" in out and "numpy/formula cpu" in out
    assert "full float32 sweep" in out and "on    16 workers" in out


@pytest.mark.slow
def test_bench_report_prints_every_phase(tmp_path):
    out = _bench("bench_report.py", "--backend", "numpy", "--dtype", "float32",
                 "--examples", "2", tmp_path=tmp_path)
    for phase in ("plan", "numpy: import", "numpy: calls", "reference", "numpy: judging",
                  "report.json", "validate", "report.html", "total (one core)"):
        assert any(line.startswith(phase) for line in out.splitlines()), phase
