"""One report, planned and run: the whole of `python -m harness report`, as a function.

`plan_report(ReportRequest(...))` loads and checks everything a run needs (cases,
generated examples, expectations, backends, trials) and raises `UsageError` or
`CaseFileError` for bad input before anything runs; `run_report(plan)` runs it and
writes report.json and report.html. The CLI only parses arguments into a request;
the pytest plugin plans with the same function, so both see the same cases and
expectations.

Every phase after the calls runs with the results already safe (harness/run/phases.py):
report.json is written first, and a phase that fails is recorded in it and named in
the terminal, while the command still writes both files and exits 1.
"""

from __future__ import annotations

import contextlib
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

DEFAULT_OUT = Path("reports/latest")


@dataclass(frozen=True)
class ReportRequest:
    """What a user asks of a report, as `python -m harness report --help` lists it."""

    cases: tuple[str, ...] = ()  # files or folders; () = the shipped cases/
    examples: int | None = None  # generated cases on top; None = the default count
    seed: int = 0
    backends: tuple[str, ...] = ()
    plugins: tuple[str, ...] = ()
    devices: tuple[str, ...] = ()
    dtypes: tuple[str, ...] = ()
    out: Path = DEFAULT_OUT
    known: tuple[Path, ...] = ()
    shipped_expectations: bool = True
    packed_json: bool = False
    timeout: float = 120.0
    jobs: int = 0  # 0 = one worker per available core
    max_restarts: int = 3  # a shard's worker failures before its remaining calls are given up
    shrink: int | None = None  # None = the default number of shrinks
    quiet: bool = False
    compiled: bool = False  # the backends' compiled implementations too
    forward_mode: bool = False  # forward-mode derivatives (jvp.*) where backends offer them
    argv: tuple[str, ...] = ()  # recorded in report.json's `run`


@dataclass
class ReportPlan:
    """Everything loaded and checked: what `run_report` runs."""

    request: ReportRequest
    cases: list[Any]
    examples: int
    entries: Any  # harness.verdict.expectations.Expectations
    chosen: list[Any]  # harness.run.registry.Loaded
    trials: list[Any]  # harness.run.trials.Trial
    started: float = field(default_factory=time.monotonic)


@dataclass
class ReportOutcome:
    """What a finished report left: its exit code and where the files are."""

    exit_code: int
    document: dict[str, Any]
    json_path: Path
    html_path: Path


def load_cases(paths: tuple[str, ...] | list[str]) -> list[Any]:
    """The YAML cases of `paths` (the shipped ones when empty); a missing path is a
    usage error that says what to give instead."""
    from harness.cases import load_cases as load
    from harness.run.registry import UsageError

    for p in paths:
        if not Path(p).exists():
            raise UsageError(f"{p}: no such file or folder. Give a case file (.yaml) or a folder "
                             "of them; the shipped cases are in cases/.")
    return load(list(paths) or None)


def plan_report(request: ReportRequest) -> ReportPlan:
    """Load and check what `request` needs; raises before anything runs."""
    from harness.generate.seeding import DEFAULT_EXAMPLES, generate_cases
    from harness.run.registry import UsageError, discover, select
    from harness.run.trials import expand
    from harness.verdict import expectations as expect

    started = time.monotonic()
    if request.jobs < 0:
        raise UsageError("--jobs must be 1 or more (0, the default: one per available core).")
    if request.max_restarts < 0:
        raise UsageError("--max-restarts must be 0 or more (0: give a backend up at its "
                         "first crash or hang).")
    examples = DEFAULT_EXAMPLES if request.examples is None else request.examples
    if examples < 0:
        raise UsageError("--examples must be 0 or more (0 turns generation off).")
    # everything that can refuse the command first, cheapest first: validating the case
    # files takes most of a second and generating the examples a second or two, and a
    # mistyped backend or a bad file must not wait for them
    chosen = select(discover(list(request.plugins)), list(request.backends))
    cases = load_cases(request.cases)
    entries = expect.load(list(request.known), shipped=request.shipped_expectations)
    if examples:
        cases = cases + generate_cases(examples, request.seed)
    trials = expand(cases, request.dtypes)
    if not trials:
        raise UsageError("the selection leaves no trial to run (check --cases and --dtype).")
    return ReportPlan(request, cases, examples, entries, chosen, trials, started)


def narrowed(request: ReportRequest) -> bool:
    """Whether the run leaves out shipped cases, dtypes or devices, so that it may not
    reach an expectation's failing elements (see Ledger.finish)."""
    return bool(request.cases or request.dtypes or request.devices)


def canonical_order(results: list[dict[str, Any]], backends: list[dict[str, Any]],
                    trials: list[Any]) -> None:
    """Sort records as the run was planned, not as workers happened to finish, so the
    same seed gives the same report (apart from timings). Stable: a call's checks
    keep their order."""
    trial_index = {(t.case.name, t.dtype, t.reduction): i for i, t in enumerate(trials)}
    backend_index = {b["name"]: i for i, b in enumerate(backends)}
    impl_index = {(b["name"], impl): i for b in backends
                  for i, impl in enumerate(b.get("implementations", []))}
    results.sort(key=lambda r: (backend_index.get(r["backend"], len(backend_index)),
                                impl_index.get((r["backend"], r["implementation"]), 0),
                                r["device"],
                                trial_index.get((r["case"], r["dtype"], r["reduction"]), -1)))


def run_report(plan: ReportPlan) -> ReportOutcome:
    """Run the planned report, write report.json and report.html, say what happened.

    Exit code: 0 nothing unexpected, 1 an unexpected discrepancy or a failed phase,
    130 interrupted (the report holds what finished)."""
    from harness import report
    from harness.generate.coverage import coverage
    from harness.generate.coverage import summary as coverage_summary
    from harness.generate.found import MAX_SHRINKS, shrink_failures
    from harness.report.terminal import Console
    from harness.run.phases import Phases, why
    from harness.run.pool import Pool
    from harness.run.runner import RunOptions, run_isolated

    req, cases, trials, chosen, entries = (plan.request, plan.cases, plan.trials, plan.chosen,
                                           plan.entries)
    phases = Phases()
    coverage_table, coverage_line = None, "coverage: not computed (see run.phases)"
    with phases.run("coverage"):
        coverage_table = coverage(cases, req.dtypes)
        coverage_line = coverage_summary(coverage_table)
    opts = RunOptions(devices=req.devices, dtypes=req.dtypes, timeout=req.timeout,
                      jobs=req.jobs, max_restarts=req.max_restarts, compiled=req.compiled,
                      forward_mode=req.forward_mode)
    sink = report.Sink(req.out)
    infos: dict[str, dict[str, Any]] = {}
    console = Console(quiet=req.quiet)
    console.start([c.name for c in chosen], len(cases), len(trials))
    if not req.quiet:
        console.log(f"{plan.examples} generated examples (seed {req.seed}); {coverage_line}")
    stats: dict[str, Any] = {}
    worker_log = req.out / "workers.log"  # the frameworks' own stderr
    with contextlib.suppress(OSError):
        worker_log.unlink(missing_ok=True)
    pool = Pool(opts.jobs, log=worker_log)
    written = False  # whether report.json holds the records
    try:
        with phases.run("calls"):
            try:
                run_isolated(chosen, trials, opts, entries,
                             on_records=lambda name, recs: sink.add(recs),
                             on_info=lambda info: infos.__setitem__(info["name"], info),
                             on_progress=console.on_progress, pool=pool, stats=stats)
            finally:
                console.close()
        interrupted = phases.interrupted
        with contextlib.suppress(OSError):
            sink.close(keep=True)  # until report.json holds the records
        calls_done = round(time.monotonic() - plan.started, 2)
        # `seconds` becomes the whole command's time once every phase is done;
        # `calls_done_s` stays the time to the last judged call (the page's figure, as the
        # page is written before the end)
        run = {"interrupted": interrupted, "seconds": calls_done, "calls_done_s": calls_done,
               "cases": len(cases), "trials": len(trials), "jobs": pool.limit,
               "per_backend": stats, "argv": list(req.argv), "seed": req.seed,
               "examples": plan.examples, "found": [], "phases": phases.records}
        # what was measured goes to disk first; every later step is guarded
        backends = [infos[c.name] for c in chosen if c.name in infos]
        with phases.run("order"):
            backends = [infos.get(c.name) or c.info() for c in chosen]
            canonical_order(sink.results, backends, trials)
        doc: dict[str, Any] = {"run": run, "summary": report.summarize(sink.results),
                               "results": sink.results}
        json_path, html_path = req.out / "report.json", req.out / "report.html"
        with phases.run("report.json"):
            ledger = entries.finish(narrowed=narrowed(req))
            # closing the ledger relabels the records of `fixed` expectations: the only
            # records that change after they arrived, so only their lines are redone
            sink.forget([r for r in sink.results if r.get("status") == "fixed"])
            doc = report.build(backends, sink.results, run, report.case_index(cases),
                               expectations=ledger, coverage=coverage_table)
            json_path = report.write_json(doc, req.out, packed=req.packed_json,
                                          lines=sink.lines)
        if not phases.ok("report.json"):
            with phases.run("report.json (records only)"):
                json_path = report.write_json(doc, req.out, packed=req.packed_json)
        written = phases.ok("report.json") or phases.ok("report.json (records only)")
        if written and phases.ok("calls"):
            with contextlib.suppress(OSError):
                sink.path.unlink(missing_ok=True)
        shrinks: list[dict[str, Any]] = []
        if not phases.interrupted and req.shrink != 0 and phases.ok("calls"):
            with phases.run("shrink"):
                shrinks = shrink_failures(
                    sink.results, cases, {c.name: c.spec for c in chosen}, req.seed,
                    req.out / "found", MAX_SHRINKS if req.shrink is None else req.shrink,
                    pool=pool, timeout=req.timeout, known=[str(k) for k in req.known],
                    shipped=req.shipped_expectations)
    finally:
        pool.close()
    run["found"] = [a["path"] for a in shrinks if a.get("path")]
    if shrinks:
        run["shrinks"] = shrinks
    with phases.run("validate"):
        report.validate(doc, packed=req.packed_json)
    with phases.run("report.html"):
        html_path = report.write_html(doc, req.out)
    if not phases.ok("report.html"):
        failed = phases.records[-1]
        with phases.run("report.html (plain)"):
            html_path = report.write_fallback_html(doc, req.out,
                                                   f"the {failed['phase']} step failed: "
                                                   f"{failed['why']}")
    with phases.run("summary"):
        console.finish(doc, json_path, html_path)
    run["interrupted"] = interrupted = interrupted or phases.interrupted
    run["seconds"] = round(time.monotonic() - plan.started, 2)
    try:
        report.write_json(doc, req.out, packed=req.packed_json,  # again, with every phase
                          lines=sink.lines)
    except Exception as exc:
        print(f"report.json could not be rewritten with the phases: {why(exc)}", file=sys.stderr)
        phases.records.append({"phase": "report.json (final)", "status": "failed",
                               "seconds": 0.0, "why": why(exc)})
    _say_after(shrinks, worker_log, phases, written, sink.path)
    if interrupted:
        if req.quiet or not phases.ok("summary"):  # the summary says it otherwise
            print("interrupted: the report holds what finished", file=sys.stderr)
        code = 130
    elif phases.failed:
        code = 1
    else:
        code = report.exit_code(sink.results)
    return ReportOutcome(code, doc, json_path, html_path)


def _say_after(shrinks: list[dict[str, Any]], worker_log: Path, phases: Any, written: bool,
               partial: Path) -> None:
    """The terminal lines after the summary: reproductions, worker messages, failed phases."""
    for a in shrinks:
        what = f"{a['backend']}/{a['implementation']} {a['case']} {a['check']} [{a['kind']}]"
        if a.get("path"):
            print(f"shrunk reproduction of {what}: {a['path']}; re-run it with: {a['command']}",
                  file=sys.stderr)
        else:
            print(f"not shrunk: {what}: {a.get('why')}", file=sys.stderr)
    with contextlib.suppress(OSError):
        if worker_log.stat().st_size:
            print(f"the frameworks' own messages (their workers' stderr) are in {worker_log}",
                  file=sys.stderr)
    for p in phases.failed:
        where = ("report.json holds every result (run.phases says what is missing)"
                 if written else f"the records are in {partial}")
        print(f"the {p['phase']} step failed: {p['why']}; {where}", file=sys.stderr)
