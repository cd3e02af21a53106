"""The strategies and generate_cases: determinism, exact values, valid shapes, exact YAML."""

from __future__ import annotations

import hashlib
import math
import os
import subprocess
import sys
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from hypothesis import Phase, given, settings
from hypothesis import strategies as st

from harness import reference
from harness.cases import Case, case_yaml, load_cases
from harness.dtypes import FORMATS, round_to
from harness.generate.seeding import (
    DEFAULT_EXAMPLES,
    PROFILES,
    generate_cases,
    parse_source,
    run_example,
)
from harness.generate.strategies import (
    ELEMENTWISE_LIMIT,
    broadcasts_into,
    cases,
    draw_case,
    finite_floats,
    integers,
    regime_points,
    step_ulps,
)
from harness.literals import yaml_float
from harness.protocol import DTYPES, GRAD_NAMES, REDUCTIONS

ROOT = Path(__file__).resolve().parent.parent
ARGS = ("input", "target", "weight", "pos_weight")


def fingerprint(found: list[Case]) -> str:
    h = hashlib.sha256()
    for c in found:
        h.update(repr((c.name, c.source, c.dtypes, c.reductions, c.grads, c.raises,
                       c.tags)).encode())
        for name in ARGS:
            a = getattr(c, name)
            h.update(b"-" if a is None else repr(a.shape).encode() + a.tobytes())
    return h.hexdigest()


def same_bits(a: np.ndarray | None, b: np.ndarray | None) -> bool:
    if a is None or b is None:
        return a is None and b is None
    return a.shape == b.shape and a.tobytes() == b.tobytes()


# ----------------------------------------------------------------- generate_cases ----

def test_same_seed_same_cases_and_a_prefix_is_a_prefix():
    first = generate_cases(12, 3)
    assert fingerprint(first) == fingerprint(generate_cases(12, 3))
    assert fingerprint(generate_cases(5, 3)) == fingerprint(first[:5])
    assert fingerprint(generate_cases(12, 4)) != fingerprint(first)
    assert generate_cases(0, 3) == []


def test_same_cases_in_a_process_with_other_local_modules(tmp_path):
    """Hypothesis mixes constants of the local modules it sees into some draws; a
    report's worker imports other modules than its parent, and the replay that
    shrinks a failure must meet the same case there. Here one process first imports
    a module full of constants Hypothesis could pick, and a backend, under another
    hash seed; the other imports neither."""
    (tmp_path / "manyconstants.py").write_text(
        "A = [" + ", ".join(str(i / 7) for i in range(-60, 61)) + "]\n"
        "B = [" + ", ".join(str(i) for i in range(300)) + "]\n"
        "C = [" + ", ".join(str(2**k + 1) for k in range(7, 60)) + "]\n")
    script = ("import sys, hashlib\n"
              "if sys.argv[1] == 'x':\n"
              "    import manyconstants, harness.backends.numpy_backend, harness.reference\n"
              "from tests.test_strategies import fingerprint\n"
              "from harness.generate.seeding import generate_cases\n"
              "print(fingerprint(generate_cases(25, 7)))\n")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), str(tmp_path)])}
    runs = [subprocess.run([sys.executable, "-c", script, arg], cwd=tmp_path,
                           env={**env, "PYTHONHASHSEED": hash_seed}, capture_output=True,
                           text=True, timeout=120)
            for arg, hash_seed in (("x", "1"), ("-", "2"))]
    for r in runs:
        assert r.returncode == 0, r.stderr
    assert runs[0].stdout == runs[1].stdout
    assert runs[0].stdout.strip() == fingerprint(generate_cases(25, 7))


def test_generation_uses_only_public_hypothesis_api():
    """Generation must survive a Hypothesis release: no internals, nothing patched."""
    for path in sorted((ROOT / "harness").rglob("*.py")):
        text = path.read_text(encoding="utf-8")
        for word in ("hypothesis.internal", "_get_local_constants", "CONSTANTS_CACHE"):
            assert word not in text, f"{path.relative_to(ROOT)} uses {word}"


def test_a_generated_failure_is_met_again_and_shrunk():
    """Replaying example i of a seed with a test that fails on it meets the very case
    `generate_cases` made, and Hypothesis shrinks it (harness/generate/shrink.py; an
    array drawn element by element, as here, shrinks to its one NaN, a larger one is
    finished by shrink.py's case-level steps)."""
    found = generate_cases(DEFAULT_EXAMPLES, 0)
    index, failing = next((i, c) for i, c in enumerate(found)
                          if 1 < c.input.size <= ELEMENTWISE_LIMIT and np.isnan(c.input).any())

    def fails(case: Case) -> bool:
        return (case.dtypes, case.reductions) == (failing.dtypes, failing.reductions) and \
            bool(np.isnan(case.input).any())

    seen: list[Case] = []

    def test(data):
        case = draw_case(data, name=failing.name, source=failing.source)
        if fails(case):
            seen.append(case)
            raise AssertionError("NaN logit")

    with pytest.raises(AssertionError, match="NaN logit"):
        run_example(0, index, test, shrink=True)
    assert fingerprint(seen[:1]) == fingerprint([failing])
    assert seen[-1].input.size == 1 and fails(seen[-1])


def test_generated_cases_are_named_tagged_and_runnable():
    found = generate_cases(DEFAULT_EXAMPLES, 0)
    assert len(found) == DEFAULT_EXAMPLES
    for i, c in enumerate(found):
        assert c.name == f"generated/s0-{i:04d}"
        assert c.source == f"hypothesis:seed=0:example={i}"
        assert parse_source(c.source) == (0, i)
        assert len(c.dtypes) == 1 and c.dtypes[0] in DTYPES
        assert len(c.reductions) == 1 and c.reductions[0] in REDUCTIONS
        assert "generated" in c.tags
        assert c.input.size <= 4096
        assert set(c.grads) <= {g for g in GRAD_NAMES if getattr(c, g) is not None}
    tags = {t for c in found for t in c.tags}
    for wanted in ("subnormal", "inf", "nan", "huge", "outside-01", "soft", "binary", "empty",
                   "0-d", "broadcast", "square", "large", "raises", "zero", "saturated"):
        assert wanted in tags, f"no default example is tagged {wanted!r}"
    assert sum(c.input.size > 1000 for c in found) >= 2
    assert 0 < sum(bool(c.raises) for c in found) < len(found) // 5
    # spread, not only presence: a change in how Hypothesis explores would show here
    assert min(Counter(c.dtypes[0] for c in found)[d] for d in DTYPES) >= DEFAULT_EXAMPLES // 8
    assert min(Counter(c.reductions[0] for c in found)[r] for r in REDUCTIONS) >= \
        DEFAULT_EXAMPLES // 5


# ---------------------------------------------------------------------- strategies ----

@given(cases())
def test_every_value_is_exact_in_its_dtype(case):
    dtype = case.dtypes[0]
    for name in ARGS:
        a = getattr(case, name)
        if a is not None:
            with np.errstate(all="ignore"):
                assert same_bits(round_to(a, dtype), a), f"{name} is not exact in {dtype}"


@given(cases())
def test_refused_shapes_are_exactly_the_cases_that_expect_value_error(case):
    shape = case.input.shape
    refused = [n for n in ("weight", "pos_weight") if getattr(case, n) is not None
               and not broadcasts_into(getattr(case, n).shape, shape)]
    assert bool(refused) == bool(case.raises)
    if case.raises:
        assert case.raises == ("ValueError",) and case.grads == ()
        with pytest.raises(ValueError):
            reference.loss(case.input, case.target, case.weight, case.pos_weight, "sum")
    else:
        assert case.target.shape == shape
        np.broadcast_shapes(shape, *(getattr(case, n).shape for n in ("weight", "pos_weight")
                                     if getattr(case, n) is not None))


@given(st.data())
def test_floats_and_integers_stay_in_range_and_exact(data):
    dtype = data.draw(st.sampled_from(DTYPES))
    bound = data.draw(st.sampled_from((None, 0.0, 1.0, 8.0, 100.0, 1e30)))
    lo, hi = (None, None) if bound is None else (-bound / 2, bound)
    v = data.draw(finite_floats(dtype, lo, hi))
    assert math.isfinite(v) and same_bits(round_to(np.array(v), dtype), np.array(v))
    if bound is not None:
        assert lo <= v <= hi
        assert not (lo == 0 and math.copysign(1.0, v) < 0)
    a = data.draw(st.sampled_from((0, 1, -99, 1001, -(2**40))))
    b = a + data.draw(st.sampled_from((0, 5, 98, 3095, 2**52)))
    assert a <= data.draw(integers(a, b)) <= b


def test_regime_points_are_where_the_regimes_change():
    f64, f32, f16 = (set(regime_points(d)) for d in ("float64", "float32", "float16"))
    for points, wanted in ((f64, (709.782712893384, 745.1332191019412, 36.7368005696771,
                                  18.36840028483855)),
                           (f32, (88.72283935546875, 103.97207641601562, 16.63553237915039,
                                  8.317766189575195)),
                           (f16, (11.09375, 17.328125, 7.625, 3.8125))):
        for w in wanted:
            assert any(math.isclose(p, w, rel_tol=1e-3) for p in points), (w, sorted(points))
    for d in DTYPES:
        pts = np.array(regime_points(d))
        assert same_bits(round_to(pts, d), pts)


def test_step_ulps_walks_the_representable_numbers():
    assert step_ulps(1.0, 1, "float32") == float(np.nextafter(np.float32(1), np.float32(2)))
    assert step_ulps(1.0, -1, "float16") == float(np.nextafter(np.float16(1), np.float16(0)))
    assert step_ulps(0.0, 1, "float64") == 5e-324
    assert step_ulps(5e-324, -2, "float64") == -5e-324
    assert step_ulps(FORMATS["bfloat16"].max, 3, "bfloat16") == FORMATS["bfloat16"].max


def test_a_falsifying_example_reads_like_a_story():
    @settings(database=None, max_examples=20, phases=[Phase.generate, Phase.shrink],
              derandomize=True, deadline=None)
    @given(st.data())
    def always_fails(data):
        draw_case(data)
        raise AssertionError("planted")

    with pytest.raises(AssertionError) as info:
        always_fails()
    notes = "\n".join(getattr(info.value, "__notes__", []))
    for label in ("dtype", "reduction", "shape", "input", "target", "weight given", "grads"):
        assert f"({label}):" in notes, notes


# ---------------------------------------------------------------------------- YAML ----

def roundtrip(case: Case, folder: Path) -> Case:
    path = folder / "roundtrip.yaml"
    path.write_text(case_yaml(case, name="again"))
    (loaded,) = load_cases([path])
    assert loaded.name == "roundtrip/again"
    return loaded


@given(case=cases())
def test_case_files_round_trip_bit_for_bit(case, tmp_path_factory):
    loaded = roundtrip(case, tmp_path_factory.mktemp("yaml"))
    for name in ARGS:
        assert same_bits(getattr(loaded, name), getattr(case, name)), name
    assert (loaded.dtypes, loaded.reductions, loaded.raises) == (case.dtypes, case.reductions,
                                                                 case.raises)
    if not case.raises:
        assert loaded.grads == case.grads
    assert loaded.tags == case.tags


@pytest.mark.parametrize("shape", [(0,), (0, 3), (3, 0), (2, 0, 2), (), (1,), (2, 3)])
def test_every_shape_round_trips(shape, tmp_path):
    values = np.arange(math.prod(shape), dtype=np.float64).reshape(shape) - 1.5
    case = Case(name="s", source="test", description="", input=values, target=values * 0,
                dtypes=("float64",), reductions=("sum",))
    loaded = roundtrip(case, tmp_path)
    assert loaded.input.shape == shape and same_bits(loaded.input, case.input)


def test_special_floats_are_written_exactly(tmp_path):
    values = np.array([5e-324, -5e-324, -0.0, 0.0, np.nan, np.inf, -np.inf, 1e-05, 0.1,
                       1.7976931348623157e308, 2.0, -2.2250738585072014e-308, 1 / 3])
    assert yaml_float(-0.0) == '"-0.0"' and yaml_float(np.inf) == ".inf"
    assert yaml_float(-np.inf) == "-.inf" and yaml_float(np.nan) == ".nan"
    case = Case(name="s", source="test", description="", input=values,
                target=np.zeros_like(values), weight=values[::-1].copy(),
                dtypes=("float64",), reductions=("none",), grads=("input", "weight"))
    loaded = roundtrip(case, tmp_path)
    assert same_bits(loaded.input, values) and same_bits(loaded.weight, values[::-1].copy())


def test_long_arrays_wrap_and_still_round_trip(tmp_path):
    rng = np.random.default_rng(0)
    values = rng.normal(size=(7, 40))
    case = Case(name="s", source="test", description="a long one", input=values,
                target=rng.random((7, 40)), dtypes=("float64",), reductions=("mean",))
    text = case_yaml(case, name="again")
    assert max(len(line) for line in text.splitlines()) <= 110
    assert same_bits(roundtrip(case, tmp_path).input, values)


# ------------------------------------------------------------------------ profiles ----

def test_profiles_are_chosen_by_option_then_environment(tmp_path):
    probe = tmp_path / "test_probe.py"
    probe.write_text("from hypothesis import settings\n\n"
                     "def test_probe():\n"
                     "    print('PROFILE', settings.get_current_profile_name(),\n"
                     "          settings.default.max_examples)\n")
    base = {k: v for k, v in os.environ.items() if k not in ("CI", "BCE_HYPOTHESIS_PROFILE")}

    def profile(*args: str, **env: str) -> str:
        r = subprocess.run([sys.executable, "-m", "pytest", "-p", "tests.conftest", "-q", "-s",
                            "-p", "no:cacheprovider", str(probe), *args],
                           cwd=ROOT, env={**base, "PYTHONPATH": str(ROOT), **env},
                           capture_output=True, text=True, timeout=120)
        assert r.returncode == 0, r.stdout + r.stderr
        line = next(x for x in r.stdout.splitlines() if x.startswith("PROFILE"))
        return line.split()[1]

    assert profile(CI="1") == "ci"
    assert profile("--hypothesis-profile", "thorough", CI="1",
                   BCE_HYPOTHESIS_PROFILE="dev") == "thorough"
    assert profile(BCE_HYPOTHESIS_PROFILE="thorough") == "thorough"
    assert set(PROFILES) == {"dev", "ci", "thorough"}
    assert PROFILES["ci"]["max_examples"] == 25 and PROFILES["ci"]["deadline"] is None
