"""Error-free float64 arithmetic and double-double ("dd") arithmetic, vectorised over numpy.

Why this module exists
----------------------
The reference loss must be *correctly rounded*: the exact real value of the loss,
rounded once to float64. float64 arithmetic alone cannot promise that, so the
reference computes in double-double -- an unevaluated sum ``hi + lo`` of two float64
numbers, about 106 significant bits -- and rounds once at the end. Everything here
works elementwise on whole numpy arrays (no Python loop per element), because the
harness compares frameworks on arrays of millions of elements.

This module holds the arithmetic; ``ddfunctions.py`` builds ``exp`` and ``log1p`` on it
and ``ddround.py`` rounds a dd back to float64.

Building blocks
---------------
* ``two_sum``/``fast_two_sum``: ``a + b = s + err`` exactly (Knuth, Dekker).
* ``two_prod``: ``a * b = p + err`` exactly by Dekker's splitting. numpy has no fused
  multiply-add, so each factor is split into two 26-bit halves whose products are
  exact. The split multiplies by ``2**27 + 1`` and overflows for ``|a| > ~2**996``;
  and the error term of a product near the underflow threshold is not representable.
  ``two_prod`` therefore scales both operands to ``[0.5, 1)`` by exact powers of two
  (``frexp``), splits there, and scales back. ``two_prod_unscaled`` is the bare
  algorithm, for callers whose operands are known to be in range.
* ``dd_add``/``dd_mul``/``dd_div`` and their ``_fp`` variants (one operand a plain
  float64): the algorithms analysed by Joldes, Muller and Popescu, "Tight and rigorous
  error bounds for basic building blocks of double-word arithmetic" (ACM TOMS 2017).
  With ``u = 2**-53`` their relative errors are at most: ``dd_add`` 3u^2 (accurate
  version: cancellation-safe), ``dd_add_fp`` 2u^2, ``dd_mul_fp`` 1.5u^2 + 4u^3,
  ``dd_mul`` 7u^2, ``dd_div_fp`` 3.5u^2, ``dd_div`` 15u^2 + 56u^3. Each holds only
  while no intermediate overflows or underflows; callers in this project work on
  mantissas scaled into ``[2**-60, 4]`` and keep the binary exponent apart, so that
  condition is met by construction (see ``scaled.py``).
* The ``*_arr`` variants: the same operations, bit for bit, for arrays, reusing their
  own temporaries (on numpy a fresh 128 KB temporary is a cache miss per line when
  written); the fast kernel (``fastkernel.py``) is built from them. ``dd_mul_fp2_arr``
  (DWTimesFP2, 2u^2), ``dd_add_sloppy_arr`` (SloppyDWPlusDW, error <= 2u^2 (|a| + |b|))
  and ``recip_dd`` are the leaner steps it can afford where the caller's bound covers
  their weaker guarantees.
* ``dd_sum``: pairwise (tree) summation of dd numbers along an axis, every addition
  the accurate dd addition, so the error is <= 3.01 u^2 * ceil(log2 n) * sum|terms|.
"""

from __future__ import annotations

import numpy as np

__all__ = [
    "SPLITTER",
    "SelectMask",
    "U",
    "dd_add",
    "dd_add_arr",
    "dd_add_fp",
    "dd_add_sloppy_arr",
    "dd_div",
    "dd_div_fp",
    "dd_div_fp_arr",
    "dd_mul",
    "dd_mul_arr",
    "dd_mul_fp",
    "dd_mul_fp2_arr",
    "dd_mul_fp_arr",
    "dd_sum",
    "dd_sum_error_factor",
    "fast_two_sum",
    "fast_two_sum_arr",
    "recip_dd",
    "select",
    "split",
    "split_arr",
    "split_unscaled",
    "two_prod",
    "two_prod_arr",
    "two_prod_unscaled",
    "two_sum",
    "two_sum_arr",
]

#: unit roundoff of float64 (round to nearest)
U = 2.0**-53
#: Dekker's splitting constant, 2**27 + 1
SPLITTER = 134217729.0

#: a float64 array or a float64 scalar: every function here works on either
Floats = np.ndarray | float
#: a dd number ``hi + lo`` as its two words
DD = tuple[np.ndarray, np.ndarray]


# ---------------------------------------------------------------------------
# selecting without branches
# ---------------------------------------------------------------------------


class SelectMask:
    """A boolean mask prepared once for many float64 ``select`` calls (two bit masks)."""

    __slots__ = ("m", "mask", "nm")

    def __init__(self, mask: np.ndarray) -> None:
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


# ---------------------------------------------------------------------------
# error-free transformations
# ---------------------------------------------------------------------------


def two_sum(a: Floats, b: Floats) -> DD:
    """``(s, err)`` with ``s = fl(a + b)`` and ``a + b = s + err`` exactly (Knuth).

    Exact for all finite inputs whose sum does not overflow; no ordering needed.
    """
    s = a + b
    bb = s - a
    err = (a - (s - bb)) + (b - bb)
    return s, err


def fast_two_sum(a: Floats, b: Floats) -> DD:
    """``(s, err)`` with ``a + b = s + err`` exactly, provided ``|a| >= |b|`` (or a == 0)."""
    s = a + b
    err = b - (s - a)
    return s, err


def split_unscaled(a: Floats) -> DD:
    """Dekker's split without range checks: ``a = hi + lo``, each with <= 26 bits.

    Valid for ``|a| <= 2**995``; callers that split frexp mantissas or moderate values
    use it directly and save ``split``'s range handling.
    """
    c = SPLITTER * a
    hi = c - (c - a)
    return hi, a - hi


def split(a: Floats) -> DD:
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
        hi, lo = split_unscaled(a)
    trunc = (a.view(np.int64) & ~np.int64((1 << 27) - 1)).view(np.float64)
    hi = select(big, trunc, hi)
    lo = select(big, a - trunc, lo)
    return hi, lo


def two_prod_unscaled(a: Floats, b: Floats) -> DD:
    """Dekker's product for operands known to be in a safe range (no scaling)."""
    p = a * b
    ah, al = split_unscaled(a)
    bh, bl = split_unscaled(b)
    err = ((ah * bh - p) + ah * bl + al * bh) + al * bl
    return p, err


def two_prod(a: Floats, b: Floats) -> DD:
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
    ph, pl = two_prod_unscaled(ma, mb)
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


def dd_add(ah: Floats, al: Floats, bh: Floats, bl: Floats) -> DD:
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


def dd_add_fp(ah: Floats, al: Floats, b: Floats) -> DD:
    """dd + float64 (DWPlusFP): relative error <= 2u^2."""
    sh, sl = two_sum(ah, b)
    v = al + sl
    return fast_two_sum(sh, v)


def dd_mul_fp(ah: Floats, al: Floats, b: Floats) -> DD:
    """dd * float64 (DWTimesFP1): relative error <= 1.5u^2 + 4u^3."""
    ch, cl1 = two_prod_unscaled(ah, b)
    cl2 = al * b
    th, tl1 = fast_two_sum(ch, cl2)
    tl2 = tl1 + cl1
    return fast_two_sum(th, tl2)


def dd_mul(ah: Floats, al: Floats, bh: Floats, bl: Floats) -> DD:
    """dd * dd (DWTimesDW1): relative error <= 7u^2."""
    ch, cl1 = two_prod_unscaled(ah, bh)
    tl = ah * bl + al * bh
    cl2 = cl1 + tl
    return fast_two_sum(ch, cl2)


def dd_div_fp(ah: Floats, al: Floats, b: Floats) -> DD:
    """dd / float64 (DWDivFP1): relative error <= 3.5u^2."""
    th = ah / b
    ph, pl = two_prod_unscaled(th, b)
    dh = ah - ph
    dt = dh - pl
    d = dt + al
    tl = d / b
    return fast_two_sum(th, tl)


def dd_div(ah: Floats, al: Floats, bh: Floats, bl: Floats) -> DD:
    """dd / dd (DWDivDW1): relative error <= 15u^2 + 56u^3."""
    th = ah / bh
    rh, rl = dd_mul_fp(bh, bl, th)
    ph, pl = two_sum(ah, -rh)
    dl = al - rl
    d = pl + dl
    tl = (ph + d) / bh
    return fast_two_sum(th, tl)


# ---------------------------------------------------------------------------
# array variants that reuse their own temporaries (same arithmetic, fewer fresh buffers)
# ---------------------------------------------------------------------------


def two_sum_arr(a: Floats, b: Floats) -> DD:
    """``two_sum`` for arrays (at least one operand an array)."""
    s = a + b
    bb = s - a
    t = s - bb
    np.subtract(a, t, out=t)
    np.subtract(b, bb, out=bb)
    t += bb
    return s, t


def fast_two_sum_arr(a: Floats, b: Floats) -> DD:
    """``fast_two_sum`` for arrays."""
    s = a + b
    t = s - a
    np.subtract(b, t, out=t)
    return s, t


def split_arr(a: np.ndarray) -> DD:
    """``split_unscaled`` for arrays."""
    c = SPLITTER * a
    hi = c - a
    np.subtract(c, hi, out=hi)
    np.subtract(a, hi, out=c)
    return hi, c


def two_prod_arr(a: Floats, b: Floats, sa: DD | None = None, sb: DD | None = None) -> DD:
    """``two_prod_unscaled`` for arrays, with optionally presplit operands."""
    p = a * b
    a1, a2 = split_arr(a) if sa is None else sa
    b1, b2 = split_arr(b) if sb is None else sb
    e = a1 * b1
    e -= p
    t = a1 * b2
    e += t
    np.multiply(a2, b1, out=t)
    e += t
    np.multiply(a2, b2, out=t)
    e += t
    return p, e


def dd_add_arr(ah: np.ndarray, al: np.ndarray, bh: np.ndarray, bl: np.ndarray) -> DD:
    """``dd_add`` for arrays: the same operations, bit for bit."""
    sh, sl = two_sum_arr(ah, bh)
    th, tl = two_sum_arr(al, bl)
    sl += th
    vh, vl = fast_two_sum_arr(sh, sl)
    tl += vl
    return fast_two_sum_arr(vh, tl)


def dd_mul_fp_arr(ah: np.ndarray, al: np.ndarray, b: Floats) -> DD:
    """``dd_mul_fp`` for arrays: the same operations, bit for bit (signs of zero included)."""
    ch, cl1 = two_prod_arr(ah, b)
    cl2 = al * b
    th, tl1 = fast_two_sum_arr(ch, cl2)
    tl1 += cl1
    return fast_two_sum_arr(th, tl1)


def dd_div_fp_arr(ah: np.ndarray, al: np.ndarray, b: float) -> DD:
    """``dd_div_fp`` for arrays and a float64 ``b``: the same operations, bit for bit."""
    th = ah / b
    ph, pl = two_prod_arr(th, b, None, split_unscaled(b))
    np.subtract(ah, ph, out=ph)
    ph -= pl
    ph += al
    ph /= b
    return fast_two_sum_arr(th, ph)


def dd_mul_arr(ah: Floats, al: Floats, bh: Floats, bl: Floats, sa: DD | None = None,
               sb: DD | None = None) -> DD:
    """``dd_mul`` (DWTimesDW1, relative error <= 7u**2) for arrays, bit for bit.

    ``sa``/``sb``: the leading words already split (``split_arr``), for a caller that
    multiplies by the same factor several times and would otherwise split it each time.
    """
    p, e = two_prod_arr(ah, bh, sa, sb)
    t = ah * bl
    u = al * bh
    t += u
    e += t
    return fast_two_sum_arr(p, e)


def dd_mul_fp2_arr(ah: np.ndarray, al: np.ndarray, b: np.ndarray, sb: DD) -> DD:
    """dd * float64 (DWTimesFP2) with ``b`` presplit; relative error <= 2u**2.

    One ``fast_two_sum`` fewer than ``dd_mul_fp``'s DWTimesFP1 (1.5u**2): the fast kernel
    charges 2**-90 per inexact term, so the weaker bound costs nothing there.
    """
    p, e = two_prod_arr(ah, b, None, sb)
    t = al * b
    e += t
    return fast_two_sum_arr(p, e)


def dd_add_sloppy_arr(ah: np.ndarray, al: np.ndarray, bh: np.ndarray, bl: np.ndarray,
                      ) -> DD:
    """Sloppy dd + dd (SloppyDWPlusDW): error <= 2u**2 (|a| + |b|).

    Not relative to the sum, so it is no use under cancellation; the fast kernel adds
    terms with it only where its bound is charged on ``|a| + |b|`` anyway.
    """
    s, e = two_sum_arr(ah, bh)
    t = al + bl
    e += t
    return fast_two_sum_arr(s, e)


def recip_dd(h: np.ndarray, lo: np.ndarray) -> DD:
    """``1/(h + lo)`` in dd for ``h + lo`` in ``[1, 2]``; relative error <= 2**-102."""
    rh = 1.0 / h
    p, pe = two_prod_arr(rh, h)
    np.subtract(1.0, p, out=p)  # exact: p is within an ulp of 1
    p -= pe
    np.multiply(rh, lo, out=pe)
    p -= pe
    p *= rh
    return fast_two_sum_arr(rh, p)


# ---------------------------------------------------------------------------
# summation
# ---------------------------------------------------------------------------


def dd_sum(hi: np.ndarray, lo: np.ndarray, axis: int = -1) -> DD:
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
        hi, lo = dd_add_arr(hi[..., 0::2], lo[..., 0::2], hi[..., 1::2], lo[..., 1::2])
        n //= 2
    return hi[..., 0], lo[..., 0]


def dd_sum_error_factor(n: int) -> float:
    """Bound factor for ``dd_sum``: ``|error| <= factor * sum(|terms|)``."""
    depth = max(1, int(np.ceil(np.log2(max(n, 1)))))
    return 3.01 * U * U * depth
