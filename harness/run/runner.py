"""Driving backends over cases: trials, the reference, isolation, streaming.

A *trial* is one case in one dtype with one reduction; the reference is evaluated
once per trial and shared by every backend. Backends run in worker processes (a
`Pool`, at most one per available core by default; each backend's calls are one
shard, JAX's one per dtype, and the shards queue for them), so a segfault, an abort
or a hang in one framework costs that backend the call in flight (recorded as
`error`, the worker restarted for the rest, the backend given up after
`max_restarts`) and never the other backends' results. Records are handed to the
caller the moment a call finishes, so an interrupted run keeps everything it finished.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from multiprocessing.connection import Connection, wait
from typing import Any

from harness.run.calls import Twins, records_for
from harness.run.pool import Pool, Proc, exit_reason, unread
from harness.run.registry import Loaded
from harness.run.trials import ReferenceCache, Task, Trial, plan
from harness.verdict import judge
from harness.verdict.expectations import Expectations


@dataclass(eq=False)
class Worker:
    """Parent-side state of one backend's shard of calls, run by a process of the pool."""

    loaded: Loaded
    dtypes: tuple[str, ...] = ()  # the shard of the backend's calls this worker runs
    proc: Proc | None = None
    info: dict[str, Any] | None = None
    pending: list[Task] = field(default_factory=list)
    current: int | None = None
    deadline: float = 0.0
    restarts: int = 0
    done: bool = False
    abandoned: str | None = None  # why the rest of its calls were not run
    started_at: float = 0.0
    busy_s: float = 0.0
    calls: int = 0
    total: int = 0

    @property
    def label(self) -> str:
        return self.loaded.name + (f" {'+'.join(self.dtypes)}" if self.dtypes else "")

    @property
    def process(self) -> Any:
        return None if self.proc is None else self.proc.process

    @property
    def conn(self) -> Connection | None:
        return None if self.proc is None else self.proc.conn


@dataclass
class RunOptions:
    devices: tuple[str, ...] = ()
    dtypes: tuple[str, ...] = ()
    timeout: float = 120.0  # seconds one call may take before its worker is killed
    startup_timeout: float = 300.0  # importing a framework on a busy machine is slow
    jobs: int = 0  # worker processes at once; 0 = one per available core (default_jobs)
    max_restarts: int = 3  # report --max-restarts
    compiled: bool = False  # run the backends' compiled implementations too
    forward_mode: bool = False  # ask the backends' forward_mode() implementations for jvps
    # The backends named here have their calls split into one shard per dtype, run
    # first: JAX compiles (traces, lowers, loads) every operation per shape and dtype,
    # which is most of a report's work, and its caches do not carry across dtypes; a
    # process holding two dtypes measured slower than the two apart (47 s against
    # 21.6 + 19.0 s for float32 and float64), and four shards keep both cores busy
    # with it. Every other backend's calls are one shard: one framework import, one
    # process. Shards queue for the pool's workers; an idle worker is reused for the
    # next shard of its backend.
    split_by_dtype: tuple[str, ...] = ("jax", "keras-jax")
    # Then the other shards, longest first, so that the last to finish are short: a
    # default run's unsplit shards took TensorFlow 24 s, torch 18 s, keras-torch 12.5 s
    # and numpy 10.7 s, and in the order found numpy went first and TensorFlow ended
    # the run alone. Backends not named here (plugins) go between these and numpy.
    longest_first: tuple[str, ...] = ("tensorflow", "torch", "keras-torch", "keras-jax")
    shortest_last: tuple[str, ...] = ("numpy",)


def run_isolated(backends: list[Loaded], trials: list[Trial], opts: RunOptions,
                 entries: Expectations,
                 on_records: Callable[[str, list[dict[str, Any]]], None],
                 on_info: Callable[[dict[str, Any]], None] = lambda info: None,
                 on_progress: Callable[[str, int, int], None] = lambda name, done, total: None,
                 *, pool: Pool | None = None,
                 stats: dict[str, dict[str, Any]] | None = None,
                 ) -> dict[str, dict[str, Any]]:
    """Run every backend in worker processes of `pool`; returns per-shard run statistics.

    Without `pool`, a pool of `opts.jobs` workers is made and closed here; with it,
    the pool's idle workers stay alive for the caller (shrinking). `stats`, when given,
    is filled as shards finish, so an interrupted run still says which finished
    (`finished`: false for the others)."""
    own_pool = pool is None
    pool = Pool(opts.jobs) if pool is None else pool
    refs = ReferenceCache()
    twins: dict[str, Twins] = {}  # per worker label: outcomes awaiting their twins
    present = list(dict.fromkeys(t.dtype for t in trials))
    split = [b for b in backends if b.name in opts.split_by_dtype]
    workers = ([Worker(b, dtypes=(d,)) for b in split for d in present] if len(present) > 1
               else [Worker(b) for b in split])
    rest = [b for b in backends if b not in split]
    order = {name: i for i, name in enumerate(opts.longest_first)}
    late = {name: i for i, name in enumerate(opts.shortest_last)}
    rest.sort(key=lambda b: ((0, order[b.name]) if b.name in order else
                             (2, late[b.name]) if b.name in late else (1, 0)))
    workers += [Worker(b) for b in rest]
    queue = list(workers)
    active: list[Worker] = []
    stats = {} if stats is None else stats

    def shard_stats(w: Worker) -> dict[str, Any]:
        out = {"calls": w.calls, "restarts": w.restarts, "finished": w.done,
               "seconds": round(time.monotonic() - w.started_at, 3) if w.started_at else 0.0}
        if w.abandoned:
            out["abandoned"] = w.abandoned
        return out

    def start(w: Worker) -> None:
        w.proc = pool.acquire(w.loaded.spec)
        w.current = None
        w.deadline = time.monotonic() + opts.startup_timeout
        if not w.started_at:
            w.started_at = time.monotonic()
        if w.proc.info is not None:  # an idle worker already loaded with this backend
            offered(w, w.proc.info)

    def offered(w: Worker, info: dict[str, Any]) -> None:
        """The worker said what the backend offers: plan the shard, send its calls."""
        if w.info is None:
            w.info = info
            on_info(w.info)
            w.pending = plan(w.info, trials, opts.devices, w.dtypes, opts.compiled,
                             opts.forward_mode)
            twins[w.label] = Twins(refs, entries,
                                   sorted({t.implementation for t in w.pending}),
                                   sorted({t.device for t in w.pending}),
                                   w.info.get("eager_twins", {}))
            on_progress(w.label, 0, len(w.pending))
            w.total = len(w.pending)
        if not w.pending:
            finish(w)
            return
        assert w.proc is not None
        try:
            if w.proc.trials is not trials:
                w.proc.conn.send(("trials", trials))
                w.proc.trials = trials
            w.proc.conn.send(("calls", list(w.pending)))
        except (OSError, ValueError) as exc:  # died between two messages
            crashed(w, f"the worker could not be reached ({type(exc).__name__})")
            return
        w.deadline = time.monotonic() + opts.startup_timeout

    def finish(w: Worker, healthy: bool = True) -> None:
        w.done = True
        if w.proc is not None:
            if healthy:
                pool.release(w.proc)
            else:
                pool.discard(w.proc)
            w.proc = None
        stats[w.label] = shard_stats(w)
        if w in active:
            active.remove(w)

    def record_outcome(w: Worker, task: Task, outcome: judge.Outcome, duration: float,
                       again: judge.Outcome | None = None) -> None:
        trial = trials[task.trial]
        recs = records_for(w.loaded.name, task.implementation, task.device, trial, outcome,
                           duration, refs, entries, again, task.variant)
        w.calls += 1
        on_records(w.loaded.name, recs)
        if w.label in twins:
            on_records(w.loaded.name, twins[w.label].add(w.loaded.name, task.implementation,
                                                         task.device, task.trial, trial, outcome,
                                                         task.variant))

    def crashed(w: Worker, why: str) -> None:
        """The worker died or hung: the call in flight is an error; go on without it."""
        if w.proc is not None:
            pool.discard(w.proc)
            w.proc = None
        if w.current is not None:
            task = next(t for t in w.pending if t.id == w.current)
            w.pending.remove(task)
            record_outcome(w, task, judge.Raised("WorkerError", ("WorkerError",), why), 0.0)
        elif w.info is None:
            # died before saying what it offers: nothing to run
            w.info = {"name": w.loaded.name, "availability": f"worker failed to start: {why}",
                      "origin": w.loaded.origin, "versions": {}, "devices": [], "dtypes": [],
                      "implementations": [], "descriptions": {}}
            on_info(w.info)
            w.pending = []
        w.restarts += 1
        if w.pending and w.restarts > opts.max_restarts:
            times = "once" if w.restarts == 1 else f"{w.restarts} times"
            allowed = "no restart is" if opts.max_restarts == 0 else (
                "1 restart is" if opts.max_restarts == 1 else f"{opts.max_restarts} restarts are")
            failed = (f"the worker failed {times} (last: {why}); {allowed} allowed "
                      "(report --max-restarts)")
            w.abandoned = f"{len(w.pending)} calls not run: {failed}"
            for task in list(w.pending):
                record_outcome(w, task, judge.Raised("WorkerError", ("WorkerError",),
                                                     f"not run: {failed}"), 0.0)
            w.pending = []
        elif w.total:
            on_progress(w.label, w.total - len(w.pending), w.total)
        if w.pending:
            start(w)
        else:
            finish(w, healthy=False)

    try:
        while queue or active:
            while queue and pool.free():
                w = queue.pop(0)
                active.append(w)
                start(w)
            conns = [w.conn for w in active if w.conn is not None]
            now = time.monotonic()
            wait_s = max(0.05, min(w.deadline for w in active) - now) if active else 0.05
            ready = wait(conns, timeout=min(wait_s, 1.0)) if conns else []
            for w in list(active):
                if w.conn is None or w.conn not in ready:
                    continue
                try:
                    msg = w.conn.recv()
                except (EOFError, OSError):
                    w.process.join(timeout=5)
                    crashed(w, exit_reason(w.process.exitcode))
                    continue
                kind = msg[0]
                if kind == "fatal":
                    w.info = {"name": w.loaded.name, "availability":
                              f"could not load in a worker: {msg[1].splitlines()[0]}",
                              "origin": w.loaded.origin, "versions": {}, "devices": [],
                              "dtypes": [], "implementations": [], "descriptions": {}}
                    on_info(w.info)
                    finish(w, healthy=False)
                elif kind == "info":
                    assert w.proc is not None
                    w.proc.info = msg[1]
                    offered(w, msg[1])
                elif kind == "start":
                    w.current = msg[1]
                    w.deadline = time.monotonic() + opts.timeout
                elif kind == "done":
                    _, task_id, outcome, duration, again = msg
                    task = next(t for t in w.pending if t.id == task_id)
                    w.pending.remove(task)
                    w.current = None
                    w.busy_s += duration
                    record_outcome(w, task, outcome, duration, again)
                    on_progress(w.label, w.total - len(w.pending), w.total)
                    w.deadline = time.monotonic() + opts.timeout
                elif kind == "idle":
                    finish(w)
            now = time.monotonic()
            for w in list(active):
                if not w.done and now > w.deadline and not unread(w.conn):
                    what = "the call" if w.current is not None else "starting the worker"
                    limit_s = opts.timeout if w.current is not None else opts.startup_timeout
                    crashed(w, f"{what} did not finish within {limit_s:g} s (hang?); "
                               "the worker was killed")
    finally:
        for w in workers:
            if w.proc is not None:  # interrupted mid-shard: its worker is in an unknown state
                pool.discard(w.proc)
                w.proc = None
            if w.label not in stats:
                stats[w.label] = shard_stats(w)
        if own_pool:
            pool.close()
    return stats
