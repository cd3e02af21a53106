"""Expectations: a fail is `known` only when every failing element is covered.

The unit tests build calls and evidence by hand against the real judge; the power
tests run real backends (the numpy control, planted bugs, PyTorch when installed)
over the shipped sweeps with the shipped expectations, as a report does.
"""

from __future__ import annotations

import json
import sys
import textwrap
from pathlib import Path
from typing import Any

import jsonschema
import numpy as np
import pytest

from harness.backends.numpy_backend import NumpyBackend
from harness.cases import load_cases
from harness.protocol import Call, Result
from harness.run.calls import execute, records_for
from harness.run.registry import UsageError
from harness.run.trials import ReferenceCache, Trial
from harness.verdict import expectations as expect
from tests.plugins.planted import TINY_GRADIENT, PlantedControl

ROOT = Path(__file__).resolve().parent.parent


def write(tmp_path: Path, body: str, name: str = "exp.yaml") -> Path:
    path = tmp_path / name
    path.write_text(textwrap.dedent(body), encoding="utf-8")
    return path


def load(tmp_path: Path, body: str) -> expect.Expectations:
    return expect.Expectations(expect.load_file(write(tmp_path, body)))


class Fixed:
    """A backend that returns given values (real judge, real reference, no framework)."""

    name = "fixed"

    def __init__(self, value: np.ndarray, grads: dict[str, np.ndarray] | None = None) -> None:
        self.value, self.grads = value, grads or {}

    def run(self, call: Call) -> Result:
        return Result(self.value, self.grads)


def judged(backend: Any, trial: Trial, exps: expect.Expectations,
           implementation: str = "impl") -> dict[str, dict[str, Any]]:
    outcome, seconds = execute(backend, trial.call(implementation, "cpu"))
    recs = records_for(backend.name, implementation, "cpu", trial, outcome, seconds,
                       ReferenceCache(), exps)
    return {r["check"]: r for r in recs}


def case(x: list[float], y: list[float], reduction: str = "none",
         grads: tuple[str, ...] = (), **extra: Any) -> Trial:
    from harness.cases import Case

    arrays = {k: np.asarray(v, dtype=np.float64) for k, v in extra.items()}
    c = Case(name="t/c", source="test", description="", input=np.asarray(x, dtype=np.float64),
             target=np.asarray(y, dtype=np.float64), dtypes=("float64",),
             reductions=(reduction,), grads=grads, **arrays)
    return Trial(c, "float64", reduction)


EXACT = np.log1p(np.exp(-np.array([1.0, 2.0, 3.0])))  # loss of x = 1, 2, 3 with y = 1


# ------------------------------------------------------------- coverage rule ----

def test_every_failing_element_covered_makes_known(tmp_path):
    exps = load(tmp_path, """\
        expectations:
        - backend: fixed
          check: value
          kind: accuracy
          reason: the planted answer is wrong above x = 1.5 on purpose
          where: input > 1.5
        """)
    wrong = EXACT * np.array([1.0, 1.01, 1.01])
    rec = judged(Fixed(wrong), case([1, 2, 3], [1, 1, 1]), exps)["value"]
    assert rec["status"] == "known"
    assert rec["expected_by"][0]["id"].endswith("exp.yaml:2")
    assert exps.items[0].covered_failing == 2 and exps.items[0].covered_passing == 0


def test_one_uncovered_element_keeps_the_check_failing(tmp_path):
    exps = load(tmp_path, """\
        expectations:
        - backend: fixed
          kind: accuracy
          reason: the planted answer is wrong above x = 2.5 on purpose
          where: input > 2.5
        """)
    wrong = EXACT * np.array([1.0, 1.01, 1.01])  # x = 2 is wrong too, and not covered
    rec = judged(Fixed(wrong), case([1, 2, 3], [1, 1, 1]), exps)["value"]
    assert rec["status"] == "fail"
    assert rec["uncovered"] == 1
    assert "1 of 2 failing element(s) not covered by any expectation, first at [1] input=2" \
        in rec["message"]
    assert rec["expected_by"][0]["kind"] == "accuracy"


def test_a_reduced_result_is_covered_by_a_contributing_element(tmp_path):
    exps = load(tmp_path, """\
        expectations:
        - backend: fixed
          reduction: mean
          kind: special-value-in-reduction
          reason: one infinite logit makes the whole mean NaN in this planted backend
          where: input inf
        """)
    trial = case([1, 2, np.inf], [1, 1, 1], "mean")
    assert judged(Fixed(np.array(np.nan)), trial, exps)["value"]["status"] == "known"
    exps.reset()
    finite = case([1, 2, 3], [1, 1, 1], "mean")  # nothing infinite feeds this mean
    assert judged(Fixed(np.array(np.nan)), finite, exps)["value"]["status"] == "fail"


def test_a_broadcast_weight_gradient_maps_to_its_own_elements(tmp_path):
    """grad.weight of a (1, 2) weight on a (2, 2) input: column j sums rows of column j."""
    exps = load(tmp_path, """\
        expectations:
        - backend: fixed
          check: grad.weight
          kind: accuracy
          reason: the planted weight gradient is wrong in the column whose logits exceed 5
          where: input > 5
        """)
    from harness.cases import Case

    x = np.array([[1.0, 6.0], [2.0, 7.0]])
    c = Case(name="t/w", source="test", description="", input=x, target=np.ones_like(x),
             weight=np.array([[1.0, 1.0]]), dtypes=("float64",), reductions=("sum",),
             grads=("weight",))
    trial = Trial(c, "float64", "sum")
    exact = np.log1p(np.exp(-x)).sum(axis=0, keepdims=True)
    column1 = judged(Fixed(np.array(0.0), {"weight": exact * [[1.0, 1.01]]}), trial, exps)
    assert column1["grad.weight"]["status"] == "known"
    exps.reset()
    column0 = judged(Fixed(np.array(0.0), {"weight": exact * [[1.01, 1.0]]}), trial, exps)
    assert column0["grad.weight"]["status"] == "fail"


def test_scope_narrows_by_implementation_dtype_device_check_and_reduction(tmp_path):
    exps = load(tmp_path, """\
        expectations:
        - backend: fixed
          implementation: other
          kind: accuracy
          reason: applies to another implementation only, never to impl
        - backend: fixed
          dtype: float32
          kind: accuracy
          reason: applies to float32 only, never to this float64 call
        - backend: fixed
          device: cuda
          kind: accuracy
          reason: applies on CUDA devices only, never on the CPU
        - backend: fixed
          check: grad.input
          kind: accuracy
          reason: applies to the input gradient only, never to the value
        - backend: fixed
          reduction: sum
          kind: accuracy
          reason: applies to sums only, never to an elementwise result
        """)
    rec = judged(Fixed(EXACT * 1.01), case([1, 2, 3], [1, 1, 1]), exps)["value"]
    assert rec["status"] == "fail" and "expected_by" not in rec
    assert [e.outcome for e in exps.items] == ["not-run", "not-run", "not-run", "not-run",
                                               "not-run"]


def test_ledger_used_fixed_unused_and_not_run(tmp_path):
    exps = load(tmp_path, """\
        expectations:
        - backend: fixed
          kind: accuracy
          reason: covers the failing element at x = 3 of the planted backend
          where: input == 3
        - backend: fixed
          kind: accuracy
          reason: covers x = 1, which passes now, so the expectation is fixed
          where: input == 1
        - backend: fixed
          kind: accuracy
          reason: covers logits that no case of this run holds, so it is unused
          where: input > 100
        - backend: another
          kind: accuracy
          reason: another backend's expectation, which this run never reaches
        """)
    wrong = EXACT * np.array([1.0, 1.0, 1.01])
    rec = judged(Fixed(wrong), case([1, 2, 3], [1, 1, 1]), exps)["value"]
    assert rec["status"] == "known"
    summaries = exps.finish()
    assert [s["status"] for s in summaries] == ["used", "fixed", "unused", "not-run"]
    # the record the fixed expectation covered is reported, with the advice
    assert rec["status"] == "known"  # it still fails elsewhere; fixed marks passing records
    exps.reset()
    passing = judged(Fixed(EXACT[:2]), case([1, 2], [1, 1]), exps)["value"]
    exps.finish()
    assert passing["status"] == "fixed"
    assert "passes now: remove or narrow the expectation" in passing["message"]
    # a run narrowed by --cases, --dtype or --device may not reach the failures: the
    # same evidence is `passing`, no edit is advised, and the record stays `pass`
    exps.reset()
    narrowed = judged(Fixed(EXACT[:2]), case([1, 2], [1, 1]), exps)["value"]
    summaries = exps.finish(narrowed=True)
    assert [s["status"] for s in summaries][:2] == ["unused", "passing"]
    assert narrowed["status"] == "pass" and "remove or narrow" not in narrowed["message"]


def test_call_level_checks_are_one_element(tmp_path):
    """An exception on valid input is covered by a predicate over the call's elements."""
    exps = load(tmp_path, """\
        expectations:
        - backend: raising
          kind: raises-on-valid-input
          reason: the planted backend refuses NaN targets with a ValueError
          where: target nan
        """)

    class Raising:
        name = "raising"

        def run(self, call):
            raise ValueError("NaN target")

    assert judged(Raising(), case([1, 2], [np.nan, 1]), exps)["value"]["status"] == "known"
    assert judged(Raising(), case([1, 2], [0, 1]), exps)["value"]["status"] == "error"


# ------------------------------------------------------------------- loading ----

@pytest.mark.parametrize("body, where, what", [
    ("- backend: t\n  kind: accuracy\n  reason: a reason long enough\n  colour: red\n",
     ":5:", "unknown key(s) 'colour'"),
    ("- backend: t\n  kind: guess\n  reason: a reason long enough\n", ":3:", "`kind`"),
    ("- backend: t\n  kind: accuracy\n  reason: a reason long enough\n  check: values\n",
     ":5:", "`check`"),
    ("- backend: t\n  kind: accuracy\n", ":2:", "the entry has no `reason`"),
    ("- backend: t\n  kind: accuracy\n  reason: a reason long enough\n  device: gpu\n",
     ":5:", "`device`"),
    ("- backend: t\n  kind: accuracy\n  reason: a reason long enough\n"
     "  where: input < -16 and targte == 0\n", ":5:", "targte"),
    ("- backend: t\n  kind: accuracy\n  reason: a reason long enough\n"
     "  where: weight negatve\n", ":5:", "did you mean 'negative'"),
])
def test_bad_entries_name_file_line_and_fix(tmp_path, body, where, what):
    path = write(tmp_path, "expectations:\n" + body)
    with pytest.raises(UsageError) as err:
        expect.load_file(path)
    message = str(err.value)
    assert f"{path.name}{where}" in message.replace(str(tmp_path) + "/", ""), message
    assert what in message
    assert "docs/expectations.md" in message


def test_the_former_known_list_is_refused_with_the_way_out(tmp_path):
    path = write(tmp_path, "known:\n- backend: torch\n  case: x\n", "known.yaml")
    with pytest.raises(UsageError, match=r"Rewrite its entries as mechanisms"):
        expect.load_file(path)


def test_invalid_yaml_is_a_usage_error(tmp_path):
    with pytest.raises(UsageError, match=r"exp.yaml:\d+:\d+: this is not valid YAML"):
        expect.load_file(write(tmp_path, "expectations:\n- backend: [torch\n"))


def test_a_plugin_package_ships_its_expectations(tmp_path, monkeypatch):
    """A real distribution on sys.path with an entry point in bce_harness.expectations."""
    pkg = tmp_path / "mylib_exp"
    pkg.mkdir()
    (pkg / "__init__.py").write_text(
        "from pathlib import Path\nEXPECTATIONS = Path(__file__).with_name('e.yaml')\n")
    (pkg / "e.yaml").write_text("expectations:\n- backend: mylib\n  kind: accuracy\n"
                                "  reason: mylib's own known discrepancy, shipped with it\n")
    dist = tmp_path / "mylib_exp-1.0.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: mylib-exp\nVersion: 1.0\n")
    (dist / "entry_points.txt").write_text(
        "[bce_harness.expectations]\nmylib = mylib_exp:EXPECTATIONS\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delenv(expect.DISABLE_ENV, raising=False)
    assert pkg / "e.yaml" in expect.plugin_files()
    assert any(e.backend == "mylib" for e in expect.load().items)
    monkeypatch.setenv(expect.DISABLE_ENV, "1")
    assert expect.plugin_files() == []


# ------------------------------------------------------------ the shipped list ----

def test_the_shipped_list_is_short_written_and_valid():
    text = expect.SHIPPED.read_text(encoding="utf-8")
    items = expect.load_file(expect.SHIPPED)
    # written by hand, a few per backend and mechanism: never a generated list
    assert 20 <= len(items) <= 160
    per_backend: dict[str, int] = {}
    for e in items:
        per_backend[e.backend] = per_backend.get(e.backend, 0) + 1
    assert max(per_backend.values()) <= 60, per_backend
    for e in items:
        assert "\n" not in e.reason and len(e.reason) <= 400, e.id
        assert "seed documents" not in e.reason
        assert e.upstream is None or e.upstream.startswith("https://github.com/"), e.id
    # unstable-by-design is for the sigmoid-first twins only (and their compiled forms)
    sigmoid_first = {"naive", "sigmoid+bce", "keras-probs", "keras-probs+function",
                     "keras-probs+xla"}
    twins = {(e.backend, i) for e in items if e.kind == "unstable-by-design"
             for i in e.implementations}
    assert {i for _, i in twins} <= sigmoid_first, twins
    assert {("numpy", "naive"), ("torch", "sigmoid+bce"), ("tensorflow", "keras-probs"),
            ("keras-jax", "keras-probs"), ("keras-torch", "keras-probs")} <= twins
    assert "case:" not in text  # mechanisms, never case names


def test_the_kinds_agree_with_the_schema():
    schema = json.loads(expect.SCHEMA_PATH.read_text(encoding="utf-8"))
    jsonschema.Draft202012Validator.check_schema(schema)
    enum = schema["$defs"]["expectation"]["properties"]["kind"]["enum"]
    assert sorted(enum) == sorted(expect.KINDS)


# ---------------------------------------------------------------- the power ----

SWEEPS = {c.name: c for c in load_cases([ROOT / "cases" / "sweeps.yaml"])}


def sweep_records(backend: Any, implementation: str, name: str, dtype: str,
                  reduction: str = "none",
                  exps: expect.Expectations | None = None) -> dict[str, dict[str, Any]]:
    trial = Trial(SWEEPS[name], dtype, reduction)
    return judged(backend, trial, expect.load() if exps is None else exps, implementation)


@pytest.mark.parametrize("dtype", ["float64", "float32", "float16", "bfloat16"])
@pytest.mark.parametrize("planted", TINY_GRADIENT, ids=[p.name for p in TINY_GRADIENT])
def test_tiny_hard_label_gradient_bugs_are_flagged(planted, dtype):
    """Zero, sign-flipped or 5× gradients where |∂L/∂x| < ε/4 and y = 1, on the sweep."""
    rec = sweep_records(planted(), "planted", "sweeps/sweep-target1", dtype)["grad.input"]
    assert rec["status"] == "fail", rec["message"]
    base = sweep_records(PlantedControl(), "planted", "sweeps/sweep-target1", dtype)
    assert base["grad.input"]["status"] == "pass", base["grad.input"]["message"]


@pytest.mark.parametrize("dtype", ["float64", "float32", "float16", "bfloat16"])
def test_the_numpy_control_passes_the_hard_label_sweeps(dtype):
    for name in ("sweeps/sweep-target1", "sweeps/sweep-target0"):
        recs = sweep_records(NumpyBackend(), "formula", name, dtype)
        bad = {k: r["message"] for k, r in recs.items() if r["status"] != "pass"}
        assert not bad, (name, bad)


def _torch_or_skip() -> Any:
    from harness.backends.torch_backend import TorchBackend

    reason = TorchBackend().availability()
    if reason:
        pytest.skip(f"torch: {reason}")
    return TorchBackend


def test_torch_gradient_at_37_43_is_not_a_pass():
    """pytorch/pytorch#195677: float64 ∂L/∂x at x = 37.43, y = 1 is 0 (exact −5.55e−17)."""
    backend = _torch_or_skip()()
    trial = case([37.42994775023705], [1.0], "sum", grads=("input",))
    recs = judged(backend, trial, expect.load(), "functional")
    rec = recs["grad.input"]
    assert rec["status"] == "known", rec
    assert rec["worst"]["got"] == 0.0 and rec["worst"]["expected"] < 0
    assert rec["expected_by"][0]["upstream"].endswith("/195677")
    # without the shipped list it is a plain fail
    bare = judged(backend, trial, expect.Expectations(), "functional")["grad.input"]
    assert bare["status"] == "fail"


@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_a_new_bug_inside_a_known_failing_call_is_still_a_fail(dtype):
    """A backend named torch, with torch's real mechanisms and one planted bug."""
    _torch_or_skip()
    sys.path.insert(0, str(ROOT))
    from tests.plugins.torch_planted import PlantedTorch

    real = sweep_records(_torch_or_skip()(), "functional", "sweeps/sweep-target0", dtype)
    assert real["value"]["status"] == "known", real["value"]["message"]
    planted = sweep_records(PlantedTorch(), "functional", "sweeps/sweep-target0", dtype)
    rec = planted["value"]
    assert rec["status"] == "fail", rec["message"]
    assert "not covered by any expectation, first at" in rec["message"]
    assert "input=20.5 " in rec["message"], rec["message"]


def test_tensorflows_float16_count_overflow_covers_only_its_own_answers():
    """The shipped entry for TensorFlow's float16 mean over 65,520 or more elements (the
    count cast to float16 is inf) covers the 0 or NaN that mechanism gives, never another
    wrong answer from the same call."""
    from harness.cases import Case

    n = 65520
    c = Case(name="t/large", source="test", description="", input=np.zeros(n),
             target=np.zeros(n), dtypes=("float16",), reductions=("mean",), grads=())
    trial = Trial(c, "float16", "mean")
    shipped = expect.Expectations(expect.load_file(expect.SHIPPED))

    class Tensorflow(Fixed):
        name = "tensorflow"

    for got, status in ((0.0, "known"), (np.nan, "known"), (0.5, "fail")):
        rec = judged(Tensorflow(np.array(got, dtype=np.float16)), trial, shipped,
                     "sigmoid")["value"]
        assert rec["status"] == status, (got, rec["message"])


# ------------------------------------------------------------------- triage ----

def test_triage_groups_the_unexpected_and_concludes_nothing(tmp_path, capsys):
    from harness.verdict import triage

    base = {"backend": "mylib", "implementation": "fast", "device": "cpu", "case": "c/x",
            "reduction": "none", "message": "1 of 4 element(s) beyond the allowance"}
    results = [
        {**base, "dtype": "float32", "check": "value", "status": "fail",
         "worst": {"inputs": {"input": -50.0, "target": 0.0, "weight": None}}},
        {**base, "dtype": "float16", "check": "value", "status": "fail"},
        {**base, "dtype": "float32", "check": "grad.input", "status": "known"},
        {**base, "dtype": "float32", "check": "dtype", "status": "pass"},
    ]
    path = tmp_path / "report.json"
    path.write_text(json.dumps({"schema_version": 2, "results": results}))
    assert triage.main([str(path)]) == 0
    out = capsys.readouterr().out
    assert "# 2 unexpected record(s)" in out
    assert "dtype: [float16, float32]" in out and "check: value" in out
    assert "input=-50.0" in out
    assert "kind: TODO" in out and "where: TODO" in out  # for a person to write
    assert "grad.input" not in out  # known records are not triaged
    assert triage.main([str(path), "--summary"]) == 0
    assert "mylib" in capsys.readouterr().out
    (tmp_path / "bad.json").write_text("{")
    assert triage.main([str(tmp_path / "bad.json")]) == 2


def test_a_pass_reports_its_largest_error_and_where():
    """At x = 0, y = 1/2 the exact ∂L/∂x is 0 with an infinite condition number: any
    finite answer is allowed there, but the pass must still say how large it was."""
    from harness import reference

    trial = case([0.0, 2.0], [0.5, 1.0], "none", grads=("input",))
    exact = reference.grads([0.0, 2.0], [0.5, 1.0], reduction="none")["input"]
    got = np.array([1e-3, np.nextafter(exact[1], 0)])
    rec = judged(Fixed(EXACT[:2], {"input": got}), trial, expect.Expectations())["grad.input"]
    assert rec["status"] == "pass", rec["message"]
    assert rec["largest"]["index"] == [0] and rec["largest"]["got"] == 1e-3
    assert rec["worst"]["index"] == [1]  # nearest its allowance
    assert rec["max_ulp"] > 1e12  # 1e-3 in ulps of the smallest float64 spacing at 0
    assert rec["message"].startswith("max ")
    assert "at [0]: got 0.001, expected 0.0" in rec["message"]
