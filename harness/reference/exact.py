"""The exact path: correctly rounded results where the dd error bound cannot decide.

A dd result whose bound straddles a rounding boundary -- the value is within 2**-90
of it, e.g. an exact midpoint such as 3 * (2**52 + 3) plus an invisible
e**-4.5e15 -- comes here, element by element or as a whole sum (``slow_sum``).

Level 2: every term is ``R0 + R1*F`` with ``R0`` and ``R1`` exact products of the
arguments and ``F`` one transcendental (``Transcendental``). The rational parts are
summed exactly in integer arithmetic (dyadic numbers ``(m, e) = m * 2**e``, identical
elements merged), and only the distinct transcendental values ``F`` carry a bound (their
dd values, 2**-88). That decides cancelling sums (``1e16 + sp(1) - 1e16`` repeated) and
ties broken by an ``e**-|x|`` beyond ``EXP_CLAMP`` (a positive infinitesimal of known
sign).

Level 3, for a value within 2**-88 of the F parts of a rounding boundary: the same terms
in ``fractions``/``decimal`` with increasing precision until the rounding is decided
(``slow_round``). So the result is correctly rounded always, not just almost always.

This path shares no arithmetic with the kernels beyond the dd values of ``F``, and the
special-value code (``specials.py``) uses level 3 for the exact sign of a bracket.
"""

from __future__ import annotations

import enum
import math
from decimal import Decimal, localcontext
from fractions import Fraction
from typing import TYPE_CHECKING

import numpy as np

from harness.reference import ddfunctions as df
from harness.reference import ddmath as dm
from harness.reference.terms import Bracket, Term

if TYPE_CHECKING:  # specials.py imports this module
    from harness.reference.specials import Sanitised

__all__ = ["Transcendental", "slow_decompose", "slow_round", "slow_sum"]


class Transcendental(enum.Enum):
    """The one transcendental ``F(a)``, ``a = |x|``, in a term ``R0 + R1*F``."""

    SOFTPLUS = "L"  #: log1p(e**-a) = sp(-a)
    SIGMOID = "s"  #: e**-a / (1 + e**-a) = s(-a)


#: beyond this |x| level 3 treats e**-|x| as a positive infinitesimal (see slow_round)
_SLOW_HUGE = 6000.0

#: an exact term: (R0, R1, the transcendental or None, |x|), R0 and R1 Fractions
Part = tuple[Fraction, Fraction, Transcendental | None, float]
#: a dyadic rational (m, e) = m * 2**e with Python ints: exact, no gcd, no range limit
Dyadic = tuple[int, int]


# ---------------------------------------------------------------------------
# level 2: exact rational parts, dd transcendental parts
# ---------------------------------------------------------------------------


def slow_sum(term: Term, members: list[int], san: Sanitised, div: int,
             fvals: dict[tuple[Transcendental, float], Dyadic] | None = None) -> float:
    """Exact evaluation of the sum of ``term`` over element indices (one element or many),
    divided by ``div``; ``san`` holds the sanitised arguments (``specials.Sanitised``).

    Level 2 of Ziv's strategy, after the dd bound could not settle the rounding. Each
    term is ``R0 + R1*F`` (``_dy_decompose``): ``R0`` and ``R1`` are exact dyadic rationals
    (sums and products of the float64 arguments), summed exactly in integer arithmetic,
    identical elements merged first; ``F`` (``log1p(e**-a)`` or ``e**-a/(1 + e**-a)``) is
    taken from its dd value with a rigorous ``_EPS_F_BITS`` bound per distinct ``(kind, a)``,
    and beyond ``EXP_CLAMP`` as a positive infinitesimal of known sign (it only breaks
    ties). Only the bound on the ``F`` parts is left, so cancelling sums such as
    ``1e16 + sp(1) - 1e16`` are decided here. ``fvals`` may hold precomputed ``F`` values
    (``_f_values``). Where even that cannot decide -- a value within ``2**-88`` of the
    ``F`` parts of a rounding boundary -- level 3 evaluates the same merged terms with
    ``fractions``/``decimal`` (``slow_round``) at increasing precision.
    """
    r0, groups = _dy_terms(term, members, san)
    fv = fvals if fvals is not None else _f_values(
        [kg for kg, c in groups.items() if c[0] and kg[1] <= df.EXP_CLAMP])
    v = _dy_round(r0, groups, fv, div)
    if v is not None:
        return v
    parts = [(_dy_frac(r0) / div, Fraction(0), None, 0.0)]
    parts += [(Fraction(0), _dy_frac(c) / div, kd, a) for (kd, a), c in groups.items()]
    return slow_round(parts)[0]


def _dy(f: float) -> Dyadic:
    """A float64 as a dyadic, exactly."""
    n, d = f.as_integer_ratio()
    return n, 1 - d.bit_length()


def _dy_add(a: Dyadic, b: Dyadic) -> Dyadic:
    """``a + b`` exactly, in the smaller of the two exponents."""
    if not a[0]:
        return b
    if not b[0]:
        return a
    if a[1] <= b[1]:
        return a[0] + (b[0] << (b[1] - a[1])), a[1]
    return b[0] + (a[0] << (a[1] - b[1])), b[1]


def _dy_mul(a: Dyadic, b: Dyadic) -> Dyadic:
    """``a * b`` exactly."""
    return a[0] * b[0], a[1] + b[1]


def _dy_frac(a: Dyadic) -> Fraction:
    """A dyadic as a Fraction, for level 3."""
    return Fraction(a[0] << a[1]) if a[1] >= 0 else Fraction(a[0], 1 << -a[1])


_DY0 = (0, 0)
_DY1 = (1, 0)


def _dy_decompose(term: Term, x: float, y: float, w: float, p: float, tz: bool,
                  ) -> tuple[Dyadic, Dyadic, Transcendental | None, float]:
    """``slow_decompose`` (without the division) in dyadic arithmetic: ``(R0, R1, kind, |x|)``."""
    a = _dy(abs(x))
    Y = _dy(y)
    P = _dy(p)
    pos = x >= 0
    one_y = _dy_add(_DY1, (-Y[0], Y[1]))
    py = _dy_mul(P, Y)
    b = term.bracket
    sp, sg = Transcendental.SOFTPLUS, Transcendental.SIGMOID
    if b is Bracket.G:
        r0, r1, kind = _dy_mul(one_y if pos else py, a), _dy_add(one_y, py), sp
    elif b is Bracket.B:
        r0, r1, kind = ((-a[0], a[1]) if pos else _dy_mul(P, a)), _dy_add(P, (-1, 0)), sp
    elif b is Bracket.Y:
        r0, r1, kind = (_DY0 if pos else _dy_mul(Y, a)), Y, sp
    else:
        lc = _dy_add(one_y, py)
        r0 = one_y if pos else (-py[0], py[1])
        r1, kind = ((-lc[0], lc[1]) if pos else lc), sg
    if term.weighted:
        W = _dy(w)
        r0, r1 = _dy_mul(r0, W), _dy_mul(r1, W)
    if tz:
        r1 = _DY0
    if kind is sg and x == 0:
        r0, r1 = _dy_add(r0, (r1[0], r1[1] - 1)), _DY0
    return r0, r1, (kind if r1[0] else None), abs(x)


def _dy_terms(term: Term, members: list[int], san: Sanitised,
              ) -> tuple[Dyadic, dict[tuple[Transcendental, float], Dyadic]]:
    """Exact ``sum R0`` and ``{(kind, a): sum R1}`` over the members (identical rows merged)."""
    xs, ys, ws, ps, tz = san
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
    groups: dict[tuple[Transcendental, float], Dyadic] = {}
    for (x, y, w, p, t), cnt in zip(rows, counts, strict=True):
        d0, d1, kind, a = _dy_decompose(term, x, y, w, p, t != 0.0)
        r0 = _dy_add(r0, (d0[0] * cnt, d0[1]))
        if kind is not None:
            kg = (kind, a)
            groups[kg] = _dy_add(groups.get(kg, _DY0), (d1[0] * cnt, d1[1]))
    return r0, groups


def _f_values(pairs: list[tuple[Transcendental, float]],
              ) -> dict[tuple[Transcendental, float], Dyadic]:
    """dd values of ``F_kind(a)`` (``a <= EXP_CLAMP``) as exact dyadics, all pairs at once.

    The same algorithms as ``elementwise.chunk`` (``exp_scaled``, ``log1p_scaled``,
    ``t * 1/(1 + t)``): relative error below ``2**-95``, charged as ``_EPS_F_BITS``.
    """
    out: dict[tuple[Transcendental, float], Dyadic] = {}
    pairs = list(dict.fromkeys(pairs))
    if not pairs:
        return out
    a = np.array([p[1] for p in pairs])
    k, th, tl = df.exp_scaled(-a)
    isl = np.array([p[0] is Transcendental.SOFTPLUS for p in pairs])
    fh = np.zeros(a.size)
    fl = np.zeros(a.size)
    if isl.any():
        lh, ll = df.log1p_scaled(k[isl], th[isl], tl[isl])
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


_EPS_F_BITS = 88
_F_CLAMP_BITS = -4328


def _dy_round(r0, groups, fv, div) -> float | None:
    """Round ``(r0 + sum C*F)/div`` if the ``F`` bounds allow it, else None (see slow_sum)."""
    e = r0
    mag = _DY0
    inf_mag = _DY0
    inf_sign = 0  # bit 1: a positive infinitesimal part, bit 2: a negative one
    for kg, c in groups.items():
        if not c[0]:
            continue
        if kg[1] > df.EXP_CLAMP:
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


def _dy_round_ratio(v: Dyadic, div: int, s: int) -> float:
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
# level 3: fractions and decimal at increasing precision
# ---------------------------------------------------------------------------


def slow_decompose(term: Term, x: float, y: float, w: float, p: float, tz: bool, div: int,
                   ) -> Part:
    """Exact ``(R0, R1, kind, |x|)`` with ``term / div`` = ``R0 + R1*F_kind(|x|)``.

    ``kind`` is None where ``R1 == 0`` or F is rational (x = 0, where s(0) = 1/2).
    """
    X, Y, P = Fraction(x), Fraction(y), Fraction(p)
    a = abs(X)
    pos = x >= 0
    one_y = 1 - Y
    py = P * Y
    lc = one_y + py
    b = term.bracket
    sp, sg = Transcendental.SOFTPLUS, Transcendental.SIGMOID
    if b is Bracket.G:
        r0, r1, kind = (one_y if pos else py) * a, lc, sp
    elif b is Bracket.B:
        r0, r1, kind = (-a if pos else P * a), P - 1, sp
    elif b is Bracket.Y:
        r0, r1, kind = (Fraction(0) if pos else Y * a), Y, sp
    else:
        r0, r1, kind = (one_y if pos else -py), (-lc if pos else lc), sg
    if term.weighted:
        W = Fraction(w)
        r0, r1 = r0 * W, r1 * W
    if div != 1:
        r0, r1 = r0 / div, r1 / div
    if tz:
        r1 = Fraction(0)
    if kind is sg and x == 0:
        r0, r1 = r0 + r1 / 2, Fraction(0)
    if r1 == 0:
        kind = None
    return r0, r1, kind, abs(x)


def _slow_f(kind: Transcendental, a: float, prec: int) -> tuple[Fraction, Fraction]:
    """An enclosing interval of ``F_kind(a)`` (``a <= _SLOW_HUGE``), ~``prec`` digits."""
    with localcontext() as ctx:
        ctx.prec = prec + 40
        ctx.Emin = -(10**7)
        ctx.Emax = 10**7
        t = (-Decimal(a)).exp()
        if kind is Transcendental.SOFTPLUS:
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


def slow_round(parts: list[Part], want_sign: bool = False) -> tuple[float, int | None]:
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
    groups: dict[tuple[Transcendental, float], Fraction] = {}
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
