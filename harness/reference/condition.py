"""Condition numbers: how much each result may move when its arguments are perturbed.

``evaluate`` returns, next to each value, the componentwise relative condition number
``sum_z |z * dq/dz| / |q|`` over the arguments present; the comparison turns it into a
tolerance (README, "The error model"). The numerators need the second derivatives of
the loss, written out in ``numerators``. They are float64 estimates, not bounds, so
plain float64 arithmetic suffices -- but on *scaled floats* ``(m, e)`` meaning
``m * 2**e`` (frexp mantissas, exponents kept apart, ``e`` the int 0 where the fast
kernel has nothing to scale), so that ``x * y * p`` near 1e308 neither overflows nor
produces NaN for finite inputs.

Conventions (``ratio``): ``q == 0`` with a zero numerator gives 0, with a non-zero one
inf. The driver (``evaluation.py``) multiplies by ``|w|`` where the term is weighted,
zeroes the special elements (whose limits are exact) and divides by the value.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from harness.reference import ddmath as dm
from harness.reference.scaled import NOEXP
from harness.reference.terms import (
    GRAD_INPUT,
    GRAD_POS_WEIGHT,
    GRAD_TARGET,
    GRAD_WEIGHT,
    LOSS,
    Term,
)

__all__ = ["Blocks", "numerators", "ratio"]

#: a scaled float ``m * 2**e``
SF = tuple[np.ndarray, np.ndarray | int]


class Blocks(NamedTuple):
    """A kernel's intermediate values that the condition numbers are built from.

    Each a scaled float (the sign of ``m`` is ignored where a product takes ``|.|``),
    with ``a = |x|``: ``sp_neg = sp(-a)``, ``sp_pos = sp(a)``, ``sig_pos = s(a)``,
    ``sig_neg = s(-a)``; ``xpos`` the mask ``x >= 0`` that maps them back to ``x``;
    ``l_coef = l = 1 - y + p*y``; ``G``, ``K``, ``B``, ``Y`` the brackets' leading words
    (``terms.py``), ``Y`` None where it was not computed.
    """

    a: SF
    y: SF
    one_minus_y: SF
    sp_neg: SF
    sp_pos: SF
    sig_pos: SF
    sig_neg: SF
    xpos: np.ndarray | dm.SelectMask
    py: SF
    p: SF | None
    l_coef: SF
    G: SF
    K: SF
    B: SF
    Y: SF | None = None


def _mul(*fs: SF) -> SF:
    """``|product|`` of scaled floats."""
    m = np.abs(fs[0][0])
    e = fs[0][1]
    for f in fs[1:]:
        m *= np.abs(f[0])
        e = e + f[1]
    return m, e


def _sum(fs: list[SF], signed: bool = False) -> SF:
    """Sum of scaled floats (m, e); non-negative terms unless ``signed``."""
    ms = [f[0] if signed else np.abs(f[0]) for f in fs]
    if all(type(f[1]) is int and f[1] == 0 for f in fs):
        # unscaled terms (the fast kernel): the frame below would be 2**0 for every
        # non-zero term, so this is the same sum in the same order, without the frame
        tot = ms[0] + ms[1] if len(ms) > 1 else ms[0].copy()
        for m in ms[2:]:
            tot += m
        return tot, 0
    es = [f[1] + NOEXP * (m == 0) for m, f in zip(ms, fs, strict=True)]
    emax = es[0]
    for e in es[1:]:
        emax = np.maximum(emax, e)
    tot = np.zeros_like(ms[0])
    for m, e in zip(ms, es, strict=True):
        tot = tot + np.ldexp(m, e - emax)
    return tot, emax


def ratio(n: SF, d: SF) -> np.ndarray:
    """``|n/d|`` for scaled floats as a float64, with the conventions for d == 0."""
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        r = np.abs(n[0])
        r /= np.abs(d[0])
        if not (type(n[1]) is int and type(d[1]) is int and n[1] == d[1]):
            r = np.ldexp(r, np.clip(n[1] - d[1], -5000, 5000))
    z = d[0] == 0
    if z.any():
        r = np.where(z, np.where(n[0] == 0, 0.0, np.inf), r)
    return r


def numerators(b: Blocks, has_w: bool, has_p: bool) -> dict[Term, SF]:
    """Numerators ``sum_z |z dq/dz|`` of each returned term's condition number, w-free.

    With ``A = sp(x)``, ``N = sp(-x)``, ``sX = s(x)``, ``sN = s(-x)``, ``D = sX*sN`` (the
    derivative of s), ``l = 1 - y + p*y`` and the brackets G, K, B, Y (``terms.py``).
    In the loss, d/dx and d/dw the target is perturbed as its two coefficients
    ``c = 1 - y`` and ``d = y``, each a separate input (see the comments below):

    * loss/w = G = c*A + p*d*N:  x: |x*K|,  c: |c*A|,  d: |p*d*N|,  p: |p*Y|,  w: |G|
    * gx/w = K = c*sX - p*d*sN:  x: |x*l*D| (dK/dx = l*D),  c: |c*sX|,  d: |p*d*sN|,
      p: |p*y*sN|,  w: |K|
    * gy/w = B = p*N - A:  x: |x*(p*sN + sX)|,  p: |p*N|,  w: |B|   (no target in B)
    * gw = G:  as the loss without the w term (gw does not depend on w)
    * gp/w = Y = d*N:  x: |x*y*sN|,  d: |Y|,  w: |Y|   (Y does not depend on p)

    Every product is formed on frexp mantissas with the exponents added, so
    ``x * y * p`` near 1e308 cannot overflow.
    """
    xpos = b.xpos

    def sel(m, f1, f2):  # f1 where x >= 0, else f2
        return dm.select(m, f1[0], f2[0]), dm.select(m, f1[1], f2[1])

    spn = sel(xpos, b.sp_neg, b.sp_pos)  # sp(-x)
    spp = sel(xpos, b.sp_pos, b.sp_neg)  # sp(x)
    sx = sel(xpos, b.sig_pos, b.sig_neg)  # s(x)
    sn = sel(xpos, b.sig_neg, b.sig_pos)  # s(-x)
    out = {}
    a, y = b.a, b.y
    # The target enters through two coefficients, 1 − y and y; a good implementation
    # forms 1 − y exactly where it matters (Sterbenz: y in [1/2, 2]), so the target is
    # perturbed as those two coefficients, not as y alone: |y·∂q/∂y| would charge
    # y = 1 with the full cancellation of 1 − y and allow any answer at x = 40, y = 1.
    c1 = b.one_minus_y
    terms = [_mul(a, b.K), _mul(c1, spp), _mul(b.py, spn)]
    if has_p:
        terms.append(_mul(b.p, b.Y))
    out[GRAD_WEIGHT] = _sum(terms)
    out[LOSS] = _sum(terms + ([(np.abs(b.G[0]), b.G[1])] if has_w else []))
    d = (b.sig_pos[0] * b.sig_neg[0], b.sig_neg[1])
    pn = _mul(b.p, sn) if has_p else sn
    if has_p:
        pn = (np.sign(b.p[0]) * pn[0], pn[1])
    sxpn = _sum([sx, pn], signed=True)
    # ∂/∂x counts the target as the same two coefficients, 1 − y and p·y (each term's
    # own size, |(1 − y)·σ(x)| and |p·y·σ(−x)|): an exact hard label is not a perturbed
    # input. Counting y alone (|y·(σ(x) + p·σ(−x))|) allowed any answer wherever
    # |∂L/∂x| < ε/4 at y = 1, e.g. 0 for the exact −5.55e−17 at x = 37.43.
    kt = [_mul(a, b.l_coef, d), _mul(c1, sx), _mul(b.py, sn)]
    if has_w:
        kt.append((np.abs(b.K[0]), b.K[1]))
    if has_p:
        kt.append(_mul(b.py, sn))
    out[GRAD_INPUT] = _sum(kt)
    bt = [_mul(a, sxpn)]
    if has_w:
        bt.append((np.abs(b.B[0]), b.B[1]))
    if has_p:
        bt.append(_mul(b.p, spn))
    out[GRAD_TARGET] = _sum(bt)
    if b.Y is not None:
        yv = (np.abs(b.Y[0]), b.Y[1])
        yt = [_mul(a, y, sn), yv] + ([yv] if has_w else [])
        out[GRAD_POS_WEIGHT] = _sum(yt)
    else:  # Y = y*N; only its ratio is needed, use y*N directly
        yv = _mul(y, spn)
        out[GRAD_POS_WEIGHT] = _sum([_mul(a, y, sn), yv] + ([yv] if has_w else []))
    return out
