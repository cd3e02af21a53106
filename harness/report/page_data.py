"""What report.js needs, packed small: the page's data island (`page_data`).

A full run holds ~100k results, nearly all passes. Every result keeps a compact
columnar row (indices into string tables plus its max ulp), so the matrix, the filters
and the sorting see all of them; the bulky parts (message, worst element, values, known
entry) travel only for results that are not a plain pass, or for every result when the
report is small. This packs the document; what it shows is the records and the
report's `findings` (harness.report.findings), never worked out here.
"""

from __future__ import annotations

import json
import math
import re
from decimal import ROUND_HALF_UP, Decimal
from typing import Any

from harness.records import (
    NUMERIC_CHECKS,
    SEVERITY_ORDER,
    STATUS_ORDER,
    quantity_message,
)
from harness.report import findings as found_in
from harness.report import packed as layout
from harness.report.figures import DTYPE_ORDER, compact, num, ordered

#: Most alarming first: the order of the matrix colours and of the default sort.
SEVERITY: tuple[str, ...] = SEVERITY_ORDER
CHECK_ORDER: tuple[str, ...] = (*NUMERIC_CHECKS, "raises", "dtype", "shape")

#: Results with more than this many results carry no detail for plain passes.
PASS_DETAILS_LIMIT = 5_000
#: At most this many details travel in the page (most severe first).
DETAILS_LIMIT = 25_000
#: ... of which at most this many `known` ones (those furthest beyond their allowance).
KNOWN_DETAILS_LIMIT = 8_000
#: Words in a case's name or tags that put it in the edge-case tables.
EDGE_WORDS = re.compile(
    r"(?:^|[^a-z])(empty|inf|infs|infinity|infinite|nan|nans|subnormal|subnormals|denormal|"
    r"denormals|special|edge|overflow|underflow|zero-size|signed-zero)(?:[^a-z]|$)")


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
              details_limit: int = DETAILS_LIMIT,
              findings: dict[str, Any] | None = None) -> dict[str, Any]:
    """Everything report.js needs, compact: string tables, columns, details, plots.

    The matrix and which rows are sigmoid-then-BCE forms come from `findings` (the
    report's own unless given; computed when it has none).

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
    rows = found_in.row_order(report.get("backends") or [], keys)
    row_index = {k: i for i, k in enumerate(rows)}
    dtypes = ordered({r["dtype"] for r in results}, DTYPE_ORDER)
    checks = ordered({r["check"] for r in results}, CHECK_ORDER)
    reductions = ordered({r.get("reduction", "") for r in results}, ("none", "mean", "sum"))
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
    known = [i for i in candidates if results[i]["status"] == "known"]
    if len(known) > KNOWN_DETAILS_LIMIT and not keep_pass:
        # `known` results are the bulk of a large page (their worst elements): keep those
        # furthest beyond their allowance; an unsupported reason is short and always kept
        known.sort(key=lambda i: -_ratio(results[i]))
        dropped = set(known[KNOWN_DETAILS_LIMIT:])
        candidates = [i for i in candidates if i not in dropped]
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
    profiles: list[dict[str, Any]] = []
    edge: dict[str, list[Any]] = {k: [] for k in ("row", "dtype", "case", "red", "check",
                                                   "status", "got", "expected", "elements")}
    edge_names = {name for name, info in cases_info.items() if is_edge_case(name, info)}
    arrays: list[list[Any]] = []
    array_index: dict[str, int] = {}
    notes: list[dict[str, Any]] = []
    note_index: dict[tuple[Any, ...], int] = {}

    raw_index: dict[tuple[Any, ...], int] = {}
    inputs: list[dict[str, Any]] = []
    input_index: dict[str, int] = {}

    def shared_inputs(values: dict[str, Any]) -> int:
        """Index of a worst element's arguments in the page's `inputs` table: every
        backend and implementation of a trial names the same elements."""
        key = json.dumps(values, sort_keys=True)
        if key not in input_index:
            input_index[key] = len(inputs)
            inputs.append(values)
        return input_index[key]

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
                                   note, shared, shared_inputs))

        prof = r.get("profile")
        if prof and prof.get("x"):
            # the logits (and usually the allowance) of one sweep are the same for every
            # backend, and twins (a module around a function) have the same errors:
            # shared arrays, stored once
            profiles.append({"row": ri, "dtype": d_idx[r["dtype"]], "case": ci,
                             "check": c_idx[r["check"]], "status": s_idx[status],
                             "x": shared(prof["x"], 6), "ulp": shared(_plotted(prof["ulp"]), 2),
                             "allow": shared(prof["allowance"], 2)})
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

    found = findings if findings is not None else found_in.of(report)
    matrix: dict[str, dict[str, dict[str, Any]]] = {}
    naive = []
    for m in found.get("matrix") or []:
        ri = row_index.get((m["backend"], m["implementation"], m["device"]))
        if ri is None:
            continue
        if m.get("naive"):
            naive.append(ri)
        matrix[str(ri)] = {dt: {"counts": c["counts"], "pass_max_ulp": c.get("pass_max_ulp"),
                                "pass_max_ratio": c.get("pass_max_share"),
                                "worst": worst_status(c["counts"])}
                           for dt, c in m["dtypes"].items()}

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
        "profiles": profiles, "arrays": arrays, "inputs": inputs, "edge": edge,
        "summary": report.get("summary", {}),
        "naive": sorted(naive),
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


#: The error plots' floor (report.js draws log10(ulp) from -2): smaller errors look alike.
PLOT_FLOOR = 0.01


def _plotted(ulps: list[Any]) -> list[Any]:
    """A profile's ulps as the plot draws them: below PLOT_FLOOR they are drawn at the
    floor, so they travel as 0 (most of a sweep is far below an ulp, and 1.5e-19 takes
    seven characters where 0 takes one)."""
    return [0 if isinstance(u, (int, float)) and abs(u) < PLOT_FLOOR else u for u in ulps]


def _detail(r: dict[str, Any], case_source: str | None, message_id: Any, note: Any,
            shared: Any, shared_inputs: Any) -> dict[str, Any]:
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
        # the arguments are an index into the page's `inputs`; the condition number is
        # left out when it is the record's own (report.js's worstOf puts both back)
        d["w"] = {"i": w.get("index", []),
                  "in": shared_inputs({k: (compact(v, 17) if not isinstance(v, str) or v in
                                           ("nan", "inf", "-inf") else v)
                                       for k, v in (w.get("inputs") or {}).items()
                                       if v is not None}),
                  "e": compact(w.get("expected"), 17), "g": compact(w.get("got"), 17),
                  "u": compact(w.get("ulp")), "a": compact(w.get("allowance"))}
        if compact(w.get("cond")) != d.get("c"):
            d["w"]["c"] = compact(w.get("cond"))
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

