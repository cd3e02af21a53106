"""Tests of the case layer: loading, validation messages, generators, materialize, shipped cases.

The published values in the shipped cases are checked twice: against
`harness.reference` (the contract) once it exists, and against a slow
Decimal-arithmetic oracle in this file, which does not depend on the reference
being right.
"""

from __future__ import annotations

import json
import math
import re
from decimal import Decimal, localcontext
from fractions import Fraction
from functools import cache
from pathlib import Path
from typing import Any

import jsonschema
import ml_dtypes
import numpy as np
import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from harness.cases import (
    SCHEMA_PATH,
    SHIPPED_CASES,
    SKIPPED_FILES,
    Case,
    CaseFileError,
    check_expect,
    load_cases,
)
from harness.cases.syntax import YamlLoader
from harness.protocol import DTYPES, REDUCTIONS

SHIPPED = load_cases()
WITH_EXPECT = [c for c in SHIPPED if c.expect]


def write(tmp_path: Path, text: str, name: str = "c.yaml") -> Path:
    path = tmp_path / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


def load_one(tmp_path: Path, text: str) -> Case:
    (case,) = load_cases([write(tmp_path, text)])
    return case


def case_text(body: str, *, name: str = "a") -> str:
    """A file with one case whose keys are `body` (already indented by 4)."""
    return f"cases:\n  - name: {name}\n{body}"


# ------------------------------------------------------------------ an exact oracle

def _softplus(z: Decimal) -> Decimal:
    if z > 0:
        return z + (1 + (-z).exp()).ln()
    return (1 + z.exp()).ln()


@cache
def _term(x: float, y: float, w: float, pw: float) -> Decimal:
    with localcontext() as ctx:
        ctx.prec = 80
        dx, dy = Decimal(x), Decimal(y)
        return Decimal(w) * ((1 - dy) * dx + (1 + (Decimal(pw) - 1) * dy) * _softplus(-dx))


def decimal_loss(input: Any, target: Any, weight: Any = None, pos_weight: Any = None,
                 reduction: str = "mean") -> np.ndarray:
    """The loss in 80-digit decimal arithmetic, rounded once: finite arguments only."""
    x = np.asarray(input, dtype=np.float64)
    y = np.asarray(target, dtype=np.float64)
    w = np.broadcast_to(np.asarray(1.0 if weight is None else weight, dtype=np.float64), x.shape)
    pw = np.broadcast_to(np.asarray(1.0 if pos_weight is None else pos_weight,
                                    dtype=np.float64), x.shape)
    terms = [_term(*map(float, t)) for t in zip(x.ravel(), y.ravel(), w.ravel(), pw.ravel(),
                                                 strict=True)]
    if reduction == "none":
        return np.array([float(t) for t in terms], dtype=np.float64).reshape(x.shape)
    with localcontext() as ctx:
        ctx.prec = 80
        total = sum(terms, Decimal(0))
        if reduction == "sum":
            return np.array(float(total))
        return np.array(float(total / len(terms)) if terms else math.nan)


# ------------------------------------------------------------------ shipped cases

def test_shipped_cases_load_within_budget() -> None:
    assert SHIPPED, "no shipped cases found"
    assert len(SHIPPED) <= 150
    assert len({c.name for c in SHIPPED}) == len(SHIPPED)
    big = [c.name for c in SHIPPED if c.input.size > 2000]
    assert len(big) <= 8, big  # big arrays stay in a handful of cases
    assert sum(c.input.size for c in SHIPPED) <= 500_000


def test_shipped_cases_are_described() -> None:
    for case in SHIPPED:
        assert case.description.strip(), f"{case.name} has no description"
        assert "\n" not in case.description, f"{case.name}: description spans lines"
        assert re.fullmatch(r"cases/[\w/.-]+\.yaml:\d+", case.source.replace("\\", "/")) or \
            re.fullmatch(r".+\.yaml:\d+", case.source), case.source


def test_shipped_cases_cover_the_brief() -> None:
    names = {c.name for c in SHIPPED}
    for required in ("seeds/devto-basic", "extremes/logit-minus50-target0",
                     "reductions/random-400x300", "sweeps/sweep-target0.3"):
        assert required in names
    shapes = {c.input.shape for c in SHIPPED}
    assert {(0,), (0, 4), (3, 0, 2), ()} <= shapes
    assert any(c.input.size > 100_000 for c in SHIPPED)
    assert any(c.raises and "avg" in c.reductions for c in SHIPPED)
    assert any(c.arg_dtypes.get("target") == "int64" for c in SHIPPED)
    assert any(c.arg_dtypes.get("weight") == "bool" for c in SHIPPED)
    flat = np.concatenate([c.input.ravel() for c in SHIPPED])
    assert np.isnan(flat).any() and np.isposinf(flat).any() and np.isneginf(flat).any()
    assert (np.signbit(flat) & (flat == 0)).any()  # a negative zero
    assert ((flat != 0) & (np.abs(flat) < np.finfo(np.float64).tiny)).any()  # a subnormal


def test_shipped_files_validate_against_the_schema_directly() -> None:
    """Editors validate with the schema alone (YAML 1.2 numbers); the files must pass."""
    schema = json.loads(SCHEMA_PATH.read_text(encoding="utf-8"))
    jsonschema.Draft202012Validator.check_schema(schema)
    validator = jsonschema.Draft202012Validator(schema)
    files = sorted(SHIPPED_CASES.rglob("*.yaml"))
    assert files
    for path in files:
        if path.name in SKIPPED_FILES:
            continue
        data = yaml.load(path.read_text(encoding="utf-8"), Loader=YamlLoader)
        errors = [e.message for e in validator.iter_errors(data)]
        assert not errors, (path, errors[:3])


@pytest.mark.parametrize("case", WITH_EXPECT, ids=lambda c: c.name)
def test_published_values_against_decimal_oracle(case: Case) -> None:
    args = case.materialize(case.expect["dtype"])
    if not all(np.isfinite(a).all() for a in args.values() if a is not None):
        pytest.skip("the decimal oracle handles finite arguments only")
    assert check_expect(case, _empty_aware(decimal_loss)) == []


@pytest.mark.parametrize("case", WITH_EXPECT, ids=lambda c: c.name)
def test_published_values_against_reference(case: Case) -> None:
    try:
        from harness import reference
    except ImportError:
        pytest.skip("harness.reference not available yet")
    assert check_expect(case, reference.loss) == []


def _empty_aware(loss: Any) -> Any:
    def wrapped(input: Any, target: Any, weight: Any = None, pos_weight: Any = None,
                reduction: str = "mean") -> np.ndarray:
        if np.asarray(input).size == 0:
            return {"none": np.zeros(np.shape(input)), "sum": np.array(0.0),
                    "mean": np.array(math.nan)}[reduction]
        return loss(input, target, weight, pos_weight, reduction)
    return wrapped


def test_the_oracle_agrees_with_a_known_value() -> None:
    assert float(decimal_loss([-50.0], [0.0])) == 1.9287498479639178e-22
    assert float(decimal_loss([5.0], [1.0])) == 0.006715348489118068


def test_check_expect_reports_a_mismatch() -> None:
    case = Case(name="t/x", source="t.yaml:1", description="", input=[1.0, 2.0],
                target=[0.0, 1.0], expect={"mean": 1.0, "none": np.array([1.0, 2.0]),
                                           "rel": 1e-3, "abs": 0.0, "dtype": "float64"})

    def fake(input: Any, target: Any, weight: Any = None, pos_weight: Any = None,
             reduction: str = "mean") -> np.ndarray:
        return np.array(1.0005) if reduction == "mean" else np.array([1.0, 2.5])

    problems = check_expect(case, fake)
    assert len(problems) == 1 and "none[1]" in problems[0] and "t.yaml:1" in problems[0]


# ------------------------------------------------------------------ materialize

def test_materialize_rounds_to_nearest_even_and_overflows_float16() -> None:
    case = Case(name="t/x", source="", description="",
                input=[65504.0, 65519.0, 65520.0, -65520.0, 1e-8, -0.0, math.nan, 1 + 2**-11],
                target=np.zeros(8))
    x = case.materialize("float16")["input"]
    assert x is not None
    assert x[:5].tolist() == [65504.0, 65504.0, math.inf, -math.inf, 0.0]
    assert x[5] == 0 and math.copysign(1, x[5]) == -1
    assert math.isnan(x[6])
    assert x[7] == 1.0  # tie → even
    assert x.dtype == np.float64


def test_materialize_bfloat16_does_not_double_round() -> None:
    # ml_dtypes rounds float64 → float32 → bfloat16, which lands on 1.0 here.
    v = 1 + 2**-8 + 2**-40
    case = Case(name="t/x", source="", description="", input=[v, -v], target=[0.0, 0.0])
    assert case.materialize("bfloat16")["input"].tolist() == [1 + 2**-7, -(1 + 2**-7)]


_FORMATS = {"float16": (11, -24, 65504.0),
            "bfloat16": (8, -133, float(ml_dtypes.finfo(ml_dtypes.bfloat16).max)),
            "float32": (24, -149, float(np.finfo(np.float32).max))}


def _exact_round(v: float, dtype: str) -> float:
    """Round-to-nearest-even via exact rationals: an independent reference for materialize."""
    if not math.isfinite(v) or v == 0:
        return v
    precision, min_exp, largest = _FORMATS[dtype]
    exp = max(math.frexp(v)[1] - precision, min_exp)
    q = Fraction(v) / Fraction(2) ** exp
    n = round(q)  # Python rounds half to even
    exact = Fraction(n) * Fraction(2) ** exp
    if abs(exact) > largest:
        return math.copysign(math.inf, v)
    return math.copysign(float(exact), v)  # n == 0 keeps the sign of v


@settings(max_examples=300, deadline=None)
@given(st.floats(allow_nan=False, width=64), st.sampled_from(sorted(_FORMATS)))
def test_materialize_matches_exact_rounding(v: float, dtype: str) -> None:
    case = Case(name="t/x", source="", description="", input=v, target=0.0)
    got = float(case.materialize(dtype)["input"])
    want = _exact_round(v, dtype)
    assert got == want and math.copysign(1, got) == math.copysign(1, want), (v, got, want)


@settings(max_examples=100, deadline=None)
@given(st.integers(-14, 15), st.integers(0, 2**10 - 1), st.sampled_from([-1.0, 1.0]))
def test_materialize_float16_halfway_cases(e: int, m: int, sign: float) -> None:
    halfway = sign * (1 + (m + 0.5) / 2**10) * 2.0**e
    case = Case(name="t/x", source="", description="", input=halfway, target=0.0)
    assert float(case.materialize("float16")["input"]) == _exact_round(halfway, "float16")


def test_materialize_arg_dtypes_and_absent_arguments() -> None:
    case = Case(name="t/x", source="", description="", input=[0.1, 3.0], target=[0.1, 1.0],
                weight=[2.0, 0.0], arg_dtypes={"target": "float64", "weight": "int64"})
    out = case.materialize("float16")
    assert set(out) == {"input", "target", "weight", "pos_weight"}
    assert out["pos_weight"] is None
    assert out["input"][0] == float(np.float16(0.1))
    assert out["target"][0] == 0.1  # kept in float64
    assert out["weight"].tolist() == [2.0, 0.0]
    out["input"][0] = 7.0  # fresh arrays: the case is untouched
    assert case.input[0] == 0.1
    with pytest.raises(ValueError, match="unknown dtype"):
        case.materialize("float8")


def test_case_is_read_only_and_hashable_by_identity() -> None:
    case = Case(name="t/x", source="", description="", input=[1.0], target=[0.0])
    with pytest.raises(ValueError):
        case.input[0] = 2.0
    assert {case: 1}[case] == 1
    assert case.variants() == [(d, r) for d in DTYPES for r in REDUCTIONS]
    assert "t/x" in case.summary()


# ------------------------------------------------------------------ the format

def test_numbers_are_read_the_yaml_1_2_way(tmp_path: Path) -> None:
    case = load_one(tmp_path, case_text(
        "    input: [1e-5, 1.0e10, 2E+3, -0.0, .inf, -.inf, .nan, 7]\n"
        "    target: ['inf', '-inf', 'nan', '-0.0', '0x1p-1074', '-0x1.fffffffffffffp+1023',"
        " 0.5, 1]\n"))
    x, y = case.input, case.target
    assert x[:3].tolist() == [1e-5, 1e10, 2000.0]
    assert x[3] == 0 and np.signbit(x[3])
    assert x[4] == math.inf and x[5] == -math.inf and math.isnan(x[6]) and x[7] == 7.0
    assert y[0] == math.inf and y[1] == -math.inf and math.isnan(y[2])
    assert y[3] == 0 and np.signbit(y[3])
    assert y[4] == 5e-324 and y[5] == -np.finfo(np.float64).max


def test_shapes_of_explicit_values(tmp_path: Path) -> None:
    case = load_one(tmp_path, case_text(
        "    input: [[[1.0], [2.0]], [[3.0], [4.0]]]\n    target: {fill: 0.0}\n"
        "    weight: 2.0\n    pos_weight: [[1.0]]\n"))
    assert case.input.shape == (2, 2, 1) and case.target.shape == (2, 2, 1)
    assert case.weight is not None and case.weight.shape == ()
    assert case.pos_weight is not None and case.pos_weight.shape == (1, 1)
    empty = load_one(tmp_path, case_text("    input: []\n    target: []\n"))
    assert empty.input.shape == (0,)


def test_generators(tmp_path: Path) -> None:
    text = """cases:
  - name: lin
    input: {linspace: [-1.0, 1.0, 6], shape: [2, 3]}
    target: {values: [0.0, 1.0]}
    weight: {fill: 2.0, shape: [3]}
  - name: log
    input: {logspace: [-2, 1, 4], signs: both}
    target: {fill: 0.5}
  - name: lognegative
    input: {logspace: [0.5, 0.5, 1], signs: negative}
    target: {fill: 0.0}
  - name: rand
    input: {random: {distribution: normal, loc: 1.0, scale: 2.0, seed: 7}, shape: [50, 4]}
    target: {random: {distribution: bernoulli, p: 0.25, seed: 8}}
    weight: {random: {distribution: integers, low: -2, high: 3, seed: 9}, shape: [4]}
    pos_weight: {random: {distribution: loguniform, low: 0.5, high: 8.0, signs: both, seed: 1},
                 shape: [50, 1]}
  - name: uni
    input: {random: {distribution: uniform, low: -3.0, high: -1.0, seed: 2}, shape: [100]}
    target: {values: [0.25]}
"""
    lin, log, logneg, rand, uni = load_cases([write(tmp_path, text)])
    assert lin.input.tolist() == np.linspace(-1, 1, 6).reshape(2, 3).tolist()
    assert lin.target.tolist() == [[0.0, 1.0, 0.0], [1.0, 0.0, 1.0]]
    assert lin.weight is not None and lin.weight.tolist() == [2.0, 2.0, 2.0]
    assert log.input.tolist() == [-10.0, -1.0, -0.1, -0.01, 0.01, 0.1, 1.0, 10.0]
    assert log.target.shape == (8,)
    assert logneg.input.tolist() == [-3.1622776601683795]  # correctly rounded 10**0.5
    rng = np.random.default_rng(7)
    assert np.array_equal(rand.input, rng.normal(1.0, 2.0, (50, 4)))
    assert set(np.unique(rand.target)) <= {0.0, 1.0} and rand.target.shape == (50, 4)
    assert rand.weight is not None and set(np.unique(rand.weight)) <= {-2.0, -1, 0, 1, 2}
    pw = rand.pos_weight
    assert pw is not None and pw.shape == (50, 1)
    assert (np.abs(pw) >= 0.5).all() and (np.abs(pw) <= 8.0).all() and (pw < 0).any()
    assert ((uni.input >= -3) & (uni.input < -1)).all()
    assert (uni.target == 0.25).all()
    again = load_cases([tmp_path / "c.yaml"])
    assert np.array_equal(again[3].input, rand.input)  # same seed, same values


def test_defaults_apply_and_are_overridden(tmp_path: Path) -> None:
    text = """description: d
defaults:
  input: [1.0, 2.0]
  dtypes: [float32]
  tags: [x]
cases:
  - name: a
    target: [0.0, 1.0]
  - name: b
    target: [1.0, 1.0]
    dtypes: [float16, float64]
    tags: []
"""
    a, b = load_cases([write(tmp_path, text)])
    assert a.input.tolist() == [1.0, 2.0] and a.dtypes == ("float32",) and a.tags == ("x",)
    assert b.dtypes == ("float16", "float64") and b.tags == ()


def test_defaults_of_the_case_model(tmp_path: Path) -> None:
    plain = load_one(tmp_path, case_text("    input: 1.0\n    target: 0.0\n"))
    assert plain.reductions == REDUCTIONS and plain.dtypes == DTYPES
    assert plain.grads == ("input", "target") and plain.raises == ()
    assert plain.arg_dtypes == {} and plain.expect == {} and plain.description == ""
    weighted = load_one(tmp_path, case_text(
        "    input: [1.0]\n    target: [0]\n    weight: [1]\n    pos_weight: [2.0]\n"
        "    arg_dtypes: {target: int64, weight: bool}\n    raises: []\n"
        .replace("    raises: []\n", "")))
    assert weighted.grads == ("input", "pos_weight")
    none = load_one(tmp_path, case_text("    input: 1.0\n    target: 0.0\n    grads: []\n"))
    assert none.grads == ()
    refusing = load_one(tmp_path, case_text(
        "    input: [1.0]\n    target: [1.0, 2.0]\n    raises: ValueError\n"))
    assert refusing.raises == ("ValueError",)


def test_anchors_and_merge_keys(tmp_path: Path) -> None:
    text = """cases:
  - &base
    name: a
    input: &sweep {linspace: [-1.0, 1.0, 5]}
    target: {fill: 0.0}
  - <<: *base
    name: b
    target: {fill: 1.0}
  - name: c
    input: *sweep
    target: *sweep
"""
    a, b, c = load_cases([write(tmp_path, text)])
    assert np.array_equal(a.input, b.input) and (b.target == 1.0).all()
    assert np.array_equal(c.input, c.target)


def test_names_and_sources(tmp_path: Path) -> None:
    path = write(tmp_path, "cases:\n  - name: first\n    input: 1.0\n    target: 0.0\n\n"
                 "  - name: second\n    input: 2.0\n    target: 1.0\n", name="mine.yaml")
    first, second = load_cases([path])
    assert first.name == "mine/first" and second.name == "mine/second"
    assert first.source.endswith("mine.yaml:2") and second.source.endswith("mine.yaml:6")


def test_folders_are_searched_recursively(tmp_path: Path) -> None:
    one = "cases:\n  - name: {n}\n    input: 1.0\n    target: 0.0\n"
    write(tmp_path, one.format(n="a"), "top.yaml")
    write(tmp_path, one.format(n="b"), "found/deep.yaml")
    write(tmp_path, one.format(n="c"), "found/more/other.yml")
    write(tmp_path, "expectations:\n  - backend: torch\n", "expectations.yaml")
    write(tmp_path, "this is: [not, a case file", ".hidden/x.yaml")
    write(tmp_path, "not yaml", "notes.txt")
    names = [c.name for c in load_cases([tmp_path])]
    assert sorted(names) == ["deep/b", "other/c", "top/a"]
    # a file given twice (directly and inside its folder) is loaded once
    assert len(load_cases([tmp_path, tmp_path / "top.yaml"])) == 3


def test_shipped_cases_default() -> None:
    expected = Path(__file__).resolve().parents[1] / "cases"
    assert expected == SHIPPED_CASES
    assert [c.name for c in load_cases(None)] == [c.name for c in SHIPPED]
    assert [c.name for c in load_cases([SHIPPED_CASES])] == [c.name for c in SHIPPED]


# ------------------------------------------------------------------ errors

MESSAGE = re.compile(r"^[^\n]+:\d+:\d+: [^\n]+\. [^\n]+[.?]$")

ERRORS = [
    # (id, text, line, column, fragments of the message)
    ("yaml-syntax", "cases:\n  - name: a\n    input: [1, 2\n    target: [0]\n",
     4, 11, ["not valid YAML"]),
    ("yaml-tab", "cases:\n\t- name: a\n", 2, 1, ["not valid YAML", "indentation"]),
    ("empty-file", "", 1, 1, ["empty", "cases:"]),
    ("top-level-list", "- name: a\n", 1, 1, ["not a mapping", "cases:"]),
    ("no-cases", "description: x\n", 1, 1, ["no `cases`"]),
    ("duplicate-key", "cases:\n  - name: a\n    input: [1]\n    input: [2]\n    target: [0]\n",
     4, 5, ["'input' appears twice", "line 3"]),
    ("unknown-key", case_text("    input: [1]\n    target: [0]\n    wieght: [1]\n"),
     5, 5, ["unknown key 'wieght'", "did you mean 'weight'"]),
    ("unknown-top-key", "cases: []\ndefault: {}\n", 2, 1, ["unknown key 'default'",
                                                           "did you mean 'defaults'"]),
    ("unknown-generator-key", case_text("    input: [1, 2]\n    target: [0, 1]\n"
                                        "    weight: {linspce: [0, 1, 2]}\n"),
     5, 14, ["unknown key 'linspce'", "did you mean 'linspace'"]),
    ("two-generators", case_text("    input: {linspace: [0, 1, 2], fill: 1.0}\n"
                                 "    target: {fill: 0}\n"),
     3, 12, ["linspace and fill", "exactly one"]),
    ("no-generator", case_text("    input: [1, 2]\n    target: {shape: [2]}\n"),
     4, 13, ["needs one of linspace"]),
    ("missing-name", "cases:\n  - input: 1\n    target: 0\n", 2, 5, ["no `name`"]),
    ("bad-name", case_text("    input: 1\n    target: 0\n", name="a b"), 2, 11,
     ["'a b'", "letters, digits", "'a_b'"]),
    ("missing-target", case_text("    input: 1.0\n"), 2, 5, ["has no `target`"]),
    ("string-in-values", case_text("    input: [1, \"x\"]\n    target: [0, 1]\n"),
     3, 16, ["`input[1]`", "'x'", "not a number", "0x1p-1074"]),
    ("quoted-number", case_text("    input: '1.5'\n    target: 0\n"), 3, 12,
     ["'1.5'", "remove the quotes"]),
    ("boolean-value", case_text("    input: [true, 1]\n    target: [0, 1]\n"), 3, 13,
     ["true (a boolean)", "arg_dtypes"]),
    ("overflowing-literal", case_text("    input: 1e400\n    target: 0\n"), 3, 12,
     ["1e400", "infinity", ".inf"]),
    ("underflowing-literal", case_text("    input: 1.0e-400\n    target: 0\n"), 3, 12,
     ["1.0e-400", "become 0"]),
    ("inexact-integer", case_text("    input: 9007199254740993\n    target: 0\n"), 3, 12,
     ["9007199254740993", "cannot hold exactly"]),
    ("inexact-hex", case_text("    input: '0x1.00000000000001p0'\n    target: 0\n"), 3, 12,
     ["hex float", "cannot hold exactly"]),
    ("ragged", case_text("    input: [[1, 2], [3]]\n    target: 0\n"), 3, 21,
     ["not rectangular", "item 2"]),
    ("ragged-mixed", case_text("    input: [1, [2]]\n    target: 0\n"), 3, 16,
     ["not rectangular"]),
    ("shape-mismatch", case_text("    input: [1, 2]\n    target: [0]\n"), 4, 5,
     ["target has shape (1,)", "input has shape (2,)", "add `raises: ValueError`",
      "mismatch is the point"]),
    ("weight-enlarges", case_text("    input: [1, 2, 3]\n    target: [0, 1, 0]\n"
                                  "    weight: [[1, 2, 3], [4, 5, 6]]\n"),
     5, 5, ["weight of shape (2, 3)", "without enlarging", "raises: ValueError"]),
    ("pos-weight-length", case_text("    input: [[1, 2, 3]]\n    target: [[0, 1, 0]]\n"
                                    "    pos_weight: [1, 2]\n"),
     5, 5, ["pos_weight of shape (2,)", "raises: ValueError"]),
    ("unknown-reduction", case_text("    input: [1]\n    target: [0]\n    reductions: [avg]\n"),
     5, 18, ["'avg'", "not a reduction", "raises: ValueError"]),
    ("near-reduction", case_text("    input: [1]\n    target: [0]\n    reductions: [mena]\n"),
     5, 18, ["did you mean 'mean'"]),
    ("raises-without-reason", case_text("    input: [1]\n    target: [0]\n"
                                        "    raises: ValueError\n"),
     5, 5, ["expects ValueError", "cannot fail", "remove `raises`"]),
    ("raises-mixed-reductions", case_text("    input: [1]\n    target: [0]\n"
                                          "    reductions: [avg, mean]\n"
                                          "    raises: ValueError\n"),
     6, 5, ["reduction mean cannot fail"]),
    ("raises-not-a-name", case_text("    input: [1]\n    target: [0, 1]\n    raises: [1]\n"),
     5, 14, ["`raises[0]`", "exception class name"]),
    ("unknown-dtype", case_text("    input: [1]\n    target: [0]\n    dtypes: [float33]\n"),
     5, 14, ["'float33'", "did you mean 'float32'"]),
    ("repeated-dtype", case_text("    input: [1]\n    target: [0]\n"
                                 "    dtypes: [float32, float32]\n"),
     5, 13, ["same item twice"]),
    ("unknown-grad", case_text("    input: [1]\n    target: [0]\n    grads: [inptu]\n"),
     5, 13, ["'inptu'", "did you mean 'input'"]),
    ("grad-of-absent-weight", case_text("    input: [1]\n    target: [0]\n"
                                        "    grads: [input, weight]\n"),
     5, 20, ["gradient of weight", "has no weight"]),
    ("grad-of-int-target", case_text("    input: [1]\n    target: [0]\n    grads: [target]\n"
                                     "    arg_dtypes: {target: int64}\n"),
     5, 13, ["passed as int64", "no gradient"]),
    ("arg-dtype-unknown", case_text("    input: [1]\n    target: [0]\n"
                                    "    arg_dtypes: {target: int65}\n"),
     5, 26, ["'int65'", "did you mean 'int64'"]),
    ("arg-dtype-key", case_text("    input: [1]\n    target: [0]\n"
                                "    arg_dtypes: {wieght: int64}\n"),
     5, 18, ["unknown key 'wieght'", "did you mean 'weight'"]),
    ("arg-dtype-absent", case_text("    input: [1]\n    target: [0]\n"
                                   "    arg_dtypes: {weight: int64}\n"),
     5, 18, ["has no weight"]),
    ("arg-dtype-not-integral", case_text("    input: [1]\n    target: [0.5]\n"
                                         "    arg_dtypes: {target: int64}\n"),
     4, 5, ["target as int64", "0.5"]),
    ("arg-dtype-bool-range", case_text("    input: [1]\n    target: [0]\n    weight: [2]\n"
                                       "    arg_dtypes: {weight: bool}\n"),
     5, 5, ["weight as bool", "only 0 and 1"]),
    ("arg-dtype-int8-range", case_text("    input: [1]\n    target: [0]\n    weight: [200]\n"
                                       "    arg_dtypes: {weight: int8}\n"),
     5, 5, ["-128 to 127"]),
    ("arg-dtype-nan", case_text("    input: [1]\n    target: [.nan]\n"
                                "    arg_dtypes: {target: int32}\n"),
     4, 5, ["nan"]),
    ("linspace-arity", case_text("    input: {linspace: [0, 1]}\n    target: {fill: 0}\n"),
     3, 23, ["has 2 items", "[start, stop, num]"]),
    ("linspace-negative-num", case_text("    input: {linspace: [0, 1, -3]}\n"
                                        "    target: {fill: 0}\n"),
     3, 30, ["-3", "at least 0"]),
    ("linspace-float-num", case_text("    input: {linspace: [0, 1, 2.5]}\n"
                                     "    target: {fill: 0}\n"),
     3, 30, ["2.5", "integer"]),
    ("linspace-wrong-size", case_text("    input: [1, 2, 3]\n"
                                      "    target: {linspace: [0, 1, 4]}\n"),
     4, 13, ["gives 4 values", "input's shape (3,)"]),
    ("linspace-infinite", case_text("    input: {linspace: [0, .inf, 3]}\n"
                                    "    target: {fill: 0}\n"),
     3, 23, ["non-finite"]),
    ("logspace-overflow", case_text("    input: {logspace: [300, 400, 3]}\n"
                                    "    target: {fill: 0}\n"),
     3, 23, ["beyond float64"]),
    ("signs-without-logspace", case_text("    input: {linspace: [0, 1, 3], signs: both}\n"
                                         "    target: {fill: 0}\n"),
     3, 34, ["`signs`", "only goes with logspace"]),
    ("fill-without-shape", case_text("    input: {fill: 1}\n    target: 0\n"), 3, 12,
     ["no shape to fill"]),
    ("random-without-shape", case_text("    input: {random: {distribution: normal, seed: 1}}\n"
                                       "    target: 0\n"),
     3, 21, ["has no shape"]),
    ("random-without-seed", case_text("    input: {random: {distribution: normal}, shape: [3]}\n"
                                      "    target: {fill: 0}\n"),
     3, 21, ["no `seed`"]),
    ("random-unknown-distribution", case_text(
        "    input: {random: {distribution: gaussian, seed: 1}, shape: [3]}\n"
        "    target: {fill: 0}\n"), 3, 36, ["'gaussian'", "normal"]),
    ("random-foreign-parameter", case_text(
        "    input: {random: {distribution: normal, seed: 1, p: 0.3}, shape: [3]}\n"
        "    target: {fill: 0}\n"), 3, 53, ["`p`", "not a parameter of the normal"]),
    ("random-negative-seed", case_text(
        "    input: {random: {distribution: normal, seed: -1}, shape: [3]}\n"
        "    target: {fill: 0}\n"), 3, 50, ["seed", "at least 0"]),
    ("random-integers-without-high", case_text(
        "    input: {random: {distribution: integers, seed: 1}, shape: [3]}\n"
        "    target: {fill: 0}\n"), 3, 21, ["no `high`"]),
    ("random-empty-range", case_text(
        "    input: {random: {distribution: integers, low: 3, high: 3, seed: 1}, shape: [3]}\n"
        "    target: {fill: 0}\n"), 3, 21, ["empty range"]),
    ("random-loguniform-zero", case_text(
        "    input: {random: {distribution: loguniform, low: 0, high: 1, seed: 1},"
        " shape: [3]}\n    target: {fill: 0}\n"), 3, 21, ["0 < low <= high"]),
    ("random-bernoulli-p", case_text(
        "    input: {random: {distribution: bernoulli, p: 1.5, seed: 1}, shape: [3]}\n"
        "    target: {fill: 0}\n"), 3, 50, ["1.5", "at most 1"]),
    ("too-large", case_text("    input: {fill: 0.0, shape: [100000, 100000]}\n"
                            "    target: {fill: 0}\n"),
     3, 31, ["10,000,000,000 elements"]),
    ("values-empty", case_text("    input: [1, 2]\n    target: {values: []}\n"), 4, 22,
     ["empty"]),
    ("negative-shape", case_text("    input: {fill: 0.0, shape: [-1]}\n    target: 0\n"),
     3, 32, ["-1", "at least 0"]),
    ("expect-without-value", case_text("    input: [1]\n    target: [0]\n"
                                       "    expect: {rel: 1.0e-3}\n"),
     5, 13, ["needs one of mean, sum, none"]),
    ("expect-with-raises", case_text("    input: [1]\n    target: [0, 1]\n"
                                     "    raises: ValueError\n    expect: {mean: 1.0}\n"),
     6, 5, ["both `expect` and `raises`"]),
    ("expect-none-shape", case_text("    input: [1, 2]\n    target: [0, 1]\n"
                                    "    expect: {none: [1.0]}\n"),
     5, 20, ["has shape (1,)", "input's shape (2,)"]),
    ("expect-negative-tolerance", case_text("    input: [1]\n    target: [0]\n"
                                            "    expect: {mean: 1.0, rel: -1.0}\n"),
     5, 30, ["-1.0", "at least 0"]),
    ("defaults-with-name", "defaults: {name: x}\ncases: []\n", 1, 12,
     ["unknown key 'name'", "`defaults`"]),
    ("bad-value-in-defaults", "defaults:\n  weight: [1, 'x']\ncases:\n"
     "  - name: a\n    input: [1.0, 2.0]\n    target: [0.0, 1.0]\n", 2, 15,
     ["`weight[1]` of `defaults`"]),
    ("defaults-shape-mismatch", "defaults:\n  weight: [1.0, 2.0, 3.0]\ncases:\n"
     "  - name: a\n    input: [1.0, 2.0]\n    target: [0.0, 1.0]\n", 2, 3,
     ["in case 'a', weight of shape (3,)"]),
    ("cases-not-a-list", "cases: {name: a}\n", 1, 8, ["`cases` is a mapping", "a list"]),
    ("case-not-a-mapping", "cases:\n  - a\n", 2, 5, ["case #1 is the string 'a'"]),
    ("tags-not-strings", case_text("    input: 1.0\n    target: 0.0\n    tags: [1]\n"), 5, 12,
     ["`tags[0]`", "a string"]),
]


@pytest.mark.parametrize(("text", "line", "column", "fragments"),
                         [e[1:] for e in ERRORS], ids=[e[0] for e in ERRORS])
def test_errors_name_the_line_and_the_fix(tmp_path: Path, text: str, line: int, column: int,
                                          fragments: list[str]) -> None:
    path = write(tmp_path, text)
    with pytest.raises(CaseFileError) as info:
        load_cases([path])
    err = info.value
    message = str(err)
    assert MESSAGE.match(message), message
    assert "Traceback" not in message and "\n" not in message
    assert err.path.endswith("c.yaml") and message.startswith(err.path)
    assert (err.line, err.column) == (line, column), message
    assert err.problem and err.fix
    for fragment in fragments:
        assert fragment.lower() in message.lower(), (fragment, message)


def test_duplicate_names_across_files(tmp_path: Path) -> None:
    one = "cases:\n  - name: a\n    input: 1.0\n    target: 0.0\n"
    write(tmp_path, one, "x/same.yaml")
    write(tmp_path, "\n" + one, "y/same.yaml")
    with pytest.raises(CaseFileError) as info:
        load_cases([tmp_path])
    message = str(info.value)
    assert "'same/a' is used twice" in message
    assert re.search(r"x[/\\]same\.yaml:2", message) and info.value.line == 3
    assert re.search(r"y[/\\]same\.yaml", info.value.path)


def test_duplicate_names_in_one_file(tmp_path: Path) -> None:
    text = ("cases:\n  - name: a\n    input: 1.0\n    target: 0.0\n"
            "  - name: a\n    input: 2.0\n    target: 0.0\n")
    with pytest.raises(CaseFileError, match=r"c\.yaml:5:5: .*used twice.*c\.yaml:2"):
        load_cases([write(tmp_path, text)])


def test_path_errors(tmp_path: Path) -> None:
    with pytest.raises(CaseFileError, match="no such file or folder"):
        load_cases([tmp_path / "missing.yaml"])
    (tmp_path / "empty").mkdir()
    with pytest.raises(CaseFileError, match=r"holds no \.yaml"):
        load_cases([tmp_path / "empty"])
    known = write(tmp_path, "known: []\n", "known.yaml")
    with pytest.raises(CaseFileError,
                       match=r"expectations \(known discrepancies\), not a case file"):
        load_cases([known])
    binary = tmp_path / "binary.yaml"
    binary.write_bytes(b"cases: \xff\xfe\n")
    with pytest.raises(CaseFileError, match="not UTF-8"):
        load_cases([binary])


def test_error_without_line_formats_cleanly() -> None:
    err = CaseFileError("x.yaml", None, None, "something is wrong", "fix it")
    assert str(err) == "x.yaml: Something is wrong. Fix it."
    located = CaseFileError("x.yaml", 3, 7, "bad value.", "use a good one")
    assert str(located) == "x.yaml:3:7: Bad value. Use a good one."
    import pickle
    assert str(pickle.loads(pickle.dumps(located))) == str(located)
