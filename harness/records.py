"""The vocabulary every stage shares: statuses, check names, the record, JSON floats.

A result record leaves the judge, passes the expectations, streams to disk, and is
read back by the report, the diff, the terminal and the HTML. Each of those used to
spell the status names, their order and the float encoding on its own; a status
added in one place and missed in another silently mis-sorts or mis-counts. Here
they are defined once.

Records stay plain dicts at run time (they are streamed as JSON lines the moment a
call finishes, and read back from old reports): `Record` types their keys, and
`Status` / `Check` are `str` enums, so ``record["status"] == Status.FAIL`` holds
for a record read from JSON as well as for one built in this process.
"""

from __future__ import annotations

import math
from enum import Enum
from typing import Any, TypedDict

import numpy as np

#: The report's schema version: 2 added expectations (`expected_by`, the report's
#: `expectations` section) and a passing record's `largest` error. It is the flat layout
#: consumers of report.json read (docs/report.md): `results`, one self-describing record per check.
SCHEMA_VERSION = 2
#: The packed layout (`report --packed-json`, harness.report.packed): `calls` and `trials`,
#: each datum once, about a third of the size; readers unpack it to version 2's records.
PACKED_SCHEMA_VERSION = 3
#: Versions `harness diff` (and anything else reading reports) understands.
READABLE_SCHEMA_VERSIONS = (1, 2, 3)


class Status(str, Enum):
    """What a check concluded. The order of definition is the display order."""

    PASS = "pass"
    FAIL = "fail"
    ERROR = "error"
    UNSUPPORTED = "unsupported"
    SKIPPED = "skipped"
    KNOWN = "known"
    FIXED = "fixed"

    def __str__(self) -> str:
        return self.value

    @property
    def unexpected(self) -> bool:
        """Counts towards exit code 1: a fail or error no expectation covers."""
        return self in (Status.FAIL, Status.ERROR)

    @property
    def severity(self) -> int:
        """0 is the most severe: what a summary cell is coloured by."""
        return _SEVERITY.index(self)

    @property
    def rank(self) -> int:
        """How bad, for `harness diff`: pass = fixed < skipped = unsupported < known <
        fail = error. A move up this ladder is a regression."""
        return _RANK[self]


#: Most severe first: an error hides nothing, a pass hides nothing either but is last.
_SEVERITY = (Status.ERROR, Status.FAIL, Status.FIXED, Status.KNOWN, Status.UNSUPPORTED,
             Status.SKIPPED, Status.PASS)
_RANK = {Status.PASS: 0, Status.FIXED: 0, Status.SKIPPED: 1, Status.UNSUPPORTED: 1,
         Status.KNOWN: 2, Status.FAIL: 3, Status.ERROR: 3}

#: Display order (tables, summaries) and severity order, as plain strings for JSON.
STATUS_ORDER: tuple[str, ...] = tuple(s.value for s in Status)
SEVERITY_ORDER: tuple[str, ...] = tuple(s.value for s in _SEVERITY)
UNEXPECTED: frozenset[str] = frozenset(s.value for s in Status if s.unexpected)


class Check(str, Enum):
    """What one record checks."""

    VALUE = "value"
    GRAD_INPUT = "grad.input"
    GRAD_TARGET = "grad.target"
    GRAD_WEIGHT = "grad.weight"
    GRAD_POS_WEIGHT = "grad.pos_weight"
    JVP_INPUT = "jvp.input"
    JVP_TARGET = "jvp.target"
    JVP_WEIGHT = "jvp.weight"
    JVP_POS_WEIGHT = "jvp.pos_weight"
    RAISES = "raises"
    DTYPE = "dtype"
    SHAPE = "shape"
    DETERMINISM = "determinism"
    VS_CPU = "vs-cpu"
    VS_EAGER = "vs-eager"

    def __str__(self) -> str:
        return self.value

    @property
    def numeric(self) -> bool:
        """Compared element by element against the reference."""
        return self in NUMERIC_CHECKS_ENUM


NUMERIC_CHECKS_ENUM = frozenset({Check.VALUE, Check.GRAD_INPUT, Check.GRAD_TARGET,
                                 Check.GRAD_WEIGHT, Check.GRAD_POS_WEIGHT, Check.JVP_INPUT,
                                 Check.JVP_TARGET, Check.JVP_WEIGHT, Check.JVP_POS_WEIGHT})
CHECKS: tuple[str, ...] = tuple(c.value for c in Check)
NUMERIC_CHECKS: tuple[str, ...] = tuple(c.value for c in Check if c.numeric)


class Element(TypedDict, total=False):
    """One element of a checked quantity: where, the two values, the error."""

    index: list[int]
    expected: float | str | None
    got: float | str | None
    ulp: float | str | None
    allowance: float | str | None
    cond: float | str | None
    inputs: dict[str, Any]


class Record(TypedDict, total=False):
    """One check of one call: the unit of the report's `results`."""

    backend: str
    implementation: str
    device: str
    dtype: str
    case: str
    reduction: str
    source: str
    duration_s: float
    check: str
    status: str
    message: str
    kind: str
    measured_in: str
    elements: int
    max_ulp: float | str | None
    allowance: float | str | None
    cond: float | str | None
    worst: Element | None  # the element nearest (or furthest past) its allowance
    largest: Element | None  # the element with the largest ulp error
    values: dict[str, list[Any]]
    profile: dict[str, list[Any]]
    expected_by: list[dict[str, Any]]  # the expectations covering its failing elements
    failing: int  # elements beyond the allowance (a numeric check that fails)
    uncovered: int  # failing elements no expectation covers
    found: str


# ------------------------------------------------------------------ JSON floats --

def encode_float(x: Any) -> float | str | None:
    """A float for JSON: finite numbers as numbers, the rest as 'nan' / 'inf' / '-inf'.

    JSON has no non-finite numbers, and a report must stay strict JSON
    (``allow_nan=False``) so every consumer can read it.
    """
    if x is None:
        return None
    v = float(x)
    if math.isnan(v):
        return "nan"
    if math.isinf(v):
        return "inf" if v > 0 else "-inf"
    return v


def encode_floats(values: Any) -> list[float | str | None]:
    """``encode_float`` of every element of a float64 array, flattened (one numpy
    ``tolist`` where every element is finite, as most are)."""
    a = np.asarray(values, dtype=np.float64).reshape(-1)
    if np.isfinite(a).all():
        return a.tolist()
    return [encode_float(v) for v in a.tolist()]


def decode_float(v: Any) -> float | None:
    """The inverse of `encode_float`; None for what is not a number (a description
    such as 'array of shape [3]', a list, None)."""
    if v is None or isinstance(v, bool | list | dict):
        return None
    if isinstance(v, int | float):
        return float(v)
    if isinstance(v, str) and v in ("nan", "inf", "-inf"):
        return float(v)
    return None


# -------------------------------------------------------------- the messages --

def fmt_ulp(x: Any) -> str:
    """Ulps in a message: three significant digits; 'inf' and 'nan' as Python spells them."""
    v = float(x)
    if not math.isfinite(v):
        return str(v)
    return f"{v:.3g}"


def pass_message(max_ulp: Any, measured: str, index: list[int], got: Any, expected: Any,
                 allowance: Any) -> str:
    """What a passing numeric check says: its largest error, where, and what was allowed."""
    return (f"max {fmt_ulp(max_ulp)} ulp ({measured}) at {list(index)}: got {got}, expected "
            f"{expected}, {fmt_ulp(allowance)} ulp allowed there")


def fail_message(failing: int, elements: int, index: list[int], got: Any, expected: Any,
                 ulp: Any, allowance: Any) -> str:
    """What a failing numeric check says: how many elements, and the worst of them."""
    return (f"{failing} of {elements} element(s) beyond the allowance; worst at {list(index)}: "
            f"got {got}, expected {expected} ({fmt_ulp(ulp)} ulp > {fmt_ulp(allowance)} "
            "allowed)")


def quantity_message(rec: dict[str, Any]) -> str | None:
    """The message a numeric record's own numbers spell out (the judge's words), or None.

    report.json leaves a message out when it is exactly this (harness.report.packed), and
    readers put it back from the same numbers.
    """
    try:
        if rec.get("failing"):
            w = rec["worst"]
            return fail_message(rec["failing"], rec["elements"], w["index"], w["got"],
                                w["expected"], w["ulp"], w["allowance"])
        el = rec.get("largest") or rec["worst"]
        return pass_message(rec["max_ulp"], rec["measured_in"], el["index"], el["got"],
                            el["expected"], el["allowance"])
    except (KeyError, TypeError, ValueError):
        return None


__all__ = ["CHECKS", "NUMERIC_CHECKS", "PACKED_SCHEMA_VERSION", "READABLE_SCHEMA_VERSIONS",
           "SCHEMA_VERSION",
           "SEVERITY_ORDER", "STATUS_ORDER", "UNEXPECTED", "Check", "Element", "Record",
           "Status", "decode_float", "encode_float", "encode_floats", "fail_message", "fmt_ulp",
           "pass_message", "quantity_message"]
