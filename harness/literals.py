"""Arrays written as source text that reads back to the same bits.

The harness writes numbers as text in three places: reproduction snippets a
framework maintainer pastes into a bug tracker (Python), the generic snippet of
harness/report/snippets.py (Python with NumPy), and case files it saves for a
found failure (YAML, read back by harness/cases/loading.py). A snippet that
rounds 0.1 differently, or a saved case that loses the sign of a zero, reproduces
a different computation, so all three go through the one float spelling here.

The rule: a finite float is written as `repr`, the shortest decimal that reads
back as the same float64. Values of float16, bfloat16 and float32 are float64
values too, so they round-trip as well; the reader converts them to their dtype
exactly, because they are representable. Only ±inf, NaN and −0.0 are spelled
per language: Python has no literal for them, and a YAML tool may drop the sign
of a bare -0.0, so YAML gets the quoted "-0.0" that the case loader reads as a
special value (docs/cases.md).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping

import numpy as np

__all__ = ["LITERAL_LIMIT", "array_source", "python_float", "python_literal", "yaml_float",
           "yaml_value"]

#: Elements an argument may have and still be written out in a snippet; past it a
#: snippet would be unreadable, and only arrays a short NumPy call builds exactly
#: (empty, or one repeated value) are written.
LITERAL_LIMIT = 64

_INTEGER_DTYPES = frozenset({"uint8", "int8", "int16", "int32", "int64"})

# The spellings of the values `repr` cannot write as a literal of the language.
_PYTHON = {"nan": "float('nan')", "inf": "float('inf')", "-inf": "-float('inf')",
           "-0": "-0.0"}
_YAML = {"nan": ".nan", "inf": ".inf", "-inf": "-.inf", "-0": '"-0.0"'}


def _float_text(value: float, spelling: Mapping[str, str]) -> str:
    """`value` as the shortest text that reads back bit for bit, specials per `spelling`."""
    v = float(value)
    if math.isnan(v):
        return spelling["nan"]
    if math.isinf(v):
        return spelling["inf" if v > 0 else "-inf"]
    if v == 0 and math.copysign(1.0, v) < 0:
        return spelling["-0"]
    return repr(v)  # always holds a dot or an exponent, so YAML reads a float too


def python_float(value: float) -> str:
    """A float as a Python expression that evaluates to exactly it (NaN, ±inf, −0.0 too)."""
    return _float_text(value, _PYTHON)


def yaml_float(value: float) -> str:
    """A float as a YAML scalar that the case loader reads back bit for bit.

    Infinities and NaN are YAML's own `.inf` / `-.inf` / `.nan`; negative zero is
    the quoted "-0.0", so that no tool in between can drop its sign.
    """
    return _float_text(value, _YAML)


# ------------------------------------------------------------------- Python ----

def _python_element(value: float, dtype: str) -> str:
    """One value as Python source, as it is written in `dtype`."""
    if dtype == "bool":
        return repr(bool(value))
    if dtype in _INTEGER_DTYPES:
        return repr(int(value))
    return python_float(value)


def python_literal(values: np.ndarray, dtype: str,
                   limit: int | None = LITERAL_LIMIT) -> str | None:
    """Python source for `values`, to be converted to `dtype` by a framework's constructor.

    A nested list (a bare scalar for 0-d) up to `limit` elements (None: no limit);
    bool and integer dtypes are written as True/False and integers, the way a
    reader would write them. Beyond the limit, only what a short NumPy call builds
    exactly (an empty or constant array), else None: the caller decides what to
    write instead. Empty arrays are always `np.zeros(shape)`, since a nested list
    cannot say (0, 3).
    """
    a = np.asarray(values, dtype=np.float64)
    if a.size == 0:
        return f"np.zeros({a.shape!r})"
    if limit is None or a.size <= limit:
        return _nested(a, lambda v: _python_element(v, dtype))
    first = a.reshape(-1)[0]
    if np.array_equal(a, np.full(a.shape, first), equal_nan=True) and \
            np.all(np.signbit(a) == np.signbit(first)):
        return f"np.full({a.shape!r}, {_python_element(float(first), dtype)})"
    return None


def array_source(values: np.ndarray | None) -> str:
    """A NumPy float64 array expression for `values` ("None" for a missing argument).

    For snippets that build their arguments with NumPy: `np.array(...)` of the
    exact nested list, or `np.zeros(shape)` when there are no elements.
    """
    if values is None:
        return "None"
    text = python_literal(values, "float64", limit=None)
    assert text is not None  # no limit: always written out
    return text if text.startswith("np.") else f"np.array({text})"


# --------------------------------------------------------------------- YAML ----

def yaml_value(values: np.ndarray, indent: int = 4, width: int = 96) -> str:
    """An array as a case-file value: a scalar, a flow list, or a fill for empty ones.

    Nested lists cannot say (0, 3) (an empty list is (0,)), so arrays without
    elements are written as {fill: 0.0, shape: [...]}. A list longer than `width`
    is wrapped, each line indented `indent` + 2 spaces under its key.
    """
    a = np.asarray(values, dtype=np.float64)
    if a.ndim == 0:
        return yaml_float(float(a))
    if a.size == 0:
        return f"{{fill: 0.0, shape: [{', '.join(map(str, a.shape))}]}}"
    text = _nested(a, yaml_float)
    if len(text) <= width:
        return text
    return _wrapped(a, indent + 2, width)


def _nested(a: np.ndarray, element: Callable[[float], str]) -> str:
    """`a` as a flow list of lists (a bare element for 0-d), elements by `element`."""
    if a.ndim == 0:
        return element(float(a))
    return "[" + ", ".join(_nested(s, element) for s in a) + "]"


def _wrapped(a: np.ndarray, indent: int, width: int) -> str:
    """A long YAML flow list over several lines, each indented under its key."""
    pad = " " * indent
    if a.ndim == 1:
        items = [yaml_float(v) for v in a]
        lines, line = [], ""
        for item in items:
            if line and len(pad) + len(line) + len(item) + 2 > width:
                lines.append(line + ",")
                line = ""
            line = f"{line}, {item}" if line else item
        lines.append(line)
        return "[" + ("\n" + pad).join(lines) + "]"
    rows = [_wrapped(s, indent + 1, width) if len(_nested(s, yaml_float)) > width - indent
            else _nested(s, yaml_float) for s in a]
    return "[" + (",\n" + pad).join(rows) + "]"
