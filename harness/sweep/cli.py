"""`python -m harness sweep`: every logit of a format, every backend, on Dask.

`add_arguments` and `main` are what `harness.__main__` registers (and what
`python -m harness.sweep` runs). Exit codes as for `report`: 0 nothing unexpected; 1 an
element beyond its allowance (or an error, or a result dtype) no expectation covers,
or a shard recorded as `error`; 2 bad usage, one paragraph without a traceback; 130
interrupted (the shard files written so far stay; `--resume` continues).
"""

from __future__ import annotations

import argparse
import math
import os
import sys
import time
from pathlib import Path
from typing import Any

from harness.sweep.patterns import BITS

DEFAULT_OUT = Path("reports/latest")


def add_arguments(p: argparse.ArgumentParser) -> None:
    """The sweep's options (docs/sweep.md)."""
    p.add_argument("--dtype", required=True, choices=tuple(BITS), metavar="NAME",
                   help="the format whose every bit pattern is a logit: float16, bfloat16, "
                        "float32 (2^32 logits: add --stride or --limit for a sample), float64 "
                        "(only with --stride or --limit)")
    p.add_argument("--backend", action="append", default=[], metavar="NAME",
                   help="only this backend (repeatable; default: every available one)")
    p.add_argument("--plugin", action="append", default=[], metavar="MODULE:ATTR",
                   help="load a backend class, instance or list (repeatable); on a cluster "
                        "given with --scheduler the module must import on every worker")
    p.add_argument("--targets", default=None, metavar="LIST",
                   help="comma-separated targets, rounded to the dtype; `0+` is the smallest "
                        "positive value of the format, `1-` the largest below 1 (default: "
                        "0,1,0.5,0.1,0.9,0+,1- for float16 and bfloat16; 0,1 for float32 and "
                        "float64)")
    p.add_argument("--weight", type=float, default=None, metavar="W",
                   help="a weight on every element (rounded to the dtype)")
    p.add_argument("--pos-weight", type=float, default=None, metavar="P",
                   help="a pos_weight on every element (rounded to the dtype)")
    p.add_argument("--device", action="append", default=[], metavar="NAME",
                   help="only this device, e.g. cpu or cuda:0 (repeatable)")
    p.add_argument("--out", type=Path, default=DEFAULT_OUT, metavar="DIR",
                   help=f"where sweep-<dtype>.json and .html and the shard folder go "
                        f"(default {DEFAULT_OUT})")
    p.add_argument("--scheduler", default=None, metavar="ADDRESS",
                   help="the address of a running Dask scheduler (tcp://host:8786) to use as "
                        "it is; default: a LocalCluster started for the sweep")
    p.add_argument("--workers", type=int, default=0, metavar="N",
                   help="worker processes of the LocalCluster, one framework thread each "
                        "(default: one per available core)")
    p.add_argument("--resume", action="store_true",
                   help="keep the shard summaries already in OUT and compute only the missing "
                        "ones (and those recorded as error); the options must be the same")
    p.add_argument("--stride", type=int, default=1, metavar="K",
                   help="every K-th magnitude, with both signs (an odd K reaches every "
                        "mantissa bit; default 1: all)")
    p.add_argument("--limit", type=int, default=None, metavar="N",
                   help="at most N logits (the first N/2 sampled magnitudes, both signs)")
    p.add_argument("--chunk", type=int, default=None, metavar="N",
                   help="logits per backend call (default 65536); NaN logits get calls of "
                        "their own")
    p.add_argument("--shard", type=int, default=None, metavar="N",
                   help="logits per shard, the unit of work, of resume and of retry "
                        "(default: about 1/64 of the sweep, from 4096 to 2097152)")
    p.add_argument("--timeout", type=float, default=1200.0, metavar="SECONDS",
                   help="per backend and shard, before the backend's process is killed and the "
                        "shard recorded as error (default 1200)")
    p.add_argument("--known", type=Path, action="append", default=[], metavar="FILE",
                   help="an expectations file on top of the shipped one (repeatable)")
    p.add_argument("--no-shipped-expectations", action="store_true",
                   help="do not load cases/expectations.yaml (only --known files and plugins')")
    p.add_argument("--compiled", action="store_true",
                   help="also sweep the backends' compiled implementations (torch.compile, "
                        "jax.jit, tf.function), as `report --compiled`")
    p.add_argument("--quiet", action="store_true", help="print only the final summary")


def main(args: argparse.Namespace) -> int:
    """Run the sweep; the exit code (module docstring)."""
    from harness.run.registry import UsageError

    try:
        return _main(args)
    except UsageError as exc:
        sys.stderr.write(f"error: {exc}\n")
        return 2
    except KeyboardInterrupt:
        sys.stderr.write("interrupted: the shard files written so far are kept; run again with "
                         "--resume to continue.\n")
        return 130


def _usage(message: str) -> Exception:
    from harness.run.registry import UsageError

    return UsageError(message)


def _plan(args: argparse.Namespace) -> Any:
    import numpy as np

    from harness.dtypes import round_to
    from harness.sweep.plan import (
        DEFAULT_CHUNK,
        DEFAULT_TARGETS,
        Plan,
        TargetError,
        default_shard,
        parse_targets,
    )

    dtype = args.dtype
    for name, v, low in (("--stride", args.stride, 1), ("--workers", args.workers, 0),
                         ("--chunk", args.chunk, 1), ("--shard", args.shard, 2),
                         ("--limit", args.limit, 2), ("--timeout", args.timeout, 1)):
        if v is not None and v < low:
            raise _usage(f"{name} must be {low} or more, not {v}.")
    if dtype == "float64" and args.stride == 1 and args.limit is None:
        raise _usage("--dtype float64 has 2^64 logits, more than any cluster can sweep. Give "
                     "--stride K (e.g. --stride 4294967311 for about 4.3e9 logits) or --limit N "
                     "for a sample.")
    try:
        targets, labels = parse_targets(args.targets or DEFAULT_TARGETS[dtype], dtype)
    except TargetError as exc:
        raise _usage(f"--targets: {exc}. Give comma-separated numbers (0.1, 1e-3, 0x1p-24) "
                     "or `0+` / `1-` for the values just inside [0, 1], e.g. "
                     "--targets 0,1,0.5,0+,1-.") from None

    def scalar(name: str, v: float | None) -> float | None:
        if v is None:
            return None
        r = float(round_to(np.array([v]), dtype)[0])
        if math.isnan(r):
            raise _usage(f"{name} is NaN: sweep a NaN weight by --known entries and a case "
                         "file instead; give a number.")
        return r

    known = tuple(str(Path(k).resolve()) for k in args.known)
    for k in known:
        if not Path(k).exists():
            raise _usage(f"--known {k}: no such file. Give an expectations file "
                         "(docs/expectations.md).")
    from harness.sweep.patterns import Space

    try:
        space = Space(dtype, args.stride, args.limit)
    except ValueError as exc:
        raise _usage(f"{exc}.") from None
    shard = args.shard or default_shard(space.logits)
    return Plan(dtype=dtype, targets=targets, target_labels=labels,
                weight=scalar("--weight", args.weight),
                pos_weight=scalar("--pos-weight", args.pos_weight),
                stride=args.stride, limit=args.limit,
                shard_logits=shard + (shard % 2),
                chunk=args.chunk or DEFAULT_CHUNK, devices=tuple(args.device), known=known,
                shipped=not args.no_shipped_expectations, timeout=args.timeout,
                compiled=args.compiled)


def _cores() -> int:
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):
        return max(1, os.cpu_count() or 1)


def _main(args: argparse.Namespace) -> int:
    from dataclasses import replace

    try:
        import distributed  # noqa: F401
    except ImportError:
        raise _usage("the sweep runs on Dask, which is not installed. Install it with "
                     "pip install 'bce-harness[sweep]' (or pip install 'dask[distributed]').") \
            from None
    from harness.run.registry import discover, select
    from harness.sweep import engine, html, summary
    from harness.verdict import expectations as expect

    plan = _plan(args)
    exps = expect.load(plan.known, shipped=plan.shipped)
    chosen = select(discover(args.plugin), args.backend)
    out: Path = args.out
    store = engine.Store(out, plan.dtype)
    if args.scheduler is None:
        plan = replace(plan, worker_log=str((store.root / "workers.log").resolve()))
    workers = args.workers or _cores()
    say = (lambda *_: None) if args.quiet else (lambda m: sys.stderr.write(m + "\n"))
    space = plan.space
    try:
        store.check(plan, args.resume)  # before a cluster starts, and before anything is deleted
    except engine.PlanMismatch as exc:
        raise _usage(f"--resume: {store.root} holds shards of another sweep ({exc}). Give "
                     "the same options as that sweep, or run without --resume to start "
                     "over, or choose another --out.") from None
    store.root.mkdir(parents=True, exist_ok=True)  # the workers' log goes there
    started = time.monotonic()
    try:
        ctx = engine.client_for(args.scheduler, workers, plan.worker_log)
        client = ctx.__enter__()
    except OSError as exc:
        raise _usage(f"--scheduler {args.scheduler}: cannot connect ({exc}). Give the address "
                     "of a running dask scheduler (tcp://HOST:8786), or leave --scheduler out "
                     "to start a LocalCluster.") from None
    say(f"sweep {plan.dtype}: {space.logits:,} logits × {len(plan.targets)} targets "
        f"({', '.join(plan.target_labels)}), loss and ∂/∂x; "
        + (f"Dask scheduler {args.scheduler}" if args.scheduler else
           f"LocalCluster of {workers} worker(s)"))
    try:
        infos = engine.backend_infos(client, [c.spec for c in chosen], plan.worker_log)
        jobs = []
        for info, c in zip(infos, chosen, strict=True):
            if info.get("availability"):
                say(f"  {c.name}: unavailable ({info['availability']})")
                continue
            if plan.dtype not in info.get("dtypes", []):
                say(f"  {c.name}: has no {plan.dtype}")
                continue
            devices = [d for d in info["devices"] if not plan.devices or d in plan.devices]
            pairs = len(devices) * len(info["implementations"])
            if pairs:
                jobs.append(engine.BackendJob(c.name, c.spec, pairs))
            else:
                say(f"  {c.name}: none of its devices ({', '.join(info['devices'])}) is asked "
                    "for with --device")
        store.prepare(plan, args.resume)
        try:
            store.check_versions(infos, args.resume)
        except engine.PlanMismatch as exc:
            raise _usage(f"--resume: {store.root} holds shards computed with other versions "
                         f"({exc}). Run without --resume to start over, or choose another "
                         "--out.") from None
        if not jobs:
            raise _usage("no backend can run this sweep (see the lines above). Install a "
                         "framework (pip install 'bce-harness[all]'), or name an available "
                         "backend with --backend (python -m harness backends lists them).")
        outcome = engine.run(client, plan, jobs, store, quiet=args.quiet)
    finally:
        ctx.__exit__(None, None, None)
    engine_info = {"engine": "dask", "scheduler": args.scheduler or "LocalCluster",
                   "workers": outcome.workers, "dask": _version("dask"),
                   "distributed": _version("distributed"),
                   "total_s": round(time.monotonic() - started, 3)}
    json_path = out / f"sweep-{plan.dtype}.json"
    html_path = out / f"sweep-{plan.dtype}.html"
    try:
        doc = summary.build(plan, store, jobs, infos, outcome, exps, engine_info)
        summary.validate(doc)
        summary.write(doc, json_path)
    except Exception as exc:  # the shard files stay; a fixed harness can --resume from them
        sys.stderr.write(f"error: writing {json_path} failed ({type(exc).__name__}: {exc}); the "
                         f"shard summaries in {store.root} are kept: run again with --resume "
                         "once the cause is fixed.\n")
        return 1
    try:
        html.write(doc, html_path)
    except Exception as exc:
        sys.stderr.write(f"error: writing {html_path} failed ({type(exc).__name__}: {exc}); "
                         f"{json_path} is written.\n")
        return 1
    _print_summary(doc, json_path, html_path)
    if outcome.interrupted:
        sys.stderr.write("interrupted: the shard files written so far are kept; run again "
                         "with --resume to continue.\n")
        return 130
    return 1 if doc["summary"]["unexpected"] else 0


def _version(module: str) -> str | None:
    try:
        from importlib.metadata import version

        return version(module)
    except Exception:
        return None


def _num(v: Any, digits: int = 3) -> str:
    from harness.records import decode_float

    f = decode_float(v)
    return "?" if f is None else f"{f:.{digits}g}"


def _print_summary(doc: dict[str, Any], json_path: Path, html_path: Path) -> None:
    w = sys.stdout.write
    run = doc["run"]
    rate = run.get("elements_per_s")
    w(f"sweep {doc['dtype']}: {doc['plan']['logits']:,} logits × "
      f"{len(doc['plan']['targets'])} targets, {len(doc['implementations'])} implementations; "
      f"{run['computed']} shard tasks in {run['wall_s']:.1f} s"
      + (f" ({rate:,.0f} elements/s)" if rate else "")
      + (f", {run['resumed']} resumed" if run["resumed"] else "") + "\n")
    for d in doc["implementations"]:
        t = d["totals"]
        name = f"{d['backend']}/{d['implementation']} {d['device']}"
        if d["status"] == "unsupported":
            w(f"  {d['status']:<11} {name:<36} unsupported: {d['unsupported']}\n")
            continue
        extra = (f"{t['unexpected'] + t['errors_unexpected']:,} unexpected, "
                 f"{t['known']:,} known, {t['errors']:,} errors")
        worst = d.get("worst")
        if worst is not None:
            extra += (f"; worst {_num(worst['ulp'])} ulp, {_num(worst['allowance'])} allowed "
                      f"({worst['quantity']} at x = {_num(worst['logit'], 6)}, "
                      f"y = {worst['label']})")
        w(f"  {d['status']:<11} {name:<36} {extra}\n")
    for e in doc["shard_errors"]:
        w(f"  error: {e['backend']} shard {e['shard']}: {e['error']}\n")
    w(f"wrote {json_path} and {html_path}\n")
