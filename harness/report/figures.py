"""Numbers as the report shows them: rounded for report.json's `findings` and the page's
data, written out for people.

A figure of `findings` is rounded to the significant digits the page shows (`compact`),
so report.json says what the page says and no more; `shown` writes such a figure exactly
as `fmt` writes the unrounded number.
"""

from __future__ import annotations

import math
from typing import Any

from harness.records import decode_float

DTYPE_ORDER: tuple[str, ...] = ("float16", "bfloat16", "float32", "float64")

_SPEC = {d: f".{d}g" for d in range(1, 18)}


def num(v: Any) -> float | None:
    """A report float ('nan'/'inf'/'-inf' strings included) as a Python float."""
    return decode_float(v)


def compact(v: Any, digits: int = 4) -> Any:
    """A float as JSON with `digits` significant digits: a whole number below 10^15 as
    an integer, NaN and the infinities as the report's strings, None for what is not a
    number.

    Called about a million times for a full report (every profile point), hence the
    fast path for plain floats.
    """
    t = type(v)
    if t is float or t is int:
        f = float(v)
    else:
        f = num(v)
        if f is None:
            return None
    if f != f:
        return "nan"
    if f - f != 0:
        return "inf" if f > 0 else "-inf"
    if f.is_integer() and -1e15 < f < 1e15:
        return int(f) if f or math.copysign(1.0, f) > 0 else -0.0  # −0 stays −0
    return float(format(f, _SPEC[digits]))


def fmt(v: Any, digits: int = 3) -> str:
    """A float for people: 3 significant digits, ∞ and NaN spelt out."""
    f = num(v)
    if f is None:
        return "—"
    if math.isnan(f):
        return "NaN"
    if math.isinf(f):
        return "∞" if f > 0 else "−∞"
    if f == 0:
        return "0"
    if f == int(f) and abs(f) < 1e6:
        return str(int(f))
    return f"{f:.{digits}g}"


def shown(v: Any, digits: int = 3) -> str:
    """A figure `compact(x, digits)` written as `fmt(x, digits)` writes x itself.

    `compact` keeps a whole number as an integer, so a float here was not whole before
    it was rounded: it is written with its significant digits even where rounding made
    it whole (1234.5 to 3 digits is 1230.0, written 1.23e+03 as fmt writes 1234.5).
    """
    if type(v) is float and v and math.isfinite(v):
        return f"{v:.{digits}g}"
    return fmt(v, digits)


def ordered(values: set[str], order: tuple[str, ...]) -> list[str]:
    """`values` in the order of `order`, the rest after them by name."""
    return sorted(values, key=lambda v: (order.index(v) if v in order else len(order), v))
