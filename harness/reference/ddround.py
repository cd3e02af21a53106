"""Rounding a (scaled) double-double to float64, and Ziv's test of whether it is certain.

Every result of the reference is a dd value ``(hi + lo) * 2**e`` with a rigorous error
bound ``delta``. This module rounds it once, correctly (to nearest, ties to even),
including the subnormal range -- where ``ldexp`` alone would round a second time -- and
overflow; and it says whether every real number within ``delta`` of the dd value rounds
to the same float64. Where that is not certain, the caller takes the exact path
(``exact.py``).
"""

from __future__ import annotations

import numpy as np

from harness.reference.ddmath import two_sum

__all__ = ["round_settle", "settled_normal", "to_float"]

_TINY = 2.0**-1022
_MAXF = float(np.finfo(np.float64).max)
_EXP_BITS_MASK = np.int64(0x7FF << 52)
_MANT_BITS_MASK = np.int64((1 << 52) - 1)


def _subnormal_fix(hi: np.ndarray, lo: np.ndarray, e: np.ndarray, r: np.ndarray,
                   ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
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


def to_float(hi: np.ndarray | float, lo: np.ndarray | float, e: np.ndarray | int | None = None,
             ) -> np.ndarray:
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


def round_settle(hi: np.ndarray, lo: np.ndarray, e: np.ndarray | int, delta: np.ndarray | float,
                 normalized: bool = False) -> tuple[np.ndarray, np.ndarray]:
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


def settled_normal(h: np.ndarray, lo: np.ndarray, d: np.ndarray) -> np.ndarray:
    """``round_settle(h, lo, 0, d, normalized=True)``'s ``settled``, for normal leading words.

    The fast kernel's elementwise results need only this verdict (their rounding is
    ``h`` itself), on every element of every chunk: the same criterion bit for bit --
    ``(|lo| + d) (1 + 2**-50)`` below half the gap under ``|h|`` (a quarter ulp at a
    power of two), or ``d == 0`` -- without its scaling and its subnormal and overflow
    branches, which the fast kernel's results (magnitudes between 2**-1000 and 2**1000,
    or exact zeros) cannot reach.
    """
    bits = np.abs(h).view(np.int64)
    hg = bits & _EXP_BITS_MASK
    hg -= np.int64(53 << 52)
    mz = (bits & _MANT_BITS_MASK) == 0
    if mz.any():
        hg[mz] -= np.int64(1 << 52)
    t = np.abs(lo)
    t += d
    t *= 1.0 + 2.0**-50
    ok = t < hg.view(np.float64)
    ok |= d == 0
    return ok
