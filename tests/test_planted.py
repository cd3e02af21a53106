"""The harness's power: every planted bug is caught by the default run, and shrinks.

The default run is what `python -m harness report` does with no options: the
shipped YAML cases plus `generate_cases(DEFAULT_EXAMPLES, 0)`. Each planted backend
(tests/plugins/planted.py) carries one bug over a careful base; a bug counts as
caught when some check fails for it where the same check passes for the bugless
base (`PlantedControl`), so a catch is the bug's doing, not the base's.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from harness.backends.numpy_backend import NumpyBackend
from harness.cases import Case, load_cases
from harness.generate.seeding import DEFAULT_EXAMPLES, generate_cases
from harness.generate.shrink import failures, save_found, shrink
from harness.protocol import Unsupported
from harness.report import load as read_report
from harness.run.calls import execute, records_for
from harness.run.trials import ReferenceCache, expand, features, variant_of
from harness.verdict.expectations import Expectations, load
from tests.plugins.planted import PLANTED, NanToZero, PlantedControl

ROOT = Path(__file__).resolve().parent.parent
BAD = ("fail", "error")


class DefaultRun:
    """Every trial of the default run, with the reference computed once for all backends."""

    def __init__(self) -> None:
        self.trials = expand(load_cases() + generate_cases(DEFAULT_EXAMPLES, 0))
        self.refs = ReferenceCache()
        self.entries = load()

    def by_trial(self, backend: Any, implementation: str,
                 entries: Expectations | None = None) -> Iterator[list[dict[str, Any]]]:
        """The records of each trial in turn (a caller may stop once it knows enough)."""
        for trial in self.trials:
            # the plan's variant, as a report makes it: no smoothing sent to a backend
            # that does not offer it, row means for a last-axis implementation
            variant = variant_of(features(backend), trial, implementation)
            outcome, seconds = (execute(backend, trial.call(implementation, "cpu", variant))
                                if not variant.refused else (Unsupported(variant.refused), 0.0))
            yield records_for(backend.name, implementation, "cpu", trial, outcome, seconds,
                              self.refs, self.entries if entries is None else entries,
                              variant=variant)

    def records(self, backend: Any, implementation: str,
                entries: Expectations | None = None) -> list[dict[str, Any]]:
        return [r for recs in self.by_trial(backend, implementation, entries) for r in recs]


def failing(records: list[dict[str, Any]]) -> set[tuple[str, str, str, str]]:
    return {(r["case"], r["dtype"], r["reduction"], r["check"]) for r in records
            if r["status"] in BAD}


#: The tests reading the default run share one pytest-xdist worker under
#: --dist loadgroup (pyproject.toml), so its cases and references are made once.
DEFAULT_RUN = pytest.mark.xdist_group("planted-default-run")


@pytest.fixture(scope="module")
def run() -> DefaultRun:
    return DefaultRun()


@pytest.fixture(scope="module")
def control(run: DefaultRun) -> set[tuple[str, str, str, str]]:
    return failing(run.records(PlantedControl(), "planted", entries=Expectations()))


@DEFAULT_RUN
@pytest.mark.parametrize("planted", PLANTED, ids=[p.name for p in PLANTED])
def test_the_default_run_catches_the_planted_bug(planted, run, control):
    # the first trial with a failing check the control passes is the catch: the rest
    # of the run cannot undo it, so it is not made
    caught: set[tuple[str, str, str, str]] = set()
    for records in run.by_trial(planted(), "planted", entries=Expectations()):
        caught = failing(records) - control
        if caught:
            break
    assert caught, f"{planted.name} ({planted.bug}) passes the default run"


@DEFAULT_RUN
def test_the_numpy_formula_backend_is_not_flagged(run):
    bad = [r for r in run.records(NumpyBackend(), "formula") if r["status"] in BAD]
    listing = "\n".join(f"  {r['case']} {r['dtype']} {r['reduction']} {r['check']}: "
                        f"{r['message'][:120]}" for r in bad[:15])
    assert not bad, (f"numpy/formula has {len(bad)} unexpected discrepancies in the default "
                     f"run (fix them: the control must pass everything):\n{listing}")


def test_a_planted_bug_found_on_a_large_case_shrinks_to_one_element(tmp_path):
    """NaN turned into 0, found on a generated case of 50+ elements, shrinks to the
    NaN alone; the saved file loads back and still fails."""
    bug, base = NanToZero(), PlantedControl()
    found = next(c for c in generate_cases(DEFAULT_EXAMPLES, 0) if c.input.size >= 50
                 and ("value", "fail") in failures(bug, "planted", "cpu", c, Expectations())
                 - failures(base, "planted", "cpu", c, Expectations()))
    small = shrink(bug, "planted", "cpu", found, seed=0, check="value", entries=Expectations())
    assert small is not None
    assert small.input.size <= 2, (found.input.size, small.input.tolist())
    assert np.isnan(small.input).any() or np.isnan(small.target).any()
    assert ("value", "fail") in failures(bug, "planted", "cpu", small, Expectations())
    assert not failures(base, "planted", "cpu", small, Expectations())
    path = save_found(small, bug.name, "planted", "value fail: NaN became 0", tmp_path)
    assert path.parent == tmp_path and path.suffix == ".yaml"
    text = path.read_text()
    assert f"--cases {path}" in text and f"--backend {bug.name}" in text
    (loaded,) = load_cases([path])
    for name in ("input", "target", "weight", "pos_weight"):
        a, b = getattr(loaded, name), getattr(small, name)
        assert (a is None and b is None) or a.tobytes() == b.tobytes()
    assert ("value", "fail") in failures(bug, "planted", "cpu", loaded, Expectations())


def test_shrink_returns_none_when_the_case_passes():
    base = PlantedControl()
    passing = next(c for c in generate_cases(10, 0)
                   if not failures(base, "planted", "cpu", c, Expectations()))
    assert shrink(base, "planted", "cpu", passing, seed=0, entries=Expectations()) is None


def test_a_case_that_was_not_generated_still_shrinks():
    """No seeded search to replay: the case-level steps alone find the one NaN."""
    bug = NanToZero()
    yaml_like = Case(name="file/nan", source="cases/x.yaml:3", description="",
                     input=np.linspace(-3, 3, 40).reshape(5, 8),
                     target=np.where(np.arange(40) == 17, np.nan, 1.0).reshape(5, 8),
                     dtypes=("float32",), reductions=("sum",), grads=())
    small = shrink(bug, "planted", "cpu", yaml_like, seed=0, entries=Expectations())
    assert small is not None and small.input.size == 1 and np.isnan(small.target).all()


def test_the_cli_catches_a_planted_plugin(tmp_path):
    """The planted bug through `python -m harness report` and its exit code. Shrinking is
    off (--shrink 0): it is proven above in-process, and through the CLI in
    tests/test_phases.py and tests/test_shrink.py; here it would cost over a minute."""
    env = {**os.environ, "PYTHONPATH": str(ROOT), "TF_CPP_MIN_LOG_LEVEL": "3"}
    out = tmp_path / "out"
    r = subprocess.run([sys.executable, "-m", "harness", "report", "--plugin",
                        "tests.plugins.planted:PLANTED", "--backend", "planted-nan-to-zero",
                        "--cases", str(ROOT / "cases" / "extremes.yaml"), "--examples", "3",
                        "--shrink", "0", "--quiet", "--out", str(out)],
                       cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert r.returncode == 1, r.stdout + r.stderr
    doc = read_report(out / "report.json")
    assert any(x["status"] == "fail" and x["backend"] == "planted-nan-to-zero"
               for x in doc["results"])
    assert any(x["case"].startswith("generated/s0-") for x in doc["results"])
