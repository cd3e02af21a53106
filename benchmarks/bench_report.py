"""Where the default report's time goes, phase by phase, on one core.

Run ``python benchmarks/bench_report.py [--backend NAME ...] [--dtype NAME ...]
[--examples N] [--seed S] [--compiled] [--forward-mode]``. It plans the same run as
``python -m harness report`` with the same options and then does each step of it
in this one process, in order, timing each:

* ``plan``: loading the YAML cases, generating the examples, parsing the
  expectations, discovering the backends;
* ``reference``: ``reference.evaluate`` for every trial and variant the calls need;
* per backend shard (JAX's one per dtype, as the report splits them), in a fresh
  process of its own as in a report, ``import`` (its framework, by asking it what it
  offers) and ``calls`` (the backend's ``run`` for every planned call, repeats
  included); then, here, each backend's ``judging`` (comparing with the reference and
  matching the expectations);
* ``order``, ``report.json`` (building and writing it), ``validate`` (the JSON
  Schema) and ``report.html``.

One process at a time and no shrinking: the figures are seconds of one core, which
is what the report spends too, spread over its workers (``--jobs``: the imports and
the calls) and the parent (the reference, the judging and the writing, which share
the cores with the workers). Their total over the cores bounds a run's wall
time. The machines are noisy: compare figures from one run, as ratios.
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import os
import sys
import tempfile
import time
from collections.abc import Iterator
from concurrent.futures import ProcessPoolExecutor
from contextlib import contextmanager
from pathlib import Path

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

from harness import report
from harness.run.calls import Twins, perform, records_for
from harness.run.job import ReportRequest, canonical_order, plan_report
from harness.run.runner import RunOptions
from harness.run.trials import ReferenceCache, plan

ROWS: list[tuple[str, float, str]] = []


@contextmanager
def timed(phase: str, note: str = "") -> Iterator[dict[str, str]]:
    """Time the block as one row of the table; the block may fill in `note`."""
    extra = {"note": note}
    start = time.perf_counter()
    yield extra
    ROWS.append((phase, time.perf_counter() - start, extra["note"]))


def _calls(spec: str, trials: list, dtypes: tuple[str, ...], compiled: bool,
           forward_mode: bool) -> tuple:
    """In a fresh process (a Keras engine is chosen once per process, as in the report's
    workers): import the backend, then make every planned call; times both."""
    from harness.run.pool import single_threaded
    from harness.run.registry import Loaded, load_spec

    single_threaded()
    start = time.perf_counter()
    backend = load_spec(spec)
    info = Loaded(backend.name, spec, spec, backend).info()
    imported = time.perf_counter() - start
    if info.get("availability"):
        return info, [], [], imported, 0.0
    tasks = plan(info, trials, tuple(info["devices"][:1]), dtypes, compiled=compiled,
                 forward_mode=forward_mode)
    start = time.perf_counter()
    outcomes = [perform(backend, trials[t.trial], t.implementation, t.device, t.variant)
                for t in tasks]
    return info, tasks, outcomes, imported, time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--backend", action="append", default=[])
    parser.add_argument("--dtype", action="append", default=[])
    parser.add_argument("--examples", type=int, default=None)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--compiled", action="store_true")
    parser.add_argument("--forward-mode", action="store_true")
    args = parser.parse_args()

    out = Path(tempfile.mkdtemp(prefix="bench-report-"))
    request = ReportRequest(backends=tuple(args.backend), dtypes=tuple(args.dtype),
                            examples=args.examples, seed=args.seed, out=out,
                            compiled=args.compiled, forward_mode=args.forward_mode)
    with timed("plan") as row:
        p = plan_report(request)
        row["note"] = f"{len(p.cases)} cases, {len(p.trials)} trials"
    refs = ReferenceCache()
    measured = []
    split = RunOptions().split_by_dtype
    dtypes = list(dict.fromkeys(t.dtype for t in p.trials))
    for loaded in p.chosen:  # in fresh processes, shard by shard, as the report's workers
        shards = [(d,) for d in dtypes] if loaded.name in split else [()]
        for shard in shards:
            label = " ".join([loaded.name, *shard])
            with ProcessPoolExecutor(1, mp_context=mp.get_context("spawn")) as one:
                info, tasks, outcomes, imported, calls = one.submit(
                    _calls, loaded.spec, p.trials, shard, args.compiled,
                    args.forward_mode).result()
            ROWS.append((f"{label}: import", imported, info.get("availability") or ""))
            ROWS.append((f"{label}: calls", calls, f"{len(tasks)} calls"))
            measured.append((info, tasks, outcomes))
    with timed("reference") as row:
        needed = {(t.trial, t.variant) for _, tasks, _ in measured for t in tasks}
        for trial, variant in needed:
            refs.get(p.trials[trial], variant)
        row["note"] = f"{len(needed)} trial × variant pairs"
    results: list[dict] = []
    infos, merged = [], {}
    for info, tasks, outcomes in measured:  # a split backend's shards, judged together
        if info["name"] not in merged:
            infos.append(info)
            merged[info["name"]] = (info, [], [])
        merged[info["name"]][1].extend(tasks)
        merged[info["name"]][2].extend(outcomes)
    for info, tasks, outcomes in merged.values():
        if not tasks:
            continue
        with timed(f"{info['name']}: judging") as row:
            twins = Twins(refs, p.entries, sorted({t.implementation for t in tasks}),
                          sorted({t.device for t in tasks}), info.get("eager_twins", {}))
            before = len(results)
            for task, (outcome, duration, again) in zip(tasks, outcomes, strict=True):
                trial = p.trials[task.trial]
                results += records_for(info["name"], task.implementation, task.device, trial,
                                       outcome, duration, refs, p.entries, again, task.variant)
                results += twins.add(info["name"], task.implementation, task.device,
                                     task.trial, trial, outcome, task.variant)
            row["note"] = f"{len(results) - before} records"
    run = {"interrupted": False, "seconds": 0.0, "cases": len(p.cases),
           "trials": len(p.trials), "jobs": 1, "per_backend": {}, "argv": [],
           "seed": args.seed, "examples": p.examples, "found": [], "phases": []}
    with timed("order"):
        canonical_order(results, infos, p.trials)
    with timed("report.json") as row:
        doc = report.build(infos, results, run, report.case_index(p.cases),
                           expectations=p.entries.finish())
        path = report.write_json(doc, out)
        row["note"] = f"{path.stat().st_size / 1e6:.1f} MB"
    with timed("validate"):
        report.validate(doc)
    with timed("report.html") as row:
        html = report.write_html(doc, out)
        row["note"] = f"{html.stat().st_size / 1e6:.2f} MB"

    total = sum(s for _, s, _ in ROWS)
    width = max(len(name) for name, _, _ in ROWS)
    print(f"{'phase':<{width}}  {'seconds':>8}  {'share':>6}  note")
    for name, seconds, note in ROWS:
        print(f"{name:<{width}}  {seconds:8.2f}  {seconds / total:6.1%}  {note}")
    workers = sum(sec for name, sec, _ in ROWS if name.endswith((": import", ": calls")))
    print(f"{'total (one core)':<{width}}  {total:8.2f}")
    print(f"{'  workers':<{width}}  {workers:8.2f}  {workers / total:6.1%}  imports and calls")
    print(f"{'  parent':<{width}}  {total - workers:8.2f}  {(total - workers) / total:6.1%}  "
          "the rest")
    print(f"files in {out}")


if __name__ == "__main__":
    main()
