"""The fast elementwise kernel: the same results as ``elementwise.py`` for ordinary arguments.

Most elements of real data are ordinary: ``2**-60 <= |x| <= 64``, y and p zero or of
magnitude within ``2**+-100``, w within ``2**+-100`` (``fast_mask``). There nothing can
under- or overflow, so this kernel computes the same brackets ``R0 + R1*F`` with the same
kind of rigorous bounds on the values themselves, with no exponents kept apart, with
leaner dd steps (``ddfunctions.exp_neg_dd``, ``log1p_dd``, ``ddmath.recip_dd``) and with
operations that reuse their temporaries. Its results are those of the general kernel:
the values are correctly rounded either way, and the condition numbers, which are
float64 functions of the dd results' leading words, get the same leading words; an
element whose bracket cancels by more than ``REDO_SPREAD`` (its leading word would then
depend on the last bits of ``e**-|x|``) is computed by the general kernel itself
(``elementwise.run_chunk``). ``tests/test_reference_fast.py`` checks the bits.
"""

from __future__ import annotations

import numpy as np

from harness.reference import condition, fastjit
from harness.reference import ddfunctions as df
from harness.reference import ddmath as dm
from harness.reference import scaled as sd
from harness.reference.scaled import Bounded
from harness.reference.terms import Bracket, ChunkResult, Term

__all__ = ["FAST_AMAX", "FAST_AMIN", "FAST_HI", "FAST_LO", "REDO_SPREAD", "chunk_fast", "fast_mask"]

#: the fast kernel's domain: |x| in [FAST_AMIN, FAST_AMAX]; y and p zero or of magnitude in
#: [FAST_LO, FAST_HI]; w of magnitude in [FAST_LO, FAST_HI]; not (y == 1 and p == 0),
#: not y = -0.0 (exact zeros whose signs the general kernel decides).
#: There e**-|x| >= 2**-93 and every product the kernel and the condition numbers form lies
#: between 2**-1000 and 2**1000 or is exactly zero, so no value needs a separate exponent.
FAST_AMIN = 2.0**-60
FAST_AMAX = 64.0
FAST_LO = 2.0**-100
FAST_HI = 2.0**100


#: a bracket cancelling by more than this goes to the general kernel when condition numbers
#: are wanted (see ``chunk_fast``): its leading word then differs from that kernel's with a
#: probability of about ``2**-43 * spread`` (the two compute the same exact value with
#: different rounding errors of ~2**-96), at most 2**-19 here, and such elements are rare
REDO_SPREAD = 2.0**24


def fast_mask(x: np.ndarray, y: np.ndarray, w: np.ndarray | None, p: np.ndarray | None,
              ) -> np.ndarray:
    """Elements inside the fast kernel's domain (NaN and inf fall outside by comparison)."""
    a = np.abs(x)
    ok = (a >= FAST_AMIN) & (a <= FAST_AMAX)
    for v, zero_ok in ((y, True), (p, True), (w, False)):
        if v is None:
            continue
        av = np.abs(v)
        if zero_ok:
            ok &= (av <= FAST_HI) & ((av >= FAST_LO) | (av == 0))
        else:
            ok &= (av <= FAST_HI) & (av >= FAST_LO)
    if p is not None:
        # y = 1, p = 0 makes the loss and d/dx exactly zero: the general kernel signs them
        ok &= (y != 1) | (p != 0)
    # y = -0.0 makes d/dp an exact -0.0 whose sign depends on the last bits: the general
    # kernel's too
    ok &= (y != 0) | ~np.signbit(y)
    return ok


def chunk_fast(x: np.ndarray, y: np.ndarray, w: np.ndarray | None, p: np.ndarray | None,
               want: set[Term], with_cond: bool) -> tuple[ChunkResult, np.ndarray | None]:
    """``elementwise.chunk`` for elements inside the fast domain (``fast_mask``), leaner.

    The same brackets ``R0 + R1*F`` with the same kind of rigorous bounds, computed on
    the values themselves (the domain keeps every intermediate in the normal range, so no
    exponent is kept apart) and with cheaper dd steps: ``exp_neg_dd``, ``log1p_dd``,
    ``recip_dd`` (``K = num * s(|x|)`` instead of a division), presplit factors, select
    masks made once, additions of non-cancelling terms in the sloppy dd form (their
    bound is charged on the terms' magnitudes anyway). Exponents are returned as the
    int 0; ``condition.py`` then skips their frames.

    Returns ``(result, redo)``: what ``elementwise.chunk`` returns, and with
    ``with_cond`` a mask of the elements whose G, K or B cancels by more than
    ``REDO_SPREAD`` (``None`` if there are none). Condition numbers are float64
    functions of the brackets' leading words; where a bracket cancels, its leading word
    depends on the last bits of the transcendental values, so ``elementwise.run_chunk``
    recomputes those few elements with the general kernel to give the same leading
    words (the values are correctly rounded either way).
    """
    br: dict[Bracket, Bounded] = {}
    brackets = {t.bracket for t in want}
    if with_cond:
        brackets |= {Bracket.G, Bracket.K, Bracket.B} | ({Bracket.Y} if p is not None else set())
    eps_s = sd.EPS * sd.SLACK  # read at each call: the tests widen EPS to force the exact path
    if fastjit.use(x.size):
        done = _chunk_compiled(x, y, w, p, want, with_cond, brackets, eps_s)
        if done is not None:
            return done
    sel = dm.select
    a = np.abs(x)
    xp = dm.SelectMask(x >= 0)
    th, tl = df.exp_neg_dd(a)  # t = e**-|x|
    need_l1 = bool(brackets & {Bracket.G, Bracket.B, Bracket.Y}) or with_cond
    need_sig = Bracket.K in brackets or with_cond
    need_s = Bracket.Y in brackets or with_cond
    if need_l1:
        lh, ll = df.log1p_dd(th, tl)  # L = log1p(t) = sp(-|x|)
        lsp = dm.split_arr(lh)
    if need_sig:
        uh, ue = dm.fast_two_sum_arr(1.0, th)
        sbh, sbl = dm.recip_dd(uh, ue + tl)  # s(|x|) = 1/(1 + t)
        sbsp = dm.split_arr(sbh)
        tsp = dm.split_arr(th)
    if with_cond:
        ssh = dm.dd_mul_arr(th, tl, sbh, sbl, tsp, sbsp)[0]  # s(-|x|) = t/(1 + t)
    if need_s:
        sh, sl = dm.two_sum_arr(a, lh)  # S = sp(|x|) = |x| + L
        sh, sl = dm.fast_two_sum_arr(sh, sl + ll)
    c1h, c1l = dm.two_sum_arr(1.0, -y)  # 1 - y, exact
    if p is not None:
        pyh, pyl = dm.two_prod_arr(p, y)  # p*y, exact
    else:
        pyh, pyl = y, np.zeros_like(y)
    redo = None
    if Bracket.G in brackets:
        if p is not None:
            lgh, lgl = dm.dd_add_arr(c1h, c1l, pyh, pyl)  # l = 1 - y + p*y
        c0h = sel(xp, c1h, pyh)
        c0l = sel(xp, c1l, pyl)
        asp = dm.split_arr(a)
        r0h, r0l = dm.dd_mul_fp2_arr(c0h, c0l, a, asp)
        if p is not None:
            t1h, t1l = dm.dd_mul_arr(lgh, lgl, lh, ll, None, lsp)
        else:
            t1h, t1l = lh, ll
        gh, gl = dm.dd_add_sloppy_arr(r0h, r0l, t1h, t1l)
        mag = np.abs(r0h)
        mag += np.abs(t1h)
        if with_cond:
            redo = mag > np.abs(gh) * REDO_SPREAD
        mag *= eps_s
        br[Bracket.G] = ((gh, gl, 0), mag)
    if Bracket.B in brackets:
        mcg = sel(xp, -1.0, p) if p is not None else sel(xp, -1.0, 1.0)
        r0h, r0l = dm.two_prod_arr(mcg, a)  # exact
        if p is not None:
            pm1h, pm1l = dm.two_sum_arr(p, -1.0)
            t1h, t1l = dm.dd_mul_arr(pm1h, pm1l, lh, ll, None, lsp)
            bh, bl = dm.dd_add_sloppy_arr(r0h, r0l, t1h, t1l)
            mag = np.abs(r0h)
            mag += np.abs(t1h)
            if with_cond:
                redo |= mag > np.abs(bh) * REDO_SPREAD
            mag *= eps_s
            br[Bracket.B] = ((bh, bl, 0), mag)
        else:
            br[Bracket.B] = ((r0h, r0l, 0), np.zeros_like(r0h))
    if Bracket.Y in brackets:
        nh = sel(xp, lh, sh)
        nl = sel(xp, ll, sl)
        # the general kernel's operation: an exact zero for y = +0 stays +0
        yh, yl = dm.dd_mul_fp_arr(nh, nl, y)
        dy = np.abs(yh)
        dy *= 2.0 * eps_s
        br[Bracket.Y] = ((yh, yl, 0), dy)
    if Bracket.K in brackets:
        # K = (A - B t) s(|x|), (A, -B) = (1 - y, -p y) for x >= 0, (-p y, 1 - y) for x < 0
        npyh = -pyh
        npyl = -pyl
        cah = sel(xp, c1h, npyh)
        cal = sel(xp, c1l, npyl)
        cbh = sel(xp, npyh, c1h)
        cbl = sel(xp, npyl, c1l)
        mh, ml = dm.dd_mul_arr(cbh, cbl, th, tl, None, tsp)
        nuh, nul = dm.dd_add_sloppy_arr(cah, cal, mh, ml)
        kh, kl = dm.dd_mul_arr(nuh, nul, sbh, sbl, None, sbsp)
        mag = np.abs(cah)
        mag += np.abs(mh)
        mag *= sbh
        akh = np.abs(kh)
        if with_cond:
            redo |= mag > akh * REDO_SPREAD
        mag += akh
        mag *= eps_s
        br[Bracket.K] = ((kh, kl, 0), mag)
    if w is not None and any(t.weighted for t in want):
        wsp = dm.split_arr(w)
        aws = np.abs(w)
        aws *= sd.SLACK
    terms = {}
    for t in want:
        b = br[t.bracket]
        if not t.weighted or w is None:
            terms[t] = b
            continue
        (qh, ql, _), d = b
        if t.bracket is Bracket.Y:
            # Y may be an exact zero: the general kernel's operation, for its sign
            hw, lw = dm.dd_mul_fp_arr(qh, ql, w)
        else:
            hw, lw = dm.dd_mul_fp2_arr(qh, ql, w, wsp)
        dw = aws * d
        ahw = np.abs(hw)
        ahw *= sd.EPS_OP
        dw += ahw
        terms[t] = ((hw, lw, 0), dw)
    numerators = {}
    if with_cond:

        def lead(b):  # a bracket's leading word, as a scaled float
            return br[b][0][0], 0

        blocks = condition.Blocks(
            a=(a, 0),
            y=(np.abs(y), 0),
            one_minus_y=(np.abs(c1h), 0),
            sp_neg=(lh, 0),
            sp_pos=(sh, 0),
            sig_pos=(sbh, 0),
            sig_neg=(ssh, 0),
            xpos=xp,
            py=(np.abs(pyh), 0),
            p=(p, 0) if p is not None else None,
            l_coef=(lgh, 0) if p is not None else (np.ones_like(a), 0),
            G=lead(Bracket.G),
            K=lead(Bracket.K),
            B=lead(Bracket.B),
            Y=lead(Bracket.Y) if Bracket.Y in br else None,
        )
        nums = condition.numerators(blocks, w is not None, p is not None)
        numerators = {t: nums[t] for t in want}
        if redo is not None and not redo.any():
            redo = None
    return ChunkResult(terms, numerators), redo


def _chunk_compiled(x: np.ndarray, y: np.ndarray, w: np.ndarray | None, p: np.ndarray | None,
                    want: set[Term], with_cond: bool, brackets: set[Bracket], eps_s: float,
                    ) -> tuple[ChunkResult, np.ndarray | None] | None:
    """``chunk_fast``'s results from the compiled kernel (``fastjit.py``): the same
    operations element by element, so the same bits; the condition numerators are then
    built from its blocks by the same numpy code. None if numba failed."""
    j = fastjit
    out = j.run(x, y, w, p, eps_s, sd.EPS_OP, sd.SLACK, REDO_SPREAD)
    if out is None:
        return None
    rows = {Bracket.G: (j.GH, j.WGH), Bracket.K: (j.KH, j.WKH), Bracket.B: (j.BH, j.WBH),
            Bracket.Y: (j.YH, j.WYH)}
    terms = {}
    for t in want:
        plain, weighted = rows[t.bracket]
        r = weighted if t.weighted and w is not None else plain
        terms[t] = ((out[r], out[r + 1], 0), out[r + 2])
    if not with_cond:
        return ChunkResult(terms, {}), None
    blocks = condition.Blocks(
        a=(np.abs(x), 0),
        y=(np.abs(y), 0),
        one_minus_y=(np.abs(out[j.C1H]), 0),
        sp_neg=(out[j.LH], 0),
        sp_pos=(out[j.SH], 0),
        sig_pos=(out[j.SBH], 0),
        sig_neg=(out[j.SSH], 0),
        xpos=dm.SelectMask(x >= 0),
        py=(np.abs(out[j.PYH]), 0),
        p=(p, 0) if p is not None else None,
        l_coef=(out[j.LGH], 0) if p is not None else (np.ones_like(x), 0),
        G=(out[j.GH], 0),
        K=(out[j.KH], 0),
        B=(out[j.BH], 0),
        Y=(out[j.YH], 0) if Bracket.Y in brackets else None,
    )
    nums = condition.numerators(blocks, w is not None, p is not None)
    redo = out[j.REDO] != 0
    return ChunkResult(terms, {t: nums[t] for t in want}), (redo if redo.any() else None)
