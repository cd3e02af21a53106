"""An independent, slow oracle for BCEWithLogitsLoss: ``decimal`` at 110 digits + ``fractions``.

It shares no code with ``harness.reference.ddmath`` or ``harness.reference`` on purpose: it is
written straight from the definitions

    sp(z) = log(1 + e**z),   s(z) = 1 / (1 + e**-z)
    loss  = w * [(1 - y) * sp(x) + p * y * sp(-x)]
    d/dx  = w * [(1 - y) * s(x) - p * y * s(-x)]
    d/dy  = w * [p * sp(-x) - sp(x)]
    d/dw  = (1 - y) * sp(x) + p * y * sp(-x)
    d/dp  = w * y * sp(-x)

and evaluated term by term in ``decimal`` with 110 significant digits and an exponent
range of +-10**9 (so ``e**-50`` or ``e**-2000`` are just numbers). ``e**-|z|`` is taken as
0 for ``|z| > 10000`` (see ``_exp_neg``). The only rewriting is the identity
``sp(z) = max(z, 0) + log(1 + e**-|z|)`` (``e**1e308`` is not a decimal either), and
``log(1 + t)`` for ``t < 1e-40`` by its series (``1 + t`` would round to 1 at 110 digits).

Results are returned as exact ``Fraction`` values of the 110-digit decimals: accurate
to ~1e-105 relative (more than 50 digits beyond what a float64 ulp needs), so the
error of a float64 result can be measured in ulps as an exact fraction. The one thing
the oracle cannot see is a term below 1e-105 relative -- an ``e**-|x|`` tail that breaks
an exact tie; tests for those cases state the expected float directly.
"""

from __future__ import annotations

from decimal import Context, Decimal, localcontext
from fractions import Fraction

PREC = 110
_CTX = Context(prec=PREC, Emin=-(10**9), Emax=10**9)
_SERIES_BELOW = Decimal("1e-40")
_FAR = Decimal(10000)

NAMES = ("loss", "input", "target", "weight", "pos_weight")


def _log1p(t: Decimal) -> Decimal:
    if t < _SERIES_BELOW:
        # t - t^2/2 + t^3/3 ...; three terms reach 1e-120 relative
        return t - t * t / 2 + t * t * t / 3
    return (1 + t).ln()


def _exp_neg(a: Decimal) -> Decimal:
    """``e**-a`` for ``a >= 0``; 0 beyond ``_FAR`` (decimal's exp of -1e8 takes a minute).

    ``e**-10000 < 1e-4342``: times at most four float64 factors (< 1e1233) that is still
    far below the smallest subnormal, so no float64 result can show the difference.
    """
    if a > _FAR:
        return Decimal(0)
    return (-a).exp()


def softplus(z: Decimal) -> Decimal:
    """``log(1 + e**z)`` at the oracle's precision (call inside ``localcontext(_CTX)``)."""
    return max(z, Decimal(0)) + _log1p(_exp_neg(abs(z)))


def sigmoid(z: Decimal) -> Decimal:
    """``1 / (1 + e**-z)`` at the oracle's precision."""
    t = _exp_neg(abs(z))
    if z >= 0:
        return 1 / (1 + t)
    return t / (1 + t)


def _terms(x: float, y: float, w: float | None, p: float | None) -> dict[str, list[Decimal]]:
    """The terms whose sum is each quantity, at the current context's precision."""
    X, Y = Decimal(x), Decimal(y)
    W = Decimal(1) if w is None else Decimal(w)
    P = Decimal(1) if p is None else Decimal(p)
    # softplus(X), softplus(-X), sigmoid(X) and sigmoid(-X), with e**-|x| and its log1p
    # taken once (the same operations as those functions, a quarter of the exps)
    t = _exp_neg(abs(X))
    lg = _log1p(t)
    zero = Decimal(0)
    spx = max(X, zero) + lg
    spn = max(-X, zero) + lg
    s_big = 1 / (1 + t)  # sigmoid(|x|)
    s_small = t / (1 + t)  # sigmoid(-|x|)
    sx, sn = (s_big, s_small) if X >= 0 else (s_small, s_big)
    one_y = 1 - Y
    return {
        "loss": [W * one_y * spx, W * P * Y * spn],
        "input": [W * one_y * sx, -W * P * Y * sn],
        "target": [W * P * spn, -W * spx],
        "weight": [one_y * spx, P * Y * spn],
        "pos_weight": [W * Y * spn],
    }


def elementwise(
    x: float, y: float, w: float | None = None, p: float | None = None
) -> dict[str, Fraction]:
    """The exact-enough elementwise loss and its four partials at finite arguments.

    Each quantity is a sum of at most two terms, each correct to ~1e-(prec-2) relative.
    Where the terms cancel (d/dy near zero, d/dx at x close to logit(y), targets outside
    [0, 1]) the precision is doubled until the sum keeps at least 68 correct digits, up to
    1760 digits (beyond which the sum is taken as it stands: only exact zeros such as
    d/dy at x = 0, p = 1 get there).
    """
    out: dict[str, Fraction] = {}
    todo = list(NAMES)
    prec = PREC
    while todo:
        with localcontext(_CTX) as ctx:
            ctx.prec = prec
            terms = _terms(x, y, w, p)
            for name in list(todo):
                ts = terms[name]
                v = sum(ts, Decimal(0))
                mag = sum((abs(t) for t in ts), Decimal(0))
                if abs(v) >= mag.scaleb(-(prec - 70)) or prec >= 1760:
                    out[name] = Fraction(v)
                    todo.remove(name)
        prec *= 2
    return out


def elementwise_many(xs, ys, ws=None, ps=None) -> dict[str, list[Fraction]]:
    """``elementwise`` over parallel sequences (``ws``/``ps`` None for absent arguments)."""
    res: dict[str, list[Fraction]] = {k: [] for k in NAMES}
    for i in range(len(xs)):
        r = elementwise(
            float(xs[i]),
            float(ys[i]),
            None if ws is None else float(ws[i]),
            None if ps is None else float(ps[i]),
        )
        for k in NAMES:
            res[k].append(r[k])
    return res


def total(values: list[Fraction], reduction: str) -> Fraction:
    """Exact ``sum`` or ``mean`` of exact terms (mean of nothing is not defined here)."""
    s = sum(values, Fraction(0))
    if reduction == "mean":
        return s / len(values)
    return s


# ---------------------------------------------------------------------------
# float64 grid arithmetic, done with integers
# ---------------------------------------------------------------------------

_TWO = Fraction(2)
_OVERFLOW = _TWO**1024 - _TWO**970  # rounds to inf from here on (tie to even)


def _exponent(m: Fraction) -> int:
    e = m.numerator.bit_length() - m.denominator.bit_length()
    if m < _TWO**e:
        e -= 1
    return e


def ulp(v: Fraction) -> Fraction:
    """Spacing of the float64 grid at ``|v|`` (2**-1074 in the subnormal range)."""
    if v == 0:
        return _TWO**-1074
    e = min(_exponent(abs(v)), 1023)
    return _TWO ** (max(e, -1022) - 52)


def nearest(v: Fraction) -> float:
    """The float64 nearest to ``v`` (ties to even), +-inf beyond the overflow threshold."""
    if v == 0:
        return 0.0
    neg = v < 0
    m = -v if neg else v
    if m >= _OVERFLOW:
        return float("-inf") if neg else float("inf")
    q = max(_exponent(m), -1022) - 52
    scaled = m / _TWO**q
    n, rem = divmod(scaled.numerator, scaled.denominator)
    twice = 2 * rem
    if twice > scaled.denominator or (twice == scaled.denominator and n % 2 == 1):
        n += 1
    r = float(Fraction(n) * _TWO**q)
    return -r if neg else r


def ulp_error(computed: float, exact: Fraction) -> Fraction | float:
    """``|computed - exact|`` in units of the float64 spacing at ``exact``.

    Correctly rounded means ``<= 1/2``. An infinite ``computed`` is 0 ulp away when
    ``exact`` lies beyond the overflow threshold on the same side, else ``inf``.
    """
    if computed != computed:
        return float("inf")
    if computed in (float("inf"), float("-inf")):
        ok = (exact >= _OVERFLOW) if computed > 0 else (exact <= -_OVERFLOW)
        return Fraction(0) if ok else float("inf")
    if abs(exact) >= _TWO**1024:
        return float("inf")
    return abs(Fraction(computed) - exact) / ulp(exact)
