"""Exact numbers of a dtype as Hypothesis strategies, drawn so a seed alone decides them.

Two requirements shape every strategy here. Each value must be exactly
representable in the dtype under test, so that no test rounds behind its own back.
And each draw must depend on the seed alone: Hypothesis sometimes replaces a drawn
number by a constant found in the source of the modules loaded in the process
(the report's main process and a backend's worker load different ones), but
never a boolean or an integer below 100 in magnitude. So every choice made here is
one of those: a wider integer, and the bits of a float, are built from digits in
0-63 (`bits`, `integers`), and floats are assembled from them (`finite_floats`)
rather than drawn with `st.floats` (docs/generation.md, "Determinism").
"""

from __future__ import annotations

import math
from functools import cache

import ml_dtypes
import numpy as np
from hypothesis import strategies as st

from harness.dtypes import FORMATS, round_to

__all__ = ["SMALL", "bits", "finite_floats", "integers", "near_overflow", "specials",
           "step_ulps", "subnormals", "to_dtype"]

_UINT = {2: np.uint16, 4: np.uint32, 8: np.uint64}
_NP = {"float16": np.dtype(np.float16), "bfloat16": np.dtype(ml_dtypes.bfloat16),
       "float32": np.dtype(np.float32), "float64": np.dtype(np.float64)}


# ---------------------------------------------------------------- choices ----

#: The widest single integer choice: Hypothesis never substitutes a source
#: constant below 100 in magnitude (it favours small integers on its own).
SMALL = 99
_DIGIT_BITS = 6  # a digit is one choice in [0, 63]


@cache
def bits(n: int) -> st.SearchStrategy[int]:
    """A uniform integer of `n` bits, drawn as 6-bit digits, high digit first
    (so it shrinks toward 0 from the top)."""
    if n <= 0:
        return st.just(0)
    digits = -(-n // _DIGIT_BITS)
    extra = digits * _DIGIT_BITS - n

    def join(parts: tuple[int, ...]) -> int:
        value = 0
        for d in parts:
            value = (value << _DIGIT_BITS) | d
        return value >> extra

    return st.tuples(*[st.integers(0, 2**_DIGIT_BITS - 1)] * digits).map(join)


@cache
def integers(min_value: int, max_value: int) -> st.SearchStrategy[int]:
    """Integers in [min_value, max_value], shrinking toward min_value.

    A range within ±SMALL is one choice; a wider one is built from digits with one
    spare, so reducing it modulo the range leaves each value within 1/64 of
    uniform.
    """
    if min_value >= -SMALL and max_value <= SMALL:
        return st.integers(min_value, max_value)
    span = max_value - min_value + 1
    return bits(span.bit_length() + _DIGIT_BITS).map(lambda v: min_value + v % span)


# ------------------------------------------------------------ dtype facts ----

def to_dtype(value: float, dtype: str) -> float:
    """`value` rounded to `dtype`; finite values that would overflow saturate at the max."""
    with np.errstate(over="ignore", invalid="ignore"):
        out = float(round_to(np.array(value, dtype=np.float64), dtype))
    if math.isinf(out) and math.isfinite(value):
        return math.copysign(FORMATS[dtype].max, value)
    return out


def step_ulps(value: float, k: int, dtype: str) -> float:
    """The value `k` representable numbers away from finite `value` in `dtype`, clamped
    to the finite range; steps cross zero and binade boundaries correctly."""
    dt = _NP[dtype]
    uint = _UINT[dt.itemsize]
    top = int(np.array(FORMATS[dtype].max, dtype=dt).view(uint))

    def key(v: float) -> int:  # monotone integer ordering of the finite values
        b = int(np.array(v, dtype=dt).view(uint))
        sign = 1 << (8 * dt.itemsize - 1)
        return -(b & ~sign) if b & sign else b

    n = max(-top, min(top, key(value) + k))
    raw = n if n >= 0 else (-n) | (1 << (8 * dt.itemsize - 1))
    return float(np.array(raw, dtype=uint).view(dt).astype(np.float64))


# ---------------------------------------------------------------- floats ----

def _bounds(dtype: str, min_value: float | None, max_value: float | None
            ) -> tuple[float, float]:
    """[min_value, max_value] narrowed to values of `dtype` (the whole finite range
    for None)."""
    top = FORMATS[dtype].max
    lo = -top if min_value is None else to_dtype(min_value, dtype)
    if lo < (-top if min_value is None else min_value):
        lo = step_ulps(lo, 1, dtype)
    hi = top if max_value is None else to_dtype(max_value, dtype)
    if hi > (top if max_value is None else max_value):
        hi = step_ulps(hi, -1, dtype)
    return lo, hi


def _fit(value: float, dtype: str, lo: float, hi: float) -> float:
    """`value` rounded to `dtype` and kept in [lo, hi] (whose ends are of `dtype`);
    a zero takes the sign the range allows."""
    v = min(max(to_dtype(min(max(value, lo), hi), dtype), lo), hi)
    return 0.0 if v == 0 and lo >= 0 else v


def _edge_values(dtype: str, lo: float, hi: float) -> tuple[float, ...]:
    """The nonzero values of [lo, hi] kernels get wrong most: its ends and their
    neighbours, ±1, ±½, ±2, the largest value, the smallest normal and subnormal."""
    fmt = FORMATS[dtype]
    raw = [lo, hi, step_ulps(lo, 1, dtype), step_ulps(hi, -1, dtype)]
    for v in (1.0, 0.5, 2.0, math.ldexp(1.0, fmt.emin), fmt.tiny_ulp, fmt.max):
        raw += [v, -v]
    return tuple(sorted({v for v in raw if lo <= v <= hi and v != 0}, key=lambda v: (abs(v), v)))


def _log_uniform(dtype: str, lo: float, hi: float, whole: bool) -> st.SearchStrategy[float]:
    """Values of [lo, hi] with a uniform binade and significand: every magnitude as
    likely as any other, from the subnormals up for the `whole` range, else over the
    30 binades below the larger end (down to 2⁻²⁷ for logits within ±8: tiny values
    without crowding out the moderate ones a bounded range asks for)."""
    fmt = FORMATS[dtype]
    p = fmt.precision
    lowest = fmt.emin - p + 1  # the exponent of the smallest subnormal
    sides = [s for s, ok in ((False, hi > 0), (True, lo < 0)) if ok]

    def magnitudes(negative: bool) -> st.SearchStrategy[float]:
        a, b = (max(-hi, 0.0), -lo) if negative else (max(lo, 0.0), hi)
        top = math.frexp(b)[1] - 1
        bottom = max(lowest, math.frexp(a)[1] - 1 if a > 0 else lowest)
        if not whole:
            bottom = max(bottom, top - 30)

        def build(t: tuple[int, int]) -> float:
            e, m = t
            v = min(max(math.ldexp(1.0 + m / 2 ** (p - 1), e), a), b)
            return -v if negative else v

        return st.tuples(integers(bottom, top), bits(p - 1)).map(build)

    if not sides:  # [0, 0]
        return st.just(lo)
    return st.one_of([magnitudes(negative) for negative in sides])


@cache
def finite_floats(dtype: str, min_value: float | None = None,
                  max_value: float | None = None) -> st.SearchStrategy[float]:
    """Finite values of `dtype` in [min_value, max_value] (the whole finite range by
    default), exactly representable.

    A mix, as Hypothesis's own floats are: simple values (small multiples of
    powers of two; what shrinking moves toward, so 0 or the end nearest it), ±0
    (about one value in five, as often as Hypothesis draws them: the sign of a
    zero is where ports differ), uniform values for a bounded range, a uniform
    binade and significand (every magnitude, subnormals included over the whole
    range), and the ends of the range with the values next to them.
    """
    lo, hi = _bounds(dtype, min_value, max_value)
    whole = min_value is None and max_value is None
    simple = st.tuples(st.integers(-8, 8), st.integers(0, 3)).map(
        lambda t: math.ldexp(t[0], -t[1]))
    parts = [simple]
    if lo <= 0 <= hi:
        parts.append(st.sampled_from((0.0, -0.0) if lo < 0 else (0.0,)))
    if max(abs(lo), abs(hi)) <= 2.0**16:
        parts.append(bits(30).map(lambda k: lo + (hi - lo) * (k / 2**30)))
    parts.append(_log_uniform(dtype, lo, hi, whole))
    edges = _edge_values(dtype, lo, hi)
    if edges:
        parts.append(st.sampled_from(edges))
    return _one_branch(st.one_of(parts).map(lambda v: _fit(v, dtype, lo, hi)))


def _one_branch(strategy: st.SearchStrategy[float]) -> st.SearchStrategy[float]:
    """`strategy` as a single branch of any st.one_of it is put in.

    st.one_of splices the branches of a one_of (mapped or not) into its own list,
    so a mixture of five parts would otherwise weigh five times as much as its
    siblings, and crowd out the specials and binary targets drawn beside it.
    """

    @st.composite
    def branch(draw: st.DrawFn) -> float:
        return draw(strategy)

    return branch()


@cache
def specials() -> st.SearchStrategy[float]:
    """±0, ±inf and NaN: the values every format has and most ports mishandle."""
    return st.sampled_from((0.0, -0.0, math.inf, -math.inf, math.nan))


@cache
def subnormals(dtype: str) -> st.SearchStrategy[float]:
    """Subnormal values of `dtype`, both signs (flush-to-zero kernels differ here)."""
    fmt = FORMATS[dtype]
    k_max = 2 ** (fmt.precision - 1) - 1
    lowest = fmt.emin - fmt.precision + 1
    return st.tuples(st.booleans(), integers(1, k_max)).map(
        lambda t: math.copysign(math.ldexp(t[1], lowest), -1.0 if t[0] else 1.0))


@cache
def near_overflow(dtype: str) -> st.SearchStrategy[float]:
    """Finite values within a factor 16 of the largest of `dtype`, both signs."""
    fmt = FORMATS[dtype]
    mant = 2 ** (fmt.precision - 1)

    def build(t: tuple[bool, int, int]) -> float:
        negative, below, m = t
        v = math.ldexp(mant + m, fmt.emax - below - (fmt.precision - 1))
        return -v if negative else v

    return st.tuples(st.booleans(), st.integers(0, 3), bits(fmt.precision - 1)).map(build)
