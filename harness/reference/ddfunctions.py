"""``exp`` and ``log1p`` in double-double, vectorised over numpy.

The loss needs ``sp(-|x|) = log1p(e**-|x|)`` and the sigmoid ``e**-|x| / (1 + e**-|x|)``
to about 2**-95 relative, for any float64 ``x``: this module gives ``e**-|x|`` and
``log1p`` of it on the arithmetic of ``ddmath.py``, in two flavours.

* ``exp_scaled``/``log1p_scaled`` keep the binary exponent apart (``2**k * (h + l)``),
  so that ``e**-2000`` -- far below the float64 range -- is as accurate as ``e**-1``;
  the general kernel (``elementwise.py``) and the exact path (``exact.py``) use them.
* ``exp_neg_dd``/``log1p_dd`` work on unscaled dd values in fewer operations, for the
  moderate arguments of the fast kernel (``fastkernel.py``).

Algorithms
----------
* ``exp_scaled``: ``e**x = 2**k * (h + l)`` with ``|x| <= EXP_CLAMP``. Argument
  reduction ``x = N*ln2/8192 + r`` (Cody-Waite with ``ln2/8192`` split into four
  pieces, the first three of 27 bits so ``N * piece`` is exact), a table of
  ``2**(j/8192)`` in dd, and a degree-6 Taylor polynomial on ``|r| <= 2**-14.5``:
  terms of order >= 3 in float64 (their size is <= 2**-46, so float64 rounding adds
  <= 2**-97), the rest in dd. Relative error <= 2**-96 (dominated by that float64
  tail; truncation is 2**-113).
* ``log1p_scaled``: ``log1p(t)`` for ``t = 2**k * (h + l)`` in ``[0, 1.0001]``, keeping
  the same binary exponent so that ``log1p`` of a number far below the float64 range
  (``t = e**-2000``) is still accurate to dd precision. Reduction by a table of
  ``log(1 + j/1024)``: ``log1p(t) = log(c) + 2*atanh(s)``, ``c = 1 + j/1024``,
  ``s = (t - j/1024) / (2 + j/1024 + t)``, ``|s| <= 2**-12``; the atanh series is
  summed to ``s**9`` (truncation 2**-120 relative). For ``j = 0`` the numerator is
  ``t`` itself, so tiny ``t`` loses nothing. Relative error <= 2**-98.

All table constants are computed at import time with ``decimal`` (60 digits) and
rounded to dd, i.e. they are exact to far better than the 2**-106 a dd can hold.
"""

from __future__ import annotations

from decimal import Decimal, localcontext
from fractions import Fraction

import numpy as np

from harness.reference.ddmath import (
    DD,
    dd_add,
    dd_add_fp,
    dd_div,
    dd_mul,
    dd_mul_arr,
    fast_two_sum,
    fast_two_sum_arr,
    split_arr,
    split_unscaled,
    two_prod_arr,
    two_prod_unscaled,
    two_sum,
    two_sum_arr,
)

__all__ = [
    "EXP_CLAMP",
    "dd_exp",
    "dd_log1p",
    "exp_neg_dd",
    "exp_scaled",
    "log1p_dd",
    "log1p_scaled",
]

#: |x| beyond which exp_scaled clamps its argument (see exp_scaled)
EXP_CLAMP = 3000.0


def _exact_dd(value: Fraction | Decimal) -> tuple[float, float]:
    """Round an exact rational (or a long Decimal) to the nearest dd ``(hi, lo)``."""
    fr = Fraction(value)
    hi = float(fr)
    lo = float(fr - Fraction(hi))
    return hi, lo


def _round_to_bits(fr: Fraction, bits: int) -> float:
    """``fr`` rounded to ``bits`` significant bits (a float64 holding it exactly)."""
    e = np.frexp(float(fr))[1]
    scale = Fraction(2) ** (bits - int(e))
    q = round(fr * scale)
    return float(Fraction(q) / scale)


# ---------------------------------------------------------------------------
# tables (computed exactly at import time)
# ---------------------------------------------------------------------------

def _cody_waite(value: Fraction, count: int, bits: int) -> list[float]:
    """``value`` as ``count`` pieces of ``bits`` bits (so an integer of up to 53 - bits bits
    times a piece is exact) and a full-precision remainder, summing to it within the
    remainder's rounding."""
    pieces = []
    for _ in range(count):
        c = _round_to_bits(value, bits)
        pieces.append(c)
        value -= Fraction(c)
    pieces.append(float(value))
    return pieces


_EXP_BITS = 13
_EXP_N = 1 << _EXP_BITS  # 8192 table entries


def _make_tables():
    """Cody-Waite pieces of ln2/8192, 8192/ln2, ln2 and 1/3 in dd, and the two tables."""
    with localcontext() as ctx:
        ctx.prec = 80
        ln2 = Decimal(2).ln()
        step = ln2 / _EXP_N
        # Cody-Waite pieces of ln2/8192: three 27-bit pieces (N < 2**26 for |x| <= 3000,
        # so N * piece is exact) and a full-precision remainder.
        pieces = _cody_waite(Fraction(step), 3, 27)
        inv = float(Fraction(_EXP_N) / Fraction(ln2))
        ln2_dd = _exact_dd(ln2)
        third = _exact_dd(Fraction(1, 3))
        ctx.prec = 60
        q = step.exp()  # 2**(1/8192)
        th = np.empty(_EXP_N)
        tl = np.empty(_EXP_N)
        v = Decimal(1)
        for j in range(_EXP_N):
            th[j], tl[j] = _exact_dd(v)
            v = v * q
        lh = np.empty(1025)
        ll = np.empty(1025)
        for j in range(1025):
            lh[j], ll[j] = _exact_dd((1 + Decimal(j) / 1024).ln())
    return pieces, inv, ln2_dd, third, th, tl, lh, ll


(_CW, _INV_STEP, LN2_DD, _THIRD, _EXP_TH, _EXP_TL, _LOGC_H, _LOGC_L) = _make_tables()


# ---------------------------------------------------------------------------
# exp and log1p with the binary exponent kept apart
# ---------------------------------------------------------------------------


def exp_scaled(xh: np.ndarray | float, xl: np.ndarray | None = None,
               ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``e**x = 2**k * (h + l)`` for a float64 or dd argument; relative error <= 2**-96.

    Returns ``(k, h, l)`` with ``k`` an int32 array and ``h + l`` in about ``[1, 2)``.
    Keeping the binary exponent apart means the result never overflows or underflows:
    ``e**-2000`` is returned as accurately as ``e**-1``.

    The argument is clamped to ``[-EXP_CLAMP, EXP_CLAMP]`` (``e**3000 ~ 2**4328``):
    beyond that the result is ``e**(+-3000)``, a saturated stand-in of the right sign
    and ordering that the caller must treat as such (the reference adds the stand-in's
    whole magnitude to its error bound). NaN and inf arguments are not supported.
    """
    xh = np.asarray(xh, dtype=np.float64)
    x = np.clip(xh, -EXP_CLAMP, EXP_CLAMP)
    n = np.rint(x * _INV_STEP)
    ni = n.astype(np.int64)
    j = ni & (_EXP_N - 1)
    k = (ni >> _EXP_BITS).astype(np.int32)  # int32: numpy's ldexp is SIMD only for int32
    c1, c2, c3, c4 = _CW
    r1 = x - n * c1  # exact (Sterbenz), n*c1 exact
    rh, rl = two_sum(r1, -(n * c2))  # n*c2 exact
    rh, rl = dd_add_fp(rh, rl, -(n * c3))  # n*c3 exact
    rl = rl - n * c4  # |n*c4| <= 2**-68: rounding error <= 2**-121
    if xl is not None:
        xl = np.where(x == xh, xl, 0.0)
        rh, rl = dd_add_fp(rh, rl, xl)
    # e**r = 1 + r + r^2/2 + r^3 (1/6 + r/24 + r^2/120 + r^3/720), |r| <= 2**-14.5
    sh, sl = two_prod_unscaled(rh, rh)
    sl = sl + 2.0 * rh * rl
    sh = 0.5 * sh
    sl = 0.5 * sl
    tail = rh * rh * rh * (1.0 / 6 + rh * (1.0 / 24 + rh * (1.0 / 120 + rh * (1.0 / 720))))
    ph, pl = dd_add_fp(sh, sl, tail)
    ph, pl = dd_add(rh, rl, ph, pl)
    ph, pl = dd_add_fp(ph, pl, 1.0)
    h, lo = dd_mul(_EXP_TH[j], _EXP_TL[j], ph, pl)
    return k, h, lo


def dd_exp(xh: np.ndarray | float, xl: np.ndarray | None = None) -> DD:
    """``e**x`` as an unscaled dd ``(h, l)``; overflows to ``(inf, 0)`` and underflows to 0.

    Near the underflow threshold the low word (and then the high word) loses bits;
    use ``exp_scaled`` when results below ``2**-969`` matter.
    """
    xh = np.asarray(xh, dtype=np.float64)
    k, h, lo = exp_scaled(xh, xl)
    k = np.clip(k, -2200, 2200)
    with np.errstate(over="ignore"):
        hh = np.ldexp(h, k)
        ll = np.ldexp(lo, k)
    big = xh > 709.8
    hh = np.where(big & ~np.isfinite(hh), np.inf, hh)
    ll = np.where(np.isfinite(hh), ll, 0.0)
    return hh, ll


def log1p_scaled(k: np.ndarray, th: np.ndarray, tl: np.ndarray) -> DD:
    """``log1p(t)`` for ``t = 2**k * (th + tl)`` in ``[0, 1.0001]``; returns ``(h, l)`` with
    ``log1p(t) = 2**k * (h + l)``, relative error <= 2**-98.

    ``k`` may be very negative (``t`` far below the float64 range): then
    ``log1p(t) = t*(1 - t/2 + ...)`` and the result keeps ``t``'s exponent. See the
    module docstring for the reduction. ``t = 0`` gives exactly 0.
    """
    k = np.asarray(k)
    th = np.asarray(th, dtype=np.float64)
    tl = np.asarray(tl, dtype=np.float64)
    negk = -k
    tt = np.ldexp(th, k)  # t unscaled (may underflow: then j = 0 and it is negligible)
    ttl = np.ldexp(tl, k)
    jj = np.rint(tt * 1024.0)
    ji = jj.astype(np.int64)
    cj = jj * (1.0 / 1024)
    # numerator t - j/1024 in the 2**k frame; j >= 1 implies k >= -11, so exact
    nh, nl = dd_add_fp(th, tl, -np.ldexp(cj, negk))
    dh, dl = dd_add_fp(tt, ttl, 2.0 + cj)
    sh, sl = dd_div(nh, nl, dh, dl)  # s * 2**-k
    suh = np.ldexp(sh, k)
    sul = np.ldexp(sl, k)
    # s^2 in dd
    qh, ql = two_prod_unscaled(suh, suh)
    ql = ql + 2.0 * suh * sul
    s2 = suh * suh
    tail = s2 * (0.2 + s2 * (1.0 / 7 + s2 * (1.0 / 9)))
    ph, pl = dd_add_fp(_THIRD[0], _THIRD[1], tail)
    uh, ul = dd_mul(qh, ql, ph, pl)  # s^2 (1/3 + s^2/5 + ...)
    vh, vl = fast_two_sum(1.0, uh)
    vl = vl + ul
    wh, wl = dd_mul(2.0 * sh, 2.0 * sl, vh, vl)  # 2 atanh(s) * 2**-k
    ch = np.ldexp(_LOGC_H[ji], negk)
    cl = np.ldexp(_LOGC_L[ji], negk)
    return dd_add(ch, cl, wh, wl)


def dd_log1p(xh: np.ndarray | float, xl: np.ndarray | None = None) -> DD:
    """``log1p(x)`` in dd for ``x`` in ``[0, 1]`` (the domain the reference needs)."""
    xh = np.asarray(xh, dtype=np.float64)
    xl = np.zeros_like(xh) if xl is None else np.asarray(xl, dtype=np.float64)
    m, e = np.frexp(xh)
    e = e - np.int32(1)
    m = 2.0 * m
    ml = np.ldexp(xl, -e)
    h, lo = log1p_scaled(e, m, ml)
    return np.ldexp(h, e), np.ldexp(lo, e)


# ---------------------------------------------------------------------------
# unscaled dd kernels for moderate arguments (the reference's fast kernel)
# ---------------------------------------------------------------------------


def _make_fast_constants():
    """``exp_neg_dd``'s three-piece ln2/8192 and ``log1p_dd``'s presplit 1/3."""
    with localcontext() as ctx:
        ctx.prec = 80
        step = Decimal(2).ln() / _EXP_N
        # ln2/8192 in three pieces for |N| < 2**23 (|x| <= 1000): the first two of 30 bits,
        # so N * piece is exact, and the rest
        pieces = _cody_waite(Fraction(step), 2, 30)
    th = _THIRD[0]
    tsh, tsl = split_unscaled(np.float64(th))
    return tuple(pieces), float(tsh), float(tsl)


(_CW30, _THIRD_SH, _THIRD_SL) = _make_fast_constants()


def exp_neg_dd(a: np.ndarray) -> DD:
    """``e**-a`` as an unscaled dd ``(h, l)`` for ``0 <= a <= 700``; relative error <= 2**-96.

    ``exp_scaled`` for the range where the result is a normal float64 number, in fewer
    operations: a two-piece Cody-Waite reduction (``|N| < 2**23``), the same table of
    ``2**(j/8192)``, and ``e**r`` (``|r| <= 2**-14.5``) as ``1 + r + r**2/2`` with the square
    exact and the terms of order >= 3 (``<= 2**-45``) in float64; the power of two is
    applied by multiplying with ``2**k`` built from its bits. ``l`` loses bits to
    underflow only where ``h < 2**-969``.
    """
    x = -np.asarray(a, dtype=np.float64)
    n = x * _INV_STEP
    np.rint(n, out=n)
    ni = n.astype(np.int64)
    j = ni & (_EXP_N - 1)
    ni >>= _EXP_BITS
    ni += 1023
    ni <<= 52
    scale = ni.view(np.float64)  # 2**k, k >= -1011
    c1, c2, c3 = _CW30
    r1 = n * c1
    np.subtract(x, r1, out=r1)
    t = n * -c2
    rh, rl = two_sum_arr(r1, t)  # both steps exact
    np.multiply(n, c3, out=t)
    rl -= t
    # e**r = e**rh (1 + rl) with |rl| <= 2**-55 (n*c3 is not folded into rh):
    # 1 + rh + rh**2/2 + [rl (1 + rh + rh**2/2) + rh**3/6 + rh**4/24 + rh**5/120 + rh**6/720]
    sa, sb = split_arr(rh)
    q = rh * rh
    qe = sa * sa
    qe -= q
    np.multiply(sa, sb, out=sa)
    sa *= 2.0
    qe += sa
    np.multiply(sb, sb, out=sb)
    qe += sb  # rh**2 = q + qe exactly
    hq = 0.5 * q
    rest = rh * (1.0 / 720)
    rest += 1.0 / 120
    rest *= rh
    rest += 1.0 / 24
    rest *= rh
    rest += 1.0 / 6
    rest *= rh
    rest *= q
    np.add(rh, hq, out=t)
    t *= rl
    t += rl
    qe *= 0.5
    qe += t
    qe += rest  # 0.5*qe + (rl + rl*(rh + 0.5*q)) + rh*q*(...)
    s1, e1 = fast_two_sum_arr(1.0, rh)
    s2, e2 = fast_two_sum_arr(s1, hq)
    e1 += e2
    e1 += qe
    eh, el = fast_two_sum_arr(s2, e1)
    h, lo = dd_mul_arr(_EXP_TH[j], _EXP_TL[j], eh, el)
    h *= scale
    lo *= scale
    return h, lo


def log1p_dd(th: np.ndarray, tl: np.ndarray) -> DD:
    """``log1p(t)`` for an unscaled dd ``t = th + tl`` in ``[2**-900, 1]``; relative error
    <= 2**-100 (plus the error of ``t`` itself).

    ``log1p(t) = log(1 + j/1024) + 2*atanh(s)``, ``s = (t - j/1024)/(2 + j/1024 + t)``,
    ``|s| <= 2**-12`` (``j = 0``: ``s = t/(2 + t)``, so a tiny ``t`` keeps its relative
    accuracy). ``s`` is a dd quotient (one exact product for its residual);
    ``2*atanh(s) = 2s(1 + z)``, ``z = s**2/3 + s**4/5 + ... <= 2**-25.5``, needs ``z`` to
    only ~2**-77 relative: ``s**2`` and the product with ``1/3`` exact, the rest in float64.
    """
    jj = th * 1024.0
    np.rint(jj, out=jj)
    ji = jj.astype(np.intp)
    cj = jj
    cj *= 1.0 / 1024
    nh = th - cj  # exact (Sterbenz; or cj = 0)
    cj += 2.0
    dh, dl = fast_two_sum_arr(cj, th)
    dl += tl
    # s = (nh + tl)/(dh + dl): sh = nh/dh, then the residual through an exact product
    sh = nh / dh
    sa, sb = split_arr(sh)
    p, pe = two_prod_arr(sh, dh, (sa, sb))
    np.subtract(nh, p, out=nh)
    nh -= pe
    nh += tl
    np.multiply(sh, dl, out=pe)
    nh -= pe
    nh /= dh
    sl = nh
    # z = (s**2)(1/3 + s**2/5 + s**4/7 + s**6/9)
    q = sh * sh
    qe = sa * sa
    qe -= q
    np.multiply(sa, sb, out=p)
    p *= 2.0
    qe += p
    np.multiply(sb, sb, out=p)
    qe += p
    np.multiply(sh, sl, out=p)
    p *= 2.0
    qe += p
    tail = q * (1.0 / 9)
    tail += 1.0 / 7
    tail *= q
    tail += 0.2
    tail *= q
    tail += _THIRD[1]
    tail *= q
    np.multiply(qe, _THIRD[0], out=p)
    tail += p  # qe/3 + q*(third_lo + tail)
    zh, ze = two_prod_arr(q, _THIRD[0], None, (_THIRD_SH, _THIRD_SL))
    ze += tail
    # s*z with the product of the leading words exact
    m, me = two_prod_arr(sh, zh, (sa, sb))
    np.multiply(sh, ze, out=p)
    me += p
    np.multiply(sl, zh, out=p)
    me += p
    wh, wl = fast_two_sum_arr(sh, m)
    wl += sl
    wl += me
    # log(1 + j/1024) + 2*(wh + wl); |log(1 + j/1024)| >= 2|wh| for j >= 1, and it is 0 for j = 0
    wh *= 2.0
    wl *= 2.0
    wl += _LOGC_L[ji]
    s1, e1 = fast_two_sum_arr(_LOGC_H[ji], wh)
    e1 += wl
    return fast_two_sum_arr(s1, e1)
