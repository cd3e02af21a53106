"""One shard's work, as the two functions a Dask worker runs.

`reference_shard` evaluates the reference over the shard's logits for every target
(`harness.sweep.exact`); `backend_shard` has one backend run over the same logits in
the backend's own child process (`harness.sweep.isolate`), where `compute` makes one
call per target per chunk for every implementation and device, judges each call
(`harness.sweep.judging`) and returns the shard's summary, a small JSON-ready dict the
driver writes to disk at once. Everything arrives by value or as a spec string
(`harness.run.registry.load_spec`), so the functions pickle and run on any worker,
local or remote. Frameworks are imported only in those child processes, after
asking each of them for one thread.
"""

from __future__ import annotations

import os
import time
from typing import Any

import numpy as np

from harness.protocol import Call, Result, Unsupported
from harness.run.pool import single_threaded
from harness.sweep import exact, judging
from harness.sweep.patterns import Bins, Shard
from harness.sweep.plan import Plan

#: per worker process: backends by spec, expectations by (files, shipped)
_BACKENDS: dict[str, Any] = {}
_EXPECTATIONS: dict[tuple, Any] = {}
_LOG: dict[int, str] = {}

def setup(log: str | None) -> None:
    """One thread per framework; on our own LocalCluster (`log` given) the process's
    stderr, where frameworks print C-level chatter, goes to that file instead."""
    single_threaded()  # one framework thread per worker, as in `report`
    if log and _LOG.get(os.getpid()) != log:
        fd = os.open(log, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
        os.dup2(fd, 2)
        os.close(fd)
        _LOG[os.getpid()] = log


def info(spec: str) -> dict[str, Any]:
    """`Loaded.info()` of the backend (availability, versions, devices, dtypes, ...)."""
    from harness.run.registry import Loaded

    b = backend(spec)
    return Loaded(b.name, spec, spec, b).info()


def backend(spec: str) -> Any:
    """The backend of `spec`, loaded once per worker process."""
    if spec not in _BACKENDS:
        from harness.run.registry import load_spec

        _BACKENDS[spec] = load_spec(spec)
    return _BACKENDS[spec]


def expectations(plan: Plan) -> Any:
    key = (plan.known, plan.shipped)
    if key not in _EXPECTATIONS:
        from harness.verdict import expectations as expect

        _EXPECTATIONS[key] = expect.load(plan.known, shipped=plan.shipped)
    return _EXPECTATIONS[key]


def reference_shard(plan: Plan, shard: Shard) -> dict[str, Any]:
    """The reference over the shard for every target (`exact.evaluate`)."""
    x = plan.space.logits_of(shard.lo, shard.hi)
    return exact.evaluate(x, plan.targets, plan.weight, plan.pos_weight)


def _run(b: Any, call: Call) -> Result | Unsupported | str:
    """One call; every way it can end (a crash of the process aside) as an outcome."""
    try:
        out = b.run(call)
    except Unsupported as exc:
        return Unsupported(exc.reason)
    except Exception as exc:
        lines = str(exc).strip().splitlines()
        return f"{type(exc).__name__}: {lines[0] if lines else ''}"[:500]
    if not isinstance(out, Result):
        return f"TypeError: run() returned {type(out).__name__}, not harness.protocol.Result"
    return out


def calls_of(x: np.ndarray, chunk: int) -> list[np.ndarray]:
    """Index arrays of one shard's calls: `chunk` logits each, NaN logits in calls of
    their own (a framework may refuse a whole call for one NaN: torch's
    binary_cross_entropy does, after its sigmoid)."""
    nan = np.isnan(x)
    out = []
    for group in (np.flatnonzero(~nan), np.flatnonzero(nan)):
        out.extend(group[i:i + chunk] for i in range(0, group.size, chunk))
    return out


def backend_shard(plan: Plan, spec: str, name: str, shard: Shard,
                  ref: dict[str, Any]) -> dict[str, Any]:
    """The Dask task: `compute` in the backend's child process; a crash there (twice),
    a hang past the plan's timeout or an exception is the shard's `error` record."""
    from harness.sweep import isolate

    setup(plan.worker_log)
    try:
        return isolate.ask(spec, ("shard", (plan, spec, name, shard, ref)), plan.worker_log,
                           plan.timeout)
    except isolate.ChildDied as exc:
        why = f"the {name} process died while computing this shard ({exc})"
    except isolate.ChildHung as exc:
        why = f"the {name} process hung on this shard ({exc}) and was killed"
    except isolate.ChildFailed as exc:
        why = f"computing this shard raised {exc}"
    return {"shard": shard.id, "backend": name, "spec": spec, "lo": shard.lo, "hi": shard.hi,
            "logits": shard.logits, "targets": len(plan.targets), "error": why[:1000]}


def compute(plan: Plan, spec: str, name: str, shard: Shard,
            ref: dict[str, Any]) -> dict[str, Any]:
    """Run backend `spec` over the shard and return its summary (module docstring)."""
    started = time.perf_counter()
    b = backend(spec)
    exps = expectations(plan)
    x = plan.space.logits_of(shard.lo, shard.hi)
    reference = _Targets(ref)
    layout = judging.Layout.of(x, Bins(plan.dtype))
    allowed = judging.Allowances(reference)
    n = x.size
    w = None if plan.weight is None else np.full(n, plan.weight)
    p = None if plan.pos_weight is None else np.full(n, plan.pos_weight)
    pieces = calls_of(x, plan.chunk)
    devices = [d for d in b.devices() if not plan.devices or d in plan.devices]
    impls_out = []
    backend_s = judge_s = 0.0
    compiled = set(getattr(b, "eager_twins", dict)()) if not plan.compiled else set()
    # a sweep is elementwise: an implementation whose "none" is Keras's mean over the
    # last axis (the last_axis_mean() hook) has no per-logit answer to map
    rows = set(getattr(b, "last_axis_mean", list)())
    for device in devices:
        for impl in [i for i in b.implementations() if i not in compiled | rows]:
            ledger = judging.Ledger()
            per_q: dict[str, list[dict[str, Any]]] = {q: [] for q in exact.QUANTITIES}
            worst: dict[str, list[dict[str, Any]]] = {q: [] for q in exact.QUANTITIES}
            impl_s = impl_j = 0.0
            for t, y in enumerate(plan.targets):
                out = {q: judging.Elements(n) for q in exact.QUANTITIES}
                yy = np.full(n, y)
                for idx in pieces:
                    call = Call(implementation=impl, device=device, dtype=plan.dtype,
                                input=x[idx], target=yy[idx],
                                weight=None if w is None else w[idx],
                                pos_weight=None if p is None else p[idx],
                                reduction="none", grads=("input",))
                    t0 = time.perf_counter()
                    outcome = _run(b, call)
                    t1 = time.perf_counter()
                    judging.judge_call(call, outcome, idx, t, reference, allowed, out, exps,
                                       b.name, ledger)
                    impl_s += t1 - t0
                    impl_j += time.perf_counter() - t1
                t1 = time.perf_counter()
                for q, el in out.items():
                    per_q[q].append(judging.tally(el, layout, reference[t][q][0]))
                    worst[q].extend(judging.worst(el, x, y, reference[t][q][0]))
                impl_j += time.perf_counter() - t1
            backend_s += impl_s
            judge_s += impl_j
            impls_out.append({
                "implementation": impl, "device": device, "seconds": impl_s,
                "judge_seconds": impl_j,
                "unsupported": ledger.unsupported, "errors": ledger.errors,
                "calls": ledger.calls,
                "dtype": {"returned": ledger.dtypes, "known": ledger.dtype_known,
                          "unexpected": ledger.dtype_unexpected,
                          "message": ledger.dtype_message},
                "expectations": ledger.covered,
                "quantities": per_q,
                "worst": {q: sorted(v, key=_ratio_key)[:judging.WORST]
                          for q, v in worst.items()},
            })
    return {"shard": shard.id, "backend": name, "spec": spec, "lo": shard.lo, "hi": shard.hi,
            "logits": n, "targets": len(plan.targets), "implementations": impls_out,
            "seconds": {"backend": backend_s, "judge": judge_s,
                        "reference": float(ref.get("seconds", 0.0)),
                        "total": time.perf_counter() - started},
            "process": os.getpid(), "worker": os.getppid()}


class _Targets:
    """The shard's reference per target, a mirrored target derived once on first use."""

    def __init__(self, ref: dict[str, Any]) -> None:
        self.ref = ref
        self._done: dict[int, exact.RefTarget] = {}

    def __getitem__(self, t: int) -> exact.RefTarget:
        if t not in self._done:
            self._done[t] = exact.for_target(self.ref, t)
        return self._done[t]


def _ratio_key(item: dict[str, Any]) -> float:
    r = item.get("ratio")
    return -float(r) if r is not None else 0.0
