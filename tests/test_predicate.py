"""Predicates over elements: classes per format, comparisons, logic, absent arguments, errors."""

import math
import warnings

import ml_dtypes
import numpy as np
import pytest

from harness.verdict.predicate import (
    ARGUMENTS,
    CLASSES,
    VARIABLES,
    Elements,
    Predicate,
    PredicateError,
    parse,
)

INF, NAN = math.inf, math.nan


def els(dtype="float32", measured=None, arg_dtypes=None, empty=False, n=None, **values):
    """Elements from plain lists; an argument not given is absent."""
    arrays = {k: None if v is None else np.asarray(v, dtype=np.float64) for k, v in values.items()}
    if n is None:
        n = len(next(a for a in arrays.values() if a is not None))
    return Elements(values=arrays, dtype=dtype, measured=measured or dtype,
                    arg_dtypes=arg_dtypes or {}, n=n, empty=empty)


def ev(text, el):
    out = parse(text).evaluate(el)
    assert out.dtype == bool and out.shape == (el.n,)
    return out.tolist()


def test_public_names():
    assert VARIABLES == ("input", "target", "weight", "pos_weight", "expected", "got", "size",
                         "smoothing")
    assert ARGUMENTS == ("input", "target", "weight", "pos_weight")
    assert {"nan", "inf", "infinite", "finite", "zero", "negative", "positive", "subnormal",
            "huge", "saturated", "soft", "hard", "outside-01", "integer-dtype", "bool-dtype",
            "unsigned-dtype", "absent", "present", "tiny", "exp-subnormal"} == set(CLASSES)
    assert all(isinstance(v, str) and v for v in CLASSES.values())
    p = parse("input < -16 and target == 0")
    assert isinstance(p, Predicate) and p.text == "input < -16 and target == 0"
    assert p.variables == frozenset({"input", "target"})
    assert parse("expected subnormal or abs(got) > 1").variables == {"expected", "got"}
    assert parse("any argument nan").variables == set(ARGUMENTS)


def test_mechanism_from_the_brief():
    el = els(input=[-20, -20, -16, 3], target=[0, 1, 0, 0])
    assert ev("input < -16 and target == 0", el) == [True, False, False, False]


# -- classes on values ------------------------------------------------------------------

SPECIALS = [NAN, -INF, -1.0, -0.0, 0.0, 0.5, 1.0, 2.0, INF]


@pytest.mark.parametrize(("cls", "want"), [
    ("nan", [1, 0, 0, 0, 0, 0, 0, 0, 0]),
    ("inf", [0, 1, 0, 0, 0, 0, 0, 0, 1]),
    ("infinite", [0, 1, 0, 0, 0, 0, 0, 0, 1]),
    ("finite", [0, 0, 1, 1, 1, 1, 1, 1, 0]),
    ("zero", [0, 0, 0, 1, 1, 0, 0, 0, 0]),
    ("negative", [0, 1, 1, 0, 0, 0, 0, 0, 0]),
    ("positive", [0, 0, 0, 0, 0, 1, 1, 1, 1]),
    ("soft", [0, 0, 0, 0, 0, 1, 0, 0, 0]),
    ("hard", [0, 0, 0, 1, 1, 0, 1, 0, 0]),
    ("outside-01", [0, 0, 1, 0, 0, 0, 0, 1, 0]),
    ("subnormal", [0] * 9),
    ("huge", [0] * 9),
])
def test_value_classes_on_special_values(cls, want):
    for var in ("target", "got"):
        el = els(**{var: SPECIALS})
        assert ev(f"{var} {cls}", el) == [bool(w) for w in want], var


@pytest.mark.parametrize(("fmt", "inside", "outside"), [
    ("float64", [1e-310, -4.9e-324, 2.0**-1023], [1e-300, 2.0**-1022, 0.0]),
    ("float32", [1e-40, -1e-45, 2.0**-127], [1e-30, 2.0**-126, 1e-310 * 0]),
    ("bfloat16", [1e-39, -2.0**-133], [1e-37, 2.0**-126]),
    ("float16", [2.0**-15, -2.0**-24, 6e-5], [2.0**-14, 1e-4, -0.0]),
])
def test_subnormal_is_judged_in_the_format_under_test(fmt, inside, outside):
    el = els(dtype=fmt, input=inside + outside)
    assert ev("input subnormal", el) == [True] * len(inside) + [False] * len(outside)


def test_1e40_is_subnormal_in_float32_but_normal_in_float64():
    assert ev("input subnormal", els(dtype="float32", input=[1e-40])) == [True]
    assert ev("input subnormal", els(dtype="float64", input=[1e-40])) == [False]


def test_expected_is_judged_in_the_measured_format_and_includes_underflow():
    # arguments in float64, results judged in float32
    el = els(dtype="float64", measured="float32",
             input=[1e-40, 1e-40, 1e-40, 1e-40], expected=[1e-40, 1e-50, 1e-320, 1e-30])
    assert ev("expected subnormal", el) == [True, True, True, False]
    assert ev("input subnormal", el) == [False] * 4
    # 1e-50 underflows float32 and float16, not float64
    assert ev("expected subnormal", els(measured="float64", expected=[1e-50])) == [False]
    assert ev("expected subnormal", els(measured="float16", expected=[1e-50, 1e-5])) == [True, True]


@pytest.mark.parametrize(("fmt", "edge"), [
    ("float16", 2.0**12), ("bfloat16", 2.0**124), ("float32", 2.0**124), ("float64", 2.0**1020),
])
def test_huge_is_within_a_factor_16_of_the_largest(fmt, edge):
    el = els(dtype=fmt, input=[edge, -edge, np.nextafter(edge, 0), INF, NAN, 1.0])
    assert ev("input huge", el) == [True, True, False, False, False, False]


def test_huge_concrete_values():
    assert ev("input huge", els(dtype="float16", input=[4096, 4095, 65504])) == [True, False, True]
    assert ev("input huge", els(dtype="float32", input=[1e38, 1e37])) == [True, False]
    assert ev("got huge", els(measured="float64", got=[1.7e308, 1e300])) == [True, False]


@pytest.mark.parametrize(("fmt", "below", "above"), [
    ("float16", 7.6, 7.7),      # 11 ln 2 = 7.62
    ("bfloat16", 5.5, 5.6),     # 8 ln 2 = 5.55
    ("float32", 16.6, 16.7),    # 24 ln 2 = 16.64
    ("float64", 36.7, 36.8),    # 53 ln 2 = 36.74
])
def test_saturated_means_the_sigmoid_rounds_to_one(fmt, below, above):
    el = els(dtype=fmt, input=[below, above, -below, -above, INF, -INF, NAN])
    assert ev("input saturated", el) == [False, True, False, True, False, False, False]


# -- dtype classes, absent, present -------------------------------------------------------

def test_dtype_classes_come_from_declared_dtypes():
    el = els(dtype="float32", input=[1.0, 2.0], target=[0, 1], weight=[1, 1], pos_weight=[1, 0],
             expected=[0.1, 0.2],
             arg_dtypes={"target": "int64", "weight": "uint8", "pos_weight": "bool"})
    table = {c: [ev(f"{a} {c}", el)[0] for a in ("input", "target", "weight", "pos_weight",
                                                  "expected")]
             for c in ("integer-dtype", "unsigned-dtype", "bool-dtype")}
    assert table == {
        "integer-dtype": [False, True, True, False, False],
        "unsigned-dtype": [False, False, True, False, False],
        "bool-dtype": [False, False, False, True, False],
    }
    assert ev("target integer-dtype", el) == [True, True]  # constant over rows


def test_dtype_class_defaults_to_format_and_is_false_when_absent():
    el = els(dtype="bfloat16", input=[1.0], weight=None, arg_dtypes={"weight": "int64"})
    assert ev("input integer-dtype", el) == [False]
    assert ev("weight integer-dtype", el) == [False]
    assert ev("input integer-dtype", els(dtype="float16", input=[1.0],
                                         arg_dtypes={"input": "int32"})) == [True]


def test_absent_arguments():
    el = els(input=[1.0, NAN], weight=None)  # weight passed as None, pos_weight missing
    for name in ("weight", "pos_weight"):
        assert ev(f"{name} absent", el) == [True, True]
        assert ev(f"{name} present", el) == [False, False]
        for cls in ("nan", "finite", "zero", "subnormal", "hard", "outside-01"):
            assert ev(f"{name} {cls}", el) == [False, False], cls
        assert ev(f"not {name} nan", el) == [True, True]
        # comparing with an absent argument is False, even for !=
        assert ev(f"{name} < 1", el) == [False, False]
        assert ev(f"{name} != 0", el) == [False, False]
        assert ev(f"abs({name}) >= 0", el) == [False, False]
        assert ev(f"input != {name}", el) == [False, False]
        assert ev(f"-1 < input < {name}", el) == [False, False]
    assert ev("input present", el) == [True, True]
    assert ev("input absent", el) == [False, False]


# -- comparisons and literals -------------------------------------------------------------

def test_chained_comparisons():
    el = els(input=[-20, -16, -1, 0, 1], target=[0, 0, 1, 0, 1])
    assert ev("-16 < input < 0", el) == [False, False, True, False, False]
    assert ev("-16 <= input < 0", el) == [False, True, True, False, False]
    assert ev("input <= target <= 0", el) == [True, True, False, True, False]
    assert ev("0 >= input != target", el) == [True, True, True, False, False]
    assert ev("input<-16 and target==0", el) == [True, False, False, False, False]


def test_abs_operand():
    el = els(input=[-20, -16, 3, 17, NAN])
    assert ev("abs(input) > 16", el) == [True, False, False, True, False]
    assert ev("abs( input ) <= 16", el) == [False, True, True, False, False]


def test_power_of_two_literals():
    el = els(dtype="float64", input=[2.0**-53, 2.0**-53 * (1 + 2.0**-52), 1.1102230246251565e-16])
    assert ev("input == 2**-53", el) == [True, False, True]
    assert ev("input == 2^-53", el) == [True, False, True]
    assert ev("input > 2**-53", el) == [False, True, False]
    smallest32 = float(np.float32(1e-45))
    el = els(input=[smallest32, -smallest32, 2 * smallest32])
    assert ev("input == 2^-149", el) == [True, False, False]
    assert ev("input == -2**-149", el) == [False, True, False]
    assert ev("input == 2**+0 or input == 2**1023", els(input=[1.0, 2.0**1023, 2.0])) == [
        True, True, False]


def test_decimal_and_infinite_literals():
    el = els(dtype="float64", input=[1e-300, 1.7e308, -0.5, 16, INF, -INF])
    assert ev("input == 1e-300", el) == [True] + [False] * 5
    assert ev("input == 1.7e308", el) == [False, True] + [False] * 4
    assert ev("input == -0.5", el) == [False, False, True, False, False, False]
    assert ev("input == 16.0 or input == +16", el) == [False, False, False, True, False, False]
    assert ev("input == inf", el) == [False] * 4 + [True, False]
    assert ev("input == +inf", el) == [False] * 4 + [True, False]
    assert ev("input == -inf", el) == [False] * 5 + [True]
    assert ev("input == .5 or input == -5e-1", el) == [False, False, True, False, False, False]


def test_nan_follows_numpy_semantics():
    el = els(input=[NAN, 1.0], target=[0.0, 0.0])
    assert ev("input < inf", el) == [False, True]
    assert ev("input >= -inf", el) == [False, True]
    assert ev("input == input", el) == [False, True]
    assert ev("input != target", el) == [True, True]  # numpy: nan != x is True
    assert ev("not input < 0", el) == [True, True]


def test_no_runtime_warnings():
    values = [NAN, INF, -INF, 0.0, -0.0, 1e-310, 1e308, -1.0]
    el = els(dtype="float16", measured="float16", input=values, target=values, expected=values,
             got=values, weight=values, pos_weight=values)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        for cls in CLASSES:
            parse(f"input {cls} or any argument {cls} or got {cls}").evaluate(el)
        parse("abs(got) > expected and -inf < input <= 2**-24 != target").evaluate(el)


def test_bfloat16_arrays_are_accepted():
    arr = np.array([1e-39, 1.0, -3.0], dtype=ml_dtypes.bfloat16)
    el = Elements(values={"input": arr}, dtype="bfloat16", measured="float32", arg_dtypes={}, n=3)
    assert parse("input subnormal").evaluate(el).tolist() == [True, False, False]
    assert parse("input < -2").evaluate(el).tolist() == [False, False, True]


# -- logic --------------------------------------------------------------------------------

def _truth_table():
    rows = [(a, b, c) for a in (0, 1) for b in (0, 1) for c in (0, 1)]
    a, b, c = (list(col) for col in zip(*rows, strict=True))
    return els(input=a, target=b, weight=c), rows


def test_and_binds_tighter_than_or():
    el, rows = _truth_table()
    a, b, c = "input == 1", "target == 1", "weight == 1"
    got = ev(f"{a} or {b} and {c}", el)
    assert got == [bool(x or (y and z)) for x, y, z in rows]
    assert got == ev(f"{a} or ({b} and {c})", el)
    assert got != ev(f"({a} or {b}) and {c}", el)
    assert ev(f"({a} or {b}) and {c}", el) == [bool((x or y) and z) for x, y, z in rows]
    assert ev(f"{a} and {b} or {c}", el) == [bool((x and y) or z) for x, y, z in rows]


def test_not_binds_tighter_than_and():
    el, rows = _truth_table()
    assert ev("not input == 1 and target == 1", el) == [bool(not x and y) for x, y, _ in rows]
    assert ev("not (input == 1 and target == 1)", el) == [not (x and y) for x, y, _ in rows]
    assert ev("not not input == 1", el) == [bool(x) for x, _, _ in rows]


# -- any argument, call tests -------------------------------------------------------------

def test_any_argument_infinite():
    el = els(input=[INF, 0, 0, 0], target=[0, -INF, 0, 0], weight=None,
             pos_weight=[0, 0, INF, 0], expected=[0, 0, 0, INF], got=[INF, 0, 0, INF])
    assert ev("any argument infinite", el) == [True, True, True, False]
    assert ev("any argument inf", el) == [True, True, True, False]
    assert ev("any argument nan", el) == [False] * 4
    assert ev("any argument absent", el) == [True] * 4
    assert ev("any argument absent", els(input=[1.0], target=[0.0], weight=[1.0],
                                         pos_weight=[1.0])) == [False]


def test_mixed_dtypes():
    values = {"input": [1.0, 2.0], "target": [0, 1]}
    assert ev("mixed dtypes", els(**values, arg_dtypes={"target": "int64"})) == [True, True]
    assert ev("mixed dtypes", els(**values)) == [False, False]
    assert ev("mixed dtypes", els(**values, arg_dtypes={"target": "float32"})) == [False, False]
    assert ev("mixed dtypes", els(**values, arg_dtypes={"input": "float16", "target": "float16"},
                                  dtype="float16")) == [False, False]
    # an absent argument's declaration does not count
    assert ev("mixed dtypes", els(**values, weight=None, arg_dtypes={"weight": "int64"})) == [
        False, False]
    assert ev("not mixed dtypes and input > 1", els(**values)) == [False, True]


def test_input_empty_broadcasts_to_n():
    empty0 = Elements(values={"input": np.zeros(0)}, dtype="float32", measured="float32",
                      arg_dtypes={}, n=0, empty=True)
    out = parse("input empty").evaluate(empty0)
    assert out.shape == (0,) and out.dtype == bool
    # a mean over an empty input: one NaN element, covered by the call-level test
    one = els(input=None, expected=[NAN], got=[0.0], n=1, empty=True)
    assert ev("input empty", one) == [True]
    assert ev("input empty and expected nan and got zero", one) == [True]
    assert ev("input empty", els(input=[1.0], empty=False)) == [False]
    assert ev("mixed dtypes", empty0) == []


def test_one_parse_many_evaluations():
    p = parse("target == 0 and input < -16")
    assert p.evaluate(els(input=[-17.0], target=[0.0])).tolist() == [True]
    assert p.evaluate(els(input=[-17.0, 5], target=[1.0, 0])).tolist() == [False, False]
    big = els(input=np.arange(-50_000, 50_000) / 1000, target=np.zeros(100_000))
    assert int(p.evaluate(big).sum()) == 34_000  # -50.000 .. -16.001


# -- elements -----------------------------------------------------------------------------

@pytest.mark.parametrize(("kwargs", "message"), [
    ({"values": {"input": np.zeros(3)}, "n": 2}, "shape (3,), expected (2,)"),
    ({"values": {"logits": np.zeros(2)}, "n": 2}, "unknown variable 'logits'"),
    ({"values": {}, "n": 2, "dtype": "float8"}, "unknown format 'float8'"),
    ({"values": {}, "n": -1}, "n must be >= 0"),
])
def test_elements_are_validated(kwargs, message):
    base = {"dtype": "float32", "measured": "float32", "arg_dtypes": {}}
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace(")", r"\)")):
        Elements(**{**base, **kwargs})


# -- errors -------------------------------------------------------------------------------

@pytest.mark.parametrize(("text", "column", "fragments"), [
    ("", 0, ["empty", "input < -16 and target == 0"]),
    ("   ", 0, ["empty"]),
    ("inpt < 0", 0, ["unknown word 'inpt'", "did you mean 'input'?", "pos_weight", "mixed dtypes"]),
    ("input < 0 and traget == 1", 14, ["unknown word 'traget'", "did you mean 'target'?"]),
    ("input < frob", 8, ["unknown word 'frob'", "a number, a variable or abs(variable)"]),
    ("weight negatve", 7, ["'weight negatve': unknown class 'negatve'",
                           "did you mean 'negative'?", "Classes: nan, inf", "outside-01"]),
    ("expected subnormall", 9, ["unknown class 'subnormall'", "did you mean 'subnormal'?"]),
    ("any argument infinte", 13, ["'any argument infinte'", "did you mean 'infinite'?"]),
    ("any argument", 12, ["class is missing", "Classes:"]),
    ("any arg nan", 4, ["'any' must be followed by 'argument'"]),
    ("mixed", 5, ["'mixed' must be followed by 'dtypes'", "'mixed dtypes'"]),
    ("input emtpy", 6, ["unknown class 'emtpy'", "did you mean 'empty'?"]),
    ("input <", 7, ["missing operand after '<'"]),
    ("input < and target == 0", 8, ["missing operand after '<'"]),
    ("0 < input <= ", 13, ["missing operand after '<='"]),
    ("input < 0 and", 13, ["missing test after 'and'"]),
    ("not", 3, ["missing test after 'not'"]),
    ("(input < 0", 0, ["unbalanced parentheses", "never closed", "add ')'"]),
    ("((input < 0) or target nan", 0, ["unbalanced parentheses", "never closed"]),
    ("input < 0)", 9, ["unbalanced parentheses", "no matching '('"]),
    ("()", 1, ["missing test after '('"]),
    ("input < 0 target == 1", 10, ["unexpected 'target' after a complete test",
                                   "Join tests with 'and' or 'or'"]),
    ("input < 0 adn target == 0", 10, ["unexpected 'adn'", "did you mean 'and'?"]),
    ("(input < 0 target nan)", 11, ["unexpected 'target'", "close the parenthesis with ')'"]),
    ("input < 0 nan", 10, ["unexpected 'nan' after a complete test"]),
    ("abs(input) nan", 11, ["class applies to a variable or 'any argument'", "'abs(input)'",
                            "'input nan'"]),
    ("5 nan", 2, ["class applies to a variable", "not to '5'"]),
    ("subnormal expected", 0, ["'subnormal' must follow its subject", "'input subnormal'"]),
    ("1 < 2", 4, ["'1 < 2' compares two numbers", "one side must be a variable"]),
    ("-1 < 0 < input", 5, ["compares two numbers"]),
    ("input == nan", 9, ["'nan' literal", "NaN compares false", "'input nan'"]),
    ("input != -nan", 9, ["'nan' literal", "'input nan'"]),
    ("nan != input", 0, ["'nan' literal"]),
    ("input", 5, ["'input' needs a comparison or a class", "'input < 0'", "'input nan'"]),
    ("input and target nan", 6, ["'input' needs a comparison or a class"]),
    ("input not nan", 6, ["'not input nan'"]),
    ("abs(input)", 10, ["expected a comparison", "after 'abs(input)'"]),
    ("abs(inptu) > 1", 4, ["abs takes one variable", "did you mean 'input'?"]),
    ("abs input > 1", 4, ["abs takes one variable in parentheses", "'abs(input) > 16'"]),
    ("abs(input > 1", 10, ["abs takes one variable in parentheses"]),
    ("input & target == 0", 6, ["unexpected character '&'", "write 'and'"]),
    ("input = 0", 6, ["unexpected character '='", "'=='"]),
    ("input < 2 ** -53", 10, ["unexpected character '*'", "2**-53"]),
    ("input < 3**2", 8, ["only powers of two", "2**K"]),
    ("input < 2**2000", 8, ["2**2000 is not a finite nonzero float64", "-1074 and 1023"]),
    ("input < 1e400", 8, ["1e400 overflows float64", "inf"]),
    ("input < 1e-400", 8, ["1e-400 underflows to 0"]),
    ("Input < 0", 0, ["unknown word 'Input'", "did you mean 'input'?"]),
    ("input < 0 AND target == 0", 10, ["unexpected 'AND'"]),
])
def test_errors_point_at_the_offending_token(text, column, fragments):
    with pytest.raises(PredicateError) as info:
        parse(text)
    err = info.value
    assert err.column == column, (text, err.column, str(err))
    for fragment in fragments:
        assert fragment in str(err), (fragment, str(err))
    assert isinstance(err, ValueError)


def test_zero_literal_is_not_an_underflow():
    assert ev("input == 0e5 or input == 0.000", els(input=[0.0, 1.0])) == [True, False]


def test_exp_subnormal_tiny_and_size():
    """The classes and the variable the shipped flush-to-zero expectations use."""
    x = np.array([87.0, 87.4, -88.0, 708.0, 709.0, np.inf])
    f32 = Elements(values={"input": x}, dtype="float32", measured="float32", arg_dtypes={},
                   n=6)
    f64 = Elements(values={"input": x}, dtype="float64", measured="float64", arg_dtypes={},
                   n=6)
    # e^-|x| is below float32's smallest normal past 87.34, float64's past 708.4
    assert parse("input exp-subnormal").evaluate(f32).tolist() == [False, True, True, True,
                                                                    True, False]
    assert parse("input exp-subnormal").evaluate(f64).tolist() == [False, False, False,
                                                                    False, True, False]
    w = np.array([0.0, 1e-45, 2.0**-126, 2.0**-117, 2.0**-116, 1.0])
    tiny = Elements(values={"input": w}, dtype="float32", measured="float32", arg_dtypes={},
                    n=6)
    assert parse("input tiny").evaluate(tiny).tolist() == [False, True, True, True, False,
                                                            False]
    sized = Elements(values={"input": x, "size": np.full(6, 20000.0)}, dtype="float16",
                     measured="float16", arg_dtypes={}, n=6)
    assert parse("size > 16384").evaluate(sized).all()
    assert not parse("size > 16384").evaluate(
        Elements(values={"input": x, "size": np.full(6, 6.0)}, dtype="float16",
                 measured="float16", arg_dtypes={}, n=6)).any()


def test_every_class_and_variable_is_documented():
    """docs/expectations.md's tables name every class and variable a predicate accepts
    (exp-subnormal and tiny were used by the shipped list but missing from them)."""
    from pathlib import Path

    from harness.verdict import predicate

    text = (Path(__file__).resolve().parents[1] / "docs" / "expectations.md").read_text(
        encoding="utf-8")
    classes = text.split("| class | holds when |", 1)[1].split("\n\n", 1)[0]
    missing = [c for c in predicate.CLASSES if f"`{c}`" not in classes]
    assert not missing, f"classes not in docs/expectations.md: {missing}"
    assert [v for v in predicate.VARIABLES if f"`{v}`" not in text] == []


def test_every_kind_is_documented():
    """docs/expectations.md's table of kinds names every kind an entry may take."""
    from pathlib import Path

    from harness.verdict import expectations

    text = (Path(__file__).resolve().parents[1] / "docs" / "expectations.md").read_text(
        encoding="utf-8")
    assert [k for k in expectations.KINDS if f"`{k}`" not in text] == []
