"""What a plugin author runs from their own repository, with only the harness and
their plugin installed: `python -m pytest --pyargs harness.conformance --backend NAME`.

Run from an empty directory (no conftest, no pytest.ini, no tests/ folder), so the
only things that can make it work are the installed package and its pytest plugin.
"""

from __future__ import annotations

import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _pytest(cwd: Path, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "TF_CPP_MIN_LOG_LEVEL": "3"}
    return subprocess.run([sys.executable, "-m", "pytest", "--pyargs", "harness.conformance",
                           "-p", "no:cacheprovider", "-q", *args],
                          cwd=cwd, env=env, capture_output=True, text=True, timeout=600)


def test_the_suite_runs_from_an_empty_directory(tmp_path):
    r = _pytest(tmp_path, "--backend", "numpy", "--dtype", "float64")
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-2000:]
    assert "1 passed" in r.stdout
    assert not any(tmp_path.iterdir())  # nothing written where the author stands


def test_a_plugin_with_a_bug_fails_its_items_with_a_reproduction(tmp_path):
    """A plugin loaded with --plugin (as an author's own module would be): a planted
    bug makes its item fail (exit 1, not 5: the items were collected and run)."""
    (tmp_path / "my_backend.py").write_text(
        "from harness.backends.numpy_backend import NumpyBackend\n"
        "from harness.protocol import Result\n"
        "import numpy as np\n\n"
        "class Mine(NumpyBackend):\n"
        "    name = 'mine'\n"
        "    def implementations(self):\n"
        "        return ['formula']\n"
        "    def run(self, call):\n"
        "        r = super().run(call)\n"
        "        return Result(np.asarray(r.value) * (1 + 2.0 ** -20), r.grads)\n")
    env_path = f"{tmp_path}{os.pathsep}{ROOT}"
    r = subprocess.run([sys.executable, "-m", "pytest", "--pyargs", "harness.conformance",
                        "-p", "no:cacheprovider", "-q", "--plugin", "my_backend:Mine",
                        "--backend", "mine", "--dtype", "float64"],
                       cwd=tmp_path, env={**os.environ, "PYTHONPATH": env_path},
                       capture_output=True, text=True, timeout=600)
    assert r.returncode == 1, r.stdout[-2000:] + r.stderr[-2000:]
    assert "unexpected discrepancies for mine in float64" in r.stdout
    assert "reproduce the first one with:" in r.stdout


def test_an_unknown_backend_is_a_usage_error(tmp_path):
    r = _pytest(tmp_path, "--backend", "no-such-backend")
    # raised while collecting: pytest stops with exit 2 ("interrupted"), never 5
    assert r.returncode == 2, r.stdout[-2000:] + r.stderr[-2000:]
    assert "unknown backend 'no-such-backend'" in (r.stdout + r.stderr)
    assert "--plugin MODULE:ATTR" in (r.stdout + r.stderr)


@pytest.mark.slow
def test_the_wheel_carries_the_cases_the_expectations_and_the_suite(tmp_path):
    """A harness-only install (a wheel, not this checkout) has what the suite needs."""
    subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps",
                    "--no-build-isolation", "-w", str(tmp_path), str(ROOT)],
                   check=True, capture_output=True, timeout=600)
    (wheel,) = tmp_path.glob("bce_harness-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    shipped = {p.name for p in (ROOT / "cases").glob("*.yaml")}
    assert {f"harness/shipped_cases/{n}" for n in shipped} <= names
    assert "harness/conformance/test_conformance.py" in names
    assert "harness/schema/report.schema.json" in names
    assert not any(n.startswith("backends/") for n in names)  # no top-level package
