"""Command line: `python -m harness report | backends | cases` (CONTRACT §1).

Exit codes, for every command: 0 nothing unexpected; 1 at least one fail or error no
known entry covers; 2 bad usage or bad input, with a one-paragraph message that
names the file, the line and the fix, and no traceback.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

from harness.protocol import DTYPES

DEFAULT_OUT = Path("reports/latest")


class _Parser(argparse.ArgumentParser):
    """argparse, but usage errors end like every other bad input: one paragraph, exit 2."""

    def error(self, message: str) -> None:  # type: ignore[override]
        self.print_usage(sys.stderr)
        sys.stderr.write(f"error: {message}. Run `python -m harness {self.prog.split()[-1]} "
                         "--help` for the options.\n")
        raise SystemExit(2)


def _parser() -> argparse.ArgumentParser:
    p = _Parser(prog="python -m harness",
                description="Conformance of binary cross-entropy with logits across frameworks.")
    sub = p.add_subparsers(dest="command", required=True, parser_class=_Parser)

    r = sub.add_parser("report", help="run backends over the cases, write report.json/html")
    r.add_argument("--backend", action="append", default=[], metavar="NAME",
                   help="only this backend (repeatable)")
    r.add_argument("--plugin", action="append", default=[], metavar="MODULE:ATTR",
                   help="load a backend class, instance or list (repeatable)")
    r.add_argument("--cases", action="append", default=[], metavar="PATH",
                   help="case file or folder (repeatable; default: the shipped cases/)")
    r.add_argument("--examples", type=int, default=None, metavar="N",
                   help="Hypothesis-generated cases on top of the YAML ones (default 80; 0: "
                        "none)")
    r.add_argument("--seed", type=int, default=0, metavar="S", help="seed for --examples")
    r.add_argument("--device", action="append", default=[], metavar="NAME",
                   help="only this device, e.g. cpu or cuda:0 (repeatable)")
    r.add_argument("--dtype", action="append", default=[], metavar="NAME", choices=DTYPES,
                   help="only this dtype (repeatable)")
    r.add_argument("--out", type=Path, default=DEFAULT_OUT, metavar="DIR",
                   help=f"where report.json and report.html go (default {DEFAULT_OUT})")
    r.add_argument("--known", type=Path, action="append", default=[], metavar="FILE",
                   help="an expectations file on top of the shipped cases/expectations.yaml "
                        "and those plugins ship (repeatable; format in docs/expectations.md)")
    r.add_argument("--packed-json", action="store_true",
                   help="write report.json in the packed layout (schema_version 3: each call "
                        "and trial's data once, about a fifth of the size) instead of the flat "
                        "`results` records (version 2); harness diff and harness.report.load "
                        "read both")
    r.add_argument("--no-shipped-expectations", action="store_true",
                   help="do not load cases/expectations.yaml (only --known files and plugins')")
    r.add_argument("--timeout", type=float, default=120.0, metavar="SECONDS",
                   help="per-call limit before a backend's worker is killed (default 120)")
    r.add_argument("--jobs", type=int, default=0, metavar="N",
                   help="worker processes at once, for the calls and the shrinking; each "
                        "backend's calls are split into dtype shards that queue for them "
                        "(default: one per available core)")
    r.add_argument("--quiet", action="store_true", help="print only the final summary line")
    r.add_argument("--shrink", type=int, default=None, metavar="N",
                   help="failing generated cases shrunk to YAML reproductions in OUT/found "
                        "(default 3; 0: none)")

    b = sub.add_parser("backends", help="list every backend found, available or why not")
    b.add_argument("--plugin", action="append", default=[], metavar="MODULE:ATTR")
    b.add_argument("--json", action="store_true", help="machine-readable output")

    c = sub.add_parser("cases", help="validate case files and list the cases they expand to")
    c.add_argument("paths", nargs="*", metavar="PATH")

    from harness.report import diff

    d = sub.add_parser("diff", help="compare two report.json files; exit 1 if anything regressed")
    diff.add_arguments(d)
    return p


def main(argv: list[str] | None = None) -> int:
    from harness.cases import CaseFileError
    from harness.run.registry import UsageError

    args = _parser().parse_args(argv)
    try:
        return {"report": cmd_report, "backends": cmd_backends, "cases": cmd_cases,
                "diff": cmd_diff}[args.command](args)
    except (UsageError, CaseFileError) as exc:
        sys.stderr.write(f"error: {exc}\n")
        return 2


def _load_cases(paths: list[str]) -> list[Any]:
    from harness.cases import load_cases
    from harness.run.registry import UsageError

    for p in paths:
        if not Path(p).exists():
            raise UsageError(f"{p}: no such file or folder. Give a case file (.yaml) or a folder "
                             "of them; the shipped cases are in cases/.")
    return load_cases(paths or None)


def cmd_diff(args: argparse.Namespace) -> int:
    from harness.report import diff

    return diff.run(args)


def cmd_cases(args: argparse.Namespace) -> int:
    from harness.run.runner import expand

    cases = _load_cases(args.paths)
    for case in cases:
        shape = "×".join(map(str, case.input.shape)) or "0-d"
        extra = f" raises {'|'.join(case.raises)}" if case.raises else ""
        trials = len(case.dtypes) * len(case.reductions)
        print(f"{case.name:48s} {shape:>12s}  {trials:2d} trials  {case.source}{extra}")
    print(f"{len(cases)} cases, {len(expand(cases))} trials (case × dtype × reduction): all valid")
    return 0


def cmd_backends(args: argparse.Namespace) -> int:
    from harness.run.registry import discover

    infos = [loaded.info() for loaded in discover(args.plugin)]
    if args.json:
        print(json.dumps(infos, indent=1))
        return 0
    for info in infos:
        if info["availability"]:
            print(f"{info['name']}: unavailable — {info['availability']}")
            continue
        versions = ", ".join(f"{k} {v}" for k, v in info["versions"].items())
        print(f"{info['name']}: available ({versions})")
        print(f"  devices: {', '.join(info['devices'])}")
        print(f"  dtypes: {', '.join(info['dtypes'])}")
        for impl in info["implementations"]:
            desc = info["descriptions"].get(impl, "")
            print(f"  - {impl}" + (f": {desc}" if desc else ""))
    return 0


def _canonical_order(results: list[dict[str, Any]], backends: list[dict[str, Any]],
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


def cmd_report(args: argparse.Namespace) -> int:
    from harness import report
    from harness.generate.coverage import coverage
    from harness.generate.coverage import summary as coverage_summary
    from harness.generate.found import MAX_SHRINKS, shrink_failures
    from harness.report.terminal import Console
    from harness.run.phases import Phases, why
    from harness.run.registry import UsageError, discover, select
    from harness.run.runner import Pool, RunOptions, expand, run_isolated
    from harness.verdict import expectations as expect

    started = time.monotonic()
    from harness.generate.strategies import DEFAULT_EXAMPLES, generate_cases

    if args.jobs < 0:
        raise UsageError("--jobs must be 1 or more (0, the default: one per available core).")
    cases = _load_cases(args.cases)
    examples = DEFAULT_EXAMPLES if args.examples is None else args.examples
    if examples < 0:
        raise UsageError("--examples must be 0 or more (0 turns generation off).")
    if examples:
        cases = cases + generate_cases(examples, args.seed)
    entries = expect.load(args.known, shipped=not args.no_shipped_expectations)
    chosen = select(discover(args.plugin), args.backend)
    trials = expand(cases, args.dtype)
    phases = Phases()
    coverage_table, coverage_line = None, "coverage: not computed (see run.phases)"
    with phases.run("coverage"):
        coverage_table = coverage(cases, args.dtype)
        coverage_line = coverage_summary(coverage_table)
    if not trials:
        raise UsageError("the selection leaves no trial to run (check --cases and --dtype).")
    opts = RunOptions(devices=tuple(args.device), dtypes=tuple(args.dtype),
                      timeout=args.timeout, jobs=args.jobs)
    sink = report.Sink(args.out)
    infos: dict[str, dict[str, Any]] = {}
    console = Console(quiet=args.quiet)
    console.start([c.name for c in chosen], len(cases), len(trials))
    if not args.quiet:
        console.log(f"{examples} generated examples (seed {args.seed}); {coverage_line}")
    stats: dict[str, Any] = {}
    worker_log = args.out / "workers.log"  # the frameworks' own stderr
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
        run = {"interrupted": interrupted, "seconds": round(time.monotonic() - started, 2),
               "cases": len(cases), "trials": len(trials), "jobs": pool.limit,
               "per_backend": stats, "argv": sys.argv[1:], "seed": args.seed,
               "examples": examples, "found": [], "phases": phases.records}
        # what was measured goes to disk first; every later step is guarded
        backends = [infos[c.name] for c in chosen if c.name in infos]
        with phases.run("order"):
            backends = [infos.get(c.name) or c.info() for c in chosen]
            _canonical_order(sink.results, backends, trials)
        doc: dict[str, Any] = {"run": run, "summary": report.summarize(sink.results),
                               "results": sink.results}
        json_path, html_path = args.out / "report.json", args.out / "report.html"
        with phases.run("report.json"):
            doc = report.build(backends, sink.results, run, report.case_index(cases),
                               expectations=entries.finish())
            if coverage_table is not None:
                doc["coverage"] = coverage_table
            json_path = report.write_json(doc, args.out, packed=args.packed_json)
        if not phases.ok("report.json"):
            with phases.run("report.json (records only)"):
                json_path = report.write_json(doc, args.out, packed=args.packed_json)
        written = phases.ok("report.json") or phases.ok("report.json (records only)")
        if written and phases.ok("calls"):
            with contextlib.suppress(OSError):
                sink.path.unlink(missing_ok=True)
        shrinks: list[dict[str, Any]] = []
        if not phases.interrupted and args.shrink != 0 and phases.ok("calls"):
            with phases.run("shrink"):
                shrinks = shrink_failures(
                    sink.results, cases, {c.name: c.spec for c in chosen}, args.seed,
                    args.out / "found", MAX_SHRINKS if args.shrink is None else args.shrink,
                    pool=pool, timeout=args.timeout, known=[str(k) for k in args.known],
                    shipped=not args.no_shipped_expectations)
    finally:
        pool.close()
    run["found"] = [a["path"] for a in shrinks if a.get("path")]
    if shrinks:
        run["shrinks"] = shrinks
    with phases.run("validate"):
        report.validate(doc, packed=args.packed_json)
    with phases.run("report.html"):
        html_path = report.write_html(doc, args.out)
    if not phases.ok("report.html"):
        failed = phases.records[-1]
        with phases.run("report.html (plain)"):
            html_path = report.write_fallback_html(doc, args.out,
                                                   f"the {failed['phase']} step failed: "
                                                   f"{failed['why']}")
    with phases.run("summary"):
        console.finish(doc, json_path, html_path)
    run["interrupted"] = interrupted = interrupted or phases.interrupted
    run["seconds"] = round(time.monotonic() - started, 2)
    try:
        report.write_json(doc, args.out, packed=args.packed_json)  # again, now holding every phase
    except Exception as exc:
        print(f"report.json could not be rewritten with the phases: {why(exc)}", file=sys.stderr)
        phases.records.append({"phase": "report.json (final)", "status": "failed",
                               "seconds": 0.0, "why": why(exc)})
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
                 if written else f"the records are in {sink.path}")
        print(f"the {p['phase']} step failed: {p['why']}; {where}", file=sys.stderr)
    if interrupted:
        if args.quiet or not phases.ok("summary"):  # the summary says it otherwise
            print("interrupted: the report holds what finished", file=sys.stderr)
        return 130
    if phases.failed:
        return 1
    return report.exit_code(sink.results)


if __name__ == "__main__":
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    sys.exit(main())
