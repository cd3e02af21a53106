"""Distances in ulps, principled allowances, and verdicts.

The question a check answers is: could a good implementation in this format have
produced this number? Two things decide it.

* The distance from the exact reference, in units in the last place of the format
  under test, kept fractional (the reference is correctly rounded float64, so for
  float32 and below the fraction is real).
* The allowance, in the same units, ``(a + c·log2 n)·spread + b·cond``:
  ``a`` ulps for the handful of roundings any formula spends, ``b`` ulps per unit of
  the reference's componentwise condition number (a backward-stable formula's
  relative error is at most a few units times the condition number: that is what
  backward stability means), and for results that sum ``n`` terms ``c·log2 n`` ulps
  of growth for pairwise summation, scaled by the summation's own condition
  ``spread = Σ|t|/|Σt|``. The README derives the numbers.

Special values are exact: NaN must meet NaN, ±inf the same infinity; −0 equals +0.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from harness.dtypes import FORMATS, Format, dtype_name

# Allowance parameters (ulps) per format. The README's "error model" section is the
# reasoning; tests/test_ulps.py pins the behaviour at both edges (a correct
# formula passes, a planted bug fails).
TOLERANCES: dict[str, tuple[float, float, float]] = {
    #            a    b    c
    "float64": (4.0, 4.0, 1.0),
    "float32": (4.0, 4.0, 1.0),
    "float16": (4.0, 4.0, 1.0),
    "bfloat16": (4.0, 4.0, 1.0),
}


@dataclass(frozen=True)
class Distance:
    """Per-element comparison of one returned quantity."""

    ulps: np.ndarray  # fractional ulps; 0 where special values agree, inf where they don't
    allowance: np.ndarray  # ulps allowed at each element
    measured_in: str  # the format whose ulps these are

    @property
    def ratio(self) -> np.ndarray:
        """ulps / allowance: above 1 fails. Used to pick the worst element."""
        with np.errstate(divide="ignore", invalid="ignore"):
            r = np.where(self.ulps == 0, 0.0, self.ulps / self.allowance)
        # ulps and allowances are >= 0, so r is in [0, inf] or NaN (inf/inf): NaN -> inf
        return np.where(np.isinf(self.ulps) | np.isnan(r), np.inf, r)

    @property
    def within(self) -> np.ndarray:
        """Per element: inside the allowance. An infinite distance (a special value
        where the reference has none, or the wrong one) fails whatever the allowance."""
        return np.isfinite(self.ulps) & (self.ulps <= self.allowance)

    @property
    def passed(self) -> bool:
        return bool(np.all(self.within))


def coarser(expected: str, got_dtype: np.dtype) -> str:
    """Measure in the coarser of the format asked for and the format returned.

    A float64 call answered in float32 is a dtype discrepancy, reported by the
    `dtype` check; the value check then asks whether the float32 answer is a good
    float32 answer, so one fault is not reported twice.
    """
    try:
        got = dtype_name(got_dtype)
    except TypeError:
        return expected
    if got not in FORMATS:
        return expected
    return min(expected, got, key=lambda n: FORMATS[n].precision)


def ulp_exponent(values: np.ndarray, fmt: Format) -> np.ndarray:
    """k such that 2**k is the spacing of `fmt` at each (float64) value.

    Beyond the largest finite value the spacing of the top binade is used, so a
    result that overflowed where the exact value is just representable is a few
    ulps off, not infinitely many.
    """
    mag = np.abs(values)
    _, exp = np.frexp(np.where(np.isfinite(mag), mag, 0.0))
    # mag in [2**exp, 2**(exp+1)); np.clip's wrapper costs more than the two ufuncs here
    exp = np.minimum(np.maximum(exp.astype(np.int64) - 1, fmt.emin), fmt.emax)
    return exp - (fmt.precision - 1)


def ulp_of(values: np.ndarray, fmt: Format) -> np.ndarray:
    """The spacing of `fmt` at each value (see ulp_exponent)."""
    return np.ldexp(1.0, ulp_exponent(values, fmt))


def ulp_distance(got: np.ndarray, expected: np.ndarray, fmt: Format) -> np.ndarray:
    """|got − expected| in ulps of `fmt`, fractional, with special values exact.

    `got` is the backend's result converted exactly to float64; `expected` the
    correctly rounded float64 reference. An infinite `got` stands for 2**(emax+1),
    the first value past the largest finite one, unless the reference itself
    rounds to that infinity in `fmt` (then it is exact).
    """
    got = np.asarray(got, dtype=np.float64)
    expected = np.asarray(expected, dtype=np.float64)
    if got.shape != expected.shape:
        got, expected = np.broadcast_arrays(got, expected)
    if np.isfinite(got).all() and np.isfinite(expected).all():
        # the common case, without the masks below: the same arithmetic on every element
        # (a result far above a tiny reference scales past the largest float64: inf ulps)
        k = ulp_exponent(expected, fmt)
        with np.errstate(over="ignore"):
            return np.asarray(np.abs(np.ldexp(got, -k) - np.ldexp(expected, -k)))
    out = np.zeros(expected.shape, dtype=np.float64)

    nan_g, nan_e = np.isnan(got), np.isnan(expected)
    out[nan_g != nan_e] = np.inf

    inf_e = np.isinf(expected)
    both = ~nan_g & ~nan_e
    # an infinite reference must be met by the same infinity
    out[both & inf_e & (got != expected)] = np.inf

    finite_e = both & ~inf_e
    if np.any(finite_e):
        e = expected[finite_e]
        g = got[finite_e]
        k = ulp_exponent(e, fmt)
        overflow_exact = np.isinf(g) & (np.abs(e) >= fmt.max + 0.5 * _top_ulp(fmt))
        overflow_exact &= np.sign(g) == np.sign(e)
        with np.errstate(over="ignore", invalid="ignore"):
            # scale by the power-of-two ulp before subtracting: exact, no overflow;
            # an infinite result counts as 2**(emax+1), scaled the same way
            g_scaled = np.where(np.isinf(g), np.sign(g) * np.ldexp(1.0, fmt.emax + 1 - k),
                                np.ldexp(np.where(np.isinf(g), 0.0, g), -k))
            d = np.abs(g_scaled - np.ldexp(e, -k))
        out[finite_e] = np.where(overflow_exact, 0.0, d)
    return out


def _top_ulp(fmt: Format) -> float:
    return float(np.ldexp(1.0, fmt.emax - fmt.precision + 1))


def allowance(
    cond: np.ndarray, spread: np.ndarray, terms: np.ndarray, dtype: str
) -> np.ndarray:
    """Ulps allowed per element: (a + c·log2 n)·spread + b·cond (module docstring).

    A non-finite cond (the exact result is 0 while inputs move it) allows any
    finite deviation: relative accuracy means nothing at an exact zero of an
    ill-posed quantity; special values are still checked exactly by
    `ulp_distance`.
    """
    a, b, c = TOLERANCES[dtype]
    n = np.maximum(np.asarray(terms, dtype=np.float64), 1.0)
    with np.errstate(invalid="ignore", over="ignore"):
        allowed = (a + c * np.log2(n)) * np.asarray(spread, dtype=np.float64) + b * np.asarray(
            cond, dtype=np.float64
        )
    return np.where(np.isnan(allowed), np.inf, allowed)


def measure(
    got: np.ndarray,
    expected: np.ndarray,
    cond: np.ndarray,
    spread: np.ndarray,
    terms: np.ndarray,
    dtype: str,
) -> Distance:
    """Compare one returned quantity against the reference in format `dtype`."""
    fmt = FORMATS[dtype]
    ulps = ulp_distance(got, expected, fmt)
    allowed = allowance(cond, spread, terms, dtype)
    if allowed.shape != ulps.shape:
        allowed = np.broadcast_to(allowed, ulps.shape)
    # a finite result where the reference is finite but cond is infinite still
    # must be finite: inf ulps come only from special-value mismatches
    return Distance(ulps=ulps, allowance=np.asarray(allowed, dtype=np.float64), measured_in=dtype)


def worst_index(distance: Distance) -> tuple[int, ...] | None:
    """Index of the element that decides the verdict (largest ulps/allowance)."""
    if distance.ulps.size == 0:
        return None
    ratio = distance.ratio
    flat = int(np.argmax(np.where(np.isnan(ratio), -1.0, ratio)))
    if ratio.reshape(-1)[flat] <= 0:
        flat = int(np.argmax(distance.ulps))
    return tuple(int(i) for i in np.unravel_index(flat, distance.ulps.shape))


def largest_index(distance: Distance) -> tuple[int, ...] | None:
    """Index of the element with the largest ulp error (what a pass reports as its max)."""
    if distance.ulps.size == 0:
        return None
    flat = int(np.argmax(distance.ulps))
    return tuple(int(i) for i in np.unravel_index(flat, distance.ulps.shape))
