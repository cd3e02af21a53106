"""Throughput of a sweep's parts on one core, and what a full float32 sweep would take.

Run ``python benchmarks/bench_sweep.py [--dtype float32] [--n N] [--backend NAME ...]
[--workers 1,16,64,256]``. On N logits (default 2^19) in 16 windows of consecutive bit
patterns evenly spaced over the format (from a seeded random start; each window a shard
of N/16 logits with both signs, one backend call per target, as a full sweep's shards and
calls are; three quarters of all float32 logits lie outside 2^-60 ≤ |x| ≤ 64, where the
reference takes its general path, and so do about three quarters of the windows')
and the hard labels 0 and 1 (``--targets`` to change), all in one process on one core
(every framework asked for one thread), it times:

* the reference (`harness.sweep.exact.evaluate`: the hard labels share one evaluation);
* each backend implementation, in the backend's own process as in a sweep: its
  framework calls (``run``, one call per target and window), then the judging of its
  results (ulp distance, allowance, expectations, tallies per binade), after one
  untimed window, so imports and compilation for the shape are left out, as a long
  sweep amortises them;

and prints elements per second per core (an element is one logit × target, per
quantity pair: the loss and ∂L/∂x together) for each, then the projected wall time of
the full sweep of the dtype (2^bits logits × the targets) on N workers: the core-seconds
of the reference plus every implementation, divided by N (no overheads: Dask adds
about 10 ms a task, a shard of 2^21 logits takes seconds).
"""

from __future__ import annotations

import argparse
import os
import sys
import time

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

from harness import reference
from harness.reference import fastjit
from harness.run.pool import single_threaded
from harness.sweep import isolate, shard

single_threaded()  # before any framework is imported

from harness.run.registry import discover, select  # noqa: E402
from harness.sweep.patterns import Shard, Space  # noqa: E402
from harness.sweep.plan import Plan, parse_targets  # noqa: E402


def _duration(s: float) -> str:
    if s < 120:
        return f"{s:.0f} s"
    if s < 7200:
        return f"{s / 60:.1f} min"
    if s < 3 * 86400:
        return f"{s / 3600:.1f} h"
    return f"{s / 86400:.1f} days"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--dtype", default="float32", choices=("float16", "bfloat16", "float32"))
    ap.add_argument("--n", type=int, default=1 << 19, help="logits (default 524288)")
    ap.add_argument("--windows", type=int, default=16)
    ap.add_argument("--targets", default="0,1")
    ap.add_argument("--backend", action="append", default=[])
    ap.add_argument("--plugin", action="append", default=[])
    ap.add_argument("--workers", default="1,16,64,256,1024")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()

    space_all = Space(args.dtype)
    targets, labels = parse_targets(args.targets, args.dtype)
    windows = args.windows
    per = max(1, args.n // (2 * windows))
    plan = Plan(args.dtype, targets, labels, shard_logits=2 * per, shipped=True)
    # evenly spaced over the magnitudes (from a seeded random phase): the windows meet the
    # reference's fast and general paths in the proportions of the whole format
    rng = np.random.default_rng(args.seed)
    gap = space_all.magnitudes // windows
    phase = int(rng.integers(0, max(1, gap - per)))
    starts = [phase + k * gap for k in range(windows)]
    warm = Shard(windows, starts[0] + per, starts[0] + 2 * per)
    shards = [Shard(k, lo, lo + per) for k, lo in enumerate(starts)]
    n_el = 2 * per * windows * len(targets)
    print(f"{args.dtype}: {windows} evenly spaced windows of {2 * per:,} consecutive logits "
          f"(seed {args.seed}) × {len(targets)} targets ({', '.join(labels)}) = {n_el:,} elements, "
          "one core\n")

    # a long sweep's worker soon runs the reference's compiled loops (where numba is
    # installed, after its first two million fast-kernel elements): load them here,
    # with the untimed warm window, so the timed windows see what a sweep sees
    fastjit.JIT_AFTER = 0
    ordinary = np.linspace(-3.0, 3.0, 4096)
    reference.evaluate(ordinary, np.full(4096, 0.5), reduction="sum")
    warm_ref = shard.reference_shard(plan, warm)
    refs, ref_s = [], 0.0
    for sh in shards:
        start = time.perf_counter()
        refs.append(shard.reference_shard(plan, sh))
        ref_s += time.perf_counter() - start
    print(f"{'reference':<40} {n_el / ref_s:>12,.0f} elements/s "
          f"({len(refs[0]['primary'])} evaluation(s) for {len(targets)} targets; fast "
          f"kernel {'compiled' if fastjit.available() else 'numpy: ' + str(fastjit.why_not())})")

    rows = []
    for loaded in select(discover(args.plugin), args.backend):
        why = loaded.availability()
        if why:
            print(f"{loaded.name:<40} unavailable: {why}")
            continue
        if args.dtype not in loaded.backend.dtypes():
            continue
        # in the backend's own process, as in a sweep (Keras picks one engine per process)
        def compute(sh, ref, spec=loaded.spec, name=loaded.name):
            return isolate.ask(spec, ("shard", (plan, spec, name, sh, ref)), os.devnull, None)

        compute(warm, warm_ref)  # imports, compiling for the shape
        times: dict[str, list[float]] = {}
        for sh, ref in zip(shards, refs, strict=True):
            rec = compute(sh, ref)
            for impl in rec["implementations"]:
                name = f"{loaded.name}/{impl['implementation']} {impl['device']}"
                t = times.setdefault(name, [0.0, 0.0, 0.0])
                t[0] += impl["seconds"]
                t[1] += impl["judge_seconds"]
                t[2] += bool(impl["unsupported"])
        for name, (run_s, judge_s, unsupported) in times.items():
            if unsupported:
                print(f"{name:<40} unsupported here")
                continue
            rows.append((name, run_s, judge_s))
            print(f"{name:<40} {n_el / run_s:>12,.0f} elements/s framework, "
                  f"{n_el / judge_s:>10,.0f} judging, {n_el / (run_s + judge_s):>10,.0f} both")

    if not rows:
        return 0
    frameworks = sum(r[1] for r in rows)
    judging = sum(r[2] for r in rows)
    per_el = (ref_s + frameworks + judging) / n_el
    us = 1e6 / n_el
    print(f"\nper element (one logit × target, loss and ∂L/∂x): the reference {ref_s * us:.3f} µs, "
          f"once for every backend; {len(rows)} implementations: frameworks "
          f"{frameworks * us:.3f} µs, judging {judging * us:.3f} µs")
    tasks: dict[str, float] = {}
    for name, run_s, judge_s in rows:
        b = name.split("/", 1)[0]
        tasks[b] = tasks.get(b, 0.0) + run_s + judge_s
    slow_b, slow_s = max(tasks.items(), key=lambda kv: kv[1])
    slowest = max(rows, key=lambda r: r[1] + r[2])
    listed = ", ".join(f"{b} {t * us:.2f} µs" for b, t in tasks.items())
    print(f"a shard's backend tasks take {listed} per element; the slowest, {slow_b}, is "
          f"{slow_s / ref_s:.1f}× the reference; the slowest implementation, {slowest[0]}, "
          f"{(slowest[1] + slowest[2]) / ref_s:.2f}× it; "
          f"the reference is {ref_s / (ref_s + frameworks + judging):.0%} of the core time")
    total = space_all.logits * len(targets)
    core_s = total * per_el
    print(f"\nfull {args.dtype} sweep: {space_all.logits:,} logits × {len(targets)} targets = "
          f"{total:,} elements, {core_s:,.0f} core-seconds ({_duration(core_s)} on one core)")
    for w in (int(v) for v in args.workers.split(",")):
        print(f"  on {w:>5} workers: {_duration(core_s / w)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
