"""The fast kernel's loops, compiled by numba (imported only by ``fastjit.available``).

Each function repeats, element by element and operation by operation, what
``fastkernel.chunk_fast`` and the ``ddmath``/``ddfunctions`` functions it calls do with
numpy (the comments name them), so every rounding is the same and so are the results.
Compiled with ``error_model="numpy"`` (a division by zero is IEEE's, not an exception,
which would keep LLVM from vectorizing) and without fast-math: no reassociation and no
contraction of ``a*b + c`` into an FMA, which would change the bits. Module-level
functions with constant tables, so numba can keep them in its on-disk cache.

The error-free transformations below restate ``ddmath``'s rather than compiling its
functions: numba cannot call ddmath's plain Python helpers from compiled code, and its
cache is refreshed only when this file changes, so the operations the cached loops
run are kept here, where an edit invalidates them (the tables come from
``ddfunctions`` as values). ``tests/test_reference_fast.py`` holds the two copies to
the same bits.

Each loop writes at most a handful of arrays: LLVM vectorizes a loop only when it can
check cheaply that its stores and loads do not overlap, and with tens of output
streams it gives up and runs it one element at a time (measured: 111 ns per element
as one loop, 47 ns as these six).
"""

from __future__ import annotations

import numpy as np
from numba import njit

from harness.reference import ddfunctions as df
from harness.reference import ddmath as dm

_INLINE = {"inline": "always", "error_model": "numpy"}
_COMPILED = {"cache": True, "nogil": True, "error_model": "numpy"}
_SPLITTER = dm.SPLITTER
_INV_STEP = df._INV_STEP
_EXP_MASK = df._EXP_N - 1
_EXP_BITS = df._EXP_BITS
_C1, _C2, _C3 = df._CW30
_THIRD0, _THIRD1 = float(df._THIRD[0]), float(df._THIRD[1])
_THIRD_SH, _THIRD_SL = df._THIRD_SH, df._THIRD_SL
_EXP_TH, _EXP_TL = np.asarray(df._EXP_TH), np.asarray(df._EXP_TL)
_LOGC_H, _LOGC_L = np.asarray(df._LOGC_H), np.asarray(df._LOGC_L)
# 2**k for the exponents exp_neg_dd meets in the fast domain (|x| <= 64: k in [-93, 0])
_POW2 = np.ldexp(1.0, np.arange(-128, 1)).astype(np.float64)


@njit(**_INLINE)
def split(a):  # ddmath.split_arr
    c = _SPLITTER * a
    hi = c - a
    hi = c - hi
    return hi, a - hi


@njit(**_INLINE)
def two_prod(a, b, a1, a2, b1, b2):  # ddmath.two_prod_arr with split operands
    p = a * b
    e = a1 * b1
    e -= p
    e += a1 * b2
    e += a2 * b1
    e += a2 * b2
    return p, e


@njit(**_INLINE)
def two_sum(a, b):  # ddmath.two_sum_arr
    s = a + b
    bb = s - a
    t = s - bb
    t = a - t
    bb = b - bb
    return s, t + bb


@njit(**_INLINE)
def fts(a, b):  # ddmath.fast_two_sum_arr
    s = a + b
    t = s - a
    return s, b - t


@njit(**_INLINE)
def dd_add(ah, al, bh, bl):  # ddmath.dd_add_arr
    sh, sl = two_sum(ah, bh)
    th, tl = two_sum(al, bl)
    sl += th
    vh, vl = fts(sh, sl)
    tl += vl
    return fts(vh, tl)


@njit(**_INLINE)
def dd_mul(ah, al, bh, bl, a1, a2, b1, b2):  # ddmath.dd_mul_arr
    p, e = two_prod(ah, bh, a1, a2, b1, b2)
    t = ah * bl
    t += al * bh
    e += t
    return fts(p, e)


@njit(**_INLINE)
def dd_mul_fp(ah, al, b):  # ddmath.dd_mul_fp_arr
    a1, a2 = split(ah)
    b1, b2 = split(b)
    ch, cl1 = two_prod(ah, b, a1, a2, b1, b2)
    th, tl1 = fts(ch, al * b)
    tl1 += cl1
    return fts(th, tl1)


@njit(**_INLINE)
def dd_mul_fp2(ah, al, b, b1, b2):  # ddmath.dd_mul_fp2_arr
    a1, a2 = split(ah)
    p, e = two_prod(ah, b, a1, a2, b1, b2)
    e += al * b
    return fts(p, e)


@njit(**_INLINE)
def dd_add_sloppy(ah, al, bh, bl):  # ddmath.dd_add_sloppy_arr
    s, e = two_sum(ah, bh)
    e += al + bl
    return fts(s, e)


@njit(**_INLINE)
def recip(h, lo):  # ddmath.recip_dd
    rh = 1.0 / h
    a1, a2 = split(rh)
    b1, b2 = split(h)
    p, pe = two_prod(rh, h, a1, a2, b1, b2)
    p = 1.0 - p
    p -= pe
    p -= rh * lo
    p *= rh
    return fts(rh, p)


@njit(**_INLINE)
def exp_neg(a):  # ddfunctions.exp_neg_dd
    x = -a
    n = np.rint(x * _INV_STEP)
    ni = np.int64(n)
    j = ni & _EXP_MASK
    scale = _POW2[(ni >> _EXP_BITS) + 128]
    r1 = x - n * _C1
    rh, rl = two_sum(r1, n * -_C2)
    rl -= n * _C3
    sa, sb = split(rh)
    q = rh * rh
    qe = sa * sa
    qe -= q
    qe += (sa * sb) * 2.0
    qe += sb * sb
    hq = 0.5 * q
    rest = rh * (1.0 / 720)
    rest += 1.0 / 120
    rest *= rh
    rest += 1.0 / 24
    rest *= rh
    rest += 1.0 / 6
    rest *= rh
    rest *= q
    t = (rh + hq) * rl
    t += rl
    qe *= 0.5
    qe += t
    qe += rest
    s1, e1 = fts(1.0, rh)
    s2, e2 = fts(s1, hq)
    e1 += e2
    e1 += qe
    eh, el = fts(s2, e1)
    tj = _EXP_TH[j]
    a1, a2 = split(tj)
    b1, b2 = split(eh)
    h, lo = dd_mul(tj, _EXP_TL[j], eh, el, a1, a2, b1, b2)
    return h * scale, lo * scale


@njit(**_INLINE)
def log1p(th, tl):  # ddfunctions.log1p_dd
    jj = np.rint(th * 1024.0)
    ji = np.intp(jj)
    cj = jj * (1.0 / 1024)
    nh = th - cj
    cj += 2.0
    dh, dl = fts(cj, th)
    dl += tl
    sh = nh / dh
    sa, sb = split(sh)
    d1, d2 = split(dh)
    p, pe = two_prod(sh, dh, sa, sb, d1, d2)
    nh = nh - p
    nh -= pe
    nh += tl
    nh -= sh * dl
    nh /= dh
    sl = nh
    q = sh * sh
    qe = sa * sa
    qe -= q
    qe += (sa * sb) * 2.0
    qe += sb * sb
    qe += (sh * sl) * 2.0
    tail = q * (1.0 / 9)
    tail += 1.0 / 7
    tail *= q
    tail += 0.2
    tail *= q
    tail += _THIRD1
    tail *= q
    tail += qe * _THIRD0
    q1, q2 = split(q)
    zh, ze = two_prod(q, _THIRD0, q1, q2, _THIRD_SH, _THIRD_SL)
    ze += tail
    z1, z2 = split(zh)
    m, me = two_prod(sh, zh, sa, sb, z1, z2)
    me += sh * ze
    me += sl * zh
    wh, wl = fts(sh, m)
    wl += sl
    wl += me
    wh *= 2.0
    wl *= 2.0
    wl += _LOGC_L[ji]
    s1, e1 = fts(_LOGC_H[ji], wh)
    e1 += wl
    return fts(s1, e1)


@njit(**_COMPILED)
def transcendental(xs, th_, tl_, lh_, ll_, sbh_, sbl_, ssh_, sh_, sl_):
    """e**-|x|, sp(-|x|), s(|x|), s(-|x|) and sp(|x|) in dd: what every bracket reads
    (``fastkernel.chunk_fast``'s first lines)."""
    for i in range(xs.shape[0]):
        a = abs(xs[i])
        th, tl = exp_neg(a)  # t = e**-|x|
        lh, ll = log1p(th, tl)  # L = log1p(t) = sp(-|x|)
        uh, ue = fts(1.0, th)
        sbh, sbl = recip(uh, ue + tl)  # s(|x|) = 1/(1 + t)
        t1, t2 = split(th)
        sb1, sb2 = split(sbh)
        ssh = dd_mul(th, tl, sbh, sbl, t1, t2, sb1, sb2)[0]  # s(-|x|) = t/(1 + t)
        sh, sl = two_sum(a, lh)  # S = sp(|x|) = |x| + L
        sh, sl = fts(sh, sl + ll)
        th_[i], tl_[i], lh_[i], ll_[i] = th, tl, lh, ll
        sbh_[i], sbl_[i], ssh_[i], sh_[i], sl_[i] = sbh, sbl, ssh, sh, sl


@njit(**_INLINE)
def coefficients(y, pv, has_p):  # 1 - y and p*y, exact
    c1h, c1l = two_sum(1.0, -y)
    if has_p:
        p1, p2 = split(pv)
        y1, y2 = split(y)
        pyh, pyl = two_prod(pv, y, p1, p2, y1, y2)
    else:
        pyh, pyl = y, 0.0
    return c1h, c1l, pyh, pyl


@njit(**_COMPILED)
def bracket_g(has_p, xs, ys, ps, lh_, ll_, eps_s, redo_spread, gh_, gl_, gd_, redo_,
              c1h_, pyh_, lgh_):
    """G = (1-y) sp(x) + p y sp(-x), its bound, the redo mask and three blocks."""
    for i in range(xs.shape[0]):
        x = xs[i]
        a = abs(x)
        lh, ll = lh_[i], ll_[i]
        c1h, c1l, pyh, pyl = coefficients(ys[i], ps[i], has_p)
        c0h = c1h if x >= 0 else pyh
        c0l = c1l if x >= 0 else pyl
        a1, a2 = split(a)
        r0h, r0l = dd_mul_fp2(c0h, c0l, a, a1, a2)
        if has_p:
            lgh, lgl = dd_add(c1h, c1l, pyh, pyl)  # l = 1 - y + p*y
            g1, g2 = split(lgh)
            l1, l2 = split(lh)
            u0h, u0l = dd_mul(lgh, lgl, lh, ll, g1, g2, l1, l2)
        else:
            lgh = 1.0
            u0h, u0l = lh, ll
        gh, gl = dd_add_sloppy(r0h, r0l, u0h, u0l)
        mag = abs(r0h)
        mag += abs(u0h)
        gh_[i], gl_[i], gd_[i] = gh, gl, mag * eps_s
        redo_[i] = 1.0 if mag > abs(gh) * redo_spread else 0.0
        c1h_[i], pyh_[i], lgh_[i] = c1h, pyh, lgh


@njit(**_COMPILED)
def bracket_b(has_p, xs, ps, lh_, ll_, eps_s, redo_spread, bh_, bl_, bd_, redo_):
    """B = p sp(-x) - sp(x) and its bound; adds to the redo mask."""
    for i in range(xs.shape[0]):
        x = xs[i]
        a = abs(x)
        pv = ps[i] if has_p else 1.0
        mcg = -1.0 if x >= 0 else pv
        m1, m2 = split(mcg)
        a1, a2 = split(a)
        r0h, r0l = two_prod(mcg, a, m1, m2, a1, a2)
        if has_p:
            lh, ll = lh_[i], ll_[i]
            pm1h, pm1l = two_sum(pv, -1.0)
            q1, q2 = split(pm1h)
            l1, l2 = split(lh)
            u0h, u0l = dd_mul(pm1h, pm1l, lh, ll, q1, q2, l1, l2)
            bh, bl = dd_add_sloppy(r0h, r0l, u0h, u0l)
            mag = abs(r0h)
            mag += abs(u0h)
            if mag > abs(bh) * redo_spread:
                redo_[i] = 1.0
            bh_[i], bl_[i], bd_[i] = bh, bl, mag * eps_s
        else:
            bh_[i], bl_[i], bd_[i] = r0h, r0l, 0.0


@njit(**_COMPILED)
def bracket_y(xs, ys, lh_, ll_, sh_, sl_, eps_s, yh_, yl_, yd_):
    """Y = y sp(-x) and its bound."""
    for i in range(xs.shape[0]):
        xp = xs[i] >= 0
        nh = lh_[i] if xp else sh_[i]
        nl = ll_[i] if xp else sl_[i]
        yh, yl = dd_mul_fp(nh, nl, ys[i])
        yh_[i], yl_[i], yd_[i] = yh, yl, abs(yh) * (2.0 * eps_s)


@njit(**_COMPILED)
def bracket_k(has_p, xs, ys, ps, th_, tl_, sbh_, sbl_, eps_s, redo_spread, kh_, kl_, kd_,
              redo_):
    """K = (1-y) s(x) - p y s(-x) = (A - B t) s(|x|), its bound; adds to redo."""
    for i in range(xs.shape[0]):
        xp = xs[i] >= 0
        th, tl, sbh, sbl = th_[i], tl_[i], sbh_[i], sbl_[i]
        c1h, c1l, pyh, pyl = coefficients(ys[i], ps[i], has_p)
        npyh = -pyh
        npyl = -pyl
        cah = c1h if xp else npyh
        cal = c1l if xp else npyl
        cbh = npyh if xp else c1h
        cbl = npyl if xp else c1l
        q1, q2 = split(cbh)
        t1, t2 = split(th)
        mh, ml = dd_mul(cbh, cbl, th, tl, q1, q2, t1, t2)
        nuh, nul = dd_add_sloppy(cah, cal, mh, ml)
        q1, q2 = split(nuh)
        sb1, sb2 = split(sbh)
        kh, kl = dd_mul(nuh, nul, sbh, sbl, q1, q2, sb1, sb2)
        mag = abs(cah)
        mag += abs(mh)
        mag *= sbh
        akh = abs(kh)
        if mag > akh * redo_spread:
            redo_[i] = 1.0
        mag += akh
        kh_[i], kl_[i], kd_[i] = kh, kl, mag * eps_s


@njit(**_COMPILED)
def weigh(exact_zero, ws, qh_, ql_, qd_, eps_op, slack, hw_, lw_, dw_):
    """A bracket times w, and its bound."""
    for i in range(ws.shape[0]):
        wv = ws[i]
        if exact_zero:  # Y may be an exact zero: the general kernel's product, its sign
            hw, lw = dd_mul_fp(qh_[i], ql_[i], wv)
        else:
            w1, w2 = split(wv)
            hw, lw = dd_mul_fp2(qh_[i], ql_[i], wv, w1, w2)
        hw_[i], lw_[i], dw_[i] = hw, lw, (abs(wv) * slack) * qd_[i] + abs(hw) * eps_op


@njit(cache=True, nogil=True, error_model="numpy")
def dd_sum_rows(hi, lo, out_h, out_l):  # ddmath.dd_sum along axis 1, the same tree
    """Each row's pairwise dd sum: at each level an odd count gets a zero appended and
    neighbours ``(2k, 2k + 1)`` are added with ``dd_add``, as ``ddmath.dd_sum`` does."""
    rows, n0 = hi.shape
    hb = np.empty(n0 + 1)
    lb = np.empty(n0 + 1)
    for r in range(rows):
        for k in range(n0):
            hb[k] = hi[r, k]
            lb[k] = lo[r, k]
        if n0 == 0:
            hb[0] = 0.0
            lb[0] = 0.0
        n = n0
        while n > 1:
            if n % 2:
                hb[n] = 0.0
                lb[n] = 0.0
                n += 1
            for k in range(n // 2):
                hb[k], lb[k] = dd_add(hb[2 * k], lb[2 * k], hb[2 * k + 1], lb[2 * k + 1])
            n //= 2
        out_h[r] = hb[0]
        out_l[r] = lb[0]
