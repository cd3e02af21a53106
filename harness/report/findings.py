"""What a run found, beyond its records: report.json's `findings` object.

The records say what each check measured; `findings` says what they add up to, as the
page shows it: the summary matrix (`matrix`), the sigmoid-then-BCE story (`story`,
harness.report.story) and what each framework does with invalid arguments (`errors`).
`harness.report.build` computes it from the records; `harness.report.load` computes it
for a report written before report.json carried it; the page (harness.report.html)
renders it and computes none of it. Figures are rounded as the page shows them
(harness.report.figures.compact); docs/report.md lists the fields.
"""

from __future__ import annotations

import math
import re
from collections import Counter
from typing import Any

from harness.records import NUMERIC_CHECKS, SEVERITY_ORDER, STATUS_ORDER
from harness.report import packed as layout
from harness.report.figures import compact, num
from harness.report.story import is_naive, story

_SEVERITY = {s: i for i, s in enumerate(SEVERITY_ORDER)}


def compute(report: dict[str, Any]) -> dict[str, Any]:
    """The `findings` of a report (flat or packed), from its records and backends."""
    results = layout.records(report)
    return {"matrix": matrix(report.get("backends") or [], results),
            "story": story(results),
            "errors": error_behaviour(results)}


def of(report: dict[str, Any]) -> dict[str, Any]:
    """The report's own `findings`, or those computed from its records when it has none
    (a report from before report.json carried them, or one made in memory)."""
    found = report.get("findings")
    return found if isinstance(found, dict) else compute(report)


# ------------------------------------------------------------------ matrix ----

def row_order(backends: list[dict[str, Any]],
              keys: set[tuple[str, str, str]]) -> list[tuple[str, str, str]]:
    """(backend, implementation, device) rows in the order the backends list them, so
    the matrix reads like the run."""
    rank: dict[tuple[str, str], tuple[int, int]] = {}
    for bi, b in enumerate(backends):
        for ii, impl in enumerate(b.get("implementations", [])):
            rank[(b["name"], impl)] = (bi, ii)
        for di, dev in enumerate(b.get("devices", [])):
            rank[(b["name"], "@" + dev)] = (bi, di)
    big = (10**6, 10**6)
    return sorted(keys, key=lambda k: (rank.get((k[0], k[1]), big), k[0], k[1],
                                       rank.get((k[0], "@" + k[2]), big), k[2]))


def matrix(backends: list[dict[str, Any]], results: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """`findings.matrix`: per backend / implementation on a device and per dtype, the
    results per status, the largest max ulp of a passing numeric check, and the largest
    share of its allowance a passing check used at its worst element."""
    cells: dict[tuple[str, str, str], dict[str, dict[str, Any]]] = {}
    for r in results:
        key = (r["backend"], r["implementation"], r["device"])
        cell = cells.setdefault(key, {}).setdefault(
            r["dtype"], {"counts": Counter(), "ulp": None, "share": None})
        cell["counts"][r["status"]] += 1
        if r["status"] == "pass" and r["check"] in NUMERIC_CHECKS:
            u = num(r.get("max_ulp"))
            if u is not None and (cell["ulp"] is None or u > cell["ulp"]):
                cell["ulp"] = u
            w = r.get("worst") or {}
            wu, wa = num(w.get("ulp")), num(w.get("allowance"))
            if wu is not None and wa and math.isfinite(wa) and math.isfinite(wu):
                q = wu / wa
                if cell["share"] is None or q > cell["share"]:
                    cell["share"] = q
    rows = []
    for key in row_order(backends, set(cells)):
        dtypes = {}
        for dt, cell in cells[key].items():
            counts = cell["counts"]
            out: dict[str, Any] = {"counts": {s: counts[s] for s in _statuses(counts)}}
            if cell["ulp"] is not None:
                out["pass_max_ulp"] = compact(cell["ulp"], 3)
            if cell["share"] is not None:
                out["pass_max_share"] = compact(cell["share"], 2)
            dtypes[dt] = out
        rows.append({"backend": key[0], "implementation": key[1], "device": key[2],
                     "naive": is_naive(key[0], key[1]), "dtypes": dtypes})
    return rows


def _statuses(counts: Counter[str]) -> list[str]:
    known = [s for s in STATUS_ORDER if counts.get(s)]
    return known + sorted(s for s in counts if s not in STATUS_ORDER)


# ---------------------------------------------------------- error behaviour ----

_RAISED = re.compile(r"raised ([A-Za-z_][\w.]*)")


def error_behaviour(results: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """`findings.errors`: what each implementation does with each invalid input (the
    `raises` checks), case by case in run order.

    Outcomes are grouped: the same status, kind and message for every device, dtype and
    reduction is one outcome without `where`, so 4 frameworks × 20 invalid inputs stay
    a readable table; outcomes that differ list the calls (`where`) each happened in.
    """
    by_case: dict[str, dict[tuple[str, str], dict[tuple[str, str, str], list[str]]]] = {}
    for r in results:
        if r["check"] != "raises":
            continue
        per = by_case.setdefault(r["case"], {})
        outcomes = per.setdefault((r["backend"], r["implementation"]), {})
        where = f"{r['device']} {r['dtype']} {r.get('reduction', '')}".strip()
        outcomes.setdefault((r["status"], r.get("kind", "") or "", r.get("message", "")),
                            []).append(where)
    out = []
    for case, per in by_case.items():
        impls = []
        for (backend, impl), outcomes in per.items():
            total = sum(len(w) for w in outcomes.values())
            items = []
            for (status, kind, message), where in sorted(
                    outcomes.items(), key=lambda kv: (_SEVERITY.get(kv[0][0], 99), -len(kv[1]))):
                item: dict[str, Any] = {"status": status}
                if kind:
                    item["kind"] = kind
                item["outcome"] = _outcome(status, kind, message)
                item["message"] = message
                if len(where) != total:
                    item["where"] = where
                items.append(item)
            impls.append({"backend": backend, "implementation": impl, "outcomes": items})
        out.append({"case": case, "implementations": impls})
    return out


def _outcome(status: str, kind: str, message: str) -> str:
    """In a word: the exception type raised, "no error", or else the status."""
    m = _RAISED.match(message)
    if m:
        return m.group(1)
    if kind == "silent-accept" or message.startswith("returned"):
        return "no error"
    return status
