"""Error-free float64 arithmetic and double-double ("dd") functions, vectorised over numpy.

Why this module exists
----------------------
The reference loss must be *correctly rounded*: the exact real value of the loss,
rounded once to float64. float64 arithmetic alone cannot promise that, so the
reference computes in double-double -- an unevaluated sum ``hi + lo`` of two float64
numbers, about 106 significant bits -- and rounds once at the end. Everything here
works elementwise on whole numpy arrays (no Python loop per element), because the
harness compares frameworks on arrays of millions of elements.

Building blocks
---------------
* ``two_sum``/``fast_two_sum``: ``a + b = s + err`` exactly (Knuth, Dekker).
* ``two_prod``: ``a * b = p + err`` exactly by Dekker's splitting. numpy has no fused
  multiply-add, so each factor is split into two 26-bit halves whose products are
  exact. The split multiplies by ``2**27 + 1`` and overflows for ``|a| > ~2**996``;
  and the error term of a product near the underflow threshold is not representable.
  ``two_prod`` therefore scales both operands to ``[0.5, 1)`` by exact powers of two
  (``frexp``), splits there, and scales back.
* ``dd_add``/``dd_mul``/``dd_div`` and their ``_fp`` variants (one operand a plain
  float64): the algorithms analysed by Joldes, Muller and Popescu, "Tight and rigorous
  error bounds for basic building blocks of double-word arithmetic" (ACM TOMS 2017).
  With ``u = 2**-53`` their relative errors are at most: ``dd_add`` 3u^2 (accurate
  version: cancellation-safe), ``dd_add_fp`` 2u^2, ``dd_mul_fp`` 1.5u^2 + 4u^3,
  ``dd_mul`` 7u^2, ``dd_div_fp`` 3.5u^2, ``dd_div`` 15u^2 + 56u^3. Each holds only
  while no intermediate overflows or underflows; callers in this project work on
  mantissas scaled into ``[2**-60, 4]`` and keep the binary exponent apart, so that
  condition is met by construction (see ``harness.reference``).
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
* ``to_float``/``round_settle``: round ``(hi + lo) * 2**e`` to float64 correctly,
  including the subnormal range (where ``ldexp`` alone would round twice) and overflow;
  ``round_settle`` also says whether an error bound on the dd value is small enough
  for the rounding to be certain (Ziv's test).
* ``dd_sum``: pairwise (tree) summation of dd numbers along an axis, every addition
  the accurate dd addition, so the error is <= 3.01 u^2 * ceil(log2 n) * sum|terms|.

All table constants are computed at import time with ``decimal`` (60 digits) and
rounded to dd, i.e. they are exact to far better than the 2**-106 a dd can hold.
"""

from __future__ import annotations

from decimal import Decimal, localcontext
from fractions import Fraction

import numpy as np

__all__ = [
    "EXP_CLAMP",
    "SelectMask",
    "U",
    "dd_add",
    "dd_add_fp",
    "dd_div",
    "dd_div_fp",
    "dd_exp",
    "dd_log1p",
    "dd_mul",
    "dd_mul_fp",
    "dd_sum",
    "dd_sum_error_factor",
    "exp_neg_dd",
    "exp_scaled",
    "fast_two_sum",
    "log1p_dd",
    "log1p_scaled",
    "recip_dd",
    "round_settle",
    "select",
    "split",
    "to_float",
    "two_prod",
    "two_sum",
]

#: unit roundoff of float64 (round to nearest)
U = 2.0**-53
_SPLITTER = 134217729.0  # 2**27 + 1
#: |x| beyond which exp_scaled clamps its argument (see exp_scaled)
EXP_CLAMP = 3000.0
_TINY = 2.0**-1022
_MAXF = float(np.finfo(np.float64).max)


# ---------------------------------------------------------------------------
# small helpers
# ---------------------------------------------------------------------------


class SelectMask:
    """A boolean mask prepared once for many float64 ``select`` calls (two bit masks)."""

    __slots__ = ("m", "mask", "nm")

    def __init__(self, mask: np.ndarray):
        self.mask = mask
        self.m = -mask.astype(np.int64)
        self.nm = ~self.m


def select(mask: np.ndarray, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """``np.where(mask, a, b)`` for same-dtype float64/int arrays, bit-exact and branch-free.

    ``np.where`` with an unpredictable mask costs ~1.5 ns per element (branch
    mispredictions); selecting through the bit patterns costs a third of that and
    keeps signed zeros and NaN payloads intact. Selecting between one and the same scalar
    object returns it unchanged (the reference's unscaled exponent 0 stays a Python int).
    """
    if a is b and np.ndim(a) == 0:
        return a
    a = np.asarray(a)
    b = np.asarray(b)
    if a.dtype == np.float64:
        if isinstance(mask, SelectMask):
            m, nm = mask.m, mask.nm
        else:
            m = -mask.astype(np.int64)
            nm = ~m
        ia = (a if a.shape == m.shape else np.broadcast_to(a, m.shape)).view(np.int64)
        ib = (b if b.shape == m.shape else np.broadcast_to(b, m.shape)).view(np.int64)
        r = ia & m
        r |= ib & nm
        return r.view(np.float64)
    if isinstance(mask, SelectMask):
        mask = mask.mask
    dt = np.result_type(a, b)
    m = -mask.astype(dt)
    return (a.astype(dt, copy=False) & m) | (b.astype(dt, copy=False) & ~m)


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
# error-free transformations
# ---------------------------------------------------------------------------


def two_sum(a, b):
    """``(s, err)`` with ``s = fl(a + b)`` and ``a + b = s + err`` exactly (Knuth).

    Exact for all finite inputs whose sum does not overflow; no ordering needed.
    """
    s = a + b
    bb = s - a
    err = (a - (s - bb)) + (b - bb)
    return s, err


def fast_two_sum(a, b):
    """``(s, err)`` with ``a + b = s + err`` exactly, provided ``|a| >= |b|`` (or a == 0)."""
    s = a + b
    err = b - (s - a)
    return s, err


def _split(a):
    """Dekker's split without range checks: ``a = hi + lo``, each with <= 26 bits."""
    c = _SPLITTER * a
    hi = c - (c - a)
    return hi, a - hi


def split(a):
    """Dekker's split ``a = hi + lo`` for any finite ``a``.

    Below ``2**995`` this is the classical rounding split: both halves have at most 26
    significant bits, so products of halves are exact. ``(2**27 + 1) * a`` overflows
    above that, and rounding could even push ``hi`` to ``2**1024``; there ``hi`` is ``a``
    truncated to 26 bits (clearing the low 27 bits of the significand, which cannot
    overflow) and ``lo = a - hi`` is exact with at most 27 bits. ``two_prod`` avoids both
    cases by splitting frexp mantissas instead.
    """
    a = np.asarray(a, dtype=np.float64)
    big = np.abs(a) > 2.0**995
    with np.errstate(over="ignore", invalid="ignore"):
        hi, lo = _split(a)
    trunc = (a.view(np.int64) & ~np.int64((1 << 27) - 1)).view(np.float64)
    hi = select(big, trunc, hi)
    lo = select(big, a - trunc, lo)
    return hi, lo


def _two_prod(a, b):
    """Dekker's product for operands known to be in a safe range (no scaling)."""
    p = a * b
    ah, al = _split(a)
    bh, bl = _split(b)
    err = ((ah * bh - p) + ah * bl + al * bh) + al * bl
    return p, err


def two_prod(a, b):
    """``(p, err)`` with ``p = fl(a*b)`` and ``a*b = p + err`` exactly whenever representable.

    Both operands are scaled to ``[0.5, 1)`` by ``frexp`` (exact), multiplied there by
    Dekker's algorithm -- which can neither overflow nor lose bits to underflow --
    and the error scaled back. The result is exact whenever ``err`` is representable,
    i.e. unless ``|a*b|`` is within a factor ``2**53`` of the underflow threshold; there
    ``err`` is the correctly rounded value of ``a*b - p``. For non-finite ``p`` the
    error is 0.
    """
    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    p = a * b
    ma, ea = np.frexp(a)
    mb, eb = np.frexp(b)
    ph, pl = _two_prod(ma, mb)
    e = ea + eb
    with np.errstate(invalid="ignore", over="ignore"):
        # p scaled into the mantissa frame; differs from ph only if p was rounded to a
        # subnormal, and then by less than ph's binade (Sterbenz: the difference is exact)
        pm = np.ldexp(p, -e)
        d = ph - pm
        s, t = two_sum(d, pl)
        err = np.ldexp(s + t, e)
    finite = np.isfinite(p)
    return p, np.where(finite, err, 0.0)


# ---------------------------------------------------------------------------
# double-double arithmetic (Joldes, Muller, Popescu 2017)
# ---------------------------------------------------------------------------


def dd_add(ah, al, bh, bl):
    """Accurate dd + dd (AccurateDWPlusDW): relative error <= 3u^2, even under cancellation.

    Because the bound is relative to the exact sum, an exactly-zero sum comes out
    exactly zero -- the reference relies on that to settle exact zeros without a
    slow path.
    """
    sh, sl = two_sum(ah, bh)
    th, tl = two_sum(al, bl)
    c = sl + th
    vh, vl = fast_two_sum(sh, c)
    w = tl + vl
    return fast_two_sum(vh, w)


def dd_add_fp(ah, al, b):
    """dd + float64 (DWPlusFP): relative error <= 2u^2."""
    sh, sl = two_sum(ah, b)
    v = al + sl
    return fast_two_sum(sh, v)


def dd_mul_fp(ah, al, b):
    """dd * float64 (DWTimesFP1): relative error <= 1.5u^2 + 4u^3."""
    ch, cl1 = _two_prod(ah, b)
    cl2 = al * b
    th, tl1 = fast_two_sum(ch, cl2)
    tl2 = tl1 + cl1
    return fast_two_sum(th, tl2)


def dd_mul(ah, al, bh, bl):
    """dd * dd (DWTimesDW1): relative error <= 7u^2."""
    ch, cl1 = _two_prod(ah, bh)
    tl = ah * bl + al * bh
    cl2 = cl1 + tl
    return fast_two_sum(ch, cl2)


def dd_div_fp(ah, al, b):
    """dd / float64 (DWDivFP1): relative error <= 3.5u^2."""
    th = ah / b
    ph, pl = _two_prod(th, b)
    dh = ah - ph
    dt = dh - pl
    d = dt + al
    tl = d / b
    return fast_two_sum(th, tl)


def dd_div(ah, al, bh, bl):
    """dd / dd (DWDivDW1): relative error <= 15u^2 + 56u^3."""
    th = ah / bh
    rh, rl = dd_mul_fp(bh, bl, th)
    ph, pl = two_sum(ah, -rh)
    dl = al - rl
    d = pl + dl
    tl = (ph + d) / bh
    return fast_two_sum(th, tl)


# ---------------------------------------------------------------------------
# tables (computed exactly at import time)
# ---------------------------------------------------------------------------

_EXP_BITS = 13
_EXP_N = 1 << _EXP_BITS  # 8192 table entries


def _make_tables():
    with localcontext() as ctx:
        ctx.prec = 80
        ln2 = Decimal(2).ln()
        step = ln2 / _EXP_N
        # Cody-Waite pieces of ln2/8192: three 27-bit pieces (N < 2**26 for |x| <= 3000,
        # so N * piece is exact) and a full-precision remainder.
        rest = Fraction(step)
        pieces = []
        for _ in range(3):
            c = _round_to_bits(rest, 27)
            pieces.append(c)
            rest -= Fraction(c)
        pieces.append(float(rest))
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
# exp and log1p
# ---------------------------------------------------------------------------


def exp_scaled(xh, xl=None):
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
    sh, sl = _two_prod(rh, rh)
    sl = sl + 2.0 * rh * rl
    sh = 0.5 * sh
    sl = 0.5 * sl
    tail = rh * rh * rh * (1.0 / 6 + rh * (1.0 / 24 + rh * (1.0 / 120 + rh * (1.0 / 720))))
    ph, pl = dd_add_fp(sh, sl, tail)
    ph, pl = dd_add(rh, rl, ph, pl)
    ph, pl = dd_add_fp(ph, pl, 1.0)
    h, lo = dd_mul(_EXP_TH[j], _EXP_TL[j], ph, pl)
    return k, h, lo


def dd_exp(xh, xl=None):
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




def log1p_scaled(k, th, tl):
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
    qh, ql = _two_prod(suh, suh)
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


def dd_log1p(xh, xl=None):
    """``log1p(x)`` in dd for ``x`` in ``[0, 1]`` (the domain the reference needs)."""
    xh = np.asarray(xh, dtype=np.float64)
    xl = np.zeros_like(xh) if xl is None else np.asarray(xl, dtype=np.float64)
    m, e = np.frexp(xh)
    e = e - np.int32(1)
    m = 2.0 * m
    ml = np.ldexp(xl, -e)
    h, lo = log1p_scaled(e, m, ml)
    return np.ldexp(h, e), np.ldexp(lo, e)


# --- array-only variants that reuse their own temporaries (same arithmetic, fewer fresh
# buffers: on numpy a fresh 128 KB temporary is a cache miss per line when written) ---


def _ts(a, b):
    """``two_sum`` for arrays (at least one operand an array)."""
    s = a + b
    bb = s - a
    t = s - bb
    np.subtract(a, t, out=t)
    np.subtract(b, bb, out=bb)
    t += bb
    return s, t


def _fts(a, b):
    """``fast_two_sum`` for arrays."""
    s = a + b
    t = s - a
    np.subtract(b, t, out=t)
    return s, t


def _spl(a):
    """``_split`` for arrays."""
    c = _SPLITTER * a
    hi = c - a
    np.subtract(c, hi, out=hi)
    np.subtract(a, hi, out=c)
    return hi, c


def _tp(a, b, sa=None, sb=None):
    """``_two_prod`` for arrays, with optionally presplit operands."""
    p = a * b
    a1, a2 = _spl(a) if sa is None else sa
    b1, b2 = _spl(b) if sb is None else sb
    e = a1 * b1
    e -= p
    t = a1 * b2
    e += t
    np.multiply(a2, b1, out=t)
    e += t
    np.multiply(a2, b2, out=t)
    e += t
    return p, e


def _dd_add_arr(ah, al, bh, bl):
    """``dd_add`` for arrays: the same operations, bit for bit."""
    sh, sl = _ts(ah, bh)
    th, tl = _ts(al, bl)
    sl += th
    vh, vl = _fts(sh, sl)
    tl += vl
    return _fts(vh, tl)


def _dd_mul_fp_arr(ah, al, b):
    """``dd_mul_fp`` for arrays: the same operations, bit for bit (signs of zero included)."""
    ch, cl1 = _tp(ah, b)
    cl2 = al * b
    th, tl1 = _fts(ch, cl2)
    tl1 += cl1
    return _fts(th, tl1)


def _dd_div_fp_arr(ah, al, b):
    """``dd_div_fp`` for arrays and a float64 ``b``: the same operations, bit for bit."""
    th = ah / b
    ph, pl = _tp(th, b, None, _split(b))
    np.subtract(ah, ph, out=ph)
    ph -= pl
    ph += al
    ph /= b
    return _fts(th, ph)


# ---------------------------------------------------------------------------
# unscaled dd kernels for moderate arguments (the reference's fast kernel)
# ---------------------------------------------------------------------------


def _make_fast_constants():
    with localcontext() as ctx:
        ctx.prec = 80
        step = Decimal(2).ln() / _EXP_N
        # ln2/8192 in three pieces for |N| < 2**23 (|x| <= 1000): the first two of 30 bits,
        # so N * piece is exact, and the rest
        rest = Fraction(step)
        pieces = []
        for _ in range(2):
            c = _round_to_bits(rest, 30)
            pieces.append(c)
            rest -= Fraction(c)
        pieces.append(float(rest))
    th = _THIRD[0]
    tsh, tsl = _split(np.float64(th))
    return tuple(pieces), float(tsh), float(tsl)


(_CW30, _THIRD_SH, _THIRD_SL) = _make_fast_constants()


def exp_neg_dd(a):
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
    rh, rl = _ts(r1, t)  # both steps exact
    np.multiply(n, c3, out=t)
    rl -= t
    # e**r = e**rh (1 + rl) with |rl| <= 2**-55 (n*c3 is not folded into rh):
    # 1 + rh + rh**2/2 + [rl (1 + rh + rh**2/2) + rh**3/6 + rh**4/24 + rh**5/120 + rh**6/720]
    sa, sb = _spl(rh)
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
    s1, e1 = _fts(1.0, rh)
    s2, e2 = _fts(s1, hq)
    e1 += e2
    e1 += qe
    eh, el = _fts(s2, e1)
    h, lo = _ddmul_arr(_EXP_TH[j], _EXP_TL[j], eh, el)
    h *= scale
    lo *= scale
    return h, lo


def _ddmul_arr(ah, al, bh, bl):
    """``dd_mul`` (DWTimesDW1) for arrays."""
    p, e = _tp(ah, bh)
    t = ah * bl
    u = al * bh
    t += u
    e += t
    return _fts(p, e)


def log1p_dd(th, tl):
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
    dh, dl = _fts(cj, th)
    dl += tl
    # s = (nh + tl)/(dh + dl): sh = nh/dh, then the residual through an exact product
    sh = nh / dh
    sa, sb = _spl(sh)
    p, pe = _tp(sh, dh, (sa, sb))
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
    zh, ze = _tp(q, _THIRD[0], None, (_THIRD_SH, _THIRD_SL))
    ze += tail
    # s*z with the product of the leading words exact
    m, me = _tp(sh, zh, (sa, sb))
    np.multiply(sh, ze, out=p)
    me += p
    np.multiply(sl, zh, out=p)
    me += p
    wh, wl = _fts(sh, m)
    wl += sl
    wl += me
    # log(1 + j/1024) + 2*(wh + wl); |log(1 + j/1024)| >= 2|wh| for j >= 1, and it is 0 for j = 0
    wh *= 2.0
    wl *= 2.0
    wl += _LOGC_L[ji]
    s1, e1 = _fts(_LOGC_H[ji], wh)
    e1 += wl
    return _fts(s1, e1)


def recip_dd(h, lo):
    """``1/(h + lo)`` in dd for ``h + lo`` in ``[1, 2]``; relative error <= 2**-102."""
    rh = 1.0 / h
    p, pe = _tp(rh, h)
    np.subtract(1.0, p, out=p)  # exact: p is within an ulp of 1
    p -= pe
    np.multiply(rh, lo, out=pe)
    p -= pe
    p *= rh
    return _fts(rh, p)


# ---------------------------------------------------------------------------
# rounding a (scaled) dd to float64
# ---------------------------------------------------------------------------


def _subnormal_fix(hi, lo, e, r):
    """Correct ``r = ldexp(hi, e)`` where it fell below 2**-1022 (rounded from hi alone).

    Works in the mantissa frame: the subnormal grid spacing there is
    ``q = 2**(-1074 - e)``; ``back = r * 2**-e`` is exact, ``hi - back`` is exact
    (Sterbenz, or ``back == 0``) and at most ``q/2``; adding ``lo`` (<= ``q/2`` since hi's
    own ulp is below ``q``) gives the exact residual ``R``, ``|R| <= q``, so one step of
    ``2**-1074`` up or down, ties to even, finishes the job. Returns ``(r, R1, R2, half)``
    with ``R1 + R2`` the residual of the *final* ``r`` and ``half = q/2``.
    """
    with np.errstate(over="ignore"):
        back = np.ldexp(r, -e)
        d = hi - back
        r1, r2 = two_sum(d, lo)
        half = np.ldexp(np.ones_like(hi), -1075 - e)
    odd = np.fmod(np.abs(np.ldexp(r, 1074)), 2.0) == 1.0
    up = (r1 > half) | ((r1 == half) & ((r2 > 0) | ((r2 == 0) & odd)))
    dn = (r1 < -half) | ((r1 == -half) & ((r2 < 0) | ((r2 == 0) & odd)))
    step = up.astype(np.float64) - dn.astype(np.float64)
    moved = step != 0
    r = np.where(moved, r + step * 2.0**-1074, r)
    # residual relative to the moved r: subtract one grid step q = 2*half
    with np.errstate(invalid="ignore"):
        r1m, r2m = two_sum(r1, -step * 2.0 * half)
    r1 = np.where(moved, r1m, r1)
    r2 = np.where(moved, r2m + r2, r2)
    return r, r1, r2, half


def to_float(hi, lo, e=None):
    """Round the dd ``(hi + lo) * 2**e`` correctly (nearest, ties to even) to float64.

    ``ldexp(hi, e)`` is already correct when the result is normal (``hi`` is the dd's
    correctly rounded leading word after normalisation, and scaling a normal number by
    a power of two is exact), including overflow to +-inf. Only results below
    ``2**-1022`` need the fix-up of ``_subnormal_fix``, because there ``ldexp`` rounds
    ``hi`` a second time and ignores ``lo``.
    """
    hi = np.asarray(hi, dtype=np.float64)
    lo = np.asarray(lo, dtype=np.float64)
    if e is None:
        e = np.zeros(hi.shape, dtype=np.int32)
    hi, lo = two_sum(hi, lo)
    with np.errstate(over="ignore"):
        r = np.ldexp(hi, e)
    small = np.abs(r) < _TINY
    if np.any(small):
        e = np.broadcast_to(e, hi.shape)
        rs, _, _, _ = _subnormal_fix(hi[small], lo[small], e[small], r[small])
        r = r.copy()
        r[small] = rs
    return r


def round_settle(hi, lo, e, delta, normalized=False):
    """Correctly round ``(hi + lo) * 2**e`` and say whether that rounding is certain.

    ``delta >= 0`` bounds the error of the dd value itself (same ``2**e`` frame). The
    rounding is *settled* when every real number within ``delta`` of the dd value rounds
    to the same float64 (Ziv's test), or when ``delta == 0`` (the dd is exact and its
    rounding is the answer, ties included). Returns ``(r, settled)``; unsettled
    elements need a more precise evaluation. ``normalized=True`` promises
    ``hi == fl(hi + lo)`` (as every dd operation here returns) and skips renormalising.

    The test is conservative: near a power of two it uses the smaller gap below, and
    it inflates ``|lo| + delta`` by ``2**-50`` to absorb the rounding of that sum.
    """
    hi = np.asarray(hi, dtype=np.float64)
    lo = np.asarray(lo, dtype=np.float64)
    delta = np.asarray(delta, dtype=np.float64)
    e = np.asarray(e)
    if not normalized:
        hi, lo = two_sum(hi, lo)
    with np.errstate(over="ignore"):
        r = np.ldexp(hi, e)
    bits = np.abs(hi).view(np.int64)
    expo = bits >> 52
    mant_zero = (bits & ((1 << 52) - 1)) == 0
    # half the gap below |hi| (a quarter ulp when hi is a power of two)
    half_gap = ((np.maximum(expo, 54) - 53 - mant_zero) << 52).view(np.float64)
    slack = 1.0 + 2.0**-50
    settled = ((np.abs(lo) + delta) * slack < half_gap) | (delta == 0)
    absr = np.abs(r)
    odd_cases = (absr < _TINY) | (absr == np.inf) | (expo <= 55)
    if np.any(odd_cases):
        r = r.copy()
        settled = settled.copy()
        eb = np.broadcast_to(e, hi.shape)
        idx = np.flatnonzero(odd_cases.ravel())
        h = hi.ravel()[idx]
        lw = lo.ravel()[idx]
        ee = eb.ravel()[idx]
        dl = delta.ravel()[idx] if delta.ndim else np.full(idx.shape, float(delta))
        rr = r.ravel()[idx]
        st = np.zeros(idx.shape, dtype=bool)
        small = np.abs(rr) < _TINY
        if np.any(small):
            rs, r1, r2, half = _subnormal_fix(h[small], lw[small], ee[small], rr[small])
            rr[small] = rs
            st[small] = ((np.abs(r1) + np.abs(r2) + dl[small]) * slack < half) | (dl[small] == 0)
        inf = np.abs(rr) == np.inf
        if np.any(inf):
            ei = ee[inf]
            th = np.ldexp(np.full(ei.shape, _MAXF), -ei)
            tlo = np.ldexp(np.full(ei.shape, 2.0**970), -ei)
            sg = np.sign(h[inf])
            diff = (np.abs(h[inf]) - th) - tlo + sg * lw[inf] - dl[inf] * slack
            st[inf] = diff > 2.0**-40 * th
        rest = ~small & ~inf
        if np.any(rest):
            # normal result but a mantissa below 2**-970: measure its gap with np.spacing
            hr = np.abs(h[rest])
            sp = np.spacing(hr)
            pow2 = np.frexp(hr)[0] == 0.5
            g = np.where(pow2, 0.5 * sp, sp)
            st[rest] = ((np.abs(lw[rest]) + dl[rest]) * slack < 0.5 * g) | (dl[rest] == 0)
        rflat = r.reshape(-1)
        sflat = settled.reshape(-1)
        rflat[idx] = rr
        sflat[idx] = st
    return r, settled


# ---------------------------------------------------------------------------
# summation
# ---------------------------------------------------------------------------


def dd_sum(hi, lo, axis=-1):
    """Pairwise sum of dd numbers along ``axis``: returns ``(hi, lo)`` of the total.

    Every node of the tree is an accurate dd addition (relative error <= 3u^2/(1-4u)
    of that node's exact sum), so the total error is at most
    ``dd_sum_error_factor(n) * sum(|terms|)``. The caller must keep the terms and
    partial sums far from overflow (scale them first); empty axes sum to 0.
    """
    hi = np.moveaxis(np.asarray(hi, dtype=np.float64), axis, -1)
    lo = np.moveaxis(np.asarray(lo, dtype=np.float64), axis, -1)
    n = hi.shape[-1]
    if n == 0:
        z = np.zeros(hi.shape[:-1])
        return z, z.copy()
    while n > 1:
        if n % 2:
            z = np.zeros((*hi.shape[:-1], 1))
            hi = np.concatenate([hi, z], axis=-1)
            lo = np.concatenate([lo, z], axis=-1)
            n += 1
        hi, lo = _dd_add_arr(hi[..., 0::2], lo[..., 0::2], hi[..., 1::2], lo[..., 1::2])
        n //= 2
    return hi[..., 0], lo[..., 0]


def dd_sum_error_factor(n: int) -> float:
    """Bound factor for ``dd_sum``: ``|error| <= factor * sum(|terms|)``."""
    depth = max(1, int(np.ceil(np.log2(max(n, 1)))))
    return 3.01 * U * U * depth
