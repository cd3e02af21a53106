"""Special values: NaN and infinite arguments, whose results are limits decided exactly.

The value at a non-finite argument is the mathematical limit with the other arguments
fixed (the rules are in the package docstring, ``__init__.py``). The kernels only see
finite numbers: ``classify`` replaces each special argument by a finite stand-in
(``Sanitised``), the kernels compute on those, and ``override_kinds`` says, per term and
element, which results the limit rules replace (``Kind``), and by what. Most limits are
sign rules on products of the arguments; the few that need the exact sign of a bracket
at finite arguments get it from the general kernel, or from the exact path where its
bound cannot tell (``bracket_signs``).
"""

from __future__ import annotations

import enum
import types
from typing import NamedTuple

import numpy as np

from harness.reference import ddmath as dm
from harness.reference import elementwise, exact
from harness.reference import scaled as sd
from harness.reference.arguments import Arguments
from harness.reference.terms import Bracket, Term

__all__ = [
    "CODE",
    "KIND_VALUES",
    "Kind",
    "Sanitised",
    "bracket_signs",
    "classify",
    "override_kinds",
]


class Kind(enum.IntEnum):
    """What replaces a computed result (stored as int8 arrays of these codes).

    ``FINITE``: nothing, the computed value stands. In sums (``sums.py``) the same
    codes flag a row's total: ``ZERO`` never occurs there.
    """

    FINITE = 0
    ZERO = 1
    POS_INF = 2
    NEG_INF = 3
    NAN = 4


#: The codes as plain ints (``CODE.NAN == Kind.NAN``), for numpy expressions. numpy takes
#: an IntEnum member for a strong int64, not a plain int: comparing an int8 array with
#: ``Kind.NAN`` casts the whole array first (about 9x slower), and ``np.where`` probes the
#: member for array protocols (about 3x slower on small arrays).
CODE = types.SimpleNamespace(**{k.name: k.value for k in Kind})

#: the value each kind stands for, indexed by the code
KIND_VALUES = np.array([0.0, 0.0, np.inf, -np.inf, np.nan])


class Sanitised(NamedTuple):
    """The flat arguments with special values replaced by finite stand-ins.

    NaN elements become x = 0, y = 0, w = 1, p = 0; x = +-inf becomes +-1 with ``tz``
    set (the kernels then take ``e**-|x|`` as exactly 0, its limit); infinite y, p
    become 0 and infinite w becomes 1. ``tz`` is None when nothing is special.
    """

    x: np.ndarray
    y: np.ndarray
    w: np.ndarray | None
    p: np.ndarray | None
    tz: np.ndarray | None


def classify(flat: Arguments) -> tuple[np.ndarray | None, Sanitised]:
    """The mask of elements with a NaN or infinite argument (None if there are none), and
    the arguments with those replaced by finite stand-ins."""
    x, y, w, p = flat
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
    if not special.any():
        return None, Sanitised(x, y, w, p, None)
    xs = np.where(isnan, 0.0, np.where(xinf, np.sign(x), x))
    ys = np.where(isnan | np.isinf(y), 0.0, y)
    ws = np.where(isnan | np.isinf(w), 1.0, w) if w is not None else None
    ps = np.where(isnan | np.isinf(p), 0.0, p) if p is not None else None
    return special, Sanitised(xs, ys, ws, ps, xinf & ~isnan)


def override_kinds(terms: set[Term], flat: Arguments, san: Sanitised, special: np.ndarray,
                   ) -> dict[Term, np.ndarray]:
    """For each term, the ``Kind`` of every element (int8, ``FINITE`` where not special)."""
    n = flat.x.shape[0]
    idx = np.flatnonzero(special)
    x, y, w, p = flat
    sub = _special_kinds(
        terms, x[idx], y[idx], None if w is None else w[idx], None if p is None else p[idx],
        san.x[idx], san.y[idx], None if san.p is None else san.p[idx],
    )
    kinds = {}
    for term, kd in sub.items():
        full = np.zeros(n, np.int8)
        full[idx] = kd
        kinds[term] = full
    return kinds


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
    return np.where(zero, CODE.ZERO, np.where(inf, np.where(sign > 0, CODE.POS_INF, CODE.NEG_INF),
                                              CODE.FINITE)).astype(np.int8)


def bracket_signs(xs: np.ndarray, ys: np.ndarray, ps: np.ndarray | None,
                  brackets: tuple[Bracket, ...]) -> dict[Bracket, np.ndarray]:
    """Exact signs of w-free brackets at the sanitised (finite) arguments."""
    want = {Term(b, False) for b in brackets}
    r = elementwise.chunk(xs, ys, None, ps, None, want, False)
    res = {}
    for b in brackets:
        (h, lo, _), d = r.terms[Term(b, False)]
        h, lo = dm.two_sum(h, lo)
        known = (d == 0) | (np.abs(h) - np.abs(lo) > d * sd.SLACK)
        sg = np.sign(h)
        for i in np.flatnonzero(~known):
            parts = [exact.slow_decompose(Term(b, False), xs[i], ys[i], 1.0,
                                          1.0 if ps is None else ps[i], False, 1)]
            sg[i] = exact.slow_round(parts, want_sign=True)[1]
        res[b] = sg
    return res


def _special_kinds(terms, x, y, w, p, xs, ys, ps):
    """``Kind`` of each term over the special elements (the rules of ``__init__.py``)."""
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
    signs = bracket_signs(np.where(xfin, xs, 0.0), ys, ps, (Bracket.G, Bracket.K, Bracket.B))
    # sign of s(x) + p s(-x) = s(x) (1 + p e**-x): only p < 0 can make it non-positive
    with np.errstate(divide="ignore", invalid="ignore"):
        sxpn = np.where(pv >= 0, 1.0, np.sign(xs - np.log(np.abs(pv))))
    sw, sy, sp = np.sign(wv), np.sign(y), np.sign(pv)

    def finish(sig_inf, s_bracket, w_mult):
        """Combine the bracket's infinite sign (0: finite) with the w factor."""
        if w_mult:
            kd = np.where(
                sig_inf != 0,
                np.where(wv == 0, CODE.ZERO, np.where(sw * sig_inf > 0, CODE.POS_INF,
                                                      CODE.NEG_INF)),
                np.where(winf, np.where(s_bracket == 0, CODE.ZERO,
                                        np.where(sw * s_bracket > 0, CODE.POS_INF,
                                                 CODE.NEG_INF)), CODE.FINITE),
            )
        else:
            kd = np.where(sig_inf != 0, np.where(sig_inf > 0, CODE.POS_INF, CODE.NEG_INF),
                          CODE.FINITE)
        return kd.astype(np.int8)

    out = {}
    for term in terms:
        b = term.bracket
        wm = term.weighted
        if b is Bracket.G:
            sig = np.where(pinf, sp * sy, np.where(yinf, sy * signs[Bracket.B], 0.0))
            kd = finish(sig, signs[Bracket.G], wm)
            kp = _product_kind([*wl, one_y] if wm else [one_y], t)
            kn = _product_kind((wl if wm else []) + pl + [y], t)
        elif b is Bracket.K:
            sig = np.where(pinf, -sp * sy, np.where(yinf, -sy * sxpn, 0.0))
            kd = finish(sig, signs[Bracket.K], wm)
            kp = _product_kind((wl if wm else []) + [one_y], f)
            kn = _product_kind([-one] + (wl if wm else []) + pl + [y], f)
        elif b is Bracket.B:
            sig = np.where(pinf, sp, 0.0)
            kd = finish(sig, signs[Bracket.B], wm)
            kp = _product_kind([-one] + (wl if wm else []), t)
            kn = _product_kind((wl if wm else []) + pl, t)
        else:  # Y
            sig = np.where(yinf, sy, 0.0)
            kd = finish(sig, sy, wm)
            kp = np.full(m, CODE.ZERO, np.int8)
            kn = _product_kind((wl if wm else []) + [y], t)
        kd = np.where(xp, kp, np.where(xn, kn, kd))
        out[term] = np.where(nan, CODE.NAN, kd).astype(np.int8)
    return out
