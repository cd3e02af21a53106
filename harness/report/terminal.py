"""What `python -m harness report` shows in the terminal while it runs and when it ends.

Runs take minutes (four frameworks, thousands of calls, each backend in its own
worker process), so a person at a terminal wants to see each backend move, and a CI
log wants a few plain lines it can be grepped for. Hence two modes, picked from the
stream itself:

* a terminal: one rich progress bar per backend, redrawn in place;
* anything else (a pipe, a file, a CI log): no bars and no carriage returns, just
  one line per backend when it finishes, so a log stays readable.

Either way `finish` prints a summary table (per backend/implementation: counts per
status and the slowest call), the unexpected failures that make the exit status 1,
and where report.json and report.html are. `quiet` leaves only the final line.
`NO_COLOR` (https://no-color.org) turns colours off; strings from plugins and
exceptions are printed as text, never interpreted as rich markup.
"""

from __future__ import annotations

import os
import sys
import time
from collections import Counter, defaultdict
from pathlib import Path
from typing import Any, TextIO

from rich.console import Console as RichConsole
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    SpinnerColumn,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
)
from rich.table import Table
from rich.text import Text

from harness.records import STATUS_ORDER
from harness.records import UNEXPECTED as _UNEXPECTED

STATUSES: tuple[str, ...] = STATUS_ORDER
UNEXPECTED: frozenset[str] = _UNEXPECTED
STYLE: dict[str, str] = {"pass": "green", "fail": "bold red", "error": "bold magenta",
                         "known": "yellow", "fixed": "cyan", "unsupported": "dim",
                         "skipped": "dim"}
SHOW_UNEXPECTED = 10


def _is_tty(stream: Any) -> bool:
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError, OSError):
        return False


class Console:
    """Progress while a report runs, and its summary at the end.

    The runner calls `on_progress` from its main loop; the report job (harness/run/job.py) calls
    `start` before the run, `finish` after the report is written, and `close` in a
    `finally` (it is idempotent, so an interrupted run leaves the terminal clean).
    """

    def __init__(self, quiet: bool = False, stream: TextIO | None = None, *,
                 live: bool | None = None, width: int | None = None) -> None:
        self.quiet = quiet
        self.stream = stream if stream is not None else sys.stderr
        tty = _is_tty(self.stream)
        #: bars only on a terminal (or when a test forces them), never when quiet
        self.live = (tty if live is None else live) and not quiet
        no_color = os.environ.get("NO_COLOR", "") != ""
        if width is None and not tty:
            # a log file has no width: at least wide enough for the summary table, even
            # where a parent exported a narrow COLUMNS (pytest-xdist workers do)
            columns = os.environ.get("COLUMNS", "")
            width = max(120, int(columns) if columns.isdigit() else 0)
        self.console = RichConsole(file=self.stream, no_color=no_color, highlight=False,
                                   force_terminal=True if live else None, width=width,
                                   soft_wrap=False)
        self._progress: Progress | None = None
        self._tasks: dict[str, TaskID] = {}
        self._backends: list[str] = []
        self._started: dict[str, float] = {}
        self._finished: dict[str, tuple[int, float]] = {}
        self._t0 = time.monotonic()

    # ------------------------------------------------------------ running ----

    def start(self, backends: list[str], cases: int, trials: int) -> None:
        """Announce the run; on a terminal, one bar per backend (total not known yet)."""
        self._t0 = time.monotonic()
        self._backends = list(backends)
        if self.quiet:
            return
        self._line(f"{cases} cases → {trials} trials (case × dtype × reduction); backends: "
                   f"{', '.join(backends) or 'none'}")
        if not self.live:
            return
        self._progress = Progress(
            SpinnerColumn(), TextColumn("{task.fields[name]}", markup=False),
            BarColumn(bar_width=32), MofNCompleteColumn(),
            TextColumn("{task.percentage:>3.0f}%"), TimeElapsedColumn(),
            TextColumn("{task.fields[note]}", markup=False),
            console=self.console, transient=False, refresh_per_second=8)
        # bars appear as workers report: a backend's calls may be split over several
        # workers (dtype shards), each with a bar of its own
        self._progress.start()

    def _add_task(self, name: str, width: int | None = None) -> TaskID:
        assert self._progress is not None
        width = width or max([len(b) for b in self._tasks] + [len(name), 8])
        task = self._progress.add_task("", total=None, name=name.ljust(width),
                                       note="starting its worker")
        self._tasks[name] = task
        return task

    def on_progress(self, backend: str, done: int, total: int) -> None:
        """A backend's worker finished a call (done of total); safe to call often."""
        now = time.monotonic()
        self._started.setdefault(backend, now)
        if self._progress is not None:
            task = self._tasks.get(backend)
            if task is None:
                task = self._add_task(backend)
            self._progress.update(task, completed=done, total=max(total, 1) if total else 1,
                                  note="done" if done >= total else "")
            if total == 0:
                self._progress.update(task, completed=1, note="nothing to run")
        if done >= total and backend not in self._finished:
            seconds = now - self._t0
            self._finished[backend] = (total, seconds)
            if not self.live and not self.quiet:
                # its own time since its first call, and when in the run it ended: shards
                # queue for the worker processes, so the two differ
                took = now - self._started[backend]
                what = (f"{total} calls done in {took:.1f} s" if total
                        else "nothing to run in this selection,")
                self._line(f"{backend}: {what} (ended {seconds:.1f} s into the run)")

    def log(self, message: str) -> None:
        """A line of text above the bars (or in the log), shown unless quiet."""
        if not self.quiet:
            self._line(message)

    def close(self) -> None:
        """Stop the bars; idempotent, so it belongs in a `finally`."""
        if self._progress is not None:
            try:
                self._progress.stop()
            finally:
                self._progress = None

    # ------------------------------------------------------------ the end ----

    def finish(self, report: dict[str, Any], json_path: Path, html_path: Path) -> None:
        """The summary table, the unexpected failures, and where the files are."""
        self.close()
        results = report.get("results", [])
        if not self.quiet:
            stopped = self._stopped(report)
            for b in report.get("backends", []):
                name = b.get("name", "?")
                if b.get("availability"):
                    self._line(f"{name}: not run — {b['availability']}", style="dim")
                elif name in stopped:
                    self._line(f"{name}: stopped before it finished", style="yellow")
            per_shard = (report.get("run") or {}).get("per_backend") or {}
            for label, shard in per_shard.items():
                if isinstance(shard, dict) and shard.get("abandoned"):
                    self._line(f"{label}: given up, {shard['abandoned']}", style="yellow")
            self.console.print(summary_table(report))
            self._unexpected(results, json_path)
            argv = (report.get("run") or {}).get("argv") or []
            narrowed = any(a.split("=")[0] in ("--cases", "--dtype", "--device") for a in argv)
            self._expectations(report.get("expectations") or [], narrowed)
            if (report.get("run") or {}).get("interrupted"):
                self._line("interrupted: the report holds only the calls that finished",
                           style="bold yellow")
        counts = Counter(r["status"] for r in results)
        text = Text(f"{len(results)} results: ")
        first = True
        for s in STATUSES:
            if counts.get(s):
                if not first:
                    text.append(", ")
                text.append(f"{s} {counts[s]}", style=STYLE[s])
                first = False
        if first:
            text.append("none")
        text.append(f" → {json_path} and {html_path}")
        self.console.print(text, soft_wrap=True)

    def _backend_of(self, label: str) -> str:
        """The backend a progress label belongs to: its name, or its name and a dtype
        shard ("torch float16+bfloat16")."""
        for name in sorted(self._backends, key=len, reverse=True):
            if label == name or label.startswith(name + " "):
                return name
        return label

    def _stopped(self, report: dict[str, Any]) -> set[str]:
        """The backends that really did not finish their calls.

        A run that ended on its own finished every shard of every backend (a shard
        given up after repeated crashes recorded its remaining calls as errors and
        is reported as such). Only an interrupted run, or one whose calls step failed,
        leaves shards unfinished: the runner's statistics say which (`finished`
        false), and a backend that never reported progress never finished either.
        """
        run = report.get("run") or {}
        per_shard = run.get("per_backend") or {}
        stopped = {self._backend_of(label) for label, shard in per_shard.items()
                   if isinstance(shard, dict) and shard.get("finished") is False}
        calls_failed = any(p.get("phase") == "calls" and p.get("status") == "failed"
                           for p in run.get("phases") or [])
        if run.get("interrupted") or calls_failed:
            reported = {self._backend_of(label) for label in self._started}
            stopped |= {name for name in self._backends if name not in reported}
            stopped |= {self._backend_of(label) for label in self._started
                        if label not in self._finished}
        return stopped

    def _unexpected(self, results: list[dict[str, Any]], json_path: Path) -> None:
        bad = [r for r in results if r["status"] in UNEXPECTED]
        if not bad:
            return
        self._line(f"{len(bad)} unexpected (fail or error with an element no expectation "
                   "covers):", style="bold")
        for r in bad[:SHOW_UNEXPECTED]:
            line = Text("  ")
            line.append(r["status"].upper(), style=STYLE[r["status"]])
            line.append(f" {r['backend']}/{r['implementation']}@{r['device']} {r['dtype']} "
                        f"{r['case']} [{r.get('reduction', '')}] {r['check']}: "
                        f"{r.get('message', '')[:200]}")
            self.console.print(line, soft_wrap=True)  # one grep-able line per failure
        if len(bad) > SHOW_UNEXPECTED:
            self._line(f"  … and {len(bad) - SHOW_UNEXPECTED} more in {json_path}")

    def _expectations(self, summaries: list[dict[str, Any]], narrowed: bool = False) -> None:
        """Expectations that need an edit: fixed (remove or narrow) and unused (stale).

        Every shipped expectation is shown failing by the shipped cases, so on a run
        over all of them these lists are empty until a framework changes; a run
        narrowed by --cases, --dtype or --device may simply not reach an expectation's
        cases: its covered-but-passing expectations are `passing` (Ledger.finish), and
        the lines say so rather than advise an edit."""
        for status, style, advice in (
                ("fixed", "cyan", "every element it covers passes now: remove or narrow it"),
                ("passing", "dim", "every element it covers passes in this run, which was "
                                   "narrowed by --cases, --dtype or --device and may not "
                                   "reach its failures: not evidence of a fix"),
                ("unused", "yellow", "its backend ran but it covered nothing: a stale or "
                                     "mistyped entry")):
            hit = [e for e in summaries if e.get("status") == status]
            if not hit:
                continue
            if narrowed and status == "unused":
                advice = ("this run was narrowed by --cases, --dtype or --device, so its "
                          "cases may not reach them")
            self._line(f"{len(hit)} expectation(s) {status}: {advice}", style=style)
            if status == "passing":  # no edit to make: the count is enough
                continue
            for e in hit[:SHOW_UNEXPECTED]:
                self._line(f"  {e['id']} {e['backend']} {e['kind']}"
                           + (f" where {e['where']}" if e.get("where") else ""))
            if len(hit) > SHOW_UNEXPECTED:
                self._line(f"  … and {len(hit) - SHOW_UNEXPECTED} more in report.json "
                           "`expectations`")

    def _line(self, message: str, style: str | None = None) -> None:
        self.console.print(Text(message, style=style or ""), soft_wrap=True)


def summary_table(report: dict[str, Any]) -> Table:
    """Per backend/implementation: results per status and the slowest call."""
    results = report.get("results", [])
    counts: dict[tuple[str, str], Counter[str]] = defaultdict(Counter)
    slowest: dict[tuple[str, str], dict[str, Any]] = {}
    for r in results:
        key = (r["backend"], r["implementation"])
        counts[key][r["status"]] += 1
        d = r.get("duration_s")
        if isinstance(d, (int, float)) and (key not in slowest
                                            or d > slowest[key].get("duration_s", -1)):
            slowest[key] = r
    # pass and fail always, the other statuses when some result has them
    present = [s for s in STATUSES
               if s in ("pass", "fail") or any(c.get(s) for c in counts.values())]
    table = Table(title=None, show_edge=True, header_style="bold", pad_edge=False)
    table.add_column("backend/implementation", no_wrap=True)
    for s in present:
        table.add_column(s, justify="right", style=STYLE[s] if s != "pass" else None)
    table.add_column("slowest call", overflow="fold")
    order = {b.get("name"): i for i, b in enumerate(report.get("backends", []))}
    for key in sorted(counts, key=lambda k: (order.get(k[0], 99), k[0])):
        c = counts[key]
        cells: list[Text | str] = [Text(f"{key[0]}/{key[1]}")]
        for s in present:
            cells.append(Text(str(c.get(s, 0)) if c.get(s) else "·",
                              style=STYLE[s] if c.get(s) else "dim"))
        r = slowest.get(key)
        if r is not None:
            case = r["case"] if len(r["case"]) <= 40 else r["case"][:39] + "…"
            cells.append(Text(f"{r['duration_s'] * 1000:.0f} ms: {r['dtype']} "
                              f"[{r.get('reduction', '')}] @{r['device']} {case}"))
        else:
            cells.append(Text("—"))
        table.add_row(*cells)
    if not counts:
        table.add_row(Text("no results"), *[""] * len(present), "")
    return table
