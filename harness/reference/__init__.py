"""The public float64 reference for BCEWithLogitsLoss (CONTRACT section 2).

What it promises
----------------
Every returned float64 is the exact mathematical value correctly rounded (to nearest,
ties to even): the elementwise losses, the reduced loss (``"mean"`` is the exact sum
divided by the element count, rounded once) and every gradient (summed exactly over
broadcast dimensions, then rounded once). Elementwise, with ``x`` = input, ``y`` =
target, ``w`` = weight, ``p`` = pos_weight and ``sp(z) = log(1 + e**z)``::

    loss  = w * [(1 - y) * sp(x) + p * y * sp(-x)]
    d/dx  = w * [(1 - y) * s(x) - p * y * s(-x)]          s = logistic sigmoid
    d/dy  = w * [p * sp(-x) - sp(x)]
    d/dw  = (1 - y) * sp(x) + p * y * sp(-x)
    d/dp  = w * y * sp(-x)

How
---
Nothing here evaluates those formulas in float64. Per element the work is:

1. ``t = e**-|x|`` in double-double with its binary exponent kept apart
   (``harness.reference.ddmath.exp_scaled``), then ``log1p(t)`` and ``t/(1+t)`` from it. With
   ``a = |x|`` and ``L = log1p(t)``, ``sp(|x|) = a + L`` and ``sp(-|x|) = L``.
2. Each quantity is written as ``w * (R0 + R1 * F)`` -- ``R0`` and ``R1`` exact products
   of the arguments, ``F`` one transcendental -- in a form without cancellation
   between large equal terms. For x >= 0 the loss is ``w*[(1-y)*a + l*L]`` with
   ``l = 1 - y + p*y``; the textbook ``(1-y)*x + l*sp(-x)`` would, at x = -50, y = 0,
   subtract 50 from 50 + 1.9e-22 and return 0. The x-gradient is
   ``w*(A - B*t)/(1 + t)`` with ``(A, B) = (1-y, p*y)`` for x >= 0 (the mirror for x < 0):
   both terms in dd and subtracted in dd, ``s(-x)`` for x >= 0 is ``t/(1+t)``, never
   ``1 - s(x)``, and never ``s(x) - y``.
3. Every factor is a mantissa in [0.5, 1) times a separate int exponent (``frexp``),
   so products of four arguments near 1e308 or 1e-300 neither overflow nor lose bits,
   and subnormal results are rounded from the full dd value (``ddmath.to_float``).
   Ordinary elements -- ``2**-60 <= |x| <= 64``, y and p zero or of magnitude within
   ``2**+-100``, w within ``2**+-100`` (``_fast_mask``) -- take a fast kernel instead
   (``_chunk_fast``): the same brackets and bounds on the values themselves, no
   exponents kept apart (nothing can under- or overflow there), with leaner dd steps
   (``ddmath.exp_neg_dd``, ``log1p_dd``, ``recip_dd``) and operations that reuse their
   temporaries. Its results are those of the general kernel (``_chunk``): the values are
   correctly rounded either way, and the condition numbers, which are float64
   functions of the dd results' leading words, get the same leading words; an element
   whose bracket cancels by more than ``2**24`` (its leading word would then depend on
   the last bits of ``e**-|x|``) is computed by ``_chunk`` itself.
4. Ziv's strategy: each dd result carries a rigorous error bound (``_EPS = 2**-90``
   times the magnitudes of its inexact terms; the dd algorithms err by < 2**-95). If
   the bound cannot settle the rounding -- the value is within 2**-90 of a rounding
   boundary, e.g. an exact midpoint such as 3 * (2**52 + 3) plus an invisible
   e**-4.5e15 -- that element (or that sum) goes to the exact path (``_slow_sum``).
   Level 2: every term is ``R0 + R1*F``; the rational parts ``R0`` and ``R1`` are summed
   exactly in integer arithmetic (dyadic numbers, identical elements merged), and only
   the distinct transcendental values ``F`` carry a bound (their dd values, 2**-88).
   That decides cancelling sums (``1e16 + sp(1) - 1e16`` repeated) and ties broken by
   an ``e**-|x|`` beyond ``EXP_CLAMP`` (a positive infinitesimal of known sign). Level
   3, for a value within 2**-88 of the F parts of a rounding boundary: the same terms
   in ``fractions``/``decimal`` with increasing precision until the rounding is
   decided (``_slow_round``). So the result is correctly rounded always, not just
   almost always.
5. Reductions sum the exact dd terms (not the rounded elementwise values), aligned to a
   common exponent, by a pairwise dd tree; the bound then covers the terms' bounds and
   the tree's rounding, and Ziv's test again decides.

Special values
--------------
The value at a non-finite argument is the mathematical limit with the other
arguments fixed:

* NaN in any argument of an element: NaN for every quantity of that element.
* ``x = +-inf``: ``sp(+inf) = +inf``, ``sp(-inf) = 0``, ``s(+inf) = 1``, ``s(-inf) = 0``,
  and each quantity is a single product of arguments and one of those limits, e.g.
  loss(+inf) = ``w*(1-y)*inf``, loss(-inf) = ``w*p*y*inf``, d/dx(+inf) = ``w*(1-y)``,
  d/dx(-inf) = ``-w*p*y``. A factor that is exactly zero (w = 0, p = 0, y = 0, y = 1
  making 1 - y = 0, or a zero limit) makes the product 0 even when another factor is
  infinite; otherwise an infinite factor makes it +-inf. Infinite y, w or p together
  with an infinite x follow the same product rule (the x-limit is taken first).
* ``x`` finite and y, w or p infinite: every quantity is affine in each of y, w, p, i.e.
  ``Q = Q0 + v*Q1`` with ``Q1 = dQ/dv``. The limit is ``sign(v*Q1)*inf`` when the exact
  ``Q1`` is non-zero and ``Q0`` otherwise. For the loss and y this reads
  ``w*sp(x) + y*w*(p*sp(-x) - sp(x))``: +-inf by the sign of the y-gradient, not the NaN
  that ``(1-y)*sp(x) + p*y*sp(-x)`` gives term by term. Several of y, w, p infinite at
  once: the product of the infinite arguments with the highest such monomial dominates
  (e.g. loss with y and p infinite -> ``sign(w*p*y)*inf``). The one sign taken in float64
  is that of ``s(x) + p*s(-x)`` (d/dx with y infinite and p < 0), whose exact zero at
  x = 0, p = -1 is nevertheless honoured.

Condition numbers
-----------------
``evaluate`` returns, next to each value, the componentwise relative condition
number ``sum_z |z * dq/dz| / |q|`` over the arguments present (an absent weight or
pos_weight is a constant, not an input; in the loss, d/dx and d/dw the target counts as its
two coefficients ``1 - y`` and ``y``), the cancellation ``spread`` of a sum and the
number of terms. They are float64 estimates meant for tolerances, computed on frexp
mantissas so that they neither overflow nor produce NaN for finite inputs; the second
derivatives they need are written out in ``_cond_numerators``. Conventions: ``q == 0``
with a zero numerator gives 0, with a non-zero one inf; non-finite values (and any
element with a non-finite argument, whose limits are exact) give 0. A reduced result
``sum t_i`` has ``cond = sum |t_i| cond_i / |sum t_i|`` and ``spread = sum|t_i| / |sum t_i|``.

Speed
-----
Work is done in chunks of 16384 elements so the numpy temporaries of a chunk stay
in cache; for arrays of 65536 elements or more glibc's heap trimming is relaxed once
per process (``_tune_malloc``), which otherwise costs more in page faults than the
arithmetic. On ordinary arguments (the fast kernel) expect about 1.5e6-1.7e6 elements
per second for loss and all gradients with condition numbers on one core, about 9x
(mean) and 14-15x (none) the time of a plain float64 numpy formula on a quiet machine
(``benchmarks/bench_reference.py``); elements outside the fast domain cost about
twice as much. A call of up to 131072 elements keeps its elementwise terms in a small
cache (64 MiB at most, keyed by the arguments' contents), so the "none", "mean" and
"sum" calls of a report on the same arguments compute them once.

Zeros: a result whose exact value is non-zero but rounds to zero keeps the sign of
the exact value; the sign of an exact zero is not part of the contract.
"""

from __future__ import annotations

import hashlib
import math
import threading
from collections import OrderedDict
from dataclasses import dataclass
from decimal import Decimal, localcontext
from fractions import Fraction
from typing import Any

import numpy as np

from harness.reference import ddmath as dm

__all__ = ["GRAD_NAMES", "REDUCTIONS", "Quantity", "evaluate", "grads", "loss"]

REDUCTIONS: tuple[str, ...] = ("none", "mean", "sum")
GRAD_NAMES: tuple[str, ...] = ("input", "target", "weight", "pos_weight")

#: relative error bound charged per inexact term (the dd algorithms stay below 2**-95)
_EPS = 2.0**-90
#: relative error charged for one extra dd operation (multiplying by w, dividing by n)
_EPS_OP = 2.0**-100
_SLACK = 1.0 + 2.0**-50
#: exponent given to zero mantissas, so they never decide an exponent alignment
_NOEXP = np.int32(-(1 << 26))  # int32 throughout: ldexp is 6x slower with int64
_CHUNK = 1 << 14
#: beyond this |x| the exact path treats e**-|x| as a positive infinitesimal (see _slow_round)
_SLOW_HUGE = 6000.0


# ===========================================================================
# public API
# ===========================================================================


@dataclass(frozen=True)
class Quantity:
    """One returned result and what the comparison needs to judge it.

    ``value``: float64, correctly rounded, shaped as returned. ``cond``: componentwise
    relative condition number (0 for non-finite values and where every partial is 0;
    inf for an exact zero that has non-zero partials). ``spread``: ``sum|t_i| / |sum t_i|``
    over the summed terms (1.0 where nothing is summed). ``terms``: how many terms were
    summed into each element (int64).
    """

    value: np.ndarray
    cond: np.ndarray
    spread: np.ndarray
    terms: np.ndarray


def loss(
    input: Any,
    target: Any,
    weight: Any = None,
    pos_weight: Any = None,
    reduction: str = "mean",
) -> np.ndarray:
    """BCEWithLogitsLoss, correctly rounded: elementwise for ``"none"``, 0-d otherwise."""
    return _evaluate(input, target, weight, pos_weight, reduction, True, (), False)["value"].value


def grads(
    input: Any,
    target: Any,
    weight: Any = None,
    pos_weight: Any = None,
    reduction: str = "mean",
) -> dict[str, np.ndarray]:
    """Gradients of the reduced loss (of the sum of elementwise losses for ``"none"``).

    Keys ``"input"``, ``"target"``, and ``"weight"``/``"pos_weight"`` when given; each
    array is shaped like its argument (broadcast dimensions summed exactly).
    """
    res = _evaluate(input, target, weight, pos_weight, reduction, False, GRAD_NAMES, False)
    return {k[len("grad.") :]: q.value for k, q in res.items()}


def evaluate(
    input: Any,
    target: Any,
    weight: Any = None,
    pos_weight: Any = None,
    reduction: str = "mean",
    grads: tuple[str, ...] | list[str] = GRAD_NAMES,
) -> dict[str, Quantity]:
    """Value and gradients with condition numbers, for the comparison.

    Keys: ``"value"`` and ``"grad.<name>"`` for each name in ``grads`` whose argument is
    present (``weight``/``pos_weight`` only when given).
    """
    for g in grads:
        if g not in GRAD_NAMES:
            raise ValueError(f"unknown gradient {g!r}; valid names are {', '.join(GRAD_NAMES)}")
    return _evaluate(input, target, weight, pos_weight, reduction, True, tuple(grads), True)


# ===========================================================================
# argument handling
# ===========================================================================


def _to_f64(arr: Any, name: str) -> np.ndarray:
    """Convert any real array-like to float64 exactly, or raise ValueError."""
    a = np.asarray(arr)
    kind = a.dtype.kind
    if kind == "c":
        raise ValueError(f"{name}: complex values are not supported")
    if kind in "USMm":
        raise ValueError(f"{name}: dtype {a.dtype} is not a real number type")
    if kind == "b":
        return a.astype(np.float64)
    if kind in "iu":
        f = a.astype(np.float64)
        big = np.abs(f) >= 2.0**53
        if np.any(big):
            for v in a[big].tolist():
                if float(v) != v:
                    raise ValueError(
                        f"{name}: integer {v} has no exact float64 value; pass floats instead"
                    )
        return f
    if kind == "f" and a.dtype.itemsize <= 8:
        return a.astype(np.float64)
    if kind == "O":
        try:
            a = np.asarray(a.tolist(), dtype=np.float64)
        except (TypeError, ValueError) as exc:
            raise ValueError(f"{name}: expected real numbers ({exc})") from None
        return a
    try:
        f = a.astype(np.float64)
        back = f.astype(a.dtype)
    except (TypeError, ValueError):
        raise ValueError(f"{name}: dtype {a.dtype} is not a real number type") from None
    same = (back == a) | (np.isnan(f) & np.isnan(back.astype(np.float64)))
    if not np.all(same):
        raise ValueError(f"{name}: dtype {a.dtype} does not convert exactly to float64")
    return f


def _fmt_shape(s: tuple[int, ...]) -> str:
    return "(" + ", ".join(str(d) for d in s) + ("," if len(s) == 1 else "") + ")"


def _prepare(input, target, weight, pos_weight, reduction):
    if reduction not in REDUCTIONS:
        raise ValueError(
            f"reduction {reduction!r} is not valid; valid values are " + ", ".join(REDUCTIONS)
        )
    x = _to_f64(input, "input")
    y = _to_f64(target, "target")
    if x.shape != y.shape:
        raise ValueError(
            f"Target size {_fmt_shape(y.shape)} must be the same as input size "
            f"{_fmt_shape(x.shape)}"
        )
    args = {}
    for name, v in (("weight", weight), ("pos_weight", pos_weight)):
        if v is None:
            args[name] = None
            continue
        v = _to_f64(v, name)
        try:
            bshape = np.broadcast_shapes(v.shape, x.shape)
        except ValueError:
            bshape = None
        if bshape != x.shape:
            raise ValueError(
                f"{name} of shape {_fmt_shape(v.shape)} must broadcast to the input's shape "
                f"{_fmt_shape(x.shape)} without enlarging it"
            )
        args[name] = v
    return x, y, args["weight"], args["pos_weight"]


# ===========================================================================
# scaled double-double helpers: (hi, lo, e) means (hi + lo) * 2**e
# ===========================================================================


def _frexp(v):
    m, e = np.frexp(v)
    return m, e + _NOEXP * (m == 0)


def _sd_float(v):
    m, e = _frexp(v)
    return m, np.zeros_like(m), e


def _sd_dd(h, lo):
    m, e = _frexp(h)
    return m, np.ldexp(lo, -e), e


def _sd_select(mask, a, b):
    return dm.select(mask, a[0], b[0]), dm.select(mask, a[1], b[1]), dm.select(mask, a[2], b[2])


def _sd_mul(a, b):
    h, lo = dm.dd_mul(a[0], a[1], b[0], b[1])
    return h, lo, a[2] + b[2]


def _combine(t0, t1, f0, f1, p0=None, p1=None):
    """Sum of two scaled-dd terms with an error bound in the result's frame.

    ``f*`` (0/1 or bool arrays): the term is inexact, charge ``_EPS * |term|``.
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
    delta = _EPS * mag * _SLACK
    if p0 is not None:
        delta = delta + p0 * a0 * _SLACK
    if p1 is not None:
        delta = delta + p1 * a1 * _SLACK
    # bits shifted below the subnormal range are lost: at most 2**-1075 per word
    smin = np.minimum(s0, s1)
    if smin.size and smin.min() < -960:
        lost = ((s0 < -960) & (t0[0] != 0)) | ((s1 < -960) & (t1[0] != 0))
        delta = delta + lost * 2.0**-1070
    # an exact zero gets the no-exponent mark; a zero that is only zero within the
    # bound keeps its frame, or the bound would be scaled away with it
    e = e + _NOEXP * ((h == 0) & (delta == 0))
    return (h, lo, e), delta


def _times_w(q, delta, mw, ew):
    """Multiply a scaled dd and its bound by w = mw * 2**ew (exact when q's low word is 0)."""
    h, lo = dm.dd_mul_fp(q[0], q[1], mw)
    d = np.abs(mw) * delta * _SLACK + _EPS_OP * np.abs(h) * (q[1] != 0)
    return (h, lo, q[2] + ew), d


# ===========================================================================
# the elementwise machinery
# ===========================================================================

# brackets: the w-free part of each quantity
#   "G": d/dw = (1-y) sp(x) + p y sp(-x)      value = w*G
#   "K": d/dx / w = (1-y) s(x) - p y s(-x)
#   "B": d/dy / w = p sp(-x) - sp(x)
#   "Y": d/dp / w = y sp(-x)


def _chunk(x, y, w, p, tz, want: set[str], with_cond: bool):
    """All wanted brackets (and w-multiplied versions ``"wG"`` ...) for one chunk.

    Returns ``{name: ((h, lo, e), delta)}`` and, with ``with_cond``, ``"num:<q>"``
    entries: float64 scaled numerators ``(m, e)`` of the condition numbers (w-free).
    """
    out: dict[str, Any] = {}
    brackets = {q for q in want if q in "GKBY"} | {q[1] for q in want if q[0] == "w"}
    if with_cond:
        brackets |= {"G", "K", "B"} | ({"Y"} if p is not None else set())
    a = np.abs(x)
    xpos = x >= 0
    k, th, tl = dm.exp_scaled(-a)
    big = a > dm.EXP_CLAMP
    if tz is not None:
        th = dm.select(tz, 0.0, th)
        tl = dm.select(tz, 0.0, tl)
        big = big & ~tz
    ma, ea = _frexp(a)
    my, ey = _frexp(y)
    need_l1 = bool(brackets & {"G", "B", "Y"}) or with_cond
    need_sig = "K" in brackets or with_cond
    need_s = "Y" in brackets or with_cond
    if need_l1:
        mlh, mll = dm.log1p_scaled(k, th, tl)
        L1 = (mlh, mll, k + _NOEXP * (mlh == 0))
    if need_sig:
        tt = np.ldexp(th, k)
        ttl = np.ldexp(tl, k)
        uh, ul = dm.dd_add_fp(tt, ttl, 1.0)  # 1 + t, in [1, 2]
    if with_cond:
        sbh, sbl = dm.dd_div(np.ones_like(uh), np.zeros_like(uh), uh, ul)
        ssh, ssl = dm.dd_mul(th, tl, sbh, sbl)
        sigB = (sbh, sbl, np.zeros_like(k))
        sigS = (ssh, ssl, k + _NOEXP * (ssh == 0))
    if need_s:
        lu = np.ldexp(mlh, k)
        lul = np.ldexp(mll, k)
        sh, sl = dm.two_sum(a, lu)
        sh, sl = dm.fast_two_sum(sh, sl + lul)
        S = _sd_dd(sh, sl)
    c1h, c1l = dm.two_sum(1.0, -y)
    c1 = _sd_dd(c1h, c1l)  # 1 - y, exact
    if p is not None:
        mp, ep = _frexp(p)
        pyh, pyl = dm._two_prod(mp, my)
        py = (pyh, pyl, ep + ey)  # p*y, exact
    else:
        py = (my, np.zeros_like(my), ey)
    if "G" in brackets:
        if p is not None:
            lsd = _combine(c1, py, 0.0, 0.0)[0]  # l = 1 - y + p*y; its error is in EPS
        c0 = _sd_select(xpos, c1, py)
        r0h, r0l = dm.dd_mul_fp(c0[0], c0[1], ma)
        r0 = (r0h, r0l, c0[2] + ea)
        t1 = _sd_mul(lsd, L1) if p is not None else L1
        out["G"] = _combine(r0, t1, 1.0, 1.0, None, big)
    if "B" in brackets:
        if p is not None:
            mcg = dm.select(xpos, -0.5, mp)
            ecg = dm.select(xpos, np.int32(1), ep)
        else:
            mcg = dm.select(xpos, -0.5, 0.5)
            ecg = np.ones_like(ea)
        r0h, r0l = dm._two_prod(mcg, ma)
        r0 = (r0h, r0l, ecg + ea)  # exact
        if p is not None:
            pm1h, pm1l = dm.two_sum(p, -1.0)
            t1 = _sd_mul(_sd_dd(pm1h, pm1l), L1)
            out["B"] = _combine(r0, t1, 0.0, 1.0, None, big)
        else:
            out["B"] = (r0, np.zeros_like(r0h))
    if "Y" in brackets:
        spn = _sd_select(xpos, L1, S)
        yh, yl = dm.dd_mul_fp(spn[0], spn[1], my)
        ysd = (yh, yl, spn[2] + ey)
        d = 2.0 * _EPS * np.abs(yh) * _SLACK + (big & xpos) * np.abs(yh) * _SLACK
        out["Y"] = (ysd, d)
    if "K" in brackets:
        # K = (1-y) s(x) - p y s(-x) = (A - B t) / (1 + t), t = e**-|x|, with
        # (A, B) = (1-y, p y) for x >= 0 and (-p y, -(1-y)) for x < 0: both terms in dd,
        # subtracted in dd, and s(-x) for x >= 0 is t/(1+t), never 1 - s(x). A is exact;
        # so is B*t where t is (x = 0: t = 1; x = +-inf: t = 0), and so is the division by
        # 1 + t in {1, 2} there: an exact zero such as x = 0, y = 1/2 comes out exact.
        npy = (-py[0], -py[1], py[2])
        ca = _sd_select(xpos, c1, npy)
        cb = _sd_select(xpos, npy, c1)  # -B
        inexact = a != 0
        if tz is not None:
            inexact = inexact & ~tz
        num, dnum = _combine(ca, _sd_mul(cb, (th, tl, k + _NOEXP * (th == 0))), 0.0,
                             inexact, None, big)
        kh, kl = dm.dd_div(num[0], num[1], uh, ul)
        dk = dnum / uh * _SLACK + _EPS * np.abs(kh) * inexact
        out["K"] = ((kh, kl, num[2]), dk)
    if w is not None:
        mw, ew = _frexp(w)
    for q in want:
        if q[0] == "w":
            sd, d = out[q[1]]
            out[q] = _times_w(sd, d, mw, ew) if w is not None else (sd, d)
    if with_cond:
        blocks = {
            "a": (ma, ea),
            "y": (np.abs(my), ey),
            "c1": (np.abs(c1[0]), c1[2]),
            "L1": (mlh, L1[2]),
            "S": (S[0], S[2]),
            "sB": (sbh, sigB[2]),
            "sS": (ssh, sigS[2]),
            "xpos": xpos,
            "py": (np.abs(py[0]), py[2]),
        }
        if p is not None:
            blocks["p"] = (mp, ep)
            blocks["l"] = (lsd[0], lsd[2])
        else:
            blocks["l"] = (np.ones_like(ma), np.zeros_like(ea))
        for b in ("G", "K", "B", "Y"):
            if b in out:
                blocks[b] = (out[b][0][0], out[b][0][2])
        out.update(_cond_numerators(blocks, w is not None, p is not None))
    return out


# ---------------------------------------------------------------------------
# the fast kernel: ordinary arguments, no frames
# ---------------------------------------------------------------------------

#: the fast kernel's domain: |x| in [_FAST_AMIN, _FAST_AMAX]; y and p zero or of magnitude in
#: [_FAST_LO, _FAST_HI]; w of magnitude in [_FAST_LO, _FAST_HI]; not (y == 1 and p == 0),
#: not y = -0.0 (exact zeros whose signs _chunk decides).
#: There e**-|x| >= 2**-93 and every product the kernel and the condition numbers form lies
#: between 2**-1000 and 2**1000 or is exactly zero, so no value needs a separate exponent.
_FAST_AMIN = 2.0**-60
_FAST_AMAX = 64.0
_FAST_LO = 2.0**-100
_FAST_HI = 2.0**100


#: a bracket cancelling by more than this goes to ``_chunk`` when condition numbers are
#: wanted (see ``_chunk_fast``): its leading word then differs from ``_chunk``'s with a
#: probability of about ``2**-43 * spread`` (the two compute the same exact value with
#: different rounding errors of ~2**-96), at most 2**-19 here, and such elements are rare
_REDO_SPREAD = 2.0**24


def _fast_mask(x, y, w, p):
    """Elements inside the fast kernel's domain (NaN and inf fall outside by comparison)."""
    a = np.abs(x)
    ok = (a >= _FAST_AMIN) & (a <= _FAST_AMAX)
    for v, zero_ok in ((y, True), (p, True), (w, False)):
        if v is None:
            continue
        av = np.abs(v)
        if zero_ok:
            ok &= (av <= _FAST_HI) & ((av >= _FAST_LO) | (av == 0))
        else:
            ok &= (av <= _FAST_HI) & (av >= _FAST_LO)
    if p is not None:
        # y = 1, p = 0 makes the loss and d/dx exactly zero: leave their signs to _chunk
        ok &= (y != 1) | (p != 0)
    # y = -0.0 makes d/dp an exact -0.0 whose sign depends on the last bits: _chunk's
    ok &= (y != 0) | ~np.signbit(y)
    return ok


def _chunk_fast(x, y, w, p, want: set[str], with_cond: bool):
    """``_chunk`` for elements inside the fast domain (``_fast_mask``): no frames, fewer steps.

    The same brackets ``R0 + R1*F`` with the same kind of rigorous bounds, computed on
    the values themselves (the domain keeps every intermediate in the normal range, so no
    exponent is kept apart) and with cheaper dd steps: ``exp_neg_dd``, ``log1p_dd``,
    ``recip_dd`` (``K = num * s(|x|)`` instead of a division), presplit factors, select
    masks made once, additions of non-cancelling terms in the sloppy dd form (their
    bound is charged on the terms' magnitudes anyway). Exponents are returned as the
    int 0; ``_cond_numerators`` and ``_sf_*`` then skip their frames.

    Returns ``(out, redo)``: ``_chunk``'s dict, and with ``with_cond`` a mask of the
    elements whose G, K or B cancels by more than ``_REDO_SPREAD`` (``None`` if there are
    none).
    Condition numbers are float64 functions of the brackets' leading words; where a
    bracket cancels, its leading word depends on the last bits of the transcendental
    values, so those few elements are recomputed by ``_chunk`` itself to give the same
    leading words (the values are correctly rounded either way).
    """
    out: dict[str, Any] = {}
    brackets = {q for q in want if q in "GKBY"} | {q[1] for q in want if q[0] == "w"}
    if with_cond:
        brackets |= {"G", "K", "B"} | ({"Y"} if p is not None else set())
    sel = dm.select
    eps_s = _EPS * _SLACK  # read here: the tests widen _EPS to force the exact path
    a = np.abs(x)
    xp = dm.SelectMask(x >= 0)
    th, tl = dm.exp_neg_dd(a)  # t = e**-|x|
    need_l1 = bool(brackets & {"G", "B", "Y"}) or with_cond
    need_sig = "K" in brackets or with_cond
    need_s = "Y" in brackets or with_cond
    if need_l1:
        lh, ll = dm.log1p_dd(th, tl)  # L = log1p(t) = sp(-|x|)
        lsp = dm._spl(lh)
    if need_sig:
        uh, ue = dm._fts(1.0, th)
        sbh, sbl = dm.recip_dd(uh, ue + tl)  # s(|x|) = 1/(1 + t)
        sbsp = dm._spl(sbh)
        tsp = dm._spl(th)
    if with_cond:
        ssh = _ddmul(th, tl, sbh, sbl, tsp, sbsp)[0]  # s(-|x|) = t/(1 + t)
    if need_s:
        sh, sl = dm._ts(a, lh)  # S = sp(|x|) = |x| + L
        sh, sl = dm._fts(sh, sl + ll)
    c1h, c1l = dm._ts(1.0, -y)  # 1 - y, exact
    if p is not None:
        pyh, pyl = dm._tp(p, y)  # p*y, exact
    else:
        pyh, pyl = y, np.zeros_like(y)
    redo = None
    if "G" in brackets:
        if p is not None:
            lgh, lgl = dm._dd_add_arr(c1h, c1l, pyh, pyl)  # l = 1 - y + p*y
        c0h = sel(xp, c1h, pyh)
        c0l = sel(xp, c1l, pyl)
        asp = dm._spl(a)
        r0h, r0l = _ddmul_fp(c0h, c0l, a, asp)
        if p is not None:
            t1h, t1l = _ddmul(lgh, lgl, lh, ll, None, lsp)
        else:
            t1h, t1l = lh, ll
        gh, gl = _ddadd(r0h, r0l, t1h, t1l)
        mag = np.abs(r0h)
        mag += np.abs(t1h)
        if with_cond:
            redo = mag > np.abs(gh) * _REDO_SPREAD
        mag *= eps_s
        out["G"] = ((gh, gl, 0), mag)
    if "B" in brackets:
        mcg = sel(xp, -1.0, p) if p is not None else sel(xp, -1.0, 1.0)
        r0h, r0l = dm._tp(mcg, a)  # exact
        if p is not None:
            pm1h, pm1l = dm._ts(p, -1.0)
            t1h, t1l = _ddmul(pm1h, pm1l, lh, ll, None, lsp)
            bh, bl = _ddadd(r0h, r0l, t1h, t1l)
            mag = np.abs(r0h)
            mag += np.abs(t1h)
            if with_cond:
                redo |= mag > np.abs(bh) * _REDO_SPREAD
            mag *= eps_s
            out["B"] = ((bh, bl, 0), mag)
        else:
            out["B"] = ((r0h, r0l, 0), np.zeros_like(r0h))
    if "Y" in brackets:
        nh = sel(xp, lh, sh)
        nl = sel(xp, ll, sl)
        yh, yl = dm._dd_mul_fp_arr(nh, nl, y)  # as _chunk: an exact zero for y = +0 stays +0
        dy = np.abs(yh)
        dy *= 2.0 * eps_s
        out["Y"] = ((yh, yl, 0), dy)
    if "K" in brackets:
        # K = (A - B t) s(|x|), (A, -B) = (1 - y, -p y) for x >= 0, (-p y, 1 - y) for x < 0
        npyh = -pyh
        npyl = -pyl
        cah = sel(xp, c1h, npyh)
        cal = sel(xp, c1l, npyl)
        cbh = sel(xp, npyh, c1h)
        cbl = sel(xp, npyl, c1l)
        mh, ml = _ddmul(cbh, cbl, th, tl, None, tsp)
        nuh, nul = _ddadd(cah, cal, mh, ml)
        kh, kl = _ddmul(nuh, nul, sbh, sbl, None, sbsp)
        mag = np.abs(cah)
        mag += np.abs(mh)
        mag *= sbh
        akh = np.abs(kh)
        if with_cond:
            redo |= mag > akh * _REDO_SPREAD
        mag += akh
        mag *= eps_s
        out["K"] = ((kh, kl, 0), mag)
    if w is not None and any(q[0] == "w" for q in want):
        wsp = dm._spl(w)
        aws = np.abs(w)
        aws *= _SLACK
    for q in want:
        if q[0] != "w":
            continue
        (qh, ql, _), d = out[q[1]]
        if w is None:
            out[q] = out[q[1]]
            continue
        if q == "wY":  # Y may be an exact zero: the same operation as _chunk for its sign
            hw, lw = dm._dd_mul_fp_arr(qh, ql, w)
        else:
            hw, lw = _ddmul_fp(qh, ql, w, wsp)
        dw = aws * d
        ahw = np.abs(hw)
        ahw *= _EPS_OP
        dw += ahw
        out[q] = ((hw, lw, 0), dw)
    if with_cond:
        blocks = {
            "a": (a, 0),
            "y": (np.abs(y), 0),
            "c1": (np.abs(c1h), 0),
            "L1": (lh, 0),
            "S": (sh, 0),
            "sB": (sbh, 0),
            "sS": (ssh, 0),
            "xpos": xp,
            "py": (np.abs(pyh), 0),
        }
        if p is not None:
            blocks["p"] = (p, 0)
            blocks["l"] = (lgh, 0)
        else:
            blocks["l"] = (np.ones_like(a), 0)
        for b in ("G", "K", "B", "Y"):
            if b in out:
                blocks[b] = (out[b][0][0], 0)
        out.update(_cond_numerators(blocks, w is not None, p is not None))
        if redo is not None and not redo.any():
            redo = None
    return out, redo


def _ddmul(ah, al, bh, bl, sa=None, sb=None):
    """dd * dd (DWTimesDW1, relative error <= 7u**2) with optional presplit leading words."""
    p, e = dm._tp(ah, bh, sa, sb)
    t = ah * bl
    u = al * bh
    t += u
    e += t
    return dm._fts(p, e)


def _ddmul_fp(ah, al, b, sb):
    """dd * float64 with ``b`` presplit; relative error <= 2u**2."""
    p, e = dm._tp(ah, b, None, sb)
    t = al * b
    e += t
    return dm._fts(p, e)


def _ddadd(ah, al, bh, bl):
    """Sloppy dd + dd: error <= 2u**2 (|a| + |b|), charged by the callers' bounds."""
    s, e = dm._ts(ah, bh)
    t = al + bl
    e += t
    return dm._fts(s, e)


# ---------------------------------------------------------------------------
# condition numbers (plain float64 on scaled mantissas: no overflow, no NaN)
# ---------------------------------------------------------------------------


def _sf_mul(*fs):
    m = np.abs(fs[0][0])
    e = fs[0][1]
    for f in fs[1:]:
        m *= np.abs(f[0])
        e = e + f[1]
    return m, e


def _sf_sum(fs, signed=False):
    """Sum of scaled floats (m, e); non-negative terms unless ``signed``."""
    ms = [f[0] if signed else np.abs(f[0]) for f in fs]
    if all(type(f[1]) is int and f[1] == 0 for f in fs):
        # unscaled terms (the fast kernel): the frame below would be 2**0 for every
        # non-zero term, so this is the same sum in the same order, without the frame
        tot = ms[0] + ms[1] if len(ms) > 1 else ms[0].copy()
        for m in ms[2:]:
            tot += m
        return tot, 0
    es = [f[1] + _NOEXP * (m == 0) for m, f in zip(ms, fs, strict=True)]
    emax = es[0]
    for e in es[1:]:
        emax = np.maximum(emax, e)
    tot = np.zeros_like(ms[0])
    for m, e in zip(ms, es, strict=True):
        tot = tot + np.ldexp(m, e - emax)
    return tot, emax


def _sf_ratio(n, d):
    """``n/d`` for scaled floats, with the cond conventions for d == 0."""
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        r = np.abs(n[0])
        r /= np.abs(d[0])
        if not (type(n[1]) is int and type(d[1]) is int and n[1] == d[1]):
            r = np.ldexp(r, np.clip(n[1] - d[1], -5000, 5000))
    z = d[0] == 0
    if z.any():
        r = np.where(z, np.where(n[0] == 0, 0.0, np.inf), r)
    return r


def _cond_numerators(b, has_w: bool, has_p: bool):
    """Numerators ``sum_z |z dq/dz|`` of each bracket's condition number, w-free.

    With ``A = sp(x)``, ``N = sp(-x)``, ``sX = s(x)``, ``sN = s(-x)``, ``D = sX*sN`` (the
    derivative of s), ``l = 1 - y + p*y`` and the brackets G, K, B, Y of ``_chunk``.
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
    xpos = b["xpos"]

    def sel(m, f1, f2):
        return dm.select(m, f1[0], f2[0]), dm.select(m, f1[1], f2[1])

    spn = sel(xpos, b["L1"], b["S"])
    spp = sel(xpos, b["S"], b["L1"])
    sx = sel(xpos, b["sB"], b["sS"])
    sn = sel(xpos, b["sS"], b["sB"])
    out = {}
    a, y = b["a"], b["y"]
    # The target enters through two coefficients, 1 − y and y; a good implementation
    # forms 1 − y exactly where it matters (Sterbenz: y in [1/2, 2]), so the target is
    # perturbed as those two coefficients, not as y alone: |y·∂q/∂y| would charge
    # y = 1 with the full cancellation of 1 − y and allow any answer at x = 40, y = 1.
    c1 = b["c1"]
    terms = [_sf_mul(a, b["K"]), _sf_mul(c1, spp), _sf_mul(b["py"], spn)]
    if has_p:
        terms.append(_sf_mul(b["p"], b["Y"]))
    out["num:gw"] = _sf_sum(terms)
    out["num:G"] = _sf_sum(terms + ([(np.abs(b["G"][0]), b["G"][1])] if has_w else []))
    d = (b["sB"][0] * b["sS"][0], b["sS"][1])
    pn = _sf_mul(b["p"], sn) if has_p else sn
    if has_p:
        pn = (np.sign(b["p"][0]) * pn[0], pn[1])
    sxpn = _sf_sum([sx, pn], signed=True)
    # ∂/∂x counts the target as the same two coefficients, 1 − y and p·y (each term's
    # own size, |(1 − y)·σ(x)| and |p·y·σ(−x)|): an exact hard label is not a perturbed
    # input. Counting y alone (|y·(σ(x) + p·σ(−x))|) allowed any answer wherever
    # |∂L/∂x| < ε/4 at y = 1, e.g. 0 for the exact −5.55e−17 at x = 37.43.
    kt = [_sf_mul(a, b["l"], d), _sf_mul(c1, sx), _sf_mul(b["py"], sn)]
    if has_w:
        kt.append((np.abs(b["K"][0]), b["K"][1]))
    if has_p:
        kt.append(_sf_mul(b["py"], sn))
    out["num:K"] = _sf_sum(kt)
    bt = [_sf_mul(a, sxpn)]
    if has_w:
        bt.append((np.abs(b["B"][0]), b["B"][1]))
    if has_p:
        bt.append(_sf_mul(b["p"], spn))
    out["num:B"] = _sf_sum(bt)
    if "Y" in b:
        yv = (np.abs(b["Y"][0]), b["Y"][1])
        yt = [_sf_mul(a, y, sn), yv] + ([yv] if has_w else [])
        out["num:Y"] = _sf_sum(yt)
    else:  # Y = y*N; only its ratio is needed, use y*N directly
        yv = _sf_mul(y, spn)
        out["num:Y"] = _sf_sum([_sf_mul(a, y, sn), yv] + ([yv] if has_w else []))
    return out


# ===========================================================================
# the exact slow path (fractions + decimal), independent of the dd machinery
# ===========================================================================


def _slow_decompose(q: str, x: float, y: float, w: float, p: float, tz: bool, div: int):
    """Exact ``(R0, R1, kind)`` with bracket/quantity ``q`` = ``R0 + R1*F_kind(|x|)``.

    ``kind`` is ``"L"`` (``F = log1p(e**-|x|)``), ``"s"`` (``F = e**-|x|/(1 + e**-|x|)``) or
    None (``R1 == 0`` or F rational). ``q`` is one of G K B Y, prefixed by ``w`` when the
    weight multiplies it.
    """
    X, Y, P = Fraction(x), Fraction(y), Fraction(p)
    a = abs(X)
    pos = x >= 0
    one_y = 1 - Y
    py = P * Y
    lc = one_y + py
    b = q[-1]
    if b == "G":
        r0, r1, kind = (one_y if pos else py) * a, lc, "L"
    elif b == "B":
        r0, r1, kind = (-a if pos else P * a), P - 1, "L"
    elif b == "Y":
        r0, r1, kind = (Fraction(0) if pos else Y * a), Y, "L"
    else:
        r0, r1, kind = (one_y if pos else -py), (-lc if pos else lc), "s"
    if q[0] == "w":
        W = Fraction(w)
        r0, r1 = r0 * W, r1 * W
    if div != 1:
        r0, r1 = r0 / div, r1 / div
    if tz:
        r1 = Fraction(0)
    if kind == "s" and x == 0:
        r0, r1 = r0 + r1 / 2, Fraction(0)
    if r1 == 0:
        kind = None
    return r0, r1, kind, abs(x)


def _slow_f(kind: str, a: float, prec: int) -> tuple[Fraction, Fraction]:
    """An enclosing interval of ``F_kind(a)`` (``a <= _SLOW_HUGE``), ~``prec`` digits."""
    with localcontext() as ctx:
        ctx.prec = prec + 40
        ctx.Emin = -(10**7)
        ctx.Emax = 10**7
        t = (-Decimal(a)).exp()
        if kind == "L":
            if t < Decimal("1e-30"):
                v = t
                term = t
                n = 1
                tol = t.scaleb(-(prec + 20))
                while abs(term) > tol:
                    n += 1
                    term = -term * t * (n - 1) / n
                    v += term
            else:
                v = (1 + t).ln()
        else:
            v = t / (1 + t)
    f = Fraction(v)
    err = f / 10**prec
    return f - err, f + err


def _round_frac(v: Fraction, s: int = 0) -> float:
    """The float64 nearest to ``v + s*eta`` (``eta`` a positive infinitesimal), ties to even.

    ``s`` breaks exact ties and gives an exact zero its sign. Integer arithmetic on the
    scaled value, so subnormals and overflow (to +-inf) are exact too.
    """
    if v == 0:
        return math.copysign(0.0, s) if s else 0.0
    neg = v < 0
    m = -v if neg else v
    smag = -s if neg else s
    e = m.numerator.bit_length() - m.denominator.bit_length()
    if m < Fraction(2) ** e:
        e -= 1
    q = max(e, -1022) - 52
    scaled = m / Fraction(2) ** q
    n0 = scaled.numerator // scaled.denominator
    frac = scaled - n0
    half = Fraction(1, 2)
    up = frac > half or (frac == half and (smag > 0 or (smag == 0 and n0 % 2 == 1)))
    n = n0 + 1 if up else n0
    r = math.inf if n * Fraction(2) ** q >= Fraction(2) ** 1024 else math.ldexp(float(n), q)
    return -r if neg else r


def _slow_round(parts: list[tuple[Fraction, Fraction, str | None, float]], want_sign=False):
    """Correctly round ``sum(R0 + R1*F)`` over ``parts``; also its exact sign (-1, 0, 1).

    ``F`` terms with equal ``(kind, |x|)`` are merged first, so exact cancellation between
    identical elements is seen exactly. Terms with ``|x| > _SLOW_HUGE`` are below
    ``2**-8000`` times their coefficient -- under the granularity of any sum of products
    of four float64 numbers (2**-4296) -- so they only break ties and settle signs: their
    sign is that of ``sum R1_i e**-(a_i - a_min)`` (leading order, evaluated in decimal).
    Precision doubles until the rounding (and the sign, when asked or when the result
    rounds to zero) is decided.
    """
    r0 = Fraction(0)
    groups: dict[tuple[str, float], Fraction] = {}
    for a0, a1, kind, a in parts:
        r0 += a0
        if kind is not None:
            key = (kind, a)
            groups[key] = groups.get(key, Fraction(0)) + a1
    finite = [(kd, a, c) for (kd, a), c in groups.items() if c != 0 and a <= _SLOW_HUGE]
    huge: dict[float, Fraction] = {}
    for (_, a), c in groups.items():
        if c != 0 and a > _SLOW_HUGE:
            huge[a] = huge.get(a, Fraction(0)) + c
    huge = {a: c for a, c in huge.items() if c != 0}
    prec = 40
    while prec <= 10000:
        lo = hi = r0
        for kd, a, c in finite:
            f_lo, f_hi = _slow_f(kd, a, prec)
            if c > 0:
                lo += c * f_lo
                hi += c * f_hi
            else:
                lo += c * f_hi
                hi += c * f_lo
        s: int | None = 0
        if huge:
            amin = min(huge)
            with localcontext() as ctx:
                ctx.prec = prec + 10
                ctx.Emin = -(10**7)
                tot = Decimal(0)
                mag = Decimal(0)
                for a, c in huge.items():
                    term = Decimal(c.numerator) / Decimal(c.denominator) * (
                        -(Decimal(a) - Decimal(amin))
                    ).exp()
                    tot += term
                    mag += abs(term)
            bound = Fraction(mag) / 10 ** (prec - 2)
            s = 1 if Fraction(tot) > bound else (-1 if Fraction(tot) < -bound else None)
        prec *= 2
        if s is None:
            continue
        r_lo = _round_frac(lo, s)
        r_hi = _round_frac(hi, s)
        if r_lo != r_hi:
            continue
        if lo == hi:
            sign = (lo > 0) - (lo < 0) if lo != 0 else s
        elif lo > 0:
            sign = 1
        elif hi < 0:
            sign = -1
        elif want_sign or r_lo == 0:
            continue
        else:
            sign = None
        if r_lo == 0:
            r_lo = math.copysign(0.0, sign) if sign else 0.0
        return r_lo, sign
    raise RuntimeError("reference: exact evaluation did not converge")  # pragma: no cover


# ===========================================================================
# the driver
# ===========================================================================

_OUTPUTS = {
    # output name: (argument, key of the scaled-dd quantity in _chunk's result)
    "value": (None, "wG"),
    "grad.input": ("input", "wK"),
    "grad.target": ("target", "wB"),
    "grad.weight": ("weight", "G"),
    "grad.pos_weight": ("pos_weight", "wY"),
}
# numerator key of each quantity's condition number (see _cond_numerators)
_NUMKEY = {"wG": "num:G", "G": "num:gw", "wK": "num:K", "wB": "num:B", "wY": "num:Y"}


@dataclass
class _Plan:
    """How one output is produced: elementwise, summed over everything, or per group."""

    name: str
    key: str
    mode: str  # "elem" | "full" | "group"
    div: int
    out_shape: tuple[int, ...]
    target_shape: tuple[int, ...] = ()
    kcols: int = 1
    val: np.ndarray | None = None
    cond: np.ndarray | None = None
    unsettled: list = None  # type: ignore[assignment]
    partials: list = None  # type: ignore[assignment]
    terms: dict = None  # type: ignore[assignment]


def _evaluate(input, target, weight, pos_weight, reduction, want_value, grad_names, with_cond):
    x0, y0, w0, p0 = _prepare(input, target, weight, pos_weight, reduction)
    shape = x0.shape
    n = x0.size
    present = {
        "input": True, "target": True, "weight": w0 is not None, "pos_weight": p0 is not None
    }
    names = (["value"] if want_value else []) + [
        "grad." + g for g in GRAD_NAMES if g in grad_names and present[g]
    ]
    arg_shapes = {"input": shape, "target": shape}
    if w0 is not None:
        arg_shapes["weight"] = w0.shape
    if p0 is not None:
        arg_shapes["pos_weight"] = p0.shape
    if n == 0:
        return _empty(names, shape, arg_shapes, reduction)
    if n >= 1 << 16:
        _tune_malloc()

    x = x0.reshape(-1)
    y = y0.reshape(-1)
    w = np.ascontiguousarray(np.broadcast_to(w0, shape)).reshape(-1) if w0 is not None else None
    p = np.ascontiguousarray(np.broadcast_to(p0, shape)).reshape(-1) if p0 is not None else None

    # --- special elements: classify, sanitise, decide their results up front --------
    isnan = np.isnan(x) | np.isnan(y)
    if w is not None:
        isnan |= np.isnan(w)
    if p is not None:
        isnan |= np.isnan(p)
    xinf = np.isinf(x)
    special = isnan | xinf | np.isinf(y)
    if w is not None:
        special |= np.isinf(w)
    if p is not None:
        special |= np.isinf(p)
    any_special = bool(special.any())
    tz = None
    xs, ys, ws, ps = x, y, w, p
    if any_special:
        xs = np.where(isnan, 0.0, np.where(xinf, np.sign(x), x))
        ys = np.where(isnan | np.isinf(y), 0.0, y)
        ws = np.where(isnan | np.isinf(w), 1.0, w) if w is not None else None
        ps = np.where(isnan | np.isinf(p), 0.0, p) if p is not None else None
        tz = xinf & ~isnan
    keys = {_OUTPUTS[nm][1] for nm in names}
    need = {_OUTPUTS[nm][1] for nm in names}
    if with_cond:
        need |= {_NUMKEY[k] for k in need}
    ck = _cache_key(x0, y0, w0, p0, need, with_cond) if n <= _CACHE_MAX_N else None
    hit = _cache_get(ck) if ck is not None else None
    kinds: dict[str, np.ndarray] = {}
    if hit is not None:
        kinds, chunks = hit
    elif any_special:
        idx = np.flatnonzero(special)
        sub = _special_kinds(
            keys, x[idx], y[idx], None if w is None else w[idx], None if p is None else p[idx],
            xs[idx], ys[idx], None if ps is None else ps[idx],
        )
        for key, kd in sub.items():
            full = np.zeros(n, np.int8)
            full[idx] = kd
            kinds[key] = full

    # --- plan the outputs ----------------------------------------------------------
    plans = []
    for nm in names:
        arg, key = _OUTPUTS[nm]
        div = n if reduction == "mean" else 1
        if arg in ("input", "target") or (nm == "value" and reduction == "none"):
            pl = _Plan(nm, key, "elem", n if (reduction == "mean" and arg) else 1, shape)
        elif nm == "value":
            pl = _Plan(nm, key, "full", div, ())
        else:
            tshape = arg_shapes[arg]
            padded = (1,) * (len(shape) - len(tshape)) + tuple(tshape)
            kcols = _broadcast_count(shape, padded)
            mode = "elem" if kcols == 1 else "group"
            pl = _Plan(nm, key, mode, div, tuple(tshape), tuple(tshape), kcols)
        if pl.mode == "elem":
            pl.val = np.empty(n)
            pl.cond = np.zeros(n) if with_cond else None
            pl.unsettled = []
        elif pl.mode == "full":
            pl.partials = []
        else:
            pl.terms = {"h": np.empty(n), "l": np.empty(n), "e": np.empty(n, np.int32),
                        "d": np.empty(n)}
            if with_cond:
                pl.terms["nm"] = np.empty(n)
                pl.terms["ne"] = np.empty(n, np.int32)
        plans.append(pl)

    # --- the chunk loop ------------------------------------------------------------
    if hit is None:
        chunks = []
    for ci, s0 in enumerate(range(0, n, _CHUNK)):
        sl = slice(s0, min(n, s0 + _CHUNK))
        wc = None if w is None else w[sl]
        if hit is not None:
            r, allfast = chunks[ci]
        else:
            fm = _fast_mask(x[sl], y[sl], wc, None if p is None else p[sl])
            r, allfast = _run_chunk(
                (xs[sl], ys[sl], None if ws is None else ws[sl], None if ps is None else ps[sl]),
                None if tz is None else tz[sl], fm, keys, with_cond, need)
            if ck is not None:
                chunks.append(({k: r[k] for k in need}, allfast))
        spc = special[sl] if any_special else None
        for pl in plans:
            (h, lo, e), d = r[pl.key]
            # an all-fast chunk has no special element (NaN and inf are outside the domain)
            kd = kinds[pl.key][sl] if pl.key in kinds and not allfast else None
            if kd is not None:
                zero = kd != 0
                h = np.where(zero, 0.0, h)
                lo = np.where(zero, 0.0, lo)
                d = np.where(zero, 0.0, d)
            num = None
            if with_cond:
                nm_, ne_ = r[_NUMKEY[pl.key]]
                if pl.key[0] == "w" and wc is not None:
                    if allfast:  # unscaled numerators: times |w| itself, same bits
                        nm_ = nm_ * np.abs(wc)
                    else:
                        mw, ew = _frexp(wc)
                        with np.errstate(invalid="ignore"):  # inf·0 where an argument is
                            nm_ = nm_ * np.abs(mw)           # special: same bits, no warning
                        ne_ = ne_ + ew
                if spc is not None:
                    nm_ = np.where(spc, 0.0, nm_)
                num = (nm_, ne_)
            if pl.mode == "elem" and allfast:
                # normal results in the 2**0 frame: round_settle's main case, leaner
                h0 = h
                if pl.div != 1:
                    h, lo = dm._dd_div_fp_arr(h, lo, float(pl.div))
                    d = d * (_SLACK / pl.div)
                    t = np.abs(h)
                    t *= _EPS_OP
                    d += t
                pl.val[sl] = h
                settled = _settled_normal(h, lo, d)
                if not settled.all():
                    pl.unsettled.extend((np.flatnonzero(~settled) + s0).tolist())
                if with_cond:
                    pl.cond[sl] = _sf_ratio(num, (h0, e))
            elif pl.mode == "elem":
                h0 = h
                if pl.div != 1:
                    h, lo = dm.dd_div_fp(h, lo, float(pl.div))
                    d = d / pl.div * _SLACK + _EPS_OP * np.abs(h) * (lo != 0)
                v, settled = dm.round_settle(h, lo, e, d, normalized=True)
                if kd is not None:
                    settled = settled | (kd != 0)
                    v = np.where(kd != 0, _KIND_VALUES[kd], v)
                pl.val[sl] = v
                bad = np.flatnonzero(~settled)
                if bad.size:
                    pl.unsettled.extend((bad + s0).tolist())
                if with_cond:
                    c = _sf_ratio(num, (h0, e))
                    c = np.where(np.isfinite(v), c, 0.0)
                    if spc is not None:
                        c = np.where(spc, 0.0, c)
                    pl.cond[sl] = c
            elif pl.mode == "full":
                pl.partials.append(_align_sum(h[None], lo[None], _row(e), d[None],
                                              None if num is None else (num[0][None], _row(num[1])),
                                              None if kd is None else kd[None]))
            else:
                t = pl.terms
                t["h"][sl], t["l"][sl], t["e"][sl], t["d"][sl] = h, lo, e, d
                if with_cond:
                    t["nm"][sl], t["ne"][sl] = num

    if ck is not None and hit is None:
        _cache_put(ck, (kinds, chunks))

    # --- finish every output ---------------------------------------------------------
    slow_args = (xs, ys, ws, ps, tz)
    results: dict[str, Quantity] = {}
    for pl in plans:
        kd = kinds.get(pl.key)
        if pl.mode == "elem":
            for i in pl.unsettled:
                pl.val[i] = _slow_sum(pl.key, [i], slow_args, pl.div)
            osh = pl.out_shape
            if with_cond:
                cond, spread, nterms = pl.cond.reshape(osh), np.ones(osh), np.ones(osh, np.int64)
            else:  # loss()/grads() only read the value: no need to fill 3 more arrays
                cond = spread = np.broadcast_to(np.float64(0.0), osh)
                nterms = np.broadcast_to(np.int64(1), osh)
            results[pl.name] = Quantity(pl.val.reshape(osh), cond, spread, nterms)
            continue
        if pl.mode == "full":
            parts = pl.partials
            cat = [np.concatenate([q[i] for q in parts])[None] for i in range(4)]
            extra = None
            if with_cond:
                extra = (np.concatenate([q[6] for q in parts])[None],
                         np.concatenate([q[2] for q in parts])[None])
            fl = np.concatenate([q[4] for q in parts])[None]
            res = _align_sum(cat[0], cat[1], cat[2], cat[3], extra, None,
                             absum=(np.concatenate([q[5] for q in parts])[None], cat[2]),
                             flags_in=fl)
            index = None
            mrows, kcols = 1, n
        else:
            t = pl.terms
            nd = len(shape)
            padded = (1,) * (nd - len(pl.target_shape)) + pl.target_shape
            kept = [i for i in range(nd) if padded[i] != 1]
            perm = kept + [i for i in range(nd) if padded[i] == 1]
            mrows = int(np.prod([shape[i] for i in kept], dtype=np.int64))
            kcols = pl.kcols

            def rows(v, perm=perm, mrows=mrows, kcols=kcols):
                return np.transpose(v.reshape(shape), perm).reshape(mrows, kcols)

            extra = (rows(t["nm"]), rows(t["ne"])) if with_cond else None
            res = _align_sum(rows(t["h"]), rows(t["l"]), rows(t["e"]), rows(t["d"]), extra,
                             None if kd is None else rows(kd))
            index = rows(np.arange(n))
        sh, sl_, emax, delta, flags, absum, ntot = res
        if pl.div != 1:
            sh, sl_ = dm.dd_div_fp(sh, sl_, float(pl.div))
            delta = delta / pl.div * _SLACK + _EPS_OP * np.abs(sh)
        val, settled = dm.round_settle(sh, sl_, emax, delta)
        settled = settled | (flags != 0)
        for rr in np.flatnonzero(~settled):
            members = np.arange(n) if index is None else index[rr]
            if kd is not None:
                members = members[kd[members] != 1]
            val[rr] = _slow_sum(pl.key, members.tolist(), slow_args, pl.div)
        val = np.where(flags != 0, _KIND_VALUES[flags], val)
        with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
            mag = np.abs(sh) * pl.div
            spread = np.where(sh != 0, absum / mag, np.where(absum == 0, 1.0, np.inf))
            cond = np.zeros(mrows)
            if with_cond:
                cond = np.where(sh != 0, ntot / mag, np.where(ntot == 0, 0.0, np.inf))
        fin = np.isfinite(val)
        cond = np.where(fin, cond, 0.0)
        spread = np.where(fin, spread, 1.0)
        osh = pl.out_shape
        results[pl.name] = Quantity(
            val.reshape(osh), cond.reshape(osh), spread.reshape(osh),
            np.full(osh, kcols, np.int64),
        )
    return results


_KIND_VALUES = np.array([0.0, 0.0, np.inf, -np.inf, np.nan])


def _row(e):
    """Exponents as one row for ``_align_sum`` (the fast kernel's are the int 0)."""
    return np.zeros((1, 1), np.int32) if np.ndim(e) == 0 else e[None]


_MANT_MASK = np.int64((1 << 52) - 1)


_EXP_BITS_MASK = np.int64(0x7FF << 52)
_MANT_BITS_MASK = np.int64((1 << 52) - 1)


def _settled_normal(h, lo, d):
    """``round_settle``'s test for normalised dd values whose leading word is normal.

    The same criterion bit for bit -- ``(|lo| + d) (1 + 2**-50)`` below half the gap
    under ``|h|`` (a quarter ulp at a power of two), or ``d == 0`` -- without its scaling
    and its subnormal and overflow branches, which the fast kernel's results (magnitudes
    between 2**-1000 and 2**1000, or exact zeros) cannot reach.
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


def _run_chunk(args, tzc, fm, keys, with_cond, need):
    """One chunk: the fast kernel where ``fm`` allows, ``_chunk`` elsewhere, interleaved.

    Returns the results and whether they all came from the fast kernel (unscaled, int 0
    exponents); mixed results carry int32 exponent arrays (0 for the fast elements).
    """
    m = fm.size
    nfast = int(np.count_nonzero(fm))
    if nfast == 0:
        return _chunk(*args, tzc, keys, with_cond), False
    if nfast == m:
        rf, redo = _chunk_fast(*args, keys, with_cond)
        if redo is None:
            return rf, True
        fi = np.arange(m)
    else:
        fi = np.flatnonzero(fm)
        rf, redo = _chunk_fast(*(v[fi] if v is not None else None for v in args), keys, with_cond)
    keep = slice(None)
    if redo is not None:
        keep = np.flatnonzero(~redo)
        fi = fi[keep]
    gi = np.flatnonzero(~fm) if redo is None else np.setdiff1d(np.arange(m), fi, assume_unique=True)
    rg = _chunk(*(v[gi] if v is not None else None for v in args),
                None if tzc is None else tzc[gi], keys, with_cond)
    out = {}
    for key in need:
        a, b = rf[key], rg[key]
        if key.startswith("num:"):
            v = np.empty(m)
            v[fi], v[gi] = a[0][keep], b[0]
            ex = np.zeros(m, np.int32)
            ex[gi] = b[1]
            out[key] = (v, ex)
            continue
        (hf, lf, _), df = a
        (hg, lg, eg), dg = b
        h = np.empty(m)
        lo = np.empty(m)
        d = np.empty(m)
        ex = np.zeros(m, np.int32)
        h[fi], h[gi] = hf[keep], hg
        lo[fi], lo[gi] = lf[keep], lg
        d[fi], d[gi] = df[keep], dg
        ex[gi] = eg
        out[key] = ((h, lo, ex), d)
    return out, False


def _align_sum(h, lo, e, d, num, kd, absum=None, flags_in=None):
    """Sum each row of scaled-dd terms exactly enough, with a rigorous error bound.

    Terms are aligned to the row's largest exponent (those more than ~1000 binades
    below lose bits; the loss is charged to the bound), then summed by ``dd_sum``.
    Returns ``(sum_hi, sum_lo, exponent, bound, flags, sum|t|, sum(cond numerators))``,
    the last two in plain (unscaled) units relative to the sum's frame ``2**exponent``,
    except that ``sum|t|`` and the numerators are floats in that same frame. ``flags``:
    0 finite, 2 +inf, 3 -inf, 4 NaN (from special-element kinds).

    ``absum`` (pairs ``(sum|t|, exponent)`` of already-summed partials) and ``flags_in``
    let partial sums from chunks be combined with the same code.
    """
    ex = e + np.frexp(h)[1] + _NOEXP * (h == 0)
    emax = ex.max(axis=1)
    if absum is not None:
        aex = absum[1] + np.frexp(absum[0])[1] + _NOEXP * (absum[0] == 0)
        emax = np.maximum(emax, aex.max(axis=1))
    if num is not None:
        nex = num[1] + np.frexp(num[0])[1] + _NOEXP * (num[0] == 0)
        emax = np.maximum(emax, nex.max(axis=1))
    emax = np.where(emax < _NOEXP // 2, 0, emax).astype(np.int32)
    shift = (e - emax[:, None]).clip(-5000, 5000)
    hs = np.ldexp(h, shift)
    ls = np.ldexp(lo, shift)
    ds = np.ldexp(d, shift) * _SLACK + (shift < -960) * 2.0**-1070
    if absum is None:
        tot_abs = np.abs(hs).sum(axis=1) + np.abs(ls).sum(axis=1)
    else:
        ash = (absum[1] - emax[:, None]).clip(-5000, 5000)
        tot_abs = np.ldexp(absum[0], ash).sum(axis=1)
    sh, sl = dm.dd_sum(hs, ls, axis=1)
    kcols = h.shape[1]
    delta = ds.sum(axis=1) * _SLACK + dm.dd_sum_error_factor(kcols) * tot_abs * _SLACK
    ntot = np.zeros(h.shape[0])
    if num is not None:
        nsh = (num[1] - emax[:, None]).clip(-5000, 5000)
        ntot = np.ldexp(num[0], nsh).sum(axis=1)
    flags = np.zeros(h.shape[0], np.int8)
    if kd is not None or flags_in is not None:
        k2 = kd if kd is not None else flags_in
        has_nan = (k2 == 4).any(axis=1)
        has_pinf = (k2 == 2).any(axis=1)
        has_ninf = (k2 == 3).any(axis=1)
        flags = np.where(has_nan | (has_pinf & has_ninf), 4,
                         np.where(has_pinf, 2, np.where(has_ninf, 3, 0))).astype(np.int8)
    return sh, sl, emax, delta, flags, tot_abs, ntot


def _empty(names, shape, arg_shapes, reduction):
    res = {}
    for nm in names:
        if nm == "value":
            if reduction == "none":
                v = np.zeros(shape)
            else:
                v = np.array(0.0 if reduction == "sum" else np.nan)
            terms = np.ones(v.shape, np.int64) if reduction == "none" else np.zeros((), np.int64)
        else:
            arg = nm[len("grad.") :]
            v = np.zeros(arg_shapes[arg])
            if arg in ("input", "target"):
                terms = np.ones(v.shape, np.int64)
            else:
                padded = (1,) * (len(shape) - v.ndim) + v.shape
                k = _broadcast_count(shape, padded)
                terms = np.full(v.shape, k, np.int64)
        res[nm] = Quantity(v, np.zeros(v.shape), np.ones(v.shape), terms)
    return res


def _broadcast_count(shape, padded) -> int:
    """How many input elements feed each element of an argument of (padded) shape."""
    return int(np.prod([s for s, q in zip(shape, padded, strict=True) if q == 1], dtype=np.int64))


#: calls with at most this many elements keep their elementwise terms in a small cache
_CACHE_MAX_N = 1 << 17
_CACHE_MAX_BYTES = 64 << 20
_CACHE_MAX_ENTRIES = 256
_cache: OrderedDict[bytes, tuple[dict, list]] = OrderedDict()
_cache_bytes = [0]
_cache_lock = threading.Lock()


def _cache_key(x0, y0, w0, p0, need, with_cond) -> bytes:
    """Digest of the arguments' float64 contents and shapes and of what is computed.

    A report evaluates the same arguments for each reduction ("none", "mean", "sum"),
    and often for several dtypes whose arrays come out identical: the elementwise terms
    (everything before the reduction) are the same, so they are kept (``_cache_get``).
    """
    h = hashlib.blake2b(digest_size=20)
    shapes = [None if v is None else v.shape for v in (x0, y0, w0, p0)]
    h.update(repr((sorted(need), with_cond, shapes)).encode())
    for v in (x0, y0, w0, p0):
        if v is not None:
            h.update(np.ascontiguousarray(v, dtype=np.float64).view(np.uint8))
    return h.digest()


def _cache_get(key):
    with _cache_lock:
        hit = _cache.get(key)
        if hit is not None:
            _cache.move_to_end(key)
        return hit


def _cache_put(key, value) -> None:
    """Keep ``(kinds, per-chunk terms)``, read-only, least recently used first out."""
    size = 0
    for arr in _iter_arrays(value):
        if arr.flags.writeable:
            arr.flags.writeable = False
        size += arr.nbytes
    if size > _CACHE_MAX_BYTES // 2:
        return
    with _cache_lock:
        if key in _cache:
            return
        _cache[key] = value
        _cache_bytes[0] += size
        while _cache and (_cache_bytes[0] > _CACHE_MAX_BYTES
                          or len(_cache) > _CACHE_MAX_ENTRIES):
            _, old = _cache.popitem(last=False)
            _cache_bytes[0] -= sum(a.nbytes for a in _iter_arrays(old))


def _iter_arrays(obj):
    if isinstance(obj, np.ndarray):
        yield obj
    elif isinstance(obj, (tuple, list)):
        for v in obj:
            yield from _iter_arrays(v)
    elif isinstance(obj, dict):
        for v in obj.values():
            yield from _iter_arrays(v)


_MALLOC_TUNED = False


def _tune_malloc() -> None:
    """Keep glibc from returning freed memory to the OS between numpy temporaries.

    Every dd operation allocates fresh arrays; with glibc's default thresholds the
    heap top is trimmed and re-faulted for each chunk, and page faults then cost more
    than the arithmetic (measured: ~2800 minor faults and a 4x slowdown per 32k-element
    chunk). Raising the mmap and trim thresholds once per process removes that. The
    only effect on anything else is that up to 256 MiB of freed heap stays mapped.
    Set ``BCE_HARNESS_MALLOPT=0`` to leave malloc alone.
    """
    global _MALLOC_TUNED
    if _MALLOC_TUNED:
        return
    _MALLOC_TUNED = True
    import os
    import sys

    if os.environ.get("BCE_HARNESS_MALLOPT", "1") == "0" or not sys.platform.startswith("linux"):
        return
    try:
        import ctypes

        libc = ctypes.CDLL("libc.so.6")
        libc.mallopt(-3, 32 * 1024 * 1024)  # M_MMAP_THRESHOLD
        libc.mallopt(-1, 256 * 1024 * 1024)  # M_TRIM_THRESHOLD
    except (OSError, AttributeError):  # not glibc
        pass


def _slow_sum(key, members, slow_args, div, fvals=None):
    """Exact evaluation of the sum of ``key`` over element indices (one element or many).

    Level 2 of Ziv's strategy, after the dd bound could not settle the rounding. Each
    term is ``R0 + R1*F`` (``_dy_decompose``): ``R0`` and ``R1`` are exact dyadic rationals
    (sums and products of the float64 arguments), summed exactly in integer arithmetic,
    identical elements merged first; ``F`` (``log1p(e**-a)`` or ``e**-a/(1 + e**-a)``) is
    taken from its dd value with a rigorous ``_EPS_F`` bound per distinct ``(kind, a)``,
    and beyond ``EXP_CLAMP`` as a positive infinitesimal of known sign (it only breaks
    ties). Only the bound on the ``F`` parts is left, so cancelling sums such as
    ``1e16 + sp(1) - 1e16`` are decided here. ``fvals`` may hold precomputed ``F`` values
    (``_f_values``). Where even that cannot decide -- a value within ``2**-88`` of the
    ``F`` parts of a rounding boundary -- level 3 evaluates the same merged terms with
    ``fractions``/``decimal`` (``_slow_round``) at increasing precision.
    """
    r0, groups = _dy_terms(key, members, slow_args)
    fv = fvals if fvals is not None else _f_values(
        [kg for kg, c in groups.items() if c[0] and kg[1] <= dm.EXP_CLAMP])
    v = _dy_round(r0, groups, fv, div)
    if v is not None:
        return v
    parts = [(_dy_frac(r0) / div, Fraction(0), None, 0.0)]
    parts += [(Fraction(0), _dy_frac(c) / div, kd, a) for (kd, a), c in groups.items()]
    return _slow_round(parts)[0]


# --- dyadic rationals (m, e) = m * 2**e with Python ints: exact, no gcd, no range limit ----


def _dy(f: float) -> tuple[int, int]:
    n, d = f.as_integer_ratio()
    return n, 1 - d.bit_length()


def _dy_add(a: tuple[int, int], b: tuple[int, int]) -> tuple[int, int]:
    if not a[0]:
        return b
    if not b[0]:
        return a
    if a[1] <= b[1]:
        return a[0] + (b[0] << (b[1] - a[1])), a[1]
    return b[0] + (a[0] << (a[1] - b[1])), b[1]


def _dy_mul(a: tuple[int, int], b: tuple[int, int]) -> tuple[int, int]:
    return a[0] * b[0], a[1] + b[1]


def _dy_frac(a: tuple[int, int]) -> Fraction:
    return Fraction(a[0] << a[1]) if a[1] >= 0 else Fraction(a[0], 1 << -a[1])


_DY0 = (0, 0)
_DY1 = (1, 0)


def _dy_decompose(q: str, x: float, y: float, w: float, p: float, tz: bool):
    """``_slow_decompose`` (without the division) in dyadic arithmetic: ``(R0, R1, kind, |x|)``."""
    a = _dy(abs(x))
    Y = _dy(y)
    P = _dy(p)
    pos = x >= 0
    one_y = _dy_add(_DY1, (-Y[0], Y[1]))
    py = _dy_mul(P, Y)
    b = q[-1]
    if b == "G":
        r0, r1, kind = _dy_mul(one_y if pos else py, a), _dy_add(one_y, py), "L"
    elif b == "B":
        r0, r1, kind = ((-a[0], a[1]) if pos else _dy_mul(P, a)), _dy_add(P, (-1, 0)), "L"
    elif b == "Y":
        r0, r1, kind = (_DY0 if pos else _dy_mul(Y, a)), Y, "L"
    else:
        lc = _dy_add(one_y, py)
        r0 = one_y if pos else (-py[0], py[1])
        r1, kind = ((-lc[0], lc[1]) if pos else lc), "s"
    if q[0] == "w":
        W = _dy(w)
        r0, r1 = _dy_mul(r0, W), _dy_mul(r1, W)
    if tz:
        r1 = _DY0
    if kind == "s" and x == 0:
        r0, r1 = _dy_add(r0, (r1[0], r1[1] - 1)), _DY0
    return r0, r1, (kind if r1[0] else None), abs(x)


def _dy_terms(key, members, slow_args):
    """Exact ``sum R0`` and ``{(kind, a): sum R1}`` over the members (identical rows merged)."""
    xs, ys, ws, ps, tz = slow_args
    if len(members) <= 4:
        rows = [(float(xs[i]), float(ys[i]), 1.0 if ws is None else float(ws[i]),
                 1.0 if ps is None else float(ps[i]), float(tz is not None and tz[i]))
                for i in members]
        counts = [1] * len(rows)
    else:
        idx = np.asarray(members, dtype=np.int64).reshape(-1)
        cols = [xs[idx], ys[idx], np.ones(idx.size) if ws is None else ws[idx],
                np.ones(idx.size) if ps is None else ps[idx],
                np.zeros(idx.size) if tz is None else tz[idx].astype(np.float64)]
        rows = np.stack(cols, axis=1)
        # merge equal rows (as bit patterns, so -0.0 and 0.0 stay apart: both are exact)
        bits = rows.view(np.int64)
        order = np.lexsort(bits.T[::-1])
        bits = bits[order]
        first = np.ones(idx.size, dtype=bool)
        first[1:] = (bits[1:] != bits[:-1]).any(axis=1)
        starts = np.flatnonzero(first)
        counts = np.diff(np.append(starts, idx.size)).tolist()
        rows = bits[starts].view(np.float64).tolist()
    r0 = _DY0
    groups: dict[tuple[str, float], tuple[int, int]] = {}
    for (x, y, w, p, t), cnt in zip(rows, counts, strict=True):
        d0, d1, kind, a = _dy_decompose(key, x, y, w, p, t != 0.0)
        r0 = _dy_add(r0, (d0[0] * cnt, d0[1]))
        if kind is not None:
            kg = (kind, a)
            groups[kg] = _dy_add(groups.get(kg, _DY0), (d1[0] * cnt, d1[1]))
    return r0, groups


def _f_values(pairs) -> dict[tuple[str, float], tuple[int, int]]:
    """dd values of ``F_kind(a)`` (``a <= EXP_CLAMP``) as exact dyadics, all pairs at once.

    The same algorithms as ``_chunk`` (``exp_scaled``, ``log1p_scaled``, ``t * 1/(1 + t)``):
    relative error below ``2**-95``, charged as ``_EPS_F``.
    """
    out: dict[tuple[str, float], tuple[int, int]] = {}
    pairs = list(dict.fromkeys(pairs))
    if not pairs:
        return out
    a = np.array([p[1] for p in pairs])
    k, th, tl = dm.exp_scaled(-a)
    isl = np.array([p[0] == "L" for p in pairs])
    fh = np.zeros(a.size)
    fl = np.zeros(a.size)
    if isl.any():
        lh, ll = dm.log1p_scaled(k[isl], th[isl], tl[isl])
        fh[isl], fl[isl] = lh, ll
    if not isl.all():
        s = ~isl
        uh, ul = dm.dd_add_fp(np.ldexp(th[s], k[s]), np.ldexp(tl[s], k[s]), 1.0)
        bh, bl = dm.dd_div(np.ones_like(uh), np.zeros_like(uh), uh, ul)
        fh[s], fl[s] = dm.dd_mul(th[s], tl[s], bh, bl)
    for pr, h, lo, kk in zip(pairs, fh.tolist(), fl.tolist(), k.tolist(), strict=True):
        v = _dy_add(_dy(h), _dy(lo))
        out[pr] = (v[0], v[1] + kk)
    return out


#: relative error charged to the dd value of each F in level 2 (the algorithms stay below 2**-95)
_EPS_F_BITS = 88
#: F(a) <= e**-a < 2**-4328 for a > EXP_CLAMP = 3000 (e**-3000 = 2**-4328.08...)
_F_CLAMP_BITS = -4328


def _dy_round(r0, groups, fv, div) -> float | None:
    """Round ``(r0 + sum C*F)/div`` if the ``F`` bounds allow it, else None (see _slow_sum)."""
    e = r0
    mag = _DY0
    inf_mag = _DY0
    inf_sign = 0  # bit 1: a positive infinitesimal part, bit 2: a negative one
    for kg, c in groups.items():
        if not c[0]:
            continue
        if kg[1] > dm.EXP_CLAMP:
            inf_mag = _dy_add(inf_mag, (abs(c[0]), c[1] + _F_CLAMP_BITS))
            inf_sign |= 1 if c[0] > 0 else 2
            continue
        cf = _dy_mul(c, fv[kg])
        e = _dy_add(e, cf)
        mag = _dy_add(mag, (abs(cf[0]), cf[1]))
    # |C*F - C*F_dd| <= 2**-88 |C*F| <= 2**-88 (1 + 2**-87) |C*F_dd|
    width = (mag[0] * ((1 << 80) + 1), mag[1] - _EPS_F_BITS - 80)
    lo = _dy_add(e, (-width[0], width[1]))
    hi = _dy_add(e, width)
    if inf_sign & 2:
        lo = _dy_add(lo, (-inf_mag[0], inf_mag[1]))
    if inf_sign & 1:
        hi = _dy_add(hi, inf_mag)
    # an end is open where it is e itself and the infinitesimal part moves strictly away
    lo_open = not width[0] and inf_sign == 1
    hi_open = not width[0] and inf_sign == 2
    if not width[0] and not inf_sign:  # exact
        return _dy_round_ratio(e, div, 0)
    r_lo = _dy_round_ratio(lo, div, 1 if lo_open else -1)
    r_hi = _dy_round_ratio(hi, div, -1 if hi_open else 1)
    if r_lo != r_hi:
        return None
    if r_lo == 0:
        if lo[0] > 0 or (lo[0] == 0 and lo_open):
            return 0.0
        if hi[0] < 0 or (hi[0] == 0 and hi_open):
            return -0.0
        return None
    return r_lo


def _dy_round_ratio(v: tuple[int, int], div: int, s: int) -> float:
    """The float64 nearest to ``v/div + s*eta`` (``eta`` a positive infinitesimal), ties to even.

    Integer arithmetic throughout (as ``_round_frac``): subnormal results and overflow to
    +-inf are exact. ``s`` breaks exact ties and signs an exact zero.
    """
    m, e = v
    if m == 0:
        return math.copysign(0.0, s) if s else 0.0
    neg = m < 0
    if neg:
        m = -m
        s = -s
    # v/div = num / den with num, den positive integers
    if e >= 0:
        num, den = m << e, div
    else:
        num, den = m, div << -e
    # exponent E with 2**E <= num/den < 2**(E+1)
    ex = num.bit_length() - den.bit_length()
    if (num << -ex if ex < 0 else num) < (den << ex if ex > 0 else den):
        ex -= 1
    q = max(ex, -1022) - 52  # exponent of the unit in the last place
    if q >= 0:
        n0, rem = divmod(num, den << q)
        den_q = den << q
    else:
        n0, rem = divmod(num << -q, den)
        den_q = den
    twice = 2 * rem
    up = twice > den_q or (twice == den_q and (s > 0 or (s == 0 and n0 & 1)))
    n = n0 + 1 if up else n0
    r = math.inf if n.bit_length() + q > 1024 else math.ldexp(float(n), q)
    return -r if neg else r


# ---------------------------------------------------------------------------
# special values
# ---------------------------------------------------------------------------

# result kinds for overrides: 0 finite (from the sanitised run), 1 zero, 2 +inf, 3 -inf, 4 nan


def _product_kind(factors, has_inf):
    """Extended product of float factors (and an implicit +inf when ``has_inf``)."""
    n = factors[0].shape[0] if factors else has_inf.shape[0]
    zero = np.zeros(n, bool)
    inf = np.broadcast_to(has_inf, (n,)).copy()
    sign = np.ones(n)
    for f in factors:
        zero |= f == 0
        inf |= np.isinf(f)
        sign = sign * np.sign(f)
    return np.where(zero, 1, np.where(inf, np.where(sign > 0, 2, 3), 0)).astype(np.int8)


def _bracket_signs(xs, ys, ps, brackets):
    """Exact signs of w-free brackets at the sanitised (finite) arguments."""
    keys = set(brackets)
    r = _chunk(xs, ys, None, ps, None, keys, False)
    res = {}
    for b in brackets:
        (h, lo, _), d = r[b]
        h, lo = dm.two_sum(h, lo)
        known = (d == 0) | (np.abs(h) - np.abs(lo) > d * _SLACK)
        sg = np.sign(h)
        for i in np.flatnonzero(~known):
            parts = [_slow_decompose(b, xs[i], ys[i], 1.0,
                                     1.0 if ps is None else ps[i], False, 1)]
            sg[i] = _slow_round(parts, want_sign=True)[1]
        res[b] = sg
    return res


def _special_kinds(keys, x, y, w, p, xs, ys, ps):
    """Override kinds for each output key over the special elements (see module doc)."""
    m = x.shape[0]
    one = np.ones(m)
    wv = w if w is not None else one
    pv = p if p is not None else one
    nan = np.isnan(x) | np.isnan(y) | np.isnan(wv) | np.isnan(pv)
    xp = x == np.inf
    xn = x == -np.inf
    yinf = np.isinf(y)
    winf = np.isinf(wv)
    pinf = np.isinf(pv)
    f = np.zeros(m, bool)
    t = np.ones(m, bool)
    wl = [w] if w is not None else []
    pl = [p] if p is not None else []
    with np.errstate(invalid="ignore"):
        one_y = 1.0 - y
    xfin = ~(xp | xn) & ~nan
    signs = _bracket_signs(np.where(xfin, xs, 0.0), ys, ps, ("G", "K", "B"))
    # sign of s(x) + p s(-x) = s(x) (1 + p e**-x): only p < 0 can make it non-positive
    with np.errstate(divide="ignore", invalid="ignore"):
        sxpn = np.where(pv >= 0, 1.0, np.sign(xs - np.log(np.abs(pv))))
    sw, sy, sp = np.sign(wv), np.sign(y), np.sign(pv)

    def finish(sig_inf, s_bracket, w_mult):
        """Combine the bracket's infinite sign (0: finite) with the w factor."""
        if w_mult:
            kd = np.where(
                sig_inf != 0,
                np.where(wv == 0, 1, np.where(sw * sig_inf > 0, 2, 3)),
                np.where(winf, np.where(s_bracket == 0, 1, np.where(sw * s_bracket > 0, 2, 3)), 0),
            )
        else:
            kd = np.where(sig_inf != 0, np.where(sig_inf > 0, 2, 3), 0)
        return kd.astype(np.int8)

    out = {}
    for key in keys:
        b = key[-1]
        wm = key[0] == "w"
        if b == "G":
            sig = np.where(pinf, sp * sy, np.where(yinf, sy * signs["B"], 0.0))
            kd = finish(sig, signs["G"], wm)
            kp = _product_kind([*wl, one_y] if wm else [one_y], t)
            kn = _product_kind((wl if wm else []) + pl + [y], t)
        elif b == "K":
            sig = np.where(pinf, -sp * sy, np.where(yinf, -sy * sxpn, 0.0))
            kd = finish(sig, signs["K"], wm)
            kp = _product_kind((wl if wm else []) + [one_y], f)
            kn = _product_kind([-one] + (wl if wm else []) + pl + [y], f)
        elif b == "B":
            sig = np.where(pinf, sp, 0.0)
            kd = finish(sig, signs["B"], wm)
            kp = _product_kind([-one] + (wl if wm else []), t)
            kn = _product_kind((wl if wm else []) + pl, t)
        else:  # Y
            sig = np.where(yinf, sy, 0.0)
            kd = finish(sig, sy, wm)
            kp = np.ones(m, np.int8)
            kn = _product_kind((wl if wm else []) + [y], t)
        kd = np.where(xp, kp, np.where(xn, kn, kd))
        out[key] = np.where(nan, 4, kd).astype(np.int8)
    return out


