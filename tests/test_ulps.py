"""Ulp distances and allowances: the arithmetic every verdict rests on."""

import warnings

import ml_dtypes
import numpy as np
import pytest

from harness.dtypes import FORMATS, promote, round_to
from harness.verdict import ulps


def dist(got, expected, dtype="float64"):
    return ulps.ulp_distance(np.array(got, dtype=np.float64),
                                np.array(expected, dtype=np.float64), FORMATS[dtype])


def test_one_ulp_apart_is_one():
    x = 1.0
    assert dist(np.nextafter(x, 2), x) == 1.0
    assert dist(np.nextafter(x, 0), x) == 0.5  # below 1 the spacing halves; measured at 1


def test_fractional_ulps_in_float32_are_real():
    exact = 1.0 + 2.0**-25  # a quarter of a float32 ulp above 1
    assert dist(1.0, exact, "float32") == pytest.approx(0.25)


def test_special_values_are_exact():
    assert dist(np.nan, np.nan) == 0
    assert dist(np.inf, np.inf) == 0
    assert dist(-0.0, 0.0) == 0
    assert dist(1.0, np.nan) == np.inf
    assert dist(np.nan, 1.0) == np.inf
    assert dist(-np.inf, np.inf) == np.inf
    assert dist(1e308, np.inf) == np.inf


def test_float16_overflow_to_inf_is_exact_when_the_reference_rounds_to_inf():
    assert dist(np.inf, 70000.0, "float16") == 0
    assert dist(np.inf, 65520.0, "float16") == 0  # halfway between max and 2**16: ties to inf
    assert dist(np.inf, 65504.0, "float16") == 1  # inf stands for 2**16, one ulp past max
    assert dist(65504.0, 65519.0, "float16") == pytest.approx(15 / 32)


def test_subnormal_spacing():
    tiny = FORMATS["float32"].tiny_ulp
    assert dist(0.0, tiny, "float32") == 1
    assert dist(0.0, 5e-324) == 1


def test_huge_differences_do_not_overflow():
    assert dist(-1.7e308, 1.7e308) > 1e15


def test_allowance_model():
    a, b, c = ulps.TOLERANCES["float32"]
    allowed = ulps.allowance(np.array([0.0, 10.0]), np.array([1.0, 1.0]),
                                np.array([1, 1]), "float32")
    assert list(allowed) == [a, a + 10 * b]
    summed = ulps.allowance(np.array(1.0), np.array(3.0), np.array(1024), "float32")
    assert summed == pytest.approx((a + 10 * c) * 3 + b)
    assert ulps.allowance(np.array(np.inf), np.array(1.0), np.array(1), "float32") == np.inf


def test_measure_passes_a_correctly_rounded_result_and_fails_a_wrong_one():
    expected = np.array([1.9287498479639178e-22])  # the x=-50, y=0 loss
    ok = ulps.measure(np.float32(expected).astype(np.float64), expected, np.array([50.0]),
                         np.array([1.0]), np.array([1]), "float32")
    assert ok.passed
    bad = ulps.measure(np.array([0.0]), expected, np.array([50.0]), np.array([1.0]),
                          np.array([1]), "float32")
    assert not bad.passed


def test_coarser_measures_in_the_returned_dtype():
    assert ulps.coarser("float64", np.dtype(np.float32)) == "float32"
    assert ulps.coarser("float16", np.dtype(np.float32)) == "float16"
    assert ulps.coarser("float32", np.dtype(ml_dtypes.bfloat16)) == "bfloat16"


def test_worst_index_picks_the_largest_excess():
    d = ulps.Distance(ulps=np.array([3.0, 2.0, 9.0]), allowance=np.array([1.0, 4.0, 100.0]),
                         measured_in="float32")
    assert ulps.worst_index(d) == (0,)


def test_round_to_bfloat16_is_correct_on_halfway_cases():
    # 1 + 2**-8 is halfway between two bfloat16 values; a float32 detour must not
    # double-round a value just above the halfway point
    just_above = 1.0 + 2.0**-8 + 2.0**-40
    assert round_to(np.array([just_above]), "bfloat16")[0] == 1.0 + 2.0**-7
    assert round_to(np.array([1.0 + 2.0**-8]), "bfloat16")[0] == 1.0  # ties to even
    assert round_to(np.array([1e39]), "bfloat16")[0] == np.inf


def test_promotion():
    assert promote(["float32", "int64"]) == "float32"
    assert promote(["float32", "float64"]) == "float64"
    assert promote(["float16", "bfloat16"]) == "float32"


def test_an_infinite_distance_fails_even_with_an_infinite_allowance():
    # cond is infinite where the exact result is 0 but the inputs move it; a NaN
    # there is still wrong
    d = ulps.measure(np.array([np.nan]), np.array([0.0]), np.array([np.inf]),
                        np.array([1.0]), np.array([1]), "float16")
    assert not d.passed
    assert ulps.worst_index(d) == (0,)


@pytest.mark.parametrize("dtype", ["float16", "bfloat16", "float32", "float64"])
def test_the_all_finite_shortcut_gives_the_general_paths_distances(dtype):
    """ulp_distance takes a shortcut when every element is finite; with one NaN pair
    appended it takes the general path, and the finite elements' distances agree bit
    for bit (subnormals, zeros of both signs, the largest values, huge exponents)."""
    rng = np.random.default_rng(7)
    fmt = FORMATS[dtype]
    expected = np.concatenate([
        rng.standard_normal(500) * np.exp2(rng.integers(-1080, 1020, 500)),
        [0.0, -0.0, 5e-324, -5e-324, fmt.max, -fmt.max, 1.7e308, 2.0 ** fmt.emin]])
    got = expected * (1 + rng.standard_normal(expected.size) * 2.0 ** -fmt.precision)
    got[::7] = expected[::7]
    got[3] = -expected[3]
    # a result far above a tiny reference: its scaled value overflows, inf ulps, silently
    got = np.append(got, 1e300)
    expected = np.append(expected, 5e-324)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no RuntimeWarning from the harness's arithmetic
        fast = ulps.ulp_distance(got, expected, fmt)
    general = ulps.ulp_distance(np.append(got, np.nan), np.append(expected, np.nan), fmt)
    assert general[-1] == 0.0
    np.testing.assert_array_equal(fast, general[:-1])
    assert np.isfinite(fast[:-1]).all() and fast[-1] > 2.0**1000  # inf in float64
