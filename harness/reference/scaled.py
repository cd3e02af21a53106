"""Scaled double-doubles with error bounds: ``(hi + lo) * 2**exp``, ``|error| <= bound``.

The general kernel (``elementwise.py``) multiplies up to four arguments anywhere in the
float64 range -- ``w * p * y * |x|`` near 1e308 or 1e-300 -- and ``e**-|x|`` far below it
(``e**-2000``). Keeping every factor as a frexp mantissa in [0.5, 1) with its binary
exponent apart means no product overflows or loses bits to underflow, and the dd
error bounds of ``ddmath.py`` (which assume neither happens) hold throughout. Each
result carries a rigorous bound on its error in its own ``2**exp`` frame, which Ziv's
test (``ddround.round_settle``) later compares with the distance to a rounding boundary.

The bound constants live here because every kernel charges them: ``EPS`` per inexact
term (the dd algorithms err by less than 2**-95, so 2**-90 leaves room), ``EPS_OP`` per
extra dd operation, ``SLACK`` for the float64 rounding of the bound itself. Modules
read them as ``scaled.EPS`` at call time, so a test can widen ``EPS`` in one place to
send every element to the exact path.
"""

from __future__ import annotations

import numpy as np

from harness.reference import ddmath as dm

__all__ = [
    "EPS",
    "EPS_OP",
    "NOEXP",
    "SLACK",
    "Bounded",
    "Scaled",
    "combine",
    "frexp",
    "from_dd",
    "mul",
    "select",
    "times_w",
]

#: relative error bound charged per inexact term (the dd algorithms stay below 2**-95)
EPS = 2.0**-90
#: relative error charged for one extra dd operation (multiplying by w, dividing by n)
EPS_OP = 2.0**-100
#: inflation of a bound computed in float64, to cover that computation's own rounding
SLACK = 1.0 + 2.0**-50
#: exponent given to zero mantissas, so they never decide an exponent alignment
NOEXP = np.int32(-(1 << 26))  # int32 throughout: ldexp is 6x slower with int64


#: A scaled dd number ``(hi, lo, exp)``, the value ``(hi + lo) * 2**exp``; ``exp`` is the int 0
#: in the fast kernel. Plain tuples, not NamedTuples: the kernels build dozens per chunk,
#: and a NamedTuple's constructor is a Python call (measurable on small arrays).
Scaled = tuple[np.ndarray, np.ndarray, np.ndarray | int]
#: A scaled dd value and a bound on its error in the value's ``2**exp`` frame:
#: ``((hi, lo, exp), bound)``.
Bounded = tuple[Scaled, np.ndarray]


def frexp(v: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``np.frexp`` with zeros given the exponent ``NOEXP`` (see ``combine``)."""
    m, e = np.frexp(v)
    return m, e + NOEXP * (m == 0)


def from_dd(h: np.ndarray, lo: np.ndarray) -> Scaled:
    """An unscaled dd ``h + lo`` as a mantissa in [0.5, 1) and its exponent."""
    m, e = frexp(h)
    return m, np.ldexp(lo, -e), e


def select(mask: np.ndarray | dm.SelectMask, a: Scaled, b: Scaled) -> Scaled:
    """``a`` where ``mask``, else ``b``, word by word (``ddmath.select``)."""
    return dm.select(mask, a[0], b[0]), dm.select(mask, a[1], b[1]), dm.select(mask, a[2], b[2])


def mul(a: Scaled, b: Scaled) -> Scaled:
    """``a * b`` by ``ddmath.dd_mul`` on the mantissas (7u**2), exponents added."""
    h, lo = dm.dd_mul(a[0], a[1], b[0], b[1])
    return h, lo, a[2] + b[2]


def combine(t0: Scaled, t1: Scaled, f0: np.ndarray | float, f1: np.ndarray | float,
            p0: np.ndarray | None = None, p1: np.ndarray | None = None) -> Bounded:
    """Sum of two scaled-dd terms with an error bound in the result's frame.

    ``f*`` (0/1 or bool arrays): the term is inexact, charge ``EPS * |term|``.
    ``p*`` (bool arrays): the term holds a stand-in for ``e**-|x|`` beyond the exp clamp,
    charge its whole magnitude (the true term lies between 0 and the stand-in).
    """
    e = np.maximum(t0[2], t1[2])
    s0 = t0[2] - e
    s1 = t1[2] - e
    h0 = np.ldexp(t0[0], s0)
    l0 = np.ldexp(t0[1], s0)
    h1 = np.ldexp(t1[0], s1)
    l1 = np.ldexp(t1[1], s1)
    h, lo = dm.dd_add(h0, l0, h1, l1)
    a0 = np.abs(h0)
    a1 = np.abs(h1)
    mag = np.abs(h) + f0 * a0 + f1 * a1
    delta = EPS * mag * SLACK
    if p0 is not None:
        delta = delta + p0 * a0 * SLACK
    if p1 is not None:
        delta = delta + p1 * a1 * SLACK
    # bits shifted below the subnormal range are lost: at most 2**-1075 per word
    smin = np.minimum(s0, s1)
    if smin.size and smin.min() < -960:
        lost = ((s0 < -960) & (t0[0] != 0)) | ((s1 < -960) & (t1[0] != 0))
        delta = delta + lost * 2.0**-1070
    # an exact zero gets the no-exponent mark; a zero that is only zero within the
    # bound keeps its frame, or the bound would be scaled away with it
    e = e + NOEXP * ((h == 0) & (delta == 0))
    return (h, lo, e), delta


def times_w(q: Bounded, mw: np.ndarray, ew: np.ndarray) -> Bounded:
    """Multiply a scaled dd and its bound by w = mw * 2**ew (exact when q's low word is 0)."""
    (qh, ql, qe), delta = q
    h, lo = dm.dd_mul_fp(qh, ql, mw)
    d = np.abs(mw) * delta * SLACK + EPS_OP * np.abs(h) * (ql != 0)
    return (h, lo, qe + ew), d
