"""The general elementwise kernel: every bracket, for any finite arguments, with bounds.

Per element the work is:

1. ``t = e**-|x|`` in double-double with its binary exponent kept apart
   (``ddfunctions.exp_scaled``), then ``log1p(t)`` and ``t/(1+t)`` from it. With
   ``a = |x|`` and ``L = log1p(t)``, ``sp(|x|) = a + L`` and ``sp(-|x|) = L``.
2. Each bracket (``terms.py``) is written as ``R0 + R1 * F`` -- ``R0`` and ``R1`` exact
   products of the arguments, ``F`` one transcendental -- in a form without
   cancellation between large equal terms. For x >= 0 the loss is ``w*[(1-y)*a + l*L]``
   with ``l = 1 - y + p*y``; the textbook ``(1-y)*x + l*sp(-x)`` would, at x = -50,
   y = 0, subtract 50 from 50 + 1.9e-22 and return 0. The x-gradient is
   ``w*(A - B*t)/(1 + t)`` with ``(A, B) = (1-y, p*y)`` for x >= 0 (the mirror for
   x < 0): both terms in dd and subtracted in dd, ``s(-x)`` for x >= 0 is ``t/(1+t)``,
   never ``1 - s(x)``, and never ``s(x) - y``.
3. Every factor is a mantissa in [0.5, 1) times a separate int exponent
   (``scaled.py``), so products of four arguments near 1e308 or 1e-300 neither
   overflow nor lose bits, and subnormal results are rounded from the full dd value
   (``ddround.py``).
4. Each result carries a rigorous error bound (``scaled.EPS`` = 2**-90 times the
   magnitudes of its inexact terms); the caller settles its rounding with it or
   sends the element to the exact path (``exact.py``).

Ordinary elements take the leaner fast kernel (``fastkernel.py``) instead, with the same
results; ``run_chunk`` splits a chunk between the two and merges their results.
Arguments here are finite: special values are replaced by finite stand-ins first and
their results decided apart (``specials.py``).
"""

from __future__ import annotations

import numpy as np

from harness.reference import condition, fastkernel
from harness.reference import ddfunctions as df
from harness.reference import ddmath as dm
from harness.reference import scaled as sd
from harness.reference.scaled import NOEXP, Bounded
from harness.reference.terms import Bracket, ChunkResult, Term

__all__ = ["chunk", "run_chunk"]


def chunk(x: np.ndarray, y: np.ndarray, w: np.ndarray | None, p: np.ndarray | None,
          tz: np.ndarray | None, want: set[Term], with_cond: bool) -> ChunkResult:
    """The wanted terms (and, with ``with_cond``, their condition numerators) for one chunk.

    ``tz``: where ``x`` is a stand-in for an infinite argument, whose ``e**-|x|`` is
    exactly 0 (None: nowhere). Every term comes back as a ``scaled.Bounded``.
    """
    br: dict[Bracket, Bounded] = {}
    brackets = {t.bracket for t in want}
    if with_cond:
        brackets |= {Bracket.G, Bracket.K, Bracket.B} | ({Bracket.Y} if p is not None else set())
    a = np.abs(x)
    xpos = x >= 0
    k, th, tl = df.exp_scaled(-a)
    big = a > df.EXP_CLAMP
    if tz is not None:
        th = dm.select(tz, 0.0, th)
        tl = dm.select(tz, 0.0, tl)
        big = big & ~tz
    ma, ea = sd.frexp(a)
    my, ey = sd.frexp(y)
    need_l1 = bool(brackets & {Bracket.G, Bracket.B, Bracket.Y}) or with_cond
    need_sig = Bracket.K in brackets or with_cond
    need_s = Bracket.Y in brackets or with_cond
    if need_l1:
        mlh, mll = df.log1p_scaled(k, th, tl)
        L1 = (mlh, mll, k + NOEXP * (mlh == 0))  # sp(-|x|)
    if need_sig:
        tt = np.ldexp(th, k)
        ttl = np.ldexp(tl, k)
        uh, ul = dm.dd_add_fp(tt, ttl, 1.0)  # 1 + t, in [1, 2]
    if with_cond:
        sbh, sbl = dm.dd_div(np.ones_like(uh), np.zeros_like(uh), uh, ul)
        ssh, ssl = dm.dd_mul(th, tl, sbh, sbl)
        sigB = (sbh, sbl, np.zeros_like(k))  # s(|x|)
        sigS = (ssh, ssl, k + NOEXP * (ssh == 0))  # s(-|x|)
    if need_s:
        lu = np.ldexp(mlh, k)
        lul = np.ldexp(mll, k)
        sh, sl = dm.two_sum(a, lu)
        sh, sl = dm.fast_two_sum(sh, sl + lul)
        S = sd.from_dd(sh, sl)  # sp(|x|)
    c1h, c1l = dm.two_sum(1.0, -y)
    c1 = sd.from_dd(c1h, c1l)  # 1 - y, exact
    if p is not None:
        mp, ep = sd.frexp(p)
        pyh, pyl = dm.two_prod_unscaled(mp, my)
        py = (pyh, pyl, ep + ey)  # p*y, exact
    else:
        py = (my, np.zeros_like(my), ey)
    if Bracket.G in brackets:
        if p is not None:
            lsd = sd.combine(c1, py, 0.0, 0.0)[0]  # l = 1 - y + p*y; its error is in EPS
        c0 = sd.select(xpos, c1, py)
        r0h, r0l = dm.dd_mul_fp(c0[0], c0[1], ma)
        r0 = (r0h, r0l, c0[2] + ea)
        t1 = sd.mul(lsd, L1) if p is not None else L1
        br[Bracket.G] = sd.combine(r0, t1, 1.0, 1.0, None, big)
    if Bracket.B in brackets:
        if p is not None:
            mcg = dm.select(xpos, -0.5, mp)
            ecg = dm.select(xpos, np.int32(1), ep)
        else:
            mcg = dm.select(xpos, -0.5, 0.5)
            ecg = np.ones_like(ea)
        r0h, r0l = dm.two_prod_unscaled(mcg, ma)
        r0 = (r0h, r0l, ecg + ea)  # exact
        if p is not None:
            pm1h, pm1l = dm.two_sum(p, -1.0)
            t1 = sd.mul(sd.from_dd(pm1h, pm1l), L1)
            br[Bracket.B] = sd.combine(r0, t1, 0.0, 1.0, None, big)
        else:
            br[Bracket.B] = (r0, np.zeros_like(r0h))
    if Bracket.Y in brackets:
        spn = sd.select(xpos, L1, S)
        yh, yl = dm.dd_mul_fp(spn[0], spn[1], my)
        ysd = (yh, yl, spn[2] + ey)
        d = 2.0 * sd.EPS * np.abs(yh) * sd.SLACK + (big & xpos) * np.abs(yh) * sd.SLACK
        br[Bracket.Y] = (ysd, d)
    if Bracket.K in brackets:
        # K = (1-y) s(x) - p y s(-x) = (A - B t) / (1 + t), t = e**-|x|, with
        # (A, B) = (1-y, p y) for x >= 0 and (-p y, -(1-y)) for x < 0: both terms in dd,
        # subtracted in dd, and s(-x) for x >= 0 is t/(1+t), never 1 - s(x). A is exact;
        # so is B*t where t is (x = 0: t = 1; x = +-inf: t = 0), and so is the division by
        # 1 + t in {1, 2} there: an exact zero such as x = 0, y = 1/2 comes out exact.
        npy = (-py[0], -py[1], py[2])
        ca = sd.select(xpos, c1, npy)
        cb = sd.select(xpos, npy, c1)  # -B
        inexact = a != 0
        if tz is not None:
            inexact = inexact & ~tz
        num, dnum = sd.combine(ca, sd.mul(cb, (th, tl, k + NOEXP * (th == 0))), 0.0,
                               inexact, None, big)
        kh, kl = dm.dd_div(num[0], num[1], uh, ul)
        dk = dnum / uh * sd.SLACK + sd.EPS * np.abs(kh) * inexact
        br[Bracket.K] = ((kh, kl, num[2]), dk)
    if w is not None:
        mw, ew = sd.frexp(w)
    terms = {}
    for t in want:
        b = br[t.bracket]
        terms[t] = sd.times_w(b, mw, ew) if t.weighted and w is not None else b
    numerators = {}
    if with_cond:

        def lead(b):  # a bracket's leading word, as a scaled float
            (h, _, e), _ = br[b]
            return h, e

        blocks = condition.Blocks(
            a=(ma, ea),
            y=(np.abs(my), ey),
            one_minus_y=(np.abs(c1[0]), c1[2]),
            sp_neg=(mlh, L1[2]),
            sp_pos=(S[0], S[2]),
            sig_pos=(sbh, sigB[2]),
            sig_neg=(ssh, sigS[2]),
            xpos=xpos,
            py=(np.abs(py[0]), py[2]),
            p=(mp, ep) if p is not None else None,
            l_coef=(lsd[0], lsd[2]) if p is not None else (np.ones_like(ma), np.zeros_like(ea)),
            G=lead(Bracket.G),
            K=lead(Bracket.K),
            B=lead(Bracket.B),
            Y=lead(Bracket.Y) if Bracket.Y in br else None,
        )
        nums = condition.numerators(blocks, w is not None, p is not None)
        numerators = {t: nums[t] for t in want}
    return ChunkResult(terms, numerators)


def run_chunk(args: tuple, tzc: np.ndarray | None, fm: np.ndarray, want: set[Term],
              with_cond: bool) -> tuple[ChunkResult, bool]:
    """One chunk: the fast kernel where ``fm`` allows, ``chunk`` elsewhere, interleaved.

    ``args``: the chunk's sanitised ``(x, y, w, p)``; ``fm``: its elements inside the
    fast domain (``fastkernel.fast_mask``). Returns the results and whether they all
    came from the fast kernel (unscaled, int 0 exponents); mixed results carry int32
    exponent arrays (0 for the fast elements).
    """
    m = fm.size
    nfast = int(np.count_nonzero(fm))
    if nfast == 0:
        return chunk(*args, tzc, want, with_cond), False
    if nfast == m:
        rf, redo = fastkernel.chunk_fast(*args, want, with_cond)
        if redo is None:
            return rf, True
        fi = np.arange(m)
    else:
        fi = np.flatnonzero(fm)
        rf, redo = fastkernel.chunk_fast(*(v[fi] if v is not None else None for v in args),
                                         want, with_cond)
    keep = slice(None)
    if redo is not None:
        keep = np.flatnonzero(~redo)
        fi = fi[keep]
    gi = np.flatnonzero(~fm) if redo is None else np.setdiff1d(np.arange(m), fi, assume_unique=True)
    rg = chunk(*(v[gi] if v is not None else None for v in args),
               None if tzc is None else tzc[gi], want, with_cond)
    terms = {}
    for t in want:
        (hf, lf, _), bf = rf.terms[t]
        (hg, lg, eg), bg = rg.terms[t]
        h = np.empty(m)
        lo = np.empty(m)
        d = np.empty(m)
        ex = np.zeros(m, np.int32)
        h[fi], h[gi] = hf[keep], hg
        lo[fi], lo[gi] = lf[keep], lg
        d[fi], d[gi] = bf[keep], bg
        ex[gi] = eg
        terms[t] = ((h, lo, ex), d)
    numerators = {}
    for t in rg.numerators:
        a, b = rf.numerators[t], rg.numerators[t]
        v = np.empty(m)
        v[fi], v[gi] = a[0][keep], b[0]
        ex = np.zeros(m, np.int32)
        ex[gi] = b[1]
        numerators[t] = (v, ex)
    return ChunkResult(terms, numerators), False
