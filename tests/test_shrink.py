"""Shrinking keeps a failure's identity, and its reproduction re-runs exactly that case."""

from __future__ import annotations

import os
import shlex
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from harness.cases import Case, load_cases
from harness.generate.shrink import disagreement, failure_kinds, repro_command, save_found, shrink
from harness.report import load as read_report
from harness.verdict.expectations import Expectations
from tests.plugins.identity import TwoBugs

ROOT = Path(__file__).resolve().parent.parent


def rec(got, expected, check="value", status="fail", **extra):
    return {"check": check, "status": status, "message": "", "worst": {"got": got,
                                                                       "expected": expected},
            **extra}


@pytest.mark.parametrize("got, expected, kind", [
    (0.0, 3.37e-12, "zero where non-zero"),
    (-0.0, 1.9e-22, "zero where non-zero"),
    (1e-30, 0.0, "non-zero where zero"),
    ("nan", 0.5, "NaN where finite"),
    ("nan", "-inf", "NaN where -inf"),
    ("nan", 0.0, "NaN where zero"),
    (0.5, "nan", "number where NaN"),
    ("inf", 1e300, "+inf where finite"),
    (1.0, "-inf", "finite where -inf"),
    (1.0, "inf", "finite where +inf"),
    ("inf", "-inf", "+inf where -inf"),
    (-2.0, 2.0, "wrong sign"),
    (2.001, 2.0, "inaccurate (same sign, finite)"),
])
def test_disagreement_of_an_element(got, expected, kind):
    assert disagreement(rec(got, expected)) == kind


def test_disagreement_keeps_infinities_apart():
    """'expected -inf' and 'expected +inf' are different failures."""
    assert disagreement(rec(0.0, "-inf")) != disagreement(rec(0.0, "inf"))


@pytest.mark.parametrize("record, kind", [
    ({"check": "value", "status": "error", "message": "RuntimeError: boom"}, "raised RuntimeError"),
    ({"check": "value", "status": "error",
      "message": "WorkerError: the worker process died with SIGABRT"}, "raised WorkerError"),
    ({"check": "grad.input", "status": "error",
      "message": "the backend returned no gradient for input"}, "missing gradient"),
    ({"check": "raises", "status": "fail", "kind": "silent-accept",
      "message": "returned a value of shape (2,) where ValueError was expected"}, "silent accept"),
    ({"check": "raises", "status": "fail", "kind": "wrong-error",
      "message": "raised TypeError: no; the case expects ValueError"}, "raised TypeError"),
    ({"check": "dtype", "status": "fail", "message": "value is float32, expected float64"},
     "wrong dtype"),
    ({"check": "shape", "status": "fail", "message": "value has shape (1,)"}, "wrong shape"),
    ({"check": "value", "status": "fail", "message": "the result is not floating point (bool)",
      "worst": None}, "not floating point"),
])
def test_disagreement_from_the_message(record, kind):
    assert disagreement(record) == kind


def _underflow_case() -> Case:
    return Case(name="file/two-bugs", source="cases/x.yaml:1", description="",
                input=np.array([3.0, -50.0, 1.5, -2.0]), target=np.array([1.0, 0.0, 0.5, 0.0]),
                dtypes=("float64",), reductions=("none",), grads=())


def test_a_shrunk_case_fails_the_way_the_original_did(tmp_path):
    """The underflow (got 0, expected 1.9e-22 at x = -50) must not shrink to x = 0, which
    fails too, but with NaN: a different bug."""
    bug, none = TwoBugs(), Expectations()
    original = _underflow_case()
    assert ("value", "fail", "zero where non-zero") in failure_kinds(bug, "formula", "cpu",
                                                                    original, none)
    # the simpler case the old shrinking ended on fails, but another way
    at_zero = Case(name="z", source="z", description="", input=np.array([0.0]),
                   target=np.array([0.0]), dtypes=("float64",), reductions=("none",), grads=())
    assert failure_kinds(bug, "formula", "cpu", at_zero, none) == {
        ("value", "fail", "NaN where finite")}

    small = shrink(bug, "formula", "cpu", original, seed=0, check="value",
                   kind="zero where non-zero", entries=none)
    assert small is not None and small.input.size == 1
    assert small.input[0] <= -30 and small.target[0] == 0.0, (small.input, small.target)
    assert failure_kinds(bug, "formula", "cpu", small, none) == {
        ("value", "fail", "zero where non-zero")}
    assert "zero where non-zero" in small.description

    # asked for a kind the case does not show: nothing to shrink
    assert shrink(bug, "formula", "cpu", original, seed=0, check="value",
                  kind="NaN where finite", entries=none) is None


def test_the_printed_command_reproduces_exactly_the_saved_case(tmp_path):
    bug, none = TwoBugs(), Expectations()
    small = shrink(bug, "formula", "cpu", _underflow_case(), seed=0, check="value",
                   entries=none)
    assert small is not None
    path = save_found(small, bug.name, "formula", "value fail, zero where non-zero", tmp_path,
                      plugin="tests.plugins.identity:BACKENDS")
    command = repro_command(path, bug.name, small.dtypes, plugin="tests.plugins.identity:BACKENDS")
    assert command == (f"python -m harness report --cases {path} --plugin "
                       "tests.plugins.identity:BACKENDS --backend two-bugs --dtype float64 "
                       "--examples 0")
    assert f"reproduce with: {command}" in path.read_text()
    (loaded,) = load_cases([path])
    assert loaded.reductions == ("none",) and loaded.dtypes == ("float64",)
    out = tmp_path / "out"
    argv = [*shlex.split(command)[1:], "--out", str(out)]
    env = {**os.environ, "PYTHONPATH": str(ROOT), "TF_CPP_MIN_LOG_LEVEL": "3"}
    r = subprocess.run([sys.executable, *argv], cwd=ROOT, env=env, capture_output=True,
                       text=True, timeout=300)
    assert r.returncode == 1, r.stderr
    doc = read_report(out / "report.json")
    assert doc["run"]["examples"] == 0 and not doc["run"].get("shrinks")
    assert {(x["case"], x["dtype"], x["reduction"]) for x in doc["results"]} == {
        (loaded.name, "float64", "none")}
    bad = [x for x in doc["results"] if x["status"] == "fail"]
    assert [(x["check"], disagreement(x)) for x in bad] == [("value", "zero where non-zero")]
    assert "shrunk reproduction" not in r.stderr and "not shrunk" not in r.stderr
