"""Unit tests of the double-double arithmetic (harness/reference/ddmath.py, ddfunctions.py,
ddround.py): every claim of their docstrings, checked exactly.

Exactness is judged with ``fractions.Fraction`` (every float64 is a rational) and the
transcendental functions against ``decimal`` at 60 digits -- never against float64.
"""

from __future__ import annotations

from decimal import Decimal, localcontext
from fractions import Fraction

import numpy as np
import pytest

from harness.reference import ddfunctions as df
from harness.reference import ddmath as dm
from harness.reference import ddround as dr

RNG = np.random.default_rng(20240601)
U2 = Fraction(1, 2**106)  # u**2


def fr(v) -> Fraction:
    return Fraction(float(v))


def dd(h, lo) -> Fraction:
    return fr(h) + fr(lo)


def wide_floats(n: int, lo: int = -1070, hi: int = 1023) -> np.ndarray:
    """Random float64 with log-uniform magnitudes (both signs) and random mantissas."""
    m = RNG.uniform(1.0, 2.0, n)
    e = RNG.integers(lo, hi, n)
    s = np.where(RNG.random(n) < 0.5, -1.0, 1.0)
    return s * np.ldexp(m, e)


# ---------------------------------------------------------------------------
# error-free transformations
# ---------------------------------------------------------------------------


def test_two_sum_is_exact():
    a = wide_floats(3000, -1000, 1000)
    b = np.ldexp(a * RNG.uniform(-3, 3, a.size), RNG.integers(-60, 10, a.size))
    s, e = dm.two_sum(a, b)
    for ai, bi, si, ei in zip(a, b, s, e, strict=True):
        assert fr(ai) + fr(bi) == fr(si) + fr(ei)
        assert si == ai + bi


def test_fast_two_sum_is_exact_when_ordered():
    a = wide_floats(1000, -500, 500)
    b = a * RNG.uniform(-1, 1, a.size)
    s, e = dm.fast_two_sum(a, b)
    assert all(fr(x) + fr(y) == fr(p) + fr(q) for x, y, p, q in zip(a, b, s, e, strict=True))


def test_split_halves_have_26_bits_even_near_overflow():
    a = np.concatenate([wide_floats(500), [1.7976931348623157e308, -2.0**1000 * 1.999]])
    hi, lo = dm.split(a)
    assert np.all(np.isfinite(hi)) and np.all(np.isfinite(lo))
    for x, h, low in zip(a, hi, lo, strict=True):
        assert fr(h) + fr(low) == fr(x)
        for part, bits in ((h, 26), (low, 26 if abs(x) <= 2.0**995 else 27)):
            if part != 0:
                m = abs(fr(part)) / Fraction(2) ** (int(np.frexp(part)[1]) - bits)
                assert m.denominator == 1  # at most `bits` significant bits


@pytest.mark.parametrize(
    "a,b",
    [
        (2.0**1000 * 1.3, 1.7),  # the naive split overflows here
        (1.7976931348623157e308, 0.75),
        (2.0**-500 * 1.1, 2.0**-400 * 1.9),  # product near 2**-900: scaled, error term exact
        (3.0, 1.0 / 3.0),
    ],
)
def test_two_prod_exact_at_the_ends_of_the_range(a, b):
    p, e = dm.two_prod(np.array([a]), np.array([b]))
    assert np.isfinite(p[0]) and np.isfinite(e[0])
    assert fr(p[0]) + fr(e[0]) == fr(a) * fr(b)
    assert p[0] == a * b


def test_two_prod_exact_wherever_the_error_is_representable():
    a = wide_floats(3000, -700, 700)
    b = wide_floats(3000, -300, 300)
    p, e = dm.two_prod(a, b)
    exact = 0
    for x, y, pp, ee in zip(a, b, p, e, strict=True):
        if np.isfinite(pp) and abs(pp) > 2.0**-960:
            assert fr(pp) + fr(ee) == fr(x) * fr(y)
            exact += 1
    assert exact > 1000


def test_naive_dekker_split_overflows_where_ours_does_not():
    a = np.array([2.0**1000 * 1.5])
    with np.errstate(over="ignore", invalid="ignore"):
        c = 134217729.0 * a
        naive_hi = c - (c - a)
    assert not np.isfinite(naive_hi[0])  # the trap the scaling avoids
    assert np.all(np.isfinite(dm.split(a)[0]))


def test_select_is_bit_exact():
    a = np.array([-0.0, np.nan, 1.5, np.inf])
    b = np.array([0.0, 2.0, -np.inf, 5e-324])
    m = np.array([True, True, False, False])
    r = dm.select(m, a, b)
    assert np.signbit(r[0]) and np.isnan(r[1]) and r[2] == -np.inf and r[3] == 5e-324
    ri = dm.select(m, np.array([1, 2, 3, 4], np.int32), np.int32(-7))
    assert ri.tolist() == [1, 2, -7, -7]


# ---------------------------------------------------------------------------
# double-double operations: error bounds of Joldes, Muller & Popescu
# ---------------------------------------------------------------------------


def random_dd(n: int):
    h = wide_floats(n, -40, 40)
    lo = h * RNG.uniform(-1, 1, n) * 2.0**-53
    h, lo = dm.fast_two_sum(h, lo)
    return h, lo


@pytest.mark.parametrize(
    "op,bound",
    [
        ("add", 3),
        ("add_fp", 2),
        ("mul", 7),
        ("mul_fp", 2),
        ("div", 16),
        ("div_fp", 4),
    ],
)
def test_dd_operations_meet_their_error_bounds(op, bound):
    ah, al = random_dd(2000)
    bh, bl = random_dd(2000)
    if op == "add":  # include massive cancellation
        bh[:500], bl[:500] = -ah[:500] * (1 + 2.0**-40), -al[:500]
    worst = Fraction(0)
    for i in range(ah.size):
        a, b = dd(ah[i], al[i]), dd(bh[i], bl[i])
        if op == "add":
            r, exact = dm.dd_add(ah[i], al[i], bh[i], bl[i]), a + b
        elif op == "add_fp":
            r, exact = dm.dd_add_fp(ah[i], al[i], bh[i]), a + fr(bh[i])
        elif op == "mul":
            r, exact = dm.dd_mul(ah[i], al[i], bh[i], bl[i]), a * b
        elif op == "mul_fp":
            r, exact = dm.dd_mul_fp(ah[i], al[i], bh[i]), a * fr(bh[i])
        elif op == "div":
            r, exact = dm.dd_div(ah[i], al[i], bh[i], bl[i]), a / b
        else:
            r, exact = dm.dd_div_fp(ah[i], al[i], bh[i]), a / fr(bh[i])
        err = abs(dd(*r) - exact) / abs(exact) if exact else abs(dd(*r))
        worst = max(worst, err)
    assert worst <= bound * U2, float(worst / U2)


def test_dd_add_of_exact_opposites_is_exactly_zero():
    # the reference settles exact zeros (d/dx at x = 0, y = 1/2) on this property
    h, lo = random_dd(200)
    s, t = dm.dd_add(h, lo, -h, -lo)
    assert np.all(s == 0) and np.all(t == 0)


# ---------------------------------------------------------------------------
# exp and log1p against decimal
# ---------------------------------------------------------------------------


def dec_exp(x: float) -> Decimal:
    with localcontext() as c:
        c.prec = 60
        c.Emin, c.Emax = -(10**6), 10**6
        return Decimal(x).exp()


def scaled(k, h, lo) -> Decimal:
    with localcontext() as c:
        c.prec = 80
        c.Emin, c.Emax = -(10**6), 10**6
        return (Decimal(float(h)) + Decimal(float(lo))) * Decimal(2) ** int(k)


def test_exp_scaled_relative_error_below_2_to_minus_96():
    x = np.concatenate(
        [
            RNG.uniform(-3000, 3000, 600),
            RNG.uniform(-1, 1, 300),
            RNG.standard_normal(200) * 1e-9,
            [0.0, -0.0, 5e-324, 1e-300, -745.1, 709.78, -2999.999],
        ]
    )
    k, h, lo = df.exp_scaled(x)
    with localcontext() as c:
        c.prec = 60
        worst = max(abs(scaled(*t) / dec_exp(xi) - 1) for xi, *t in zip(x, k, h, lo, strict=True))
    assert worst < Decimal(2) ** -96, float(worst)


def test_exp_scaled_takes_a_dd_argument():
    xh = np.array([10.0, -700.0])
    xl = np.array([1e-16, -3e-14])
    k, h, lo = df.exp_scaled(xh, xl)
    with localcontext() as c:
        c.prec = 60
        for i in range(2):
            ex = (Decimal(xh[i]) + Decimal(xl[i])).exp()
            assert abs(scaled(k[i], h[i], lo[i]) / ex - 1) < Decimal(2) ** -96


def test_exp_scaled_clamps_beyond_3000():
    k, h, _ = df.exp_scaled(np.array([-1e300, -3000.0]))
    assert k[0] == k[1] and h[0] == h[1]


def test_dd_exp_overflow_and_underflow():
    h, lo = df.dd_exp(np.array([710.0, -800.0, 1.0]))
    assert h[0] == np.inf and h[1] == 0.0
    with localcontext() as c:
        c.prec = 60
        assert abs((Decimal(h[2]) + Decimal(lo[2])) / Decimal(1).exp() - 1) < Decimal(2) ** -96


def dec_log1p(t: Decimal) -> Decimal:
    with localcontext() as c:
        c.prec = 70
        c.Emin = -(10**6)
        if t < Decimal("1e-30"):
            return t - t * t / 2 + t * t * t / 3
        return (1 + t).ln()


def test_log1p_scaled_keeps_relative_accuracy_far_below_the_float_range():
    a = np.concatenate([RNG.uniform(0, 40, 500), RNG.uniform(700, 3000, 300), [0.0, 1e-300]])
    k, h, lo = df.exp_scaled(-a)
    lh, ll = df.log1p_scaled(k, h, lo)
    worst = Decimal(0)
    for i in range(a.size):
        t = scaled(k[i], h[i], lo[i])
        got = scaled(k[i], lh[i], ll[i])
        with localcontext() as c:
            c.prec = 60
            c.Emin = -(10**6)
            worst = max(worst, abs(got / dec_log1p(t) - 1))
    assert worst < Decimal(2) ** -98, float(worst)
    assert np.all(df.log1p_scaled(np.array([0]), np.array([0.0]), np.array([0.0]))[0] == 0)


def test_dd_log1p_unscaled():
    x = np.array([1.0, 0.5, 1e-5, 1e-200, 0.0])
    h, lo = df.dd_log1p(x)
    for i in range(x.size):
        if x[i] == 0:
            assert h[i] == 0
            continue
        with localcontext() as c:
            c.prec = 60
            ex = dec_log1p(Decimal(x[i]))
            assert abs((Decimal(h[i]) + Decimal(lo[i])) / ex - 1) < Decimal(2) ** -98


def test_naive_log1p_of_exp_loses_everything():
    # why log1p_scaled keeps the exponent: float64 log1p(exp(-800)) is 0
    assert np.log1p(np.exp(-800.0)) == 0.0
    k, h, lo = df.exp_scaled(np.array([-800.0]))
    lh, _ = df.log1p_scaled(k, h, lo)
    assert lh[0] > 0.5


# ---------------------------------------------------------------------------
# rounding to float64
# ---------------------------------------------------------------------------


def nearest(v: Fraction) -> float:
    """Reference rounding via CPython's correctly rounded int/int division."""
    return v.numerator / v.denominator


def test_to_float_subnormal_results_including_ties():
    # values (hi + lo) * 2**e that land in the subnormal range, with lo deciding ties
    unit = Fraction(1, 2**1074)
    cases = []
    for n in [0, 1, 2, 3, 4, 5, 1000, 2**51 - 1, 2**52 - 3]:
        for off in [Fraction(1, 2), Fraction(-1, 2), Fraction(1, 3), Fraction(0),
                    Fraction(1, 2) + Fraction(1, 2**60), Fraction(1, 2) - Fraction(1, 2**60)]:
            cases.append((n + off) * unit)
    for v in cases:
        if v <= 0:
            continue
        e = -1100
        m = v * Fraction(2) ** -e  # mantissa in a normal range
        h = float(m)
        lo = float(m - Fraction(h))
        r = dr.to_float(np.array([h]), np.array([lo]), np.array([e]))[0]
        assert r == nearest(v), (v, r, nearest(v))
        rn = dr.to_float(np.array([-h]), np.array([-lo]), np.array([e]))[0]
        assert rn == -nearest(v) and np.signbit(rn)


def test_to_float_double_rounding_trap():
    # hi alone rounds to an even subnormal; lo pushes the exact value past the tie
    e = -1100
    v = (Fraction(5, 2) + Fraction(1, 2**70)) * Fraction(1, 2**1074)
    m = v * Fraction(2) ** -e
    h = float(m)
    lo = float(m - Fraction(h))
    assert lo != 0 and np.ldexp(h, e) == 2 * 5e-324  # ldexp alone: tie to even, wrong
    assert dr.to_float(np.array([h]), np.array([lo]), np.array([e]))[0] == 3 * 5e-324


def test_to_float_overflow_boundary():
    e = np.array([1000, 1000, 1000])
    mx = Fraction(1.7976931348623157e308)
    ulp = Fraction(2) ** 971
    vals = [mx + ulp / 2, mx + ulp / 2 - ulp / 2**40, mx + ulp / 4]
    hs, ls = [], []
    for v in vals:
        m = v / Fraction(2) ** 1000
        h = float(m)
        hs.append(h)
        ls.append(float(m - Fraction(h)))
    r = dr.to_float(np.array(hs), np.array(ls), e)
    assert r[0] == np.inf and r[1] == 1.7976931348623157e308 and r[2] == 1.7976931348623157e308


def test_round_settle_flags_only_undecidable_values():
    # exactly representable with delta 0: settled (ties included)
    r, s = dr.round_settle(np.array([1.0, 1.0]), np.array([2.0**-53, 2.0**-60]),
                           np.array([0, 0]), np.array([0.0, 2.0**-70]))
    assert s.tolist() == [True, True] and r.tolist() == [1.0, 1.0]
    # a tie with a non-zero bound cannot be settled; neither can a value within the bound
    r, s = dr.round_settle(np.array([1.0, 1.0]), np.array([2.0**-53, 2.0**-53 - 2.0**-80]),
                           np.array([0, 0]), np.array([2.0**-90, 2.0**-70]))
    assert s.tolist() == [False, False]
    # subnormal range: settled iff the interval avoids the half-way points
    e = np.array([-1100, -1100])
    h = np.array([np.ldexp(3.0, 26), np.ldexp(3.5, 26)])  # 3 and 3.5 units of 2**-1074
    r, s = dr.round_settle(h, np.zeros(2), e, np.ldexp(np.array([0.1, 0.1]), 26))
    assert r.tolist() == [3 * 5e-324, 4 * 5e-324] and s.tolist() == [True, False]


def test_round_settle_is_never_wrong_when_it_claims_to_be_settled():
    h = wide_floats(3000, -30, 30)
    lo = h * RNG.uniform(-0.5, 0.5, h.size) * 2.0**-52
    h, lo = dm.fast_two_sum(h, lo)
    e = RNG.integers(-1130, 990, h.size)
    d = np.abs(h) * 2.0 ** RNG.uniform(-110, -50, h.size)
    r, s = dr.round_settle(h, lo, e, d)
    for i in np.flatnonzero(s):
        v = dd(h[i], lo[i]) * Fraction(2) ** int(e[i])
        dv = fr(d[i]) * Fraction(2) ** int(e[i])
        for end in (v - dv, v + dv):
            if abs(end) < Fraction(2) ** 1023:
                assert nearest(end) == r[i]


# ---------------------------------------------------------------------------
# summation
# ---------------------------------------------------------------------------


def test_dd_sum_along_axes_within_its_bound():
    h = RNG.standard_normal((7, 301)) * np.ldexp(1.0, RNG.integers(-30, 30, (7, 301)))
    lo = h * RNG.uniform(-1, 1, h.shape) * 2.0**-54
    h[:, :150] = -h[:, 151:301]  # heavy cancellation
    sh, sl = dm.dd_sum(h, lo, axis=1)
    for r in range(7):
        exact = sum((dd(a, b) for a, b in zip(h[r], lo[r], strict=True)), Fraction(0))
        mag = sum((abs(dd(a, b)) for a, b in zip(h[r], lo[r], strict=True)), Fraction(0))
        assert abs(dd(sh[r], sl[r]) - exact) <= Fraction(dm.dd_sum_error_factor(301)) * mag
    th, tl = dm.dd_sum(h.T, lo.T, axis=0)
    assert np.array_equal(th, sh) and np.array_equal(tl, sl)
    z = dm.dd_sum(np.zeros((3, 0)), np.zeros((3, 0)))
    assert z[0].tolist() == [0.0, 0.0, 0.0]


def test_fsum_agrees_with_dd_sum_rounding():
    h = RNG.standard_normal(10001) * 1e10
    sh, sl = dm.dd_sum(h, np.zeros_like(h))
    import math

    assert dr.to_float(sh, sl) == math.fsum(h)


# ---------------------------------------------------------------------------
# the unscaled kernels of the reference's fast path
# ---------------------------------------------------------------------------


def test_exp_neg_dd_relative_error_below_2_to_minus_96():
    # up to 671: beyond, e**-a < 2**-968 and the low word is subnormal (as documented)
    a = np.concatenate([RNG.uniform(0, 64, 800), RNG.uniform(64, 671, 200),
                        10.0 ** RNG.uniform(-300, 1.8, 300),
                        [0.0, 5e-324, 1e-300, 64.0, 671.0, np.log(2) / 16384, 2.0**-14.5]])
    h, lo = df.exp_neg_dd(a)
    with localcontext() as c:
        c.prec = 60
        c.Emin = -(10**6)
        worst = max(abs((Decimal(float(h[i])) + Decimal(float(lo[i]))) / dec_exp(-a[i]) - 1)
                    for i in range(a.size))
    assert worst < Decimal(2) ** -96, float(worst)
    # its leading words are exp_scaled's
    k, th, _ = df.exp_scaled(-a)
    assert np.array_equal(np.ldexp(th, k), h)


def test_log1p_dd_and_recip_dd_against_decimal():
    a = np.concatenate([RNG.uniform(0, 64, 800), 10.0 ** RNG.uniform(-20, 1.8, 300),
                        [0.0, 1e-300, 64.0, 0.0009765625, 0.69314718055994]])
    th, tl = df.exp_neg_dd(a)
    lh, ll = df.log1p_dd(th, tl)
    uh, ue = dm.fast_two_sum(1.0, th)
    rh, rl = dm.recip_dd(uh, ue + tl)
    worst_l = worst_r = Decimal(0)
    with localcontext() as c:
        c.prec = 70
        c.Emin = -(10**6)
        for i in range(a.size):
            t = Decimal(float(th[i])) + Decimal(float(tl[i]))
            got = Decimal(float(lh[i])) + Decimal(float(ll[i]))
            worst_l = max(worst_l, abs(got / dec_log1p(t) - 1))
            u = Decimal(float(uh[i])) + Decimal(float(ue[i])) + Decimal(float(tl[i]))
            worst_r = max(worst_r, abs((Decimal(float(rh[i])) + Decimal(float(rl[i]))) * u - 1))
    assert worst_l < Decimal(2) ** -97, float(worst_l)
    assert worst_r < Decimal(2) ** -102, float(worst_r)


def test_array_variants_are_bit_identical_to_the_public_operations():
    ah, al = random_dd(3000)
    bh, bl = random_dd(3000)
    bh[:300], bl[:300] = -ah[:300], -al[:300]  # exact cancellation
    al[300:400] = 0.0
    pairs = [
        (dm.dd_add(ah, al, bh, bl), dm.dd_add_arr(ah, al, bh, bl)),
        (dm.dd_mul_fp(ah, al, bh), dm.dd_mul_fp_arr(ah, al, bh)),
        (dm.dd_div_fp(ah, al, 3.0), dm.dd_div_fp_arr(ah, al, 3.0)),
        (dm.dd_div_fp(ah, al, 120000.0), dm.dd_div_fp_arr(ah, al, 120000.0)),
        (dm.two_sum(ah, bh), dm.two_sum_arr(ah, bh)),
        (dm.fast_two_sum(ah, al), dm.fast_two_sum_arr(ah, al)),
        (dm.two_prod_unscaled(ah, bh), dm.two_prod_arr(ah, bh)),
        (dm.split_unscaled(ah), dm.split_arr(ah)),
    ]
    for want, got in pairs:
        for u, v in zip(want, got, strict=True):
            assert np.array_equal(u.view(np.int64), v.view(np.int64))
    # exact zeros keep the general kernel's signs: dd * (+-0) and (+-0) * w
    z = np.array([0.0, -0.0, 0.0, -0.0])
    qh = np.array([1.5, 1.5, 0.0, 0.0])
    ql = np.array([1e-17, -1e-17, 0.0, 0.0])
    for b in (np.array([2.0, 2.0, -2.0, -2.0]), z):
        want, got = dm.dd_mul_fp(qh, ql, b), dm.dd_mul_fp_arr(qh, ql, b)
        assert np.array_equal(np.signbit(want[0]), np.signbit(got[0]))


def test_select_with_a_prepared_mask_and_same_scalars():
    a = np.array([-0.0, np.nan, 1.5, np.inf])
    b = np.array([0.0, 2.0, -np.inf, 5e-324])
    m = np.array([True, True, False, False])
    r = dm.select(dm.SelectMask(m), a, b)
    assert np.signbit(r[0]) and np.isnan(r[1]) and r[2] == -np.inf and r[3] == 5e-324
    assert dm.select(dm.SelectMask(m), -1.0, b).tolist() == [-1.0, -1.0, -np.inf, 5e-324]
    ri = dm.select(dm.SelectMask(m), np.array([1, 2, 3, 4], np.int32), np.int32(-7))
    assert ri.tolist() == [1, 2, -7, -7]
    assert dm.select(m, 0, 0) == 0  # one and the same scalar: returned as is


def test_dd_sum_pairs_as_before_padding_odd_lengths_with_zeros():
    h = RNG.standard_normal((3, 7)) * 1e3
    lo = h * 1e-17
    sh, sl = dm.dd_sum(h, lo, axis=1)
    # the tree by hand: ((t0+t1)+(t2+t3)) + ((t4+t5)+(t6+0))
    def add(p, q):
        return dm.dd_add(p[0], p[1], q[0], q[1])
    t = [(h[:, i], lo[:, i]) for i in range(7)] + [(np.zeros(3), np.zeros(3))]
    want = add(add(add(t[0], t[1]), add(t[2], t[3])), add(add(t[4], t[5]), add(t[6], t[7])))
    assert np.array_equal(sh, want[0]) and np.array_equal(sl, want[1])
