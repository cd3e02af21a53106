"""Driving backends over cases: trials, the reference, isolation, streaming.

A *trial* is one case in one dtype with one reduction; the reference is evaluated
once per trial and shared by every backend. Backends run in worker processes (a
`Pool`, at most one per available core by default; each backend's calls split into
dtype shards that queue for them), so a segfault, an abort or a hang in one
framework costs that backend the call in flight (recorded as `error`, the worker
restarted for the rest, the backend given up after `max_restarts`) and never the
other backends' results. Records are handed to the caller the moment a
call finishes, so an interrupted run keeps everything it finished.
"""

from __future__ import annotations

import contextlib
import multiprocessing as mp
import os
import signal
import time
import traceback
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from functools import cached_property
from multiprocessing.connection import Connection, wait
from typing import Any

import numpy as np

from harness import reference
from harness.cases import Case
from harness.protocol import GRAD_NAMES, REDUCTIONS, Call, Result, Unsupported
from harness.run.registry import Loaded, load_spec
from harness.verdict import judge
from harness.verdict.expectations import Evidence, Expectations


@dataclass(frozen=True)
class Trial:
    """One case × dtype × reduction: the unit the reference is computed for."""

    case: Case
    dtype: str
    reduction: str

    @property
    def key(self) -> str:
        return f"{self.case.name}|{self.dtype}|{self.reduction}"

    @cached_property
    def arrays(self) -> dict[str, np.ndarray | None]:
        return self.case.materialize(self.dtype)

    @property
    def grads(self) -> tuple[str, ...]:
        a = self.arrays
        return tuple(g for g in self.case.grads if g in GRAD_NAMES and a.get(g) is not None)

    def call(self, implementation: str, device: str) -> Call:
        a = self.arrays
        return Call(implementation=implementation, device=device, dtype=self.dtype,
                    input=a["input"], target=a["target"], weight=a["weight"],
                    pos_weight=a["pos_weight"], reduction=self.reduction, grads=self.grads,
                    arg_dtypes=dict(self.case.arg_dtypes))


def expand(cases: Iterable[Case], dtypes: Iterable[str] = ()) -> list[Trial]:
    """Every trial of the cases, narrowed to `dtypes` when given."""
    wanted = set(dtypes)
    return [Trial(c, d, r) for c in cases for d in c.dtypes if not wanted or d in wanted
            for r in c.reductions]


class ReferenceCache:
    """reference.evaluate per trial, computed once; an exception is a result too."""

    def __init__(self) -> None:
        self._cache: dict[str, dict | Exception] = {}

    def get(self, trial: Trial) -> dict | Exception:
        if trial.key not in self._cache:
            a = trial.arrays
            try:
                self._cache[trial.key] = reference.evaluate(
                    a["input"], a["target"], a["weight"], a["pos_weight"],
                    reduction=trial.reduction, grads=trial.grads)
            except (ValueError, TypeError) as exc:
                self._cache[trial.key] = exc
        return self._cache[trial.key]


def execute(backend: Any, call: Call) -> tuple[judge.Outcome, float]:
    """Run one call, turning every way it can end into an Outcome."""
    start = time.perf_counter()
    try:
        out: judge.Outcome = backend.run(call)
        if not isinstance(out, Result):
            out = judge.Raised("TypeError", ("TypeError",),
                               f"run() returned {type(out).__name__}, not harness.protocol.Result")
    except Unsupported as exc:
        out = Unsupported(exc.reason)
    except Exception as exc:
        out = judge.Raised.from_exception(exc)
    return out, time.perf_counter() - start


def base_fields(backend: str, implementation: str, device: str, trial: Trial) -> dict[str, Any]:
    return {"backend": backend, "implementation": implementation, "device": device,
            "dtype": trial.dtype, "case": trial.case.name, "reduction": trial.reduction,
            "source": trial.case.source}


REPEAT_FROM = 1024  # calls with this many elements or more run twice (determinism check)


def repeats(trial: Trial) -> bool:
    """Whether a call is run twice: large inputs, where reduction order can vary."""
    return np.size(trial.arrays["input"]) >= REPEAT_FROM and not trial.case.raises


def records_for(backend_name: str, implementation: str, device: str, trial: Trial,
                outcome: judge.Outcome, duration: float, refs: ReferenceCache,
                entries: Expectations,
                again: judge.Outcome | None = None) -> list[dict[str, Any]]:
    """Judge one finished call (and its repetition, if any); apply the expectations."""
    call = trial.call(implementation, device)
    base = base_fields(backend_name, implementation, device, trial)
    base["duration_s"] = round(duration, 6)
    profile = "sweep" in trial.case.tags and trial.reduction == "none"
    judged = judge.judge_call(call, outcome, refs.get(trial), tuple(trial.case.raises), base,
                              profile)
    if again is not None:
        judged.append((judge.determinism(outcome, again, base), Evidence(call, "determinism")))
    return entries.apply(judged)


def run_inprocess(backend: Any, trial: Trial, implementation: str, device: str,
                  refs: ReferenceCache, entries: Expectations) -> list[dict[str, Any]]:
    """One call in this process (the pytest conformance suite uses this)."""
    call = trial.call(implementation, device)
    outcome, duration = execute(backend, call)
    again = execute(backend, call)[0] if repeats(trial) else None
    return records_for(backend.name, implementation, device, trial, outcome, duration, refs,
                       entries, again)


# ---------------------------------------------------------------- isolation ----

@dataclass(frozen=True)
class Task:
    """One call for a worker: indices into the trial list keep the messages small."""

    id: int
    trial: int
    implementation: str
    device: str


SINGLE_THREAD_ENV = {
    # The harness parallelises across processes (one per backend); a framework that
    # also spins a thread pool per core in each of them oversubscribes the machine
    # (measured: torch calls 150x slower with 4 workers on 2 cores). Set before the
    # framework is imported; a variable the user already set is left alone.
    "OMP_NUM_THREADS": "1",
    "MKL_NUM_THREADS": "1",
    "OPENBLAS_NUM_THREADS": "1",
    "TF_NUM_INTRAOP_THREADS": "1",
    "TF_NUM_INTEROP_THREADS": "1",
    "TF_CPP_MIN_LOG_LEVEL": "3",
    "XLA_FLAGS": "--xla_cpu_multi_thread_eigen=false",
}


def single_threaded() -> None:
    """Ask every framework for one thread (see SINGLE_THREAD_ENV)."""
    import os

    for key, value in SINGLE_THREAD_ENV.items():
        os.environ.setdefault(key, value)


def _worker_main(spec: str, conn: Connection,
                 log: str | None = None) -> None:  # pragma: no cover - runs in a child
    """Load the backend, say what it offers, then do what the parent sends, in order.

    Messages from the parent: ("trials", list) keeps the run's trials; ("calls",
    tasks) runs them, answering ("start", id) and ("done", ...) for each, then
    ("idle",); ("shrink", job) shrinks one failure (harness.generate.found.shrink_job),
    answering ("tick",) before every backend call and ("shrunk", answer) at the end;
    None (or the parent gone) ends the worker. Ctrl-C is the parent's to handle: it
    records what finished and ends the workers.
    """
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    if log is not None:
        fd = os.open(log, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
        os.dup2(fd, 2)  # C-level and Python-level stderr alike
        os.close(fd)
    single_threaded()
    try:
        backend = load_spec(spec)
        info = Loaded(backend.name, spec, spec, backend).info()
    except Exception as exc:
        conn.send(("fatal", f"{type(exc).__name__}: {exc}\n{traceback.format_exc(limit=3)}"))
        return
    conn.send(("info", info))
    trials: list[Trial] = []
    while True:
        try:
            msg = conn.recv()
        except (EOFError, OSError):
            break
        if msg is None:
            break
        kind = msg[0]
        if kind == "trials":
            trials = msg[1]
        elif kind == "calls":
            for task in msg[1]:
                conn.send(("start", task.id))
                trial = trials[task.trial]
                call = trial.call(task.implementation, task.device)
                outcome, duration = execute(backend, call)
                again = execute(backend, call)[0] if repeats(trial) else None
                conn.send(("done", task.id, outcome, duration, again))
            conn.send(("idle",))
        elif kind == "shrink":
            from harness.generate.found import shrink_job

            conn.send(("shrunk", shrink_job(backend, msg[1], lambda: conn.send(("tick",)))))


def default_jobs() -> int:
    """Worker processes at once by default: one per core this process may run on."""
    try:
        n = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):  # not Linux
        n = os.cpu_count() or 1
    return max(1, n)


@dataclass(eq=False)
class Proc:
    """One live worker process: a backend loaded (or loading) in a spawned child."""

    spec: str
    process: Any
    conn: Connection
    info: dict[str, Any] | None = None  # what the backend offers, once the worker said
    trials: list[Trial] | None = None  # the trial list the worker holds

    def alive(self) -> bool:
        return self.process.is_alive()


class Pool:
    """The isolated worker processes of one report: the run's and the shrinking's.

    At most `limit` processes are alive at once (default: one per available
    core), busy or idle. A worker that finished its work stays loaded, idle, so
    the next job for the same backend (another dtype shard, or shrinking one of its
    failures) skips the framework import; an idle worker is ended when a job for
    another backend needs its place. Use as a context manager, or call `close`.
    """

    def __init__(self, jobs: int = 0, log: str | os.PathLike[str] | None = None) -> None:
        self.limit = jobs if jobs and jobs > 0 else default_jobs()
        # where the workers' stderr goes: frameworks print their own start-up chatter
        # (absl, oneDNN, numpy casts inside an adapter), which is not the harness's to
        # show as if it were a finding; None keeps the terminal
        self.log = None if log is None else os.fspath(log)
        self._ctx = mp.get_context("spawn")
        self.idle: list[Proc] = []
        self.busy: list[Proc] = []
        self.started = 0  # processes spawned
        self.peak = 0  # most processes alive at once

    def free(self) -> bool:
        """Whether a job may start now."""
        return len(self.busy) < self.limit

    def acquire(self, spec: str) -> Proc:
        """A worker for `spec`: an idle one already loaded, or a new process."""
        for p in list(self.idle):
            if p.spec == spec:
                self.idle.remove(p)
                if p.alive():
                    self.busy.append(p)
                    return p
                self._end(p)
        while self.idle and len(self.idle) + len(self.busy) >= self.limit:
            self._end(self.idle.pop(0))
        parent, child = self._ctx.Pipe()
        process = self._ctx.Process(target=_worker_main, args=(spec, child, self.log),
                                    daemon=True)
        process.start()
        child.close()
        p = Proc(spec, process, parent)
        self.busy.append(p)
        self.started += 1
        self.peak = max(self.peak, len(self.busy) + len(self.idle))
        return p

    def release(self, p: Proc) -> None:
        """The worker finished its job and waits for another."""
        if p in self.busy:
            self.busy.remove(p)
        if p.alive() and p.info is not None:
            self.idle.append(p)
        else:
            self._end(p)

    def discard(self, p: Proc) -> None:
        """The worker crashed, hung or cannot serve: kill it."""
        if p in self.busy:
            self.busy.remove(p)
        if p in self.idle:
            self.idle.remove(p)
        if p.alive():
            p.process.kill()
        p.process.join(timeout=5)
        with contextlib.suppress(OSError):
            p.conn.close()

    def _end(self, p: Proc) -> None:
        with contextlib.suppress(OSError, ValueError):
            p.conn.send(None)
        p.process.join(timeout=5)
        if p.alive():
            p.process.kill()
            p.process.join(timeout=5)
        with contextlib.suppress(OSError):
            p.conn.close()

    def close(self) -> None:
        """End the idle workers, kill the busy ones; idempotent."""
        while self.idle:
            self._end(self.idle.pop(0))
        while self.busy:
            self.discard(self.busy[0])

    def __enter__(self) -> Pool:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


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


class DevicePairs:
    """Holds each call's outcome until its CPU twin (or accelerator twin) arrives.

    When a backend offers several devices, the same call runs on each; once both
    the CPU result and another device's result are in, they are compared and the
    CPU result is kept only as long as other devices may still need it.
    """

    def __init__(self, refs: ReferenceCache, entries: Expectations) -> None:
        self.refs = refs
        self.entries = entries
        self._held: dict[tuple[str, str, int], dict[str, judge.Outcome]] = {}

    def add(self, backend: str, task: Task, trial: Trial,
            outcome: judge.Outcome) -> list[dict[str, Any]]:
        key = (backend, task.implementation, task.trial)
        held = self._held.setdefault(key, {})
        held[task.device] = outcome
        if "cpu" not in held:
            return []
        cpu = held["cpu"]
        out: list[dict[str, Any]] = []
        for device in [d for d in held if d != "cpu"]:
            base = base_fields(backend, task.implementation, device, trial)
            recs = judge.across_devices(cpu, held.pop(device), self.refs.get(trial),
                                        trial.dtype, base)
            call = trial.call(task.implementation, device)
            out.extend(self.entries.apply([(r, Evidence(call, "vs-cpu")) for r in recs]))
        return out


@dataclass
class RunOptions:
    devices: tuple[str, ...] = ()
    dtypes: tuple[str, ...] = ()
    timeout: float = 120.0  # seconds one call may take before its worker is killed
    startup_timeout: float = 300.0  # importing a framework on a busy machine is slow
    jobs: int = 0  # worker processes at once; 0 = one per available core (default_jobs)
    max_restarts: int = 3
    # Each backend's calls are split by dtype over two shards: compilation work
    # (JAX compiles every primitive per shape and dtype) splits cleanly by dtype,
    # and the slowest framework no longer holds one core while the other idles.
    # Shards queue for the pool's workers.
    shards: tuple[tuple[str, ...], ...] = (("float16", "bfloat16"), ("float32", "float64"))


def plan(info: dict[str, Any], trials: list[Trial], opts: RunOptions,
         shard: tuple[str, ...] = ()) -> list[Task]:
    """The calls one backend (or one dtype shard of it) will make, from what it offers."""
    if info.get("availability") is not None:
        return []
    devices = [d for d in info["devices"] if not opts.devices or d in opts.devices]
    dtypes = set(info["dtypes"]) & (set(shard) if shard else set(info["dtypes"]))
    tasks: list[Task] = []
    for i, trial in enumerate(trials):
        if trial.dtype not in dtypes:
            continue
        for impl in info["implementations"]:
            for dev in devices:
                tasks.append(Task(len(tasks), i, impl, dev))
    return tasks


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
    devices = DevicePairs(refs, entries)
    present = {t.dtype for t in trials}
    shards = [tuple(d for d in s if d in present) for s in opts.shards] or [()]
    shards = [s for s in shards if s] or [()]
    if len(shards) == 1:
        shards = [()]
    workers = [Worker(b, dtypes=s) for b in backends for s in shards]
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
            w.pending = plan(w.info, trials, opts, w.dtypes)
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
                           duration, refs, entries, again)
        w.calls += 1
        on_records(w.loaded.name, recs)
        ran_on = [d for d in (w.info or {}).get("devices", [])
                  if not opts.devices or d in opts.devices]
        if len(ran_on) > 1 and "cpu" in ran_on:
            on_records(w.loaded.name, devices.add(w.loaded.name, task, trial, outcome))

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
            w.abandoned = (f"{len(w.pending)} calls not run: the worker failed {w.restarts} "
                           f"times (last: {why})")
            for task in list(w.pending):
                record_outcome(w, task, judge.Raised(
                    "WorkerError", ("WorkerError",),
                    f"not run: the worker failed {w.restarts} times (last: {why})"), 0.0)
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
                    crashed(w, _exit_reason(w.process.exitcode))
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
                if not w.done and now > w.deadline:
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


def _exit_reason(code: int | None) -> str:
    if code is None:
        return "the worker stopped answering"
    if code < 0:
        try:
            name = signal.Signals(-code).name
        except ValueError:
            name = f"signal {-code}"
        return f"the worker process died with {name} (crash in the framework?)"
    return f"the worker process exited with code {code}"


def iter_inprocess(loaded: Loaded, trials: list[Trial], opts: RunOptions,
                   entries: Expectations,
                   refs: ReferenceCache | None = None) -> Iterator[dict[str, Any]]:
    """The whole run of one backend in this process (the pytest conformance suite).

    `refs` may be shared between backends: the reference of a trial is the same for
    every backend, so one process running several of them computes it once."""
    info = loaded.info()
    refs = ReferenceCache() if refs is None else refs
    for task in plan(info, trials, opts):
        yield from run_inprocess(loaded.backend, trials[task.trial], task.implementation,
                                 task.device, refs, entries)


__all__ = ["REDUCTIONS", "Pool", "ReferenceCache", "RunOptions", "Trial", "default_jobs", "execute",
           "expand", "run_inprocess", "run_isolated"]
