"""The HTML view of a report: one self-contained file, every outside string escaped.

The page renders the report document and works nothing out: the records, and what the
run found (report.json's `findings`: the matrix, the sigmoid-then-BCE story, the error
behaviour; harness.report.findings computes them for a report that has none). What it
arranges here is layout: table rows, the sentences of a table cell, the order of columns.

The page is a CI artifact people open from disk, offline, often months later, so
nothing is fetched: the CSS and JavaScript beside this module are inlined, the
plots are SVG drawn in the page, and the data travels inside the page as JSON.

Two rules keep it safe and usable:

* Escaping. Case names, plugin names and exception messages come from outside.
  The static sections go through Jinja2 with autoescaping on; the data for the
  scripts is JSON inside ``<script type="application/json">`` with ``<``, ``>``
  and ``&`` written as ``\\u003c`` etc. (`data_json`), and the scripts only ever
  set ``textContent``. Nothing is concatenated into markup.
* Size. The data for the scripts is packed small (harness.report.page_data); lists
  render lazily, a page at a time.

The sections that need no interaction (summary matrix, the sigmoid-then-BCE story,
error behaviour, backends) are rendered here in Python, so they read even with
scripts disabled; the explorer, the plots and the edge-case tables are drawn by
report.js from the embedded data.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import jinja2
import markupsafe

from harness.report import findings as found_in
from harness.report import packed as layout
from harness.report.figures import DTYPE_ORDER, fmt, num, ordered, shown
from harness.report.page_data import SEVERITY, columns, page_data

_HERE = Path(__file__).resolve().parent
_ENV = jinja2.Environment(
    loader=jinja2.FileSystemLoader(str(_HERE)),
    autoescape=jinja2.select_autoescape(default=True, default_for_string=True),
    undefined=jinja2.StrictUndefined,
    trim_blocks=True,
    lstrip_blocks=True,
)
_RANK = {s: i for i, s in enumerate(SEVERITY)}

__all__ = ["columns", "data_json", "page_data", "render"]


def data_json(data: Any) -> str:
    """JSON that is safe inside <script type="application/json">.

    Escaping <, > and & as \\u003c etc. means no string in the data can close the
    script element or open a comment, whatever a case or plugin is called.
    """
    text = json.dumps(data, separators=(",", ":"), ensure_ascii=False, allow_nan=False)
    return (text.replace("&", "\\u0026").replace("<", "\\u003c").replace(">", "\\u003e")
            .replace("\u2028", "\\u2028").replace("\u2029", "\\u2029"))


# ------------------------------------------------------------------ matrix ----

def matrix_view(data: dict[str, Any]) -> dict[str, Any]:
    """The summary matrix as rows of cells, ready for the template."""
    out_rows = []
    prev_backend = None
    naive = set(data["naive"])
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
                         "naive": i in naive})
        prev_backend = backend
    return {"dtypes": data["dtypes"], "rows": out_rows}


# ------------------------------------------------------------------- story ----

def story_view(story: dict[str, Any]) -> dict[str, Any]:
    """`findings.story` as the section's tables: the counts per dtype of each pair and
    one row per naive implementation and sweep case."""
    pairs = story.get("pairs") or []
    dtypes = ordered({dt for p in pairs for dt in p["per_dtype"]}, DTYPE_ORDER)
    out = []
    for p in pairs:
        cells = [{side: {"bad": c[side]["outside"], "n": c[side]["checks"]}
                  for side in ("naive", "logits")} if (c := p["per_dtype"].get(dt)) else None
                 for dt in dtypes]
        out.append({**p, "cells": cells, "example": _example(p.get("example"))})
    return {"pairs": out, "dtypes": dtypes, "headline": story.get("headline") or [],
            "sweeps": _sweep_rows(pairs)}


def _example(e: dict[str, Any] | None) -> dict[str, Any] | None:
    if not e:
        return None
    return {"check": e["check"], "case": e["case"], "dtype": e["dtype"],
            "reduction": e["reduction"], "x": shown(e["x"], 6), "y": shown(e["y"], 6),
            "got": shown(e["got"], 8), "expected": shown(e["expected"], 8),
            "ulp": shown(e["ulp"]), "partner_status": e.get("logits_status"),
            "partner_ulp": shown(e.get("logits_max_ulp"))}


def _sweep_lines(s: dict[str, Any]) -> list[str]:
    """What one sweep says, in a table cell's lines."""
    if not s["outside"]:
        return [f"within the allowance everywhere (max {shown(s['max_ulp'])} ulp)"]
    lo, hi = s["within"]
    lines = [f"within only for {shown(lo, 4)} ≤ x ≤ {shown(hi, 4)}"]
    fo = s.get("first_out")
    if fo is not None:
        lines.append(f"x = {shown(fo['x'], 4)}: {shown(fo['ulp'])} ulp > "
                     f"{shown(fo['allowance'])}")
    if s.get("inf_hi") is not None:
        lines.append(f"∞ ulp from x = {shown(s['inf_hi'], 4)}")
    if s.get("inf_lo") is not None:
        lines.append(f"∞ ulp for x ≤ {shown(s['inf_lo'], 4)}")
    mf = num(s.get("max_finite_ulp"))
    if mf is not None and mf > 1e3:
        lines.append(f"finite errors up to {shown(s['max_finite_ulp'])} ulp")
    return lines


def _sweep_rows(pairs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One table row per naive implementation and sweep case, one cell per dtype."""
    rows = []
    for p in pairs:
        for case in sorted({s["case"] for s in p["sweeps"]}):
            cells = {}
            partner_max: list[Any] = []
            for s in p["sweeps"]:
                if s["case"] != case:
                    continue
                cells[s["dtype"]] = {"lines": _sweep_lines(s), "bad": s["outside"],
                                     "n": s["points"]}
                if s.get("logits_max_ulp") is not None:
                    partner_max.append(s["logits_max_ulp"])
            top = max(partner_max, key=lambda u: num(u)) if partner_max else None
            rows.append({"impl": f"{p['backend']}/{p['naive']}", "case": case, "cells": cells,
                         "logits": f"{p['backend']}/{p['logits']}" if p["logits"] else None,
                         "partner_max": shown(top) if partner_max else None})
    return rows


# --------------------------------------------------------- error behaviour ----

def error_view(report: dict[str, Any], errors: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """`findings.errors` as the section's rows, with what the `cases` section says of
    each invalid input."""
    cases_info = report.get("cases", {}) or {}
    out = []
    for c in errors:
        info = cases_info.get(c["case"], {})
        rows = []
        for imp in c["implementations"]:
            items = [{"status": o["status"], "kind": o.get("kind", ""),
                      "message": o["message"], "outcome": o["outcome"],
                      "where": "every call" if o.get("where") is None else
                      _summarize_where(o["where"])} for o in imp["outcomes"]]
            worst = min((o["status"] for o in items), key=lambda s: _RANK.get(s, 99))
            short = list(dict.fromkeys(o["outcome"] for o in items))  # distinct, in order
            rows.append({"backend": imp["backend"], "impl": imp["implementation"],
                         "outcomes": items, "worst": worst,
                         "short": short[0] + (f" (+{len(short) - 1})" if len(short) > 1 else ""),
                         "title": "\n".join(f"{o['where']}: {o['message']}" for o in items)})
        out.append({"case": c["case"],
                    "raises": " or ".join(info.get("raises", [])) or "an error",
                    "description": info.get("description", ""),
                    "source": info.get("source", ""), "rows": rows,
                    "by_impl": {(r["backend"], r["impl"]): r for r in rows}})
    return out


def error_columns(report: dict[str, Any], cases: list[dict[str, Any]]) -> list[tuple[str, str]]:
    """The backend/implementation columns of the error-behaviour overview, in run order."""
    present = {k for c in cases for k in c["by_impl"]}
    ordered_ = [(b["name"], i) for b in report.get("backends", [])
                for i in b.get("implementations", []) if (b["name"], i) in present]
    return ordered_ + sorted(present - set(ordered_))


def _summarize_where(where: list[str]) -> str:
    if len(where) <= 4:
        return ", ".join(where)
    return ", ".join(where[:3]) + f" and {len(where) - 3} more"


# ------------------------------------------------------------------ render ----

def _asset(name: str) -> str:
    return (_HERE / name).read_text(encoding="utf-8")


#: The page lists expectations needing an edit first.
_EXPECTATION_ORDER = {"fixed": 0, "unused": 1, "used": 2, "passing": 3}


def render(report: dict[str, Any], sweeps: list[str] | None = None) -> str:
    """The whole page as one string (harness.report.write saves it as report.html).
    `sweeps`: the dtypes of `python -m harness sweep` pages beside it (sweep-<dtype>.html),
    linked from the header."""
    report = layout.unpack(report)  # a report.json as written (version 3) reads flat
    found = found_in.of(report)
    data = page_data(report, findings=found)
    js = _asset("report.js")
    css = _asset("report.css")
    if "</script" in js.lower() or "</style" in css.lower():  # our own files; keep them so
        raise ValueError("report.js / report.css must not contain a closing tag")
    run = report.get("run", {}) or {}
    summary = report.get("summary", {}) or {}
    errors = error_view(report, found.get("errors") or [])
    return _ENV.get_template("report.html.j2").render(
        report=report, run=run, summary=[(s, summary.get(s, 0)) for s in SEVERITY
                                         if s in summary],
        total=len(report.get("results", [])),
        matrix=matrix_view(data), story=story_view(found.get("story") or {}),
        errors=errors, error_columns=error_columns(report, errors),
        per_backend=run.get("per_backend", {}) or {},
        expectations=sorted((e for e in report.get("expectations") or []
                             if e.get("status") != "not-run"),
                            key=lambda e: _EXPECTATION_ORDER.get(e.get("status"), 4)),
        details_dropped=data["details_dropped"],
        data=markupsafe.Markup(data_json(data)),
        css=markupsafe.Markup(css), js=markupsafe.Markup(js), sweeps=sweeps or [],
    )
