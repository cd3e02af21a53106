"""The HTML view of a report: one self-contained file, every outside string escaped.

The page is a CI artifact people open from disk, offline, often months later, so
nothing is fetched: the CSS and JavaScript beside this module are inlined, the
plots are SVG drawn in the page, and the data travels inside the page as JSON.

Two rules keep it safe and usable:

* Escaping. Case names, plugin names and exception messages come from outside.
  The static sections go through Jinja2 with autoescaping on; the data for the
  scripts is JSON inside ``<script type="application/json">`` with ``<``, ``>``
  and ``&`` written as ``\\u003c`` etc. (`data_json`), and the scripts only ever
  set ``textContent``. Nothing is concatenated into markup.
* Size. A full run holds ~100k results, nearly all passes. Every result keeps a
  compact columnar row (indices into string tables plus its max ulp), so the
  matrix, the filters and the sorting see all of them; the bulky parts (message,
  worst element, values, known entry) travel only for results that are not a plain
  pass, or for every result when the report is small. Lists render lazily, a page
  at a time.

The sections that need no interaction (summary matrix, the sigmoid-then-BCE story,
error behaviour, backends) are rendered here in Python, so they read even with
scripts disabled; the explorer, the plots and the edge-case tables are drawn by
report.js from the embedded data.
"""

from __future__ import annotations

import json
import math
import re
from collections import Counter, defaultdict
from decimal import ROUND_HALF_UP, Decimal
from pathlib import Path
from typing import Any

import jinja2
import markupsafe

from harness.records import (
    NUMERIC_CHECKS,
    SEVERITY_ORDER,
    STATUS_ORDER,
    decode_float,
    quantity_message,
)
from harness.report import packed as layout

_HERE = Path(__file__).resolve().parent
_ENV = jinja2.Environment(
    loader=jinja2.FileSystemLoader(str(_HERE)),
    autoescape=jinja2.select_autoescape(default=True, default_for_string=True),
    undefined=jinja2.StrictUndefined,
    trim_blocks=True,
    lstrip_blocks=True,
)

#: Most alarming first: the order of the matrix colours and of the default sort.
SEVERITY: tuple[str, ...] = SEVERITY_ORDER
DTYPE_ORDER: tuple[str, ...] = ("float16", "bfloat16", "float32", "float64")
CHECK_ORDER: tuple[str, ...] = (*NUMERIC_CHECKS, "raises", "dtype", "shape")

#: Results with more than this many results carry no detail for plain passes.
PASS_DETAILS_LIMIT = 5_000
#: At most this many details travel in the page (most severe first).
DETAILS_LIMIT = 25_000
#: Words in a case's name or tags that put it in the edge-case tables.
EDGE_WORDS = re.compile(
    r"(?:^|[^a-z])(empty|inf|infs|infinity|infinite|nan|nans|subnormal|subnormals|denormal|"
    r"denormals|special|edge|overflow|underflow|zero-size|signed-zero)(?:[^a-z]|$)")

#: sigmoid-then-BCE implementations (the seed documents' "less stable" form) and, per
#: backend, the logits forms to hold them against, preferred first.
NAIVE_IMPLS: dict[str, tuple[str, ...]] = {
    "numpy": ("naive",), "torch": ("sigmoid+bce",), "tensorflow": ("keras-probs",)}
LOGITS_IMPLS: dict[str, tuple[str, ...]] = {
    "numpy": ("formula",), "torch": ("functional", "module"),
    "tensorflow": ("keras", "sigmoid"), "jax": ("jax.nn", "optax")}


def is_naive(backend: str, implementation: str) -> bool:
    """Whether an implementation applies sigmoid first and takes logs of probabilities.

    Named ones come from the shipped backends; a plugin's is recognised by its name
    ("naive", "sigmoid+…", "…probs"), since that is how people label such a twin.
    """
    if implementation in NAIVE_IMPLS.get(backend, ()):
        return True
    low = implementation.lower()
    return low == "naive" or low.startswith("sigmoid+") or low.endswith("probs")


# ------------------------------------------------------------ small helpers ----

def num(v: Any) -> float | None:
    """A report float ('nan'/'inf'/'-inf' strings included) as a Python float."""
    return decode_float(v)


_SPEC = {d: f".{d}g" for d in range(1, 18)}


def compact(v: Any, digits: int = 4) -> Any:
    """A float for the page's data: `digits` significant digits, specials as strings.

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


def data_json(data: Any) -> str:
    """JSON that is safe inside <script type="application/json">.

    Escaping <, > and & as \\u003c etc. means no string in the data can close the
    script element or open a comment, whatever a case or plugin is called.
    """
    text = json.dumps(data, separators=(",", ":"), ensure_ascii=False, allow_nan=False)
    return (text.replace("&", "\\u0026").replace("<", "\\u003c").replace(">", "\\u003e")
            .replace("\u2028", "\\u2028").replace("\u2029", "\\u2029"))


def _interner() -> tuple[list[str], Any]:
    table: list[str] = []
    index: dict[str, int] = {}

    def intern(s: Any) -> int:
        s = "" if s is None else str(s)
        i = index.get(s)
        if i is None:
            i = index[s] = len(table)
            table.append(s)
        return i

    return table, intern


def _ordered(values: set[str], order: tuple[str, ...]) -> list[str]:
    return sorted(values, key=lambda v: (order.index(v) if v in order else len(order), v))


def worst_status(counts: dict[str, int]) -> str:
    return next((s for s in SEVERITY if counts.get(s)), "none")


def _ratio(r: dict[str, Any]) -> float:
    """max ulp over allowance: how far past (or short of) the line a result is."""
    u, a = num(r.get("max_ulp")), num(r.get("allowance"))
    if u is None:
        return -1.0
    if math.isnan(u):
        return math.inf
    if not u:
        return 0.0
    if a is None or not a or math.isnan(a):
        return u
    return u / a


def is_edge_case(name: str, info: dict[str, Any] | None) -> bool:
    words = [name.lower(), *(str(t).lower() for t in (info or {}).get("tags", []))]
    return any(EDGE_WORDS.search(w) for w in words)


# --------------------------------------------------------------- page data ----

def _row_order(report: dict[str, Any], keys: set[tuple[str, str, str]]) -> list[tuple[str, ...]]:
    """Rows in the order the backends list them, so the matrix reads like the run."""
    rank: dict[tuple[str, str], tuple[int, int]] = {}
    for bi, b in enumerate(report.get("backends", [])):
        for ii, impl in enumerate(b.get("implementations", [])):
            rank[(b["name"], impl)] = (bi, ii)
        for di, dev in enumerate(b.get("devices", [])):
            rank[(b["name"], "@" + dev)] = (bi, di)
    big = (10**6, 10**6)
    return sorted(keys, key=lambda k: (rank.get((k[0], k[1]), big), k[0], k[1],
                                       rank.get((k[0], "@" + k[2]), big), k[2]))


#: Characters that stand for small indices in the page's columns: one byte each, none
#: that `data_json` must escape.
_ALPHABET = "0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"


def _chars(indices: list[int], table_size: int) -> str | list[int]:
    """A column of indices into a small table as one string (a character each), or the
    list itself when the table is too long for the alphabet."""
    if table_size > len(_ALPHABET):
        return indices
    return "".join(_ALPHABET[i] for i in indices)


def page_data(report: dict[str, Any], pass_details_limit: int = PASS_DETAILS_LIMIT,
              details_limit: int = DETAILS_LIMIT) -> dict[str, Any]:
    """Everything report.js needs, compact: string tables, columns, details, plots.

    Each result is a few characters and two numbers: what it shares with the results
    before it (backend/implementation row, dtype, case, reduction: the checks of one
    call) is a run (`runs`), its check, status and format are characters of strings,
    and its max ulp and allowance are listed only when it has them (`ua`). Lists of
    values (sweep profiles and allowances, small results' values) are stored once in
    `arrays` however many results show them; expectations and messages are tables.
    """
    report = layout.unpack(report)
    results = report.get("results", [])
    cases_info = report.get("cases", {}) or {}
    keys = {(r["backend"], r["implementation"], r["device"]) for r in results}
    rows = _row_order(report, keys)
    row_index = {k: i for i, k in enumerate(rows)}
    dtypes = _ordered({r["dtype"] for r in results}, DTYPE_ORDER)
    checks = _ordered({r["check"] for r in results}, CHECK_ORDER)
    reductions = _ordered({r.get("reduction", "") for r in results}, ("none", "mean", "sum"))
    statuses = list(STATUS_ORDER) + sorted({r["status"] for r in results} - set(STATUS_ORDER))
    cases, case_id = _interner()
    measured, measured_id = _interner()
    messages, message_id = _interner()
    d_idx = {d: i for i, d in enumerate(dtypes)}
    c_idx = {c: i for i, c in enumerate(checks)}
    red_idx = {x: i for i, x in enumerate(reductions)}
    s_idx = {s: i for i, s in enumerate(statuses)}

    # which results carry details: every non-pass (most severe first, up to the limit),
    # and passes too when the report is small
    keep_pass = len(results) <= pass_details_limit
    candidates = [i for i, r in enumerate(results) if keep_pass or r["status"] != "pass"]
    if len(candidates) > details_limit:
        sev = {s: i for i, s in enumerate(SEVERITY)}
        candidates.sort(key=lambda i: (sev.get(results[i]["status"], 99),
                                       -_ratio(results[i])))
        candidates = sorted(candidates[:details_limit])
    with_detail = set(candidates)

    runs: list[list[int]] = []  # [row, dtype, case, reduction, how many results]
    check_col: list[int] = []
    status_col: list[int] = []
    measured_col: list[int] = []
    ua: list[str] = []  # per result: 0 neither, 1 max ulp only, 2 both, 3 allowance only
    ulps: list[Any] = []
    allows: list[Any] = []
    detailed: list[int] = []
    details: list[dict[str, Any]] = []
    matrix: dict[str, dict[str, dict[str, Any]]] = defaultdict(dict)
    profiles: list[dict[str, Any]] = []
    edge: dict[str, list[Any]] = {k: [] for k in ("row", "dtype", "case", "red", "check",
                                                   "status", "got", "expected", "elements")}
    edge_names = {name for name, info in cases_info.items() if is_edge_case(name, info)}
    arrays: list[list[Any]] = []
    array_index: dict[str, int] = {}
    notes: list[dict[str, Any]] = []
    note_index: dict[tuple[Any, ...], int] = {}

    raw_index: dict[tuple[Any, ...], int] = {}

    def shared(raw: list[Any], digits: int) -> int:
        """Index of `raw` (compacted) in the shared arrays, stored once."""
        rkey = (digits, *raw)
        if rkey in raw_index:
            return raw_index[rkey]
        values = [compact(v, digits) for v in raw]
        key = json.dumps(values)
        if key not in array_index:
            array_index[key] = len(arrays)
            arrays.append(values)
        raw_index[rkey] = array_index[key]
        return array_index[key]

    def note(e: dict[str, Any]) -> int:
        key = (e.get("id"), e.get("kind"), e.get("reason"), e.get("upstream"))
        if key not in note_index:
            note_index[key] = len(notes)
            notes.append({"id": e.get("id"), "kind": e.get("kind"), "reason": e.get("reason"),
                          "upstream": e.get("upstream")})
        return note_index[key]

    for i, r in enumerate(results):
        key = (r["backend"], r["implementation"], r["device"])
        ri = row_index[key]
        ci = case_id(r["case"])
        status = r["status"]
        at = [ri, d_idx[r["dtype"]], ci, red_idx[r.get("reduction", "")]]
        if runs and runs[-1][:4] == at:
            runs[-1][4] += 1
        else:
            runs.append([*at, 1])
        check_col.append(c_idx[r["check"]])
        status_col.append(s_idx[status])
        measured_col.append(measured_id(r.get("measured_in", "")))
        u, a = compact(r.get("max_ulp")), compact(r.get("allowance"))
        ua.append("0" if u is None and a is None else "1" if a is None else
                  "3" if u is None else "2")
        if u is not None:
            ulps.append(u)
        if a is not None:
            allows.append(a)
        if i in with_detail:
            detailed.append(i)
            details.append(_detail(r, cases_info.get(r["case"], {}).get("source"), message_id,
                                   note, shared))

        cell = matrix[str(ri)].setdefault(r["dtype"], {"counts": Counter(),
                                                       "pass_max_ulp": None,
                                                       "pass_max_ratio": None})
        cell["counts"][status] += 1
        if status == "pass" and r["check"] in NUMERIC_CHECKS:
            u = num(r.get("max_ulp"))
            if u is not None and (cell["pass_max_ulp"] is None or u > cell["pass_max_ulp"]):
                cell["pass_max_ulp"] = u
            # how close the closest call came: ulp over allowance at the worst element
            w = r.get("worst") or {}
            wu, wa = num(w.get("ulp")), num(w.get("allowance"))
            if wu is not None and wa and math.isfinite(wa) and math.isfinite(wu):
                q = wu / wa
                if cell["pass_max_ratio"] is None or q > cell["pass_max_ratio"]:
                    cell["pass_max_ratio"] = q

        prof = r.get("profile")
        if prof and prof.get("x"):
            # the logits (and usually the allowance) of one sweep are the same for every
            # backend, and twins (a module around a function) have the same errors:
            # shared arrays, stored once
            profiles.append({"row": ri, "dtype": d_idx[r["dtype"]], "case": ci,
                             "check": c_idx[r["check"]], "status": s_idx[status],
                             "x": shared(prof["x"], 6), "ulp": shared(prof["ulp"], 3),
                             "allow": shared(prof["allowance"], 3)})
        if r["case"] in edge_names and r["check"] in NUMERIC_CHECKS:
            vals = r.get("values") or {}
            edge["row"].append(ri)
            edge["dtype"].append(d_idx[r["dtype"]])
            edge["case"].append(ci)
            edge["red"].append(red_idx[r.get("reduction", "")])
            edge["check"].append(c_idx[r["check"]])
            edge["status"].append(s_idx[status])
            edge["got"].append(shared(vals.get("got", []), 8) if vals else -1)
            edge["expected"].append(shared(vals.get("expected", []), 8) if vals else -1)
            edge["elements"].append(r.get("elements"))

    for per in matrix.values():
        for cell in per.values():
            cell["worst"] = worst_status(cell["counts"])
            cell["counts"] = dict(cell["counts"])
            cell["pass_max_ulp"] = compact(cell["pass_max_ulp"], 3)
            cell["pass_max_ratio"] = compact(cell["pass_max_ratio"], 2)

    case_meta = []
    for name in cases:
        info = cases_info.get(name, {})
        case_meta.append({"source": info.get("source", ""),
                          "description": info.get("description", ""),
                          "tags": info.get("tags", []), "shape": info.get("shape"),
                          "raises": info.get("raises", []),
                          "values": _case_values(info.get("values"))})
    return {
        "statuses": statuses, "severity": list(SEVERITY), "rows": [list(k) for k in rows],
        "dtypes": dtypes, "checks": checks, "reductions": reductions, "cases": cases,
        "case_meta": case_meta, "measured": measured,
        "origins": {b["name"]: b.get("origin", "") for b in report.get("backends", [])},
        "matrix": matrix,
        "results": {"n": len(results), "runs": runs,
                    "check": _chars(check_col, len(checks)),
                    "status": _chars(status_col, len(statuses)),
                    "mi": _chars(measured_col, len(measured)),
                    "ua": "".join(ua), "ulp": ulps, "allow": allows, "detailed": detailed},
        "details": details, "messages": messages, "notes": notes,
        "details_dropped": sum(1 for r in results if r["status"] != "pass")
        - sum(1 for i in with_detail if results[i]["status"] != "pass"),
        "profiles": profiles, "arrays": arrays, "edge": edge, "summary": report.get("summary", {}),
        "naive": [i for i, k in enumerate(rows) if is_naive(k[0], k[1])],
        "run": {k: (report.get("run") or {}).get(k) for k in ("seed", "examples")},
    }


def columns(data: dict[str, Any]) -> dict[str, list[Any]]:
    """The page's result columns, one entry per result (what report.js rebuilds from
    the compact form): row, dtype, case, red, check, status, mi, ulp, allow, detail."""
    res = data["results"]
    out: dict[str, list[Any]] = {k: [] for k in ("row", "dtype", "case", "red", "check",
                                                  "status", "mi", "ulp", "allow", "detail")}
    for row, dtype, case, red, n in res["runs"]:
        for k, v in (("row", row), ("dtype", dtype), ("case", case), ("red", red)):
            out[k].extend([v] * n)
    for k in ("check", "status", "mi"):
        col = res[k]
        out[k] = [_ALPHABET.index(c) for c in col] if isinstance(col, str) else list(col)
    ulps, allows = iter(res["ulp"]), iter(res["allow"])
    for flag in res["ua"]:
        out["ulp"].append(next(ulps) if flag in "12" else None)
        out["allow"].append(next(allows) if flag in "23" else None)
    detail = dict(zip(res["detailed"], range(len(res["detailed"])), strict=True))
    out["detail"] = [detail.get(i, -1) for i in range(res["n"])]
    return out


def _case_values(values: Any) -> dict[str, Any] | None:
    """A small case's arguments (when the report's `cases` section carries them)."""
    if not isinstance(values, dict):
        return None
    out: dict[str, Any] = {}
    for k, v in values.items():
        if isinstance(v, list) and len(v) <= 64 and all(not isinstance(x, list) for x in v):
            out[str(k)] = [compact(x, 17) for x in v]
        elif v is None or isinstance(v, (int, float, str)):
            out[str(k)] = compact(v, 17)
    return out or None


def _detail(r: dict[str, Any], case_source: str | None, message_id: Any, note: Any,
            shared: Any) -> dict[str, Any]:
    """The bulky part of one result, with short keys (there may be 25k of them).

    A message that is exactly what the judge says with the numbers the detail carries
    (`harness.records.quantity_message`) is left for report.js to write; any other is
    an index into the page's message table (`unsupported` reasons repeat thousands of
    times). Expectations are indices into its table of notes."""
    d: dict[str, Any] = {}
    message = r.get("message", "")
    w = r.get("worst")
    largest = r.get("largest")
    derivable = (bool(message) and r.get("check") in NUMERIC_CHECKS and isinstance(w, dict)
                 and (r.get("failing") or not largest or largest == w)
                 and message == quantity_message(r) and message == _composed(r))
    if derivable:
        if r.get("failing"):
            d["f"] = r["failing"]
    else:
        d["m"] = message_id(message)
    if r.get("source") and r["source"] != case_source:
        d["src"] = r["source"]
    for short, key in (("c", "cond"), ("el", "elements"), ("kd", "kind"), ("rp", "repro")):
        if r.get(key) is not None:
            d[short] = compact(r[key]) if key == "cond" else r[key]
    if r.get("duration_s") is not None:
        d["t"] = r["duration_s"]
    if w:
        d["w"] = {"i": w.get("index", []),
                  "in": {k: (compact(v, 17) if not isinstance(v, str) or v in
                             ("nan", "inf", "-inf") else v)
                         for k, v in (w.get("inputs") or {}).items() if v is not None},
                  "e": compact(w.get("expected"), 17), "g": compact(w.get("got"), 17),
                  "u": compact(w.get("ulp")), "a": compact(w.get("allowance")),
                  "c": compact(w.get("cond"))}
    if r.get("values"):
        d["v"] = {"g": shared(r["values"].get("got", []), 8),
                  "e": shared(r["values"].get("expected", []), 8)}
    by = r.get("expected_by")
    if by:
        d["k"] = [note(e) for e in by if isinstance(e, dict)]
    return d


def _js_fixed(f: float, digits: int) -> str:
    """JavaScript's `f.toFixed(digits)`: halves rounded away from zero, on the exact
    binary value."""
    q = Decimal(abs(f)).quantize(Decimal(1).scaleb(-digits), rounding=ROUND_HALF_UP)
    return ("-" if f < 0 else "") + f"{q:f}"


def _js_g3(v: Any) -> str:
    """What report.js's pyG3 writes for `v` (Python's "%.3g", computed as JavaScript
    rounds: `toExponential(2)`, then `toFixed`)."""
    f = num(v)
    if f is None:
        return str(v)
    if math.isnan(f):
        return "nan"
    if math.isinf(f):
        return "inf" if f > 0 else "-inf"
    if f == 0:
        return "-0" if math.copysign(1.0, f) < 0 else "0"
    d = Decimal(abs(f))
    exp = d.adjusted()
    mant = d.scaleb(-exp).quantize(Decimal("1.00"), rounding=ROUND_HALF_UP)
    if mant >= 10:
        mant, exp = (mant / 10).quantize(Decimal("1.00"), rounding=ROUND_HALF_UP), exp + 1
    sign = "-" if f < 0 else ""
    if exp < -4 or exp >= 3:
        m = f"{mant:f}".rstrip("0").rstrip(".")
        return f"{sign}{m}e{'-' if exp < 0 else '+'}{abs(exp):02d}"
    s = _js_fixed(f, max(0, 2 - exp))
    if "." in s:
        s = s.rstrip("0").rstrip(".")
    return s


def _js_repr(v: Any) -> str:
    """What report.js's pyRepr writes for a compacted float: Python's repr."""
    if isinstance(v, str) or v is None:
        return str(v)
    return repr(float(v))


def _composed(r: dict[str, Any]) -> str | None:
    """The message report.js composes from the numbers a detail carries (compacted), so
    the page may leave it out only when it comes out the same."""
    w = r.get("worst") or {}
    idx = "[" + ", ".join(str(i) for i in w.get("index") or []) + "]"
    got, exp = _js_repr(compact(w.get("got"), 17)), _js_repr(compact(w.get("expected"), 17))
    if r.get("failing"):
        return (f"{r['failing']} of {r.get('elements')} element(s) beyond the allowance; worst "
                f"at {idx}: got {got}, expected {exp} ({_js_g3(compact(w.get('ulp')))} ulp > "
                f"{_js_g3(compact(w.get('allowance')))} allowed)")
    return (f"max {_js_g3(compact(r.get('max_ulp')))} ulp ({r.get('measured_in', '')}) at {idx}: "
            f"got {got}, expected {exp}, {_js_g3(compact(w.get('allowance')))} ulp allowed there")


# ------------------------------------------------------------ static parts ----

def matrix_view(data: dict[str, Any]) -> dict[str, Any]:
    """The summary matrix as rows of cells, ready for the template."""
    out_rows = []
    prev_backend = None
    for i, (backend, impl, device) in enumerate(data["rows"]):
        cells = []
        for dt in data["dtypes"]:
            cell = data["matrix"].get(str(i), {}).get(dt)
            if cell is None:
                cells.append(None)
                continue
            counts = [(s, cell["counts"][s]) for s in SEVERITY if cell["counts"].get(s)]
            cells.append({"dtype": dt, "worst": cell["worst"], "counts": counts,
                          "pass_max_ulp": None if cell["pass_max_ulp"] is None
                          else fmt(cell["pass_max_ulp"]),
                          "pass_pct": None if cell["pass_max_ratio"] is None
                          else f"{100 * num(cell['pass_max_ratio']):.0f}%"})
        out_rows.append({"index": i, "backend": backend, "impl": impl, "device": device,
                         "first": backend != prev_backend, "cells": cells,
                         "naive": is_naive(backend, impl)})
        prev_backend = backend
    return {"dtypes": data["dtypes"], "rows": out_rows}


def error_behaviour(report: dict[str, Any]) -> list[dict[str, Any]]:
    """What each framework does with each invalid input (the `raises` checks).

    Outcomes are grouped: the same exception for every dtype and reduction is one
    line, so a table of 4 frameworks × 20 invalid inputs stays readable.
    """
    by_case: dict[str, dict[tuple[str, str], dict[tuple[str, str, str], list[str]]]] = {}
    for r in report.get("results", []):
        if r["check"] != "raises":
            continue
        per = by_case.setdefault(r["case"], {})
        outcomes = per.setdefault((r["backend"], r["implementation"]), {})
        where = f"{r['device']} {r['dtype']} {r.get('reduction', '')}".strip()
        outcomes.setdefault((r["status"], r.get("kind", ""), r.get("message", "")),
                            []).append(where)
    cases_info = report.get("cases", {}) or {}
    sev = {s: i for i, s in enumerate(SEVERITY)}
    out = []
    for case, per in by_case.items():
        info = cases_info.get(case, {})
        rows = []
        for (backend, impl), outcomes in per.items():
            total = sum(len(w) for w in outcomes.values())
            items = []
            for (status, kind, message), where in sorted(
                    outcomes.items(), key=lambda kv: (sev.get(kv[0][0], 99), -len(kv[1]))):
                items.append({"status": status, "kind": kind, "message": message,
                              "where": "every call" if len(where) == total else
                              _summarize_where(where)})
            worst = min((o["status"] for o in items), key=lambda s: sev.get(s, 99))
            short = list(dict.fromkeys(_short_outcome(o) for o in items))  # distinct, in order
            rows.append({"backend": backend, "impl": impl, "outcomes": items, "worst": worst,
                         "short": short[0] + (f" (+{len(short) - 1})" if len(short) > 1 else ""),
                         "title": "\n".join(f"{o['where']}: {o['message']}" for o in items)})
        out.append({"case": case, "raises": " or ".join(info.get("raises", [])) or "an error",
                    "description": info.get("description", ""),
                    "source": info.get("source", ""), "rows": rows,
                    "by_impl": {(r["backend"], r["impl"]): r for r in rows}})
    return out


def error_columns(report: dict[str, Any], cases: list[dict[str, Any]]) -> list[tuple[str, str]]:
    """The backend/implementation columns of the error-behaviour overview, in run order."""
    present = {k for c in cases for k in c["by_impl"]}
    ordered = [(b["name"], i) for b in report.get("backends", [])
               for i in b.get("implementations", []) if (b["name"], i) in present]
    return ordered + sorted(present - set(ordered))


_RAISED = re.compile(r"raised ([A-Za-z_][\w.]*)")


def _short_outcome(o: dict[str, Any]) -> str:
    """A cell's worth: the exception type raised, or what happened instead."""
    m = _RAISED.match(o["message"])
    if m:
        return m.group(1)
    if o["kind"] == "silent-accept" or o["message"].startswith("returned"):
        return "no error"
    return o["status"]


def _summarize_where(where: list[str]) -> str:
    if len(where) <= 4:
        return ", ".join(where)
    return ", ".join(where[:3]) + f" and {len(where) - 3} more"


# ------------------------------------------------------------------- story ----

def _profile_facts(prof: dict[str, Any]) -> dict[str, Any]:
    """Where along a logit sweep a result leaves its allowance, and how far.

    Starting from the swept logit nearest 0, walk outwards to the first point on
    each side whose error exceeds the allowance; also find where the error first
    becomes infinite (a non-finite result where the exact loss is finite).
    """
    xs = [num(v) for v in prof["x"]]
    us = [num(v) for v in prof["ulp"]]
    al = [num(v) for v in prof["allowance"]]
    pts = sorted((x, u, a) for x, u, a in zip(xs, us, al, strict=False)
                 if x is not None and u is not None and math.isfinite(x))
    if not pts:
        return {}

    def bad(u: float, a: float | None) -> bool:
        return math.isnan(u) or (a is not None and not math.isnan(a) and u > a)

    start = min(range(len(pts)), key=lambda i: abs(pts[i][0]))
    hi = next((i for i in range(start, len(pts)) if bad(pts[i][1], pts[i][2])), None)
    lo = next((i for i in range(start, -1, -1) if bad(pts[i][1], pts[i][2])), None)
    finite = [p for p in pts if math.isfinite(p[1])]
    nonfinite = [p[0] for p in pts if not math.isfinite(p[1])]
    breaks = [p for p in (pts[hi] if hi is not None else None,
                          pts[lo] if lo is not None else None) if p is not None]
    return {
        "n": len(pts), "x_min": pts[0][0], "x_max": pts[-1][0],
        "max_ulp": max(p[1] for p in pts),
        "max_finite": max(finite, key=lambda p: p[1]) if finite else None,
        "ok_lo": pts[lo + 1][0] if lo is not None else pts[0][0],
        "ok_hi": pts[hi - 1][0] if hi is not None else pts[-1][0],
        "first_out": min(breaks, key=lambda p: abs(p[0])) if breaks else None,
        "inf_abs": min((abs(x) for x in nonfinite), default=None),
        "inf_hi": min((x for x in nonfinite if x > 0), default=None),
        "inf_lo": max((x for x in nonfinite if x < 0), default=None),
        "bad": sum(1 for p in pts if bad(p[1], p[2])),
    }


def story(report: dict[str, Any]) -> dict[str, Any]:
    """The seed documents' point, told with this run's numbers.

    Sigmoid then BCE is mathematically the same loss as the logits form, but
    1 − sigmoid(x) rounds to 0 (or sigmoid(x) to 1) once |x| is large, and the log of
    it is then −∞ or clamped. Which logits, how many ulps and which checks fail are
    read from this run's profiles and results, never written in advance: a run whose
    naive forms pass says so.
    """
    results = report.get("results", [])
    impls: dict[str, set[str]] = defaultdict(set)
    for r in results:
        impls[r["backend"]].add(r["implementation"])
    pairs = []
    for backend in sorted(impls, key=lambda b: ([*NAIVE_IMPLS, b].index(b), b)):
        naive = sorted(i for i in impls[backend] if is_naive(backend, i))
        preferred = [i for i in LOGITS_IMPLS.get(backend, ()) if i in impls[backend]]
        others = sorted(i for i in impls[backend] if not is_naive(backend, i))
        logits = (preferred or others or [None])[0]
        for nv in naive:
            pairs.append(_pair(results, backend, nv, logits))
    if not pairs:
        return {"pairs": [], "dtypes": [], "headline": [], "sweeps": []}
    dtypes = _ordered({row["dtype"] for p in pairs for row in p["table"]}, DTYPE_ORDER)
    for p in pairs:
        by = {row["dtype"]: row for row in p["table"]}
        p["cells"] = [{side: by[dt][side] for side in ("naive", "logits")} if dt in by else None
                      for dt in dtypes]
    sweeps = _sweep_rows(pairs)
    return {"pairs": pairs, "dtypes": dtypes, "headline": _headline(pairs, sweeps),
            "sweeps": sweeps}


def _pair(results: list[dict[str, Any]], backend: str, naive: str,
          logits: str | None) -> dict[str, Any]:
    """Counts, sweep facts and the most telling failure of one naive/logits pair."""
    mine = [r for r in results if r["backend"] == backend
            and r["implementation"] in (naive, logits) and r["check"] in NUMERIC_CHECKS]
    table = []
    for dt in _ordered({r["dtype"] for r in mine}, DTYPE_ORDER):
        row: dict[str, Any] = {"dtype": dt}
        for side, impl in (("naive", naive), ("logits", logits)):
            rs = [r for r in mine if r["dtype"] == dt and r["implementation"] == impl
                  and r["status"] in ("pass", "fail", "known", "fixed")]
            ulps = [u for u in (num(r.get("max_ulp")) for r in rs) if u is not None]
            row[side] = {"n": len(rs), "bad": sum(r["status"] in ("fail", "known") for r in rs),
                         "max_ulp": max(ulps) if ulps else None}
        table.append(row)

    prof = [r for r in mine if r.get("profile") and r["check"] == "value"]
    sweeps = []
    for r in prof:
        if r["implementation"] != naive:
            continue
        facts = _profile_facts(r["profile"])
        partner = next((p for p in prof if p["implementation"] == logits
                        and p["dtype"] == r["dtype"] and p["case"] == r["case"]
                        and p["device"] == r["device"]), None)
        if facts:
            sweeps.append({"case": r["case"], "dtype": r["dtype"], "device": r["device"],
                           "facts": facts,
                           "partner": _profile_facts(partner["profile"]) if partner else {}})

    # the most telling failure: at one element with finite inputs and a finite exact
    # value, where the logits form passes the same check; the largest error wins
    def finite_inputs(r: dict[str, Any]) -> bool:
        w = r.get("worst") or {}
        vals = [num((w.get("inputs") or {}).get(k)) for k in ("input", "target")]
        e = num(w.get("expected"))
        return all(v is not None and math.isfinite(v) for v in vals) and e is not None \
            and math.isfinite(e)

    by_key = {(p["dtype"], p["case"], p.get("reduction"), p["check"], p["device"]): p
              for p in mine if p["implementation"] == logits}

    def partner_of(r: dict[str, Any]) -> dict[str, Any] | None:
        return by_key.get((r["dtype"], r["case"], r.get("reduction"), r["check"], r["device"]))

    bad = [r for r in mine if r["implementation"] == naive and r["status"] in ("fail", "known")
           and finite_inputs(r)]
    example = None
    if bad:
        pref = ("float16", "bfloat16", "float64", "float32")  # the most used dtype wins ties

        def telling(r: dict[str, Any]) -> tuple[bool, float, bool, int, float]:
            p = partner_of(r)
            x = num(r["worst"]["inputs"]["input"]) or 0.0
            return (p is not None and p["status"] == "pass", num(r["worst"].get("ulp")) or 0.0,
                    r["check"] == "value", pref.index(r["dtype"]) if r["dtype"] in pref else -1,
                    -abs(x))

        r = max(bad, key=telling)
        w = r["worst"]
        partner = partner_of(r)
        example = {"check": r["check"], "dtype": r["dtype"], "case": r["case"],
                   "reduction": r.get("reduction", ""),
                   "x": fmt(w["inputs"].get("input"), 6), "y": fmt(w["inputs"].get("target"), 6),
                   "got": fmt(w.get("got"), 8), "expected": fmt(w.get("expected"), 8),
                   "ulp": fmt(w.get("ulp")),
                   "partner_status": partner["status"] if partner else None,
                   "partner_ulp": fmt(partner.get("max_ulp")) if partner else None}
    return {"backend": backend, "naive": naive, "logits": logits, "table": table,
            "sweeps": sweeps, "example": example,
            "bad": sum(row["naive"]["bad"] for row in table),
            "n": sum(row["naive"]["n"] for row in table),
            "logits_bad": sum(row["logits"]["bad"] for row in table),
            "logits_n": sum(row["logits"]["n"] for row in table)}


def _sweep_rows(pairs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One table row per naive implementation and sweep case, one cell per dtype."""
    rows = []
    for p in pairs:
        cases = sorted({s["case"] for s in p["sweeps"]})
        for case in cases:
            cells = {}
            partner_max: list[float] = []
            for s in p["sweeps"]:
                if s["case"] != case:
                    continue
                f = s["facts"]
                lines = []
                if not f["bad"]:
                    lines.append(f"within the allowance everywhere (max {fmt(f['max_ulp'])} ulp)")
                else:
                    lines.append(f"within only for {fmt(f['ok_lo'], 4)} ≤ x ≤ {fmt(f['ok_hi'], 4)}")
                    fo = f["first_out"]
                    if fo is not None:
                        lines.append(f"x = {fmt(fo[0], 4)}: {fmt(fo[1])} ulp > {fmt(fo[2])}")
                    if f["inf_hi"] is not None:
                        lines.append(f"∞ ulp from x = {fmt(f['inf_hi'], 4)}")
                    if f["inf_lo"] is not None:
                        lines.append(f"∞ ulp for x ≤ {fmt(f['inf_lo'], 4)}")
                    mf = f["max_finite"]
                    if mf is not None and mf[1] > 1e3:
                        lines.append(f"finite errors up to {fmt(mf[1])} ulp")
                cells[s["dtype"]] = {"lines": lines, "bad": f["bad"], "n": f["n"]}
                if s["partner"]:
                    partner_max.append(s["partner"]["max_ulp"])
            rows.append({"impl": f"{p['backend']}/{p['naive']}", "case": case, "cells": cells,
                         "logits": f"{p['backend']}/{p['logits']}" if p["logits"] else None,
                         "partner_max": fmt(max(partner_max)) if partner_max else None})
    return rows


def _headline(pairs: list[dict[str, Any]], sweeps: list[dict[str, Any]]) -> list[str]:
    """Two or three sentences with the run's own numbers."""
    names = ", ".join(f"{p['backend']}/{p['naive']}" for p in pairs)
    twins = ", ".join(sorted({f"{p['backend']}/{p['logits']}" for p in pairs if p["logits"]}))
    bad, n = sum(p["bad"] for p in pairs), sum(p["n"] for p in pairs)
    lbad, ln = sum(p["logits_bad"] for p in pairs), sum(p["logits_n"] for p in pairs)
    out = [f"The sigmoid-then-BCE forms in this run ({names}) are outside the allowance in "
           f"{bad} of {n} numeric checks"
           + (f"; their logits-form twins ({twins}) in {lbad} of {ln}." if twins else ".")]
    first_out: dict[str, float] = {}
    inf_at: dict[str, float] = {}
    partner_max: list[float] = []
    for p in pairs:
        for s in p["sweeps"]:
            f = s["facts"]
            if f["first_out"] is not None:
                x = abs(f["first_out"][0])
                first_out[s["dtype"]] = min(first_out.get(s["dtype"], x), x)
            if f["inf_abs"] is not None:
                inf_at[s["dtype"]] = min(inf_at.get(s["dtype"], f["inf_abs"]), f["inf_abs"])
            if s["partner"]:
                partner_max.append(s["partner"]["max_ulp"])
    if first_out:
        order = _ordered(set(first_out) | set(inf_at), DTYPE_ORDER)
        leave = ", ".join(f"|x| = {fmt(first_out[d], 4)} in {d}" for d in order if d in first_out)
        s = f"Along the logit sweeps they leave the allowance from {leave}"
        if inf_at:
            s += ("; their error becomes infinite (a NaN, an infinity or a clamped log where the "
                  "exact loss is finite) from " + ", ".join(
                      f"|x| = {fmt(inf_at[d], 4)} ({d})" for d in order if d in inf_at))
        if partner_max:
            s += (f". On the same sweeps the logits forms stay within {fmt(max(partner_max))} "
                  "ulp" if all(math.isfinite(u) for u in partner_max) else
                  ". On the same sweeps some logits forms fail too (see the plots)")
        out.append(s + ".")
    elif any(p["sweeps"] for p in pairs):
        out.append("Along the logit sweeps they stay within the allowance everywhere in this run.")
    else:
        out.append("This run has no logit sweep (a case tagged `sweep`, reduction none) to say "
                   "where along the logits the naive form breaks.")
    return out


# ------------------------------------------------------------------ render ----

def _asset(name: str) -> str:
    return (_HERE / name).read_text(encoding="utf-8")


def render(report: dict[str, Any]) -> str:
    """The whole page as one string (harness.report.write saves it as report.html)."""
    report = layout.unpack(report)  # a report.json as written (version 3) reads flat
    data = page_data(report)
    js = _asset("report.js")
    css = _asset("report.css")
    if "</script" in js.lower() or "</style" in css.lower():  # our own files; keep them so
        raise ValueError("report.js / report.css must not contain a closing tag")
    run = report.get("run", {}) or {}
    summary = report.get("summary", {}) or {}
    errors = error_behaviour(report)
    return _ENV.get_template("report.html.j2").render(
        report=report, run=run, summary=[(s, summary.get(s, 0)) for s in SEVERITY
                                         if s in summary],
        total=len(report.get("results", [])),
        matrix=matrix_view(data), story=story(report),
        errors=errors, error_columns=error_columns(report, errors),
        per_backend=run.get("per_backend", {}) or {},
        expectations=sorted((e for e in report.get("expectations") or []
                             if e.get("status") != "not-run"),
                            key=lambda e: ("fixed", "unused", "used").index(e["status"])
                            if e.get("status") in ("fixed", "unused", "used") else 3),
        details_dropped=data["details_dropped"],
        data=markupsafe.Markup(data_json(data)),
        css=markupsafe.Markup(css), js=markupsafe.Markup(js), fmt=fmt,
    )
