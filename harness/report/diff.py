"""`python -m harness diff OLD.json NEW.json`: what changed between two runs.

A report says how a set of frameworks behaves today; the question after an upgrade
(torch 2.12 → 2.13, a new CUDA, a rewritten kernel) is what moved. Results are
matched by what was called and what was checked:

    backend, implementation, device, dtype, case, reduction, check

and each matched pair is classified:

* **worse** — the status moved to a more severe rank, or the max ulp grew by more
  than ``--ulp-factor`` (default 2) *and* by at least ``--min-ulp`` (default 1) ulp,
  or became non-finite. Ranks, least to most severe:
  pass = fixed < skipped = unsupported < known < fail = error.
  (Losing coverage is a regression too: a check that passed and is now
  `unsupported` went from tested to untested.)
* **better** — the mirror image.
* **changed** — a different status of the same rank (fail ↔ error, pass ↔ fixed,
  skipped ↔ unsupported): worth reading, not a regression.
* **new** / **gone** — only in one report (cases added or renamed, a backend
  installed or missing). A new result that is `fail` or `error` counts as a
  regression: nothing in the old report vouched for it.

The two ulp thresholds keep noise out: sub-ulp jitter between machines (0.3 → 0.7
ulp) is not news, a correctly rounded result that is now 5 ulp off is.

Exit status: 1 when anything is worse or newly failing, 0 otherwise, 2 when a file
cannot be read or is not a report (one paragraph, no traceback).
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from harness.records import READABLE_SCHEMA_VERSIONS, SEVERITY_ORDER, Status, decode_float
from harness.records import UNEXPECTED as _UNEXPECTED
from harness.report import packed as layout

KEY_FIELDS: tuple[str, ...] = ("backend", "implementation", "device", "dtype", "case",
                               "reduction", "check")
#: Severity rank per status, least severe first; equal ranks are "changed", not worse.
RANK: dict[str, int] = {s.value: s.rank for s in Status}
UNEXPECTED: tuple[str, ...] = tuple(sorted(_UNEXPECTED))
DEFAULT_FACTOR = 2.0
DEFAULT_MIN_ULP = 1.0
DEFAULT_LIMIT = 20


class ReportFileError(Exception):
    """A file that cannot be read as a report; the message is the whole paragraph."""


Key = tuple[Any, ...]


@dataclass
class Change:
    """One matched (or unmatched) result and why it is listed."""

    key: Key
    old: dict[str, Any] | None
    new: dict[str, Any] | None
    why: str = ""

    @property
    def label(self) -> str:
        backend, impl, device, dtype, case, reduction, check = self.key[:7]
        return f"{backend}/{impl}@{device} {dtype} {case} [{reduction}] {check}"


@dataclass
class Diff:
    """The comparison of two reports, section by section."""

    worse: list[Change] = field(default_factory=list)
    better: list[Change] = field(default_factory=list)
    changed: list[Change] = field(default_factory=list)
    new: list[Change] = field(default_factory=list)
    gone: list[Change] = field(default_factory=list)
    unchanged: int = 0
    versions: list[tuple[str, str, str, str]] = field(default_factory=list)
    factor: float = DEFAULT_FACTOR
    min_ulp: float = DEFAULT_MIN_ULP

    @property
    def new_failures(self) -> list[Change]:
        return [c for c in self.new if c.new and c.new["status"] in UNEXPECTED]

    @property
    def regressed(self) -> bool:
        return bool(self.worse or self.new_failures)


# ------------------------------------------------------------------ loading ----

def load(path: str | Path) -> dict[str, Any]:
    """Read and check one report; ReportFileError says what is wrong and what to do.

    The check is structural (top-level fields, and the fields the diff matches on
    in every result) rather than the full JSON Schema: a 100k-result report
    validates in well under a second this way, and these are exactly the fields a
    diff cannot do without.
    """
    p = Path(path)
    hint = ("Give the report.json that `python -m harness report --out DIR` writes into DIR "
            "(the report.html beside it is the page, not the data).")
    try:
        text = p.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ReportFileError(f"{p}: no such file. {hint}") from None
    except IsADirectoryError:
        if (p / "report.json").exists():
            raise ReportFileError(f"{p}: this is a folder. Give the file inside it: "
                                  f"{p / 'report.json'}.") from None
        raise ReportFileError(f"{p}: this is a folder, not a report. {hint}") from None
    except UnicodeDecodeError:
        raise ReportFileError(f"{p}: not text (it is not UTF-8), so not a report. {hint}") \
            from None
    except OSError as exc:
        raise ReportFileError(f"{p}: cannot be read ({exc.strerror or exc}). Check the path "
                              f"and its permissions. {hint}") from None
    head = text.lstrip()[:15].lower()
    if head.startswith(("<!doctype", "<html")):
        raise ReportFileError(f"{p}: this is an HTML page, not the data. Give the report.json "
                              "beside it.")
    try:
        doc = json.loads(text)
    except json.JSONDecodeError as exc:
        extra = (" It looks like results.partial.jsonl, the stream an interrupted run leaves: "
                 "re-run the report to get a report.json." if p.suffix == ".jsonl"
                 or exc.msg == "Extra data" else "")
        raise ReportFileError(f"{p}: not valid JSON (line {exc.lineno}, column {exc.colno}: "
                              f"{exc.msg}).{extra} {hint}") from None
    problem = _structure_problem(doc)
    if problem:
        raise ReportFileError(f"{p}: not a bce-harness report: {problem}. {hint}")
    if layout.is_packed(doc):  # version 3 writes each call and trial once
        try:
            doc = layout.unpack(doc)
        except (AttributeError, KeyError, TypeError, ValueError) as exc:
            raise ReportFileError(f"{p}: not a bce-harness report: its calls and trials do not "
                                  f"read back as records ({type(exc).__name__}: {exc}). "
                                  f"{hint}") from None
        problem = _records_problem(doc["results"])
        if problem:
            raise ReportFileError(f"{p}: not a bce-harness report: {problem}. {hint}")
    return doc


def _structure_problem(doc: Any) -> str | None:
    if not isinstance(doc, dict):
        return f"the top level is a JSON {type(doc).__name__}, a report is an object"
    if "schema_version" not in doc:
        return "it has no 'schema_version' field"
    if doc["schema_version"] not in READABLE_SCHEMA_VERSIONS:
        versions = ", ".join(map(str, READABLE_SCHEMA_VERSIONS[:-1])) + \
            f" and {READABLE_SCHEMA_VERSIONS[-1]}"
        return (f"its schema_version is {doc['schema_version']!r} and this harness reads "
                f"versions {versions} (diff it with the harness version that wrote it)")
    if isinstance(doc["schema_version"], int) and doc["schema_version"] >= 3 \
            and "results" not in doc:  # (a flat one: written when laying it out failed)
        calls = doc.get("calls")
        if calls is None:
            return "it has no 'calls' field"
        if not isinstance(calls, list):
            return "'calls' is not a list"
        for i, c in enumerate(calls):
            if not isinstance(c, dict):
                return f"calls[{i}] is not an object"
            for k in KEY_FIELDS[:5]:
                if not isinstance(c.get(k), str):
                    return f"calls[{i}] has no string {k!r}"
            if not isinstance(c.get("checks"), dict):
                return f"calls[{i}] has no 'checks' object"
            for name, chk in c["checks"].items():
                if not isinstance(chk, str | dict):
                    return f"calls[{i}].checks[{name!r}] is neither a status nor an object"
        if not isinstance(doc.get("trials", {}), dict):
            return "'trials' is not an object"
        return None
    if "results" not in doc:
        return "it has no 'results' field"
    return _records_problem(doc["results"])


def _records_problem(results: Any) -> str | None:
    if not isinstance(results, list):
        return "'results' is not a list"
    for i, r in enumerate(results):
        if not isinstance(r, dict):
            return f"results[{i}] is not an object"
        for k in (*KEY_FIELDS[:5], "check", "status"):
            if not isinstance(r.get(k), str):
                return f"results[{i}] has no string {k!r}"
        if r["status"] not in RANK:
            return f"results[{i}] has the unknown status {r['status']!r}"
    return None


# ---------------------------------------------------------------- comparing ----

def _ulp(r: dict[str, Any] | None) -> float | None:
    f = decode_float((r or {}).get("max_ulp"))
    if f is None:
        return None
    return math.inf if math.isnan(f) else f


def _keyed(results: list[dict[str, Any]]) -> dict[Key, dict[str, Any]]:
    """Results by key; a key seen twice (two cases of one name) gets a counter."""
    out: dict[Key, dict[str, Any]] = {}
    seen: Counter[Key] = Counter()
    for r in results:
        base = tuple(r.get(k, "") for k in KEY_FIELDS)
        out[(*base, seen[base])] = r
        seen[base] += 1
    return out


def _ulp_move(uo: float | None, un: float | None, factor: float, min_ulp: float) -> int:
    """+1 when the error grew past the thresholds, −1 when it shrank past them."""
    if uo is None or un is None or uo == un:
        return 0
    if math.isinf(un) != math.isinf(uo):
        return 1 if math.isinf(un) else -1
    if math.isinf(un):
        return 0
    if un > uo * factor and un - uo >= min_ulp:
        return 1
    if uo > un * factor and uo - un >= min_ulp:
        return -1
    return 0


def fmt_ulp(u: float | None) -> str:
    if u is None:
        return "—"
    if math.isinf(u):
        return "∞"
    if u == int(u) and abs(u) < 1e6:
        return str(int(u))
    return f"{u:.3g}"


def _describe(o: dict[str, Any], n: dict[str, Any]) -> str:
    uo, un = _ulp(o), _ulp(n)
    s = o["status"] if o["status"] == n["status"] else f"{o['status']} → {n['status']}"
    if uo is not None or un is not None:
        s += f" (max ulp {fmt_ulp(uo)} → {fmt_ulp(un)}"
        if uo and un and uo >= 0.01 and math.isfinite(uo) and math.isfinite(un):
            s += f", ×{un / uo:.3g}"
        s += ")"
    return s


def diff_reports(old: dict[str, Any], new: dict[str, Any], factor: float = DEFAULT_FACTOR,
            min_ulp: float = DEFAULT_MIN_ULP) -> Diff:
    """Classify every result of both reports (see the module docstring)."""
    a, b = _keyed(old["results"]), _keyed(new["results"])
    d = Diff(factor=factor, min_ulp=min_ulp)
    for key, n in b.items():
        o = a.get(key)
        if o is None:
            d.new.append(Change(key, None, n, n["status"]))
            continue
        ro, rn = RANK[o["status"]], RANK[n["status"]]
        why = _describe(o, n)
        if rn != ro:
            (d.worse if rn > ro else d.better).append(Change(key, o, n, why))
            continue
        move = _ulp_move(_ulp(o), _ulp(n), factor, min_ulp)
        if move > 0:
            d.worse.append(Change(key, o, n, why))
        elif move < 0:
            d.better.append(Change(key, o, n, why))
        elif o["status"] != n["status"]:
            d.changed.append(Change(key, o, n, why))
        else:
            d.unchanged += 1
    d.gone = [Change(key, o, None, o["status"]) for key, o in a.items() if key not in b]
    sev = {s: i for i, s in enumerate(SEVERITY_ORDER)}

    def order(c: Change) -> tuple[int, float]:
        r = c.new or c.old or {}
        u = _ulp(r)
        return sev.get(r.get("status", ""), 9), -(u if u is not None else -1.0)

    for section in (d.worse, d.better, d.changed, d.new, d.gone):
        section.sort(key=order)
    d.versions = _versions(old, new)
    return d


def _versions(old: dict[str, Any], new: dict[str, Any]) -> list[tuple[str, str, str, str]]:
    """(backend, package, old version, new version) for every version that differs."""
    def table(doc: dict[str, Any]) -> dict[tuple[str, str], str]:
        out = {}
        for b in doc.get("backends", []) or []:
            if not isinstance(b, dict):
                continue
            for pkg, v in (b.get("versions") or {}).items():
                out[(str(b.get("name", "?")), str(pkg))] = str(v)
        return out

    ta, tb = table(old), table(new)
    return [(k[0], k[1], ta.get(k, "—"), tb.get(k, "—"))
            for k in sorted(set(ta) | set(tb)) if ta.get(k) != tb.get(k)]


# ------------------------------------------------------------------ output ----

def _header(old: dict[str, Any], new: dict[str, Any], old_path: str, new_path: str) -> list[str]:
    return [f"old: {old_path} ({old.get('created', '?')}, {len(old['results'])} results)",
            f"new: {new_path} ({new.get('created', '?')}, {len(new['results'])} results)"]


def _group(changes: list[Change]) -> list[tuple[str, str, int]]:
    """(backend/implementation@device, status, count) for long new/gone lists."""
    c: Counter[tuple[str, str]] = Counter()
    for ch in changes:
        r = ch.new or ch.old or {}
        c[(f"{r.get('backend')}/{r.get('implementation')}@{r.get('device')}",
           r.get("status", "?"))] += 1
    return [(k[0], k[1], n) for k, n in sorted(c.items())]


def summary_line(d: Diff) -> str:
    parts = [f"{len(d.worse)} worse", f"{len(d.new_failures)} new failing",
             f"{len(d.better)} better", f"{len(d.changed)} changed",
             f"{len(d.new)} new", f"{len(d.gone)} gone", f"{d.unchanged} unchanged"]
    verdict = "REGRESSED" if d.regressed else "no regression"
    return f"{verdict}: " + ", ".join(parts)


def format_text(d: Diff, old: dict[str, Any], new: dict[str, Any], old_path: str,
                new_path: str, limit: int = DEFAULT_LIMIT) -> str:
    """The plain-text diff: sections in order of urgency, each capped at `limit` lines."""
    lines = ["bce-harness diff", *_header(old, new, old_path, new_path)]
    if d.versions:
        lines.append("versions: " + "; ".join(f"{b} {pkg} {o} → {n}"
                                              for b, pkg, o, n in d.versions))
    lines.append(f"worse means: a more severe status (pass = fixed < skipped = unsupported < "
                 f"known < fail = error), or max ulp ×{d.factor:g} and +{d.min_ulp:g} ulp or "
                 "more, or newly non-finite")
    lines.append("")

    def section(title: str, changes: list[Change], show_why: bool = True) -> None:
        if not changes:
            return
        lines.append(f"{title} ({len(changes)})")
        shown = changes if limit <= 0 else changes[:limit]
        for c in shown:
            lines.append(f"  {c.label}: {c.why}" if show_why else f"  {c.label}")
        if len(shown) < len(changes):
            lines.append(f"  … and {len(changes) - len(shown)} more (--limit 0 lists all)")
        lines.append("")

    section("WORSE", d.worse)
    section("NEW FAILING", d.new_failures)
    section("BETTER", d.better)
    section("CHANGED (same severity)", d.changed)
    for title, changes in (("NEW", d.new), ("GONE", d.gone)):
        if changes:
            lines.append(f"{title} ({len(changes)}), by backend and status")
            for row, status, n in _group(changes):
                lines.append(f"  {row}: {n} {status}")
            lines.append("")
    lines.append(summary_line(d))
    return "\n".join(lines) + "\n"


def render_html(d: Diff, old: dict[str, Any], new: dict[str, Any], old_path: str,
                new_path: str, limit: int = 500) -> str:
    """The same diff as one self-contained, escaped HTML page."""
    import jinja2
    import markupsafe

    here = Path(__file__).resolve().parent
    env = jinja2.Environment(loader=jinja2.FileSystemLoader(str(here)),
                             autoescape=jinja2.select_autoescape(default=True,
                                                                 default_for_string=True),
                             undefined=jinja2.StrictUndefined, trim_blocks=True,
                             lstrip_blocks=True)
    css = (here / "report.css").read_text(encoding="utf-8")

    def rows(changes: list[Change]) -> list[dict[str, Any]]:
        shown = changes if limit <= 0 else changes[:limit]
        out = []
        for c in shown:
            o, n = c.old or {}, c.new or {}
            out.append({"key": dict(zip(KEY_FIELDS, c.key[:7], strict=True)),
                        "old_status": o.get("status"), "new_status": n.get("status"),
                        "old_ulp": fmt_ulp(_ulp(o)) if o else "",
                        "new_ulp": fmt_ulp(_ulp(n)) if n else "",
                        "message": n.get("message") or o.get("message") or ""})
        return out

    sections = [
        ("worse", "Worse", d.worse), ("new-failing", "New and failing", d.new_failures),
        ("better", "Better", d.better), ("changed", "Changed (same severity)", d.changed),
    ]
    return env.get_template("diff.html.j2").render(
        css=markupsafe.Markup(css), d=d, old=old, new=new, old_path=old_path,
        new_path=new_path, summary=summary_line(d),
        sections=[(sid, title, rows(ch), len(ch)) for sid, title, ch in sections],
        new_groups=_group(d.new), gone_groups=_group(d.gone), limit=limit)


# --------------------------------------------------------------------- CLI ----

def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The `diff` subcommand's arguments (harness/__main__.py registers the subcommand)."""
    parser.add_argument("old", metavar="OLD.json", help="the earlier report.json")
    parser.add_argument("new", metavar="NEW.json", help="the later report.json")
    parser.add_argument("--html", type=Path, default=None, metavar="OUT.html",
                        help="also write the diff as a self-contained HTML page")
    parser.add_argument("--ulp-factor", type=float, default=DEFAULT_FACTOR, metavar="F",
                        help="a max ulp that grew more than F times is worse "
                             f"(default {DEFAULT_FACTOR:g})")
    parser.add_argument("--min-ulp", type=float, default=DEFAULT_MIN_ULP, metavar="U",
                        help="…and by at least U ulp, so sub-ulp jitter is not news "
                             f"(default {DEFAULT_MIN_ULP:g})")
    parser.add_argument("--limit", type=int, default=DEFAULT_LIMIT, metavar="N",
                        help=f"lines per section in the text output (default {DEFAULT_LIMIT}; "
                             "0: all)")


def run(args: argparse.Namespace) -> int:
    """Compare, print, optionally write HTML; 1 if anything regressed, 2 on bad input."""
    if not args.ulp_factor >= 1.0 or not args.min_ulp >= 0.0:
        sys.stderr.write("error: --ulp-factor must be at least 1 and --min-ulp at least 0 (a "
                         "factor of 2 flags a max ulp that more than doubled).\n")
        return 2
    try:
        old = load(args.old)
        new = load(args.new)
    except ReportFileError as exc:
        sys.stderr.write(f"error: {exc}\n")
        return 2
    d = diff_reports(old, new, factor=args.ulp_factor, min_ulp=args.min_ulp)
    sys.stdout.write(format_text(d, old, new, str(args.old), str(args.new), args.limit))
    if args.html is not None:
        try:
            args.html.parent.mkdir(parents=True, exist_ok=True)
            args.html.write_text(render_html(d, old, new, str(args.old), str(args.new)),
                                 encoding="utf-8")
        except OSError as exc:
            sys.stderr.write(f"error: {args.html}: cannot write the HTML diff "
                             f"({exc.strerror or exc}). Choose a writable path for --html.\n")
            return 2
        sys.stdout.write(f"HTML: {args.html}\n")
    return 1 if d.regressed else 0


def main(argv: list[str] | None = None) -> int:
    """Standalone entry (`python -m harness.report.diff`), until the CLI registers `diff`."""
    parser = argparse.ArgumentParser(prog="python -m harness diff",
                                     description="Compare two bce-harness reports.")
    add_arguments(parser)
    return run(parser.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
