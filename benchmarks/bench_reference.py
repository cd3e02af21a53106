"""Throughput of the correctly rounded reference against a plain float64 numpy formula.

Run ``python benchmarks/bench_reference.py [--n N] [--repeat R]``. For reductions
"mean" and "none" it times, on N elements (default 10**6, shaped (N/100, 100), a full
weight and a per-class pos_weight of shape (100,), all four gradients):

* ``loss() + grads()``: the two public calls, as a user makes them;
* ``evaluate()``: value, gradients and condition numbers in one pass (what the
  harness's comparison calls);
* the same loss and gradients by the usual stable float64 formula in numpy;

and prints elements per second and the reference's cost relative to float64. The best
of R runs is reported (single process, one core: numpy does not thread these ufuncs,
and the compiled kernel runs on the calling thread). Where numba is installed, the
fast kernel and the long dd sums run compiled (harness/reference/fastjit.py); a last
row per reduction times ``evaluate()`` with the numpy code alone, in the same run.
The reference's cache of elementwise terms (which serves a report's repeated calls on
the same arguments) is switched off here, so repeated calls are timed in full.

``--trials`` instead times ``reference.evaluate`` over the trials of the default report
(the shipped YAML cases plus ``--examples`` generated ones from ``--seed``), arrays
materialised beforehand, cache on as in a report: one pass, total seconds.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
import time

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

from harness import reference
from harness.reference import cache as reference_cache
from harness.reference import fastjit


def float64_formula(x, y, w, p, reduction):
    """The usual stable float64 loss and gradients (what a framework computes)."""
    n = x.size
    ax = np.abs(x)
    l1 = np.log1p(np.exp(-ax))
    sp_pos = np.maximum(x, 0) + l1  # sp(x)
    sp_neg = np.maximum(-x, 0) + l1  # sp(-x)
    sig = 1.0 / (1.0 + np.exp(-x))
    loss = w * ((1 - y) * sp_pos + p * y * sp_neg)
    gx = w * ((1 - y) * sig - p * y * (1 - sig))
    gy = w * (p * sp_neg - sp_pos)
    gw = (1 - y) * sp_pos + p * y * sp_neg
    gp = (w * y * sp_neg).sum(axis=0)
    if reduction == "mean":
        return loss.mean(), gx / n, gy / n, gw / n, gp / n
    return loss, gx, gy, gw, gp


def best_of(fn, repeat):
    best = float("inf")
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return best


def time_trials(examples: int, seed: int) -> None:
    """Total time of reference.evaluate over the default report's trials."""
    from harness import cases
    from harness.generate import seeding as strategies
    from harness.run import trials as runner

    trials = runner.expand(cases.load_cases() + strategies.generate_cases(examples, seed))
    calls = []
    for t in trials:
        a = t.arrays
        calls.append((a["input"], a["target"], a["weight"], a["pos_weight"], t.reduction,
                      t.grads))
    elements = sum(int(np.size(c[0])) for c in calls)
    reference.evaluate([1.0], [0.5])  # warm up
    t0 = time.perf_counter()
    for x, y, w, p, red, grads in calls:
        with contextlib.suppress(ValueError, TypeError):  # invalid cases raise: timed too
            reference.evaluate(x, y, w, p, reduction=red, grads=grads)
    t = time.perf_counter() - t0
    print(f"{len(calls)} trials ({elements} elements; YAML cases + {examples} generated, "
          f"seed {seed}): reference.evaluate total {t:.3f} s")


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=10**6)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--trials", action="store_true",
                    help="time evaluate over the default report's trials instead")
    ap.add_argument("--examples", type=int, default=80)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)
    if args.trials:
        time_trials(args.examples, args.seed)
        return
    reference_cache.MAX_N = 0  # time every call in full (see the module docstring)
    n = args.n - args.n % 100
    rng = np.random.default_rng(0)
    shape = (n // 100, 100)
    x = rng.standard_normal(shape) * 4
    y = rng.random(shape)
    w = rng.random(shape) + 0.5
    p = rng.random(100) * 3
    fastjit.JIT_AFTER = 0  # compiled from the first chunk, loaded by the warm-up
    # warm up: tables, malloc tuning (n >= 65536), the compiled kernel's loading
    reference.loss(x[:700], y[:700], w[:700], p, "mean")
    compiled = fastjit.available()
    if compiled:
        import numba

        kernel = f"compiled by numba {numba.__version__}"
    else:
        kernel = f"numpy: {fastjit.why_not()}"
    print(f"{n} elements, shape {shape}, weight {w.shape}, pos_weight {p.shape}")
    print(f"fast kernel: {kernel}")
    print(f"{'reduction':10s} {'what':26s} {'seconds':>9s} {'elements/s':>12s} {'vs float64':>11s}")
    for red in ("mean", "none"):
        t_f64 = best_of(lambda red=red: float64_formula(x, y, w, p, red), args.repeat)
        t_lg = best_of(
            lambda red=red: (reference.loss(x, y, w, p, red), reference.grads(x, y, w, p, red)),
            args.repeat,
        )
        t_ev = best_of(lambda red=red: reference.evaluate(x, y, w, p, red), args.repeat)
        rows = [("float64 numpy formula", t_f64), ("reference loss()+grads()", t_lg),
                ("reference evaluate()", t_ev)]
        if compiled:
            with fastjit.numpy_only():
                rows.append(("evaluate(), numpy kernel",
                             best_of(lambda red=red: reference.evaluate(x, y, w, p, red),
                                     args.repeat)))
        for what, t in rows:
            print(f"{red:10s} {what:26s} {t:9.3f} {n / t:12.3e} {t / t_f64:10.1f}x")


if __name__ == "__main__":
    main()
