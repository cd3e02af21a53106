"""Isolated worker processes: one framework per process, at most one per core.

A segfault, an abort or a hang in a framework kills only its worker: the runner
(harness/run/runner.py) records the call in flight as `error` and asks the pool
for a fresh process. Idle workers stay loaded, so the next job for the same
backend (another dtype shard, or shrinking one of its failures) skips the import.
"""

from __future__ import annotations

import contextlib
import multiprocessing as mp
import os
import signal
import traceback
from dataclasses import dataclass
from multiprocessing.connection import Connection
from typing import Any

from harness.run.calls import perform
from harness.run.registry import Loaded, load_spec
from harness.run.trials import Trial

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
                outcome, duration, again = perform(backend, trials[task.trial],
                                                   task.implementation, task.device,
                                                   task.variant)
                conn.send(("done", task.id, outcome, duration, again))
            conn.send(("idle",))
        elif kind == "shrink":
            from harness.generate.found import shrink_job

            conn.send(("shrunk", shrink_job(backend, msg[1], lambda: conn.send(("tick",)))))


def unread(conn: Connection | None) -> bool:
    """Whether a message from the worker waits unread in the pipe.

    A deadline is checked after the parent has handled what was ready, and handling a
    large call's records (judging them) can take longer than a short --timeout: a
    worker whose answer sat in the pipe meanwhile did not hang, and must not be killed
    as if it had. A pipe that cannot be polled counts as unread, so the next read
    meets its end and reports the crash."""
    if conn is None:
        return False
    try:
        return conn.poll(0)
    except (OSError, EOFError, ValueError):
        return True


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
        """End an idle worker. It holds nothing unsaved (every answer was sent), so it
        is killed rather than asked to exit: a framework's interpreter teardown
        (TensorFlow's, torch's) took about a second of a core each time, and the
        parent waited for it while the next shard could not start."""
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


def exit_reason(code: int | None) -> str:
    if code is None:
        return "the worker stopped answering"
    if code < 0:
        try:
            name = signal.Signals(-code).name
        except ValueError:
            name = f"signal {-code}"
        return f"the worker process died with {name} (crash in the framework?)"
    return f"the worker process exited with code {code}"
