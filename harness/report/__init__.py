"""The report: one JSON document (CONTRACT §4) and an HTML page made from it.

The JSON is the product; the HTML is a view of it. Records stream to
`results.partial.jsonl` while a run goes, so a run that is killed still leaves
every finished result on disk; the final `report.json` is validated against the
shipped schema before it is written, so consumers can trust its shape.
"""

from __future__ import annotations

import datetime as _dt
import json
import os
import platform
import sys
from collections import Counter
from pathlib import Path
from typing import Any

import jsonschema

from harness import __version__
from harness.records import SCHEMA_VERSION, STATUS_ORDER
from harness.records import UNEXPECTED as _UNEXPECTED

SCHEMA_PATH = Path(__file__).resolve().parent.parent / "schema" / "report.schema.json"
STATUSES = STATUS_ORDER
UNEXPECTED = tuple(sorted(_UNEXPECTED))


def environment() -> dict[str, str]:
    """Where the numbers came from: interpreter, OS and processor."""
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {"python": sys.version.split()[0], "platform": platform.platform(),
            "cpu": f"{cpu} ({os.cpu_count()} logical cores)", "harness": __version__}


def summarize(results: list[dict[str, Any]]) -> dict[str, int]:
    counts = Counter(r["status"] for r in results)
    return {s: counts.get(s, 0) for s in STATUSES}


def case_index(cases: list[Any]) -> dict[str, dict[str, Any]]:
    """The report's `cases` section: what each case name stands for."""
    return {c.name: {"source": c.source, "description": c.description, "tags": list(c.tags),
                     "shape": list(c.input.shape), "raises": list(c.raises)} for c in cases}


def build(backends: list[dict[str, Any]], results: list[dict[str, Any]],
          run: dict[str, Any] | None = None,
          cases: dict[str, dict[str, Any]] | None = None,
          expectations: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    """The report document, in the order people read it. `expectations` is the run's
    ledger (`Expectations.finish()`): each expectation with what it covered."""
    return {
        "schema_version": SCHEMA_VERSION,
        "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "environment": environment(),
        "backends": backends,
        "summary": summarize(results),
        "run": run or {},
        "cases": cases or {},
        "expectations": expectations or [],
        "results": results,
    }


def schema() -> dict[str, Any]:
    return json.loads(SCHEMA_PATH.read_text(encoding="utf-8"))


_CONSTRAINED_STRINGS = {"check", "status"}
_FLOAT_WORDS = {"nan", "inf", "-inf"}


def _shape(value: Any, key: str = "") -> Any:
    """What the schema can see of a value: keys, types, number signs, constrained strings.

    The report schema constrains a result only through its keys, the JSON types of
    its values, the sign of numbers (minimum 0), the strings of `check` and `status`,
    and the words that stand for non-finite floats. Two records with the same shape
    are valid or invalid together, so one of each shape stands for all.
    """
    if isinstance(value, dict):
        return tuple(sorted((k, _shape(v, k)) for k, v in value.items()))
    if isinstance(value, list):
        return ("list", tuple(dict.fromkeys(_shape(v, key) for v in value)))
    if isinstance(value, bool) or value is None:
        return value
    if isinstance(value, int):
        return ("int", value < 0)
    if isinstance(value, float):
        return ("float", value < 0)
    if isinstance(value, str):
        return value if key in _CONSTRAINED_STRINGS or value in _FLOAT_WORDS else "str"
    return type(value).__name__


def validate(report: dict[str, Any]) -> None:
    """Raise jsonschema.ValidationError if the report breaks the shipped schema.

    A full run holds ~10^5 results and jsonschema needs ~0.5 ms for each (35 s for
    a default run), so each distinct record shape is validated once (see `_shape`):
    the same verdict, in a second.
    """
    results = report.get("results")
    if isinstance(results, list) and len(results) > 1000:
        representatives: dict[Any, Any] = {}
        for r in results:
            representatives.setdefault(_shape(r), r)
        report = {**report, "results": list(representatives.values())}
    jsonschema.Draft202012Validator(schema()).validate(report)


def exit_code(results: list[dict[str, Any]]) -> int:
    """1 when any fail or error is not covered by expectations, else 0."""
    return 1 if any(r["status"] in UNEXPECTED for r in results) else 0


class Sink:
    """Appends each finished call's records to a JSON-lines file as they arrive."""

    def __init__(self, out_dir: Path) -> None:
        out_dir.mkdir(parents=True, exist_ok=True)
        self.path = out_dir / "results.partial.jsonl"
        self._fh = self.path.open("w", encoding="utf-8")
        self.results: list[dict[str, Any]] = []

    def add(self, records: list[dict[str, Any]]) -> None:
        for r in records:
            self._fh.write(json.dumps(r, allow_nan=False) + "\n")
        self._fh.flush()
        self.results.extend(records)

    def close(self, keep: bool = False) -> None:
        self._fh.close()
        if not keep:
            self.path.unlink(missing_ok=True)


def write(report: dict[str, Any], out_dir: Path) -> tuple[Path, Path]:
    """Validate, then write report.json and report.html into out_dir."""
    from harness.report.html import render

    validate(report)
    json_path = write_json(report, out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    html_path = out_dir / "report.html"
    html_path.write_text(render(report), encoding="utf-8")
    return json_path, html_path


def write_json(report: dict[str, Any], out_dir: Path) -> Path:
    """Write report.json into out_dir (atomically: a reader never sees half a file)."""
    out_dir.mkdir(parents=True, exist_ok=True)
    json_path = out_dir / "report.json"
    tmp = json_path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(report, indent=1, allow_nan=False) + "\n", encoding="utf-8")
    tmp.replace(json_path)
    return json_path


def write_html(report: dict[str, Any], out_dir: Path) -> Path:
    """Render and write report.html into out_dir."""
    from harness.report.html import render

    text = render(report)
    out_dir.mkdir(parents=True, exist_ok=True)
    html_path = out_dir / "report.html"
    html_path.write_text(text, encoding="utf-8")
    return html_path


def write_fallback_html(report: dict[str, Any], out_dir: Path, why: str) -> Path:
    """A plain report.html for when the real one could not be made: why, the counts per
    status, and where the results are (report.json holds everything)."""
    from html import escape

    counts = summarize(report.get("results") or [])
    rows = "".join(f"<tr><td>{escape(s)}</td><td>{n}</td></tr>" for s, n in counts.items() if n)
    text = ("<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
            "<title>bce-harness report (plain)</title></head><body>"
            "<h1>bce-harness report</h1>"
            f"<p>The full HTML view could not be made: {escape(why)}.</p>"
            "<p>Every result is in <a href=\"report.json\">report.json</a> beside this file; "
            "<code>run.phases</code> there says which step of the report failed.</p>"
            f"<table><tr><th>status</th><th>results</th></tr>{rows}</table>"
            "</body></html>\n")
    out_dir.mkdir(parents=True, exist_ok=True)
    html_path = out_dir / "report.html"
    html_path.write_text(text, encoding="utf-8")
    return html_path
