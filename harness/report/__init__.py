"""The report: one JSON document and an HTML page made from it.

The JSON is the product; the HTML is a view of it: what the page shows beyond the
records (the summary matrix, the sigmoid-then-BCE story, the error behaviour) is in
report.json's `findings` (harness.report.findings). Records stream to
`results.partial.jsonl` while a run goes, so a run that is killed still leaves
every finished result on disk; the final `report.json` is validated against the
shipped schema before it is written, so consumers can trust its shape. A report is
flat (schema version 2: `results`, one self-describing record per check), in memory
and in report.json; `report --packed-json` writes the packed layout instead (version
3: each call and each trial's shared data once, harness.report.packed), and `load` reads
every version back flat.
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
from harness.report import findings
from harness.report import packed as layout

SCHEMA_PATH = Path(__file__).resolve().parent.parent / "schema" / "report.schema.json"
PACKED_SCHEMA_PATH = SCHEMA_PATH.with_name("report.packed.schema.json")
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
          expectations: list[dict[str, Any]] | None = None,
          coverage: dict[str, Any] | None = None) -> dict[str, Any]:
    """The report document, in the order people read it. `expectations` is the run's
    ledger (`Expectations.finish()`): each expectation with what it covered;
    `coverage` the value classes the cases reached (harness.generate.coverage).

    Flat, as every step after the calls reads it (`results`: one record per check);
    `write_json` lays it out by call and trial (harness.report.packed) and `load` reads that
    back flat. `findings` is what the records add up to, as the page shows it."""
    doc = {
        "schema_version": SCHEMA_VERSION,
        "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "environment": environment(),
        "backends": backends,
        "summary": summarize(results),
        "run": run or {},
        "cases": cases or {},
        "expectations": expectations or [],
    }
    doc["findings"] = findings.compute({**doc, "results": results})
    doc["results"] = results
    if coverage is not None:
        doc["coverage"] = coverage
    return doc


def schema(packed: bool = False) -> dict[str, Any]:
    path = PACKED_SCHEMA_PATH if packed else SCHEMA_PATH
    return json.loads(path.read_text(encoding="utf-8"))


_CONSTRAINED_STRINGS = {"check", "status"}
#: Fields (and lists) whose schema is $defs/float or floatOrNull: any number or word.
_FLOAT_KEYS = frozenset({"expected", "got", "ulp", "allowance", "cond", "max_ulp", "x"})
#: Objects the schema leaves free (`"type": "object"` and nothing more).
_FREE_OBJECTS = frozenset({"inputs"})
#: Record fields whose schema has `minimum: 0`.
_SIGNED = frozenset({"elements", "duration_s", "uncovered", "failing"})
_FLOAT_WORDS = {"nan", "inf", "-inf"}


def _shape(value: Any, key: str = "") -> Any:
    """What the schema can see of a value: keys, types, number signs, constrained strings.

    The report schema constrains a result only through its keys, the JSON types of
    its values, the sign of the numbers that have a minimum of 0 (`_SIGNED`), the
    strings of `check` and `status`, and the words that stand for non-finite floats.
    Two records with the same shape are valid or invalid together, so one of each
    shape stands for all. (The sign of every other number is left out on purpose: it
    multiplied the distinct shapes of a default run's records by the sign patterns
    of their `values` lists, and validation took a fifth of a numpy-only run.)
    """
    if isinstance(value, dict):
        if key in _FREE_OBJECTS:
            return "object"
        return tuple(sorted((k, _shape(v, k)) for k, v in value.items()))
    if isinstance(value, list):
        if key in _FLOAT_KEYS and value and all(
                type(v) is float or v in _FLOAT_WORDS for v in value):
            return ("list", ("float",))  # a list of values (fnum): the common case, quickly
        return ("list", tuple(dict.fromkeys(_shape(v, key) for v in value)))
    if isinstance(value, bool) or value is None:
        return value
    if key in _FLOAT_KEYS and (isinstance(value, int | float) or value in _FLOAT_WORDS):
        return "float"  # $defs/float: a number or one of the words, whichever
    if isinstance(value, int):
        return ("int", key in _SIGNED and value < 0)
    if isinstance(value, float):
        return ("float", key in _SIGNED and value < 0)
    if isinstance(value, str):
        if key in _CONSTRAINED_STRINGS:
            return value
        return "float-word" if value in _FLOAT_WORDS else "str"
    return type(value).__name__


def _representative_calls(calls: list[Any]) -> list[Any]:
    """One call of report.json per shape of a call's own fields, and one per check name
    and shape of that check (`_shape`; a check written as its bare status keeps the
    status, which the schema constrains): the schema relates neither to the other, so
    these stand for all."""
    reps: dict[Any, Any] = {}
    for c in calls:
        if not isinstance(c, dict) or not isinstance(c.get("checks"), dict):
            reps.setdefault(("call", _shape(c)), c)
            continue
        head = {k: v for k, v in c.items() if k != "checks"}
        reps.setdefault(("head", _shape(head)), {**head, "checks": {}})
        for name, chk in c["checks"].items():
            shape = chk if isinstance(chk, str) else _shape(chk)
            if ("check", name, shape) not in reps:
                reps[("check", name, shape)] = {**head, "checks": {name: chk}}
    return list(reps.values())


def _trial_shape(trial: Any) -> Any:
    """`_shape` of a trial of report.json: its `at` maps are keyed by element index,
    which the schema leaves free, so only their values' shapes count."""
    if not isinstance(trial, dict) or not isinstance(trial.get("checks"), dict):
        return _shape(trial)
    checks = []
    for name, q in trial["checks"].items():
        if isinstance(q, dict) and isinstance(q.get("at"), dict):
            at = tuple(dict.fromkeys(_shape(v) for v in q["at"].values()))
            q = {k: v for k, v in q.items() if k != "at"}
            checks.append((name, _shape(q), at))
        else:
            checks.append((name, _shape(q)))
    return _shape({k: v for k, v in trial.items() if k != "checks"}), tuple(sorted(checks))


def _fewer_elements(trial: Any) -> Any:
    """A trial with one `at` entry per shape of entry: the same verdict."""
    if not isinstance(trial, dict) or not isinstance(trial.get("checks"), dict):
        return trial
    checks = {}
    for name, q in trial["checks"].items():
        if isinstance(q, dict) and isinstance(q.get("at"), dict):
            at: dict[Any, tuple[str, Any]] = {}
            for k, v in q["at"].items():
                at.setdefault(_shape(v), (k, v))
            q = {**q, "at": dict(at.values())}
        checks[name] = q
    return {**trial, "checks": checks}


def validate(report: dict[str, Any], packed: bool = False) -> None:
    """Raise jsonschema.ValidationError if the report breaks the shipped schema, in the
    form report.json will hold it: flat (`results`), or packed (`calls` and `trials`)
    when `packed` is set or the document already is.

    A full run holds ~10^5 results and jsonschema needs ~0.5 ms for each (35 s for
    a default run), so each distinct shape of record (of call and trial, packed) is
    validated once (see `_shape`): the same verdict, in a second.
    """
    if packed or layout.is_packed(report):
        _validate_packed(layout.pack(report))
        return
    results = report.get("results")
    if isinstance(results, list) and len(results) > 300:
        representatives: dict[Any, Any] = {}
        for r in results:
            representatives.setdefault(_shape(r), r)
        report = {**report, "results": list(representatives.values())}
    jsonschema.Draft202012Validator(schema()).validate(report)


def _validate_packed(report: dict[str, Any]) -> None:
    calls = report.get("calls")
    if isinstance(calls, list) and len(calls) > 300:
        report = {**report, "calls": _representative_calls(calls)}
    trials = report.get("trials")
    if isinstance(trials, dict) and len(trials) > 300:
        trials_by_shape: dict[Any, tuple[str, Any]] = {}
        for k, v in trials.items():
            trials_by_shape.setdefault(_trial_shape(v), (k, v))
        report = {**report, "trials": {k: _fewer_elements(v)
                                       for k, v in trials_by_shape.values()}}
    jsonschema.Draft202012Validator(schema(packed=True)).validate(report)


def load(path: str | Path) -> dict[str, Any]:
    """A report.json of any readable version, flat: `results` holds one record per
    check (harness.report.packed.unpack puts back what version 3 writes once), with its
    `findings`, computed from the records when the file has none (it was written before
    report.json carried them)."""
    doc = layout.unpack(json.loads(Path(path).read_text(encoding="utf-8")))
    if isinstance(doc.get("findings"), dict):
        return doc
    out = {k: v for k, v in doc.items() if k != "results"}  # the records stay last
    out["findings"] = findings.compute(doc)
    out["results"] = doc.get("results", [])
    return out


def exit_code(results: list[dict[str, Any]]) -> int:
    """1 when any fail or error is not covered by expectations, else 0."""
    return 1 if any(r["status"] in UNEXPECTED for r in results) else 0


class Sink:
    """Appends each finished call's records to a JSON-lines file as they arrive.

    Each record's line is kept (`lines`, by id of the record): report.json lays its
    records out one per line in the same text, so a record that has not changed
    since is not serialized a second time (`forget` the ones that changed)."""

    def __init__(self, out_dir: Path) -> None:
        out_dir.mkdir(parents=True, exist_ok=True)
        self.path = out_dir / "results.partial.jsonl"
        self._fh = self.path.open("w", encoding="utf-8")
        self.results: list[dict[str, Any]] = []
        self.lines: dict[int, str] = {}

    def add(self, records: list[dict[str, Any]]) -> None:
        for r in records:
            line = layout.compact(r)
            self.lines[id(r)] = line
            self._fh.write(line + "\n")
        self._fh.flush()
        self.results.extend(records)

    def forget(self, records: list[dict[str, Any]]) -> None:
        """These records changed after they arrived: their lines are stale."""
        for r in records:
            self.lines.pop(id(r), None)

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


def write_json(report: dict[str, Any], out_dir: Path, packed: bool = False,
               lines: dict[int, str] | None = None) -> Path:
    """Write report.json into out_dir (atomically: a reader never sees half a file):
    flat, one record a line (schema version 2), or packed by call and trial with
    `packed` (harness.report.packed, version 3). `lines` (flat only): the records'
    lines as `Sink` streamed them, reused (harness.report.packed.dumps)."""
    out_dir.mkdir(parents=True, exist_ok=True)
    json_path = out_dir / "report.json"
    tmp = json_path.with_suffix(".json.tmp")
    try:
        text = layout.dumps(layout.pack(report)) if packed else layout.dumps(report, lines)
    except Exception:  # what was measured goes to disk even so: flat, one record a line
        text = layout.dumps(report)
        tmp.write_text(text, encoding="utf-8")
        tmp.replace(json_path)
        raise
    tmp.write_text(text, encoding="utf-8")
    tmp.replace(json_path)
    return json_path


def write_html(report: dict[str, Any], out_dir: Path) -> Path:
    """Render and write report.html into out_dir."""
    from harness.report.html import render

    sweeps = sorted(p.stem.removeprefix("sweep-") for p in Path(out_dir).glob("sweep-*.html"))
    text = render(report, sweeps)
    out_dir.mkdir(parents=True, exist_ok=True)
    html_path = out_dir / "report.html"
    html_path.write_text(text, encoding="utf-8")
    return html_path


def write_fallback_html(report: dict[str, Any], out_dir: Path, why: str) -> Path:
    """A plain report.html for when the real one could not be made: why, the counts per
    status, and where the results are (report.json holds everything)."""
    from html import escape

    counts = summarize(layout.records(report))
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
