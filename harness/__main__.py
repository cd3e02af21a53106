"""Command line: `python -m harness report | backends | cases | diff | sweep`
(README.md, "Commands").

Exit codes, for every command: 0 nothing unexpected; 1 at least one fail or error no
known entry covers; 2 bad usage or bad input, with a one-paragraph message that
names the file, the line and the fix, and no traceback.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

from harness.protocol import DTYPES
from harness.run.job import DEFAULT_OUT


class _Parser(argparse.ArgumentParser):
    """argparse, but usage errors end like every other bad input: one paragraph, exit 2."""

    commands: dict[str, argparse.ArgumentParser]  # the subcommands' parsers (top level)

    def error(self, message: str) -> None:  # type: ignore[override]
        self.print_usage(sys.stderr)
        sys.stderr.write(f"error: {message}. Run `{self.prog} --help` for the options.\n")
        raise SystemExit(2)


def _parser() -> _Parser:
    p = _Parser(prog="python -m harness",
                description="Conformance of binary cross-entropy with logits across frameworks.")
    sub = p.add_subparsers(dest="command", required=True, parser_class=_Parser)
    p.commands = sub.choices  # name -> its parser, which reports its own usage errors

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
                        "and trial's data once, about a third of the size) instead of the flat "
                        "`results` records (version 2); harness diff and harness.report.load "
                        "read both")
    r.add_argument("--no-shipped-expectations", action="store_true",
                   help="do not load cases/expectations.yaml (only --known files and plugins')")
    r.add_argument("--timeout", type=float, default=120.0, metavar="SECONDS",
                   help="per-call limit before a backend's worker is killed (default 120)")
    r.add_argument("--jobs", type=int, default=0, metavar="N",
                   help="worker processes at once, for the calls and the shrinking; each "
                        "backend's calls are shards that queue for them (JAX's one per dtype) "
                        "(default: one per available core)")
    r.add_argument("--max-restarts", type=int, default=3, metavar="N",
                   help="a backend shard whose worker dies or hangs more than N times is given "
                        "up: its calls not yet run are recorded as errors, each saying so "
                        "(default 3; raise it for a backend that crashes on some calls only, "
                        "at the cost of a framework import per crash, and a --timeout per "
                        "hang)")
    r.add_argument("--compiled", action="store_true",
                   help="also run the backends' compiled implementations (torch.compile, "
                        "jax.jit, tf.function), each judged against the reference and "
                        "against its eager twin (check vs-eager); costs a compilation per "
                        "shape (README.md, \"Compiled execution\")")
    r.add_argument("--forward-mode", action="store_true",
                   help="also compute forward-mode derivatives (torch.func.jvp, jax.jvp, "
                        "tf.autodiff.ForwardAccumulator) along a tangent of ones on each "
                        "argument, judged as checks jvp.input, jvp.target, ... against the "
                        "reference (README.md, \"Forward mode\")")
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

    from harness.sweep import cli as sweep

    s = sub.add_parser("sweep", help="every logit of a dtype against a set of targets, on Dask; "
                                     "error maps per implementation (docs/sweep.md)")
    sweep.add_arguments(s)
    return p


def main(argv: list[str] | None = None) -> int:
    from harness.cases import CaseFileError
    from harness.run.registry import UsageError

    parser = _parser()
    args, extra = parser.parse_known_args(argv)
    if extra:  # named by the command they were given to: its usage, its --help
        parser.commands[args.command].error(f"unrecognized arguments: {' '.join(extra)}")
    try:
        return {"report": cmd_report, "backends": cmd_backends, "cases": cmd_cases,
                "diff": cmd_diff, "sweep": cmd_sweep}[args.command](args)
    except (UsageError, CaseFileError) as exc:
        sys.stderr.write(f"error: {exc}\n")
        return 2


def cmd_diff(args: argparse.Namespace) -> int:
    from harness.report import diff

    return diff.run(args)


def cmd_sweep(args: argparse.Namespace) -> int:
    from harness.sweep import cli as sweep

    return sweep.main(args)


def cmd_cases(args: argparse.Namespace) -> int:
    from harness.run.job import load_cases
    from harness.run.trials import expand

    cases = load_cases(args.paths)
    for case in cases:
        shape = "×".join(map(str, case.input.shape)) or "0-d"
        extra = f" raises {'|'.join(case.raises)}" if case.raises else ""
        trials = len(case.dtypes) * len(case.reductions)
        print(f"{case.name:48s} {shape:>12s}  {trials:2d} trials  {case.source}{extra}")
    print(f"{len(cases)} cases, {len(expand(cases))} trials (case × dtype × reduction): all valid")
    return 0


def cmd_backends(args: argparse.Namespace) -> int:
    from harness.run.registry import discover, opt_in

    found = discover(args.plugin)
    named_only = {loaded.name for loaded in found if opt_in(loaded)}
    infos = [loaded.info() for loaded in found]
    if args.json:
        print(json.dumps(infos, indent=1))
        return 0
    for info in infos:
        if info["availability"]:
            print(f"{info['name']}: unavailable — {info['availability']}")
            continue
        versions = ", ".join(f"{k} {v}" for k, v in info["versions"].items())
        print(f"{info['name']}: available ({versions})")
        if info["name"] in named_only:
            print(f"  runs only when named: --backend {info['name']} (slow; see README.md)")
        print(f"  devices: {', '.join(info['devices'])}")
        print(f"  dtypes: {', '.join(info['dtypes'])}")
        for hook, what in (("forward_mode", "forward mode (--forward-mode)"),
                           ("label_smoothing", "label smoothing"),
                           ("last_axis_mean", "'none' is the mean over the last axis")):
            if info.get(hook):
                print(f"  {what}: {', '.join(info[hook])}")
        for impl in info["implementations"]:
            desc = info["descriptions"].get(impl, "")
            print(f"  - {impl}" + (f": {desc}" if desc else ""))
    return 0


def cmd_report(args: argparse.Namespace) -> int:
    from harness.run.job import ReportRequest, plan_report, run_report

    request = ReportRequest(
        cases=tuple(args.cases), examples=args.examples, seed=args.seed,
        backends=tuple(args.backend), plugins=tuple(args.plugin), devices=tuple(args.device),
        dtypes=tuple(args.dtype), out=args.out, known=tuple(args.known),
        shipped_expectations=not args.no_shipped_expectations, packed_json=args.packed_json,
        timeout=args.timeout, jobs=args.jobs, max_restarts=args.max_restarts,
        shrink=args.shrink, quiet=args.quiet,
        compiled=args.compiled, forward_mode=args.forward_mode,
        argv=tuple(sys.argv[1:]))
    return run_report(plan_report(request)).exit_code


if __name__ == "__main__":
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    sys.exit(main())
