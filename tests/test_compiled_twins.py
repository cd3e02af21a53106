"""Compiled implementations against their eager twins (check `vs-eager`).

A backend names its compiled implementations with the optional `eager_twins()` hook;
they run only when asked (`--compiled`, a compilation per shape costs time), and each
is judged against the reference and against its eager twin on the same device.
"""

from __future__ import annotations

from pathlib import Path

from harness.cases import load_cases
from harness.run.calls import iter_inprocess
from harness.run.registry import discover, select
from harness.run.trials import expand
from harness.verdict import expectations as expect

CASE = """\
cases:
  - name: logit-sweep
    input: [-30.0, -1.0, 0.0, 1.0, 21.0, 25.0, 40.0]
    target: [0.0, 1.0, 0.5, 0.0, 0.0, 0.25, 1.0]
    dtypes: [float64]
    reductions: [none, mean]
"""


def _records(tmp_path: Path, compiled: bool) -> list[dict]:
    (tmp_path / "twin.yaml").write_text(CASE)
    trials = expand(load_cases([tmp_path / "twin.yaml"]))
    loaded = select(discover(["tests.plugins.compiled_twin:BACKENDS"]), ["compiled-twin"])[0]
    return list(iter_inprocess(loaded, trials, (), expect.load([], shipped=False),
                               compiled=compiled))


def test_compiled_implementations_run_only_when_asked(tmp_path):
    impls = {r["implementation"] for r in _records(tmp_path, compiled=False)}
    assert impls == {"formula"}


def test_a_drifting_compiled_twin_fails_vs_eager_and_a_faithful_one_agrees(tmp_path):
    recs = _records(tmp_path, compiled=True)
    vs = {(r["implementation"], r["reduction"]): r for r in recs if r["check"] == "vs-eager"}
    fused = vs[("formula+fused", "none")]
    assert fused["status"] == "fail", fused
    assert "formula+fused differs from eager formula" in fused["message"]
    assert fused["max_ulp"] > 1e3
    assert vs[("formula+same", "none")]["status"] == "pass"
    assert "agree bit for bit" in vs[("formula+same", "none")]["message"]
    # the mean is untouched by the drift: eager and compiled agree there
    assert vs[("formula+fused", "mean")]["status"] == "pass"
    # and the drift is also a failure against the reference, where it happens
    value = next(r for r in recs if r["implementation"] == "formula+fused"
                 and r["reduction"] == "none" and r["check"] == "value")
    assert value["status"] == "fail"
    # no vs-eager record for the eager implementation itself
    assert not any(r["implementation"] == "formula" and r["check"] == "vs-eager" for r in recs)
