"""The sweep on Dask: shards as tasks, summaries on disk as they finish, resume, retry.

Per shard there is one task for the reference (`shard.reference_shard`) and one per
backend (`shard.backend_shard`) that depends on it, so the reference of a shard is
computed once for every backend, on the worker that then usually runs them. Shards
are submitted a few at a time (`window`: twice the workers), which bounds the memory
held by finished references waiting for their backends.

Each backend × shard summary is written to `<out>/sweep-<dtype>.shards/<backend>/
<shard>.json` the moment it arrives (write to a temporary name, then rename), so an
interrupted sweep, or one whose worker died, keeps every finished shard, and
`--resume` submits only the shards without a file (and those recorded as `error`).
The folder's `plan.json` holds the plan and the backends: a resume with another plan
is refused rather than mixing two sweeps.

A worker that dies while running a shard (a framework's segfault or abort, the OOM
killer, someone's `kill`) is replaced by its nanny and the scheduler runs the shard
again on another worker; on our own LocalCluster the scheduler gives up after the
second death (`distributed.scheduler.allowed-failures` = 1, as `report` gives up a
call after one restart) and the shard is recorded as `error`. On a cluster given with
`--scheduler`, its own setting applies: nothing about it is changed.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from harness.run.pool import SINGLE_THREAD_ENV
from harness.sweep import shard as work
from harness.sweep.patterns import Shard, shards
from harness.sweep.plan import Plan

PLAN_FILE = "plan.json"
VERSIONS_FILE = "versions.json"
#: the layout of a shard summary; a folder written with another is never resumed from
SHARD_FORMAT = 1
#: how often a crashed shard is run again on our own LocalCluster before it is an error
ALLOWED_FAILURES = 1


class PlanMismatch(Exception):
    """--resume on a shard folder written by another plan."""


@dataclass(frozen=True)
class BackendJob:
    """One backend to sweep: its name, the spec workers load it by, and how many
    (implementation, device) pairs it runs (for progress)."""

    name: str
    spec: str
    pairs: int


class Store:
    """The shard folder of one dtype under `out` (module docstring)."""

    def __init__(self, out: Path, dtype: str) -> None:
        self.root = Path(out) / f"sweep-{dtype}.shards"

    def path(self, backend: str, shard: Shard) -> Path:
        return self.root / backend / f"{shard.id}.json"

    def check(self, plan: Plan, resume: bool) -> None:
        """On resume, PlanMismatch unless the folder was written for `plan` (or is new)."""
        meta = self.root / PLAN_FILE
        if resume and meta.exists():
            try:
                have = json.loads(meta.read_text(encoding="utf-8"))
            except (OSError, ValueError):
                have = None
            if not have or have.get("format") != SHARD_FORMAT:
                raise PlanMismatch("its shard files are of another format (written by "
                                   "another version of the harness)")
            if have.get("plan") != plan.identity():
                raise PlanMismatch(_difference(have.get("plan"), plan.identity()))

    def prepare(self, plan: Plan, resume: bool) -> None:
        """Check (resume) or start (fresh: old summaries deleted) the folder for `plan`."""
        self.check(plan, resume)
        meta = self.root / PLAN_FILE
        if resume and meta.exists():
            return
        if not resume and self.root.exists():
            for f in sorted(self.root.glob("*/*.json")):
                f.unlink()
        self.root.mkdir(parents=True, exist_ok=True)
        _atomic_write(meta, json.dumps({"format": SHARD_FORMAT, "plan": plan.identity()},
                                       indent=1))

    def check_versions(self, infos: list[dict[str, Any]], resume: bool) -> None:
        """Keep each backend's versions beside its shards; on resume, a backend whose
        framework changed since (an upgrade) is refused rather than mixed in."""
        path = self.root / VERSIONS_FILE
        now = {i["name"]: i.get("versions", {}) for i in infos if not i.get("availability")}
        try:
            before = json.loads(path.read_text(encoding="utf-8")) if resume else {}
        except (OSError, ValueError):
            before = {}
        changed = [f"{name}: {before[name]} then, {v} now" for name, v in now.items()
                   if name in before and before[name] != v
                   and any((self.root / name).glob("*.json"))]
        if changed:
            raise PlanMismatch("the versions of " + "; ".join(changed))
        _atomic_write(path, json.dumps({**before, **now}, indent=1))

    def read(self, backend: str, shard: Shard) -> dict[str, Any] | None:
        try:
            return json.loads(self.path(backend, shard).read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return None

    def done(self, backend: str, shard: Shard) -> bool:
        """A summary is on disk (an `error` record does not count: resume retries it)."""
        p = self.path(backend, shard)
        if not p.exists():
            return False
        rec = self.read(backend, shard)
        return rec is not None and "error" not in rec

    def write(self, backend: str, shard: Shard, record: dict[str, Any]) -> None:
        p = self.path(backend, shard)
        p.parent.mkdir(parents=True, exist_ok=True)
        _atomic_write(p, json.dumps(record, allow_nan=False, separators=(",", ":")))


def _atomic_write(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)


def _difference(have: dict | None, want: dict) -> str:
    if not have:
        return "the folder has no readable plan.json"
    diffs = [k for k in sorted(set(have) | set(want)) if have.get(k) != want.get(k)]
    return ", ".join(f"{k} was {have.get(k)!r}, now {want.get(k)!r}" for k in diffs)


# -------------------------------------------------------------------- progress ----

class Progress:
    """Shards done, elements/s and the time left, on one line of stderr."""

    def __init__(self, total_tasks: int, total_elements: int, resumed: int, quiet: bool,
                 stream: Any = None) -> None:
        self.total_tasks, self.total = total_tasks, total_elements
        self.resumed = resumed
        self.tasks = self.elements = self.errors = 0
        self.quiet = quiet
        self.stream = stream or sys.stderr
        self.start = time.monotonic()
        self.last = 0.0
        self.tty = bool(getattr(self.stream, "isatty", lambda: False)())

    def rate(self) -> float:
        dt = time.monotonic() - self.start
        return self.elements / dt if dt > 0 else 0.0

    def line(self) -> str:
        rate = self.rate()
        left = (self.total - self.elements) / rate if rate > 0 else float("inf")
        eta = _duration(left) if left != float("inf") else "?"
        extra = f", {self.resumed} already on disk" if self.resumed else ""
        err = f", {self.errors} error" if self.errors else ""
        return (f"sweep: {self.tasks}/{self.total_tasks} shard tasks{extra}{err} · "
                f"{_si(rate)} elements/s · {eta} left")

    def update(self, elements: int, error: bool = False, force: bool = False) -> None:
        self.tasks += 1
        self.elements += elements
        self.errors += int(error)
        now = time.monotonic()
        if self.quiet or (not force and now - self.last < (0.5 if self.tty else 10.0)
                          and self.tasks < self.total_tasks):
            return
        self.last = now
        end = "\n" if not self.tty or self.tasks >= self.total_tasks else ""
        self.stream.write(("\r\x1b[K" if self.tty else "") + self.line() + end)
        self.stream.flush()

    def close(self) -> None:
        if self.tty and not self.quiet and self.tasks < self.total_tasks:
            self.stream.write("\n")


def _si(v: float) -> str:
    for unit, scale in (("G", 1e9), ("M", 1e6), ("k", 1e3)):
        if v >= scale:
            return f"{v / scale:.3g}{unit}"
    return f"{v:.3g}"


def _duration(s: float) -> str:
    if s < 90:
        return f"{s:.0f} s"
    if s < 5400:
        return f"{s / 60:.0f} min"
    return f"{s / 3600:.1f} h"


# --------------------------------------------------------------------- clusters ----

@contextlib.contextmanager
def client_for(scheduler: str | None, workers: int, log: str | None) -> Iterator[Any]:
    """A distributed.Client: on the cluster at `scheduler`, or on a LocalCluster of
    `workers` one-thread worker processes that is shut down afterwards."""
    from distributed import Client

    if scheduler:
        client = Client(scheduler, timeout="10s")
        try:
            yield client
        finally:
            client.close()
        return
    import dask
    from distributed import LocalCluster

    with dask.config.set({"distributed.scheduler.allowed-failures": ALLOWED_FAILURES,
                          "distributed.admin.tick.limit": "1h"}):
        # ":0": the scheduler's HTTP server (started even without a dashboard) takes a
        # free port, so a second sweep, or a cluster of the user's, never contends for
        # 8787 (distributed then warns "Port 8787 is already in use")
        cluster = LocalCluster(n_workers=workers, threads_per_worker=1, processes=True,
                               dashboard_address=":0", silence_logs=logging.CRITICAL,
                               env=dict(SINGLE_THREAD_ENV))
        client = Client(cluster)
        try:
            yield client
        finally:
            with contextlib.suppress(Exception):
                client.close()
            with contextlib.suppress(Exception):
                cluster.close()


def backend_infos(client: Any, specs: list[str], log: str | None = None) -> list[dict[str, Any]]:
    """Loaded.info() of each spec, computed on a worker (frameworks are imported there)."""
    futures = [client.submit(_info, s, log, key=f"sweep-info-{uuid.uuid4().hex}", pure=False)
               for s in specs]
    out = []
    for spec, f in zip(specs, futures, strict=True):
        try:
            out.append(f.result())
        except Exception as exc:
            out.append({"name": spec.rpartition("#")[2], "availability":
                        f"loading it on a worker failed: {type(exc).__name__}: {exc}",
                        "versions": {}, "devices": [], "dtypes": [], "implementations": [],
                        "descriptions": {}})
    return out


def _info(spec: str, log: str | None) -> dict[str, Any]:
    """Ask the backend's child process (started here, and kept for its shards)."""
    from harness.sweep import isolate

    work.setup(log)
    try:
        return isolate.ask(spec, ("info", spec), log, timeout=600)
    except (isolate.ChildDied, isolate.ChildHung, isolate.ChildFailed) as exc:
        return {"name": spec.rpartition("#")[2], "availability": f"its process failed: {exc}",
                "versions": {}, "devices": [], "dtypes": [], "implementations": [],
                "descriptions": {}}


# ------------------------------------------------------------------------ run ----

@dataclass
class Outcome:
    """What the engine did: counts and timings for the JSON's `run` section."""

    tasks: int = 0
    resumed: int = 0
    computed: int = 0
    errors: int = 0
    elements: int = 0
    wall_s: float = 0.0
    interrupted: bool = False
    workers: int = 0
    timing: dict[str, Any] = field(default_factory=dict)


def run(client: Any, plan: Plan, jobs: list[BackendJob], store: Store,
        quiet: bool = False) -> Outcome:
    """Sweep every shard of `plan` for `jobs` not yet on disk; see the module docstring."""
    started = time.monotonic()
    all_shards = shards(plan.space, plan.shard_logits)
    todo: list[tuple[Shard, list[BackendJob]]] = []
    outcome = Outcome()
    for sh in all_shards:
        need = [j for j in jobs if not store.done(j.name, sh)]
        outcome.tasks += len(jobs)
        outcome.resumed += len(jobs) - len(need)
        if need:
            todo.append((sh, need))
    per = len(plan.targets)
    total = sum(sh.logits * per * j.pairs for sh, need in todo for j in need)
    progress = Progress(sum(len(n) for _, n in todo), total, outcome.resumed, quiet)
    workers = max(1, len(client.scheduler_info().get("workers", {})))
    outcome.workers = workers
    window = max(2, 2 * workers)
    token = uuid.uuid4().hex[:8]
    timing = {"reference": 0.0, "backend": 0.0, "judge": 0.0}
    per_impl: dict[str, float] = {}

    from distributed import as_completed

    pending = iter(todo)
    meta: dict[Any, tuple[Shard, BackendJob, int]] = {}
    refs: dict[str, list] = {}  # shard id -> [reference future, tasks left, its time counted]
    ac = as_completed([], with_results=False)

    def submit_shard() -> bool:
        nxt = next(pending, None)
        if nxt is None:
            return False
        sh, need = nxt
        ref = client.submit(work.reference_shard, plan, sh, key=f"sweep-ref-{token}-{sh.id}",
                            pure=False)
        refs[sh.id] = [ref, len(need), False]
        for j in need:
            submit_backend(sh, j, ref, 1)
        return True

    def submit_backend(sh: Shard, j: BackendJob, ref: Any, attempt: int) -> None:
        f = client.submit(work.backend_shard, plan, j.spec, j.name, sh, ref,
                          key=f"sweep-{j.name}-{token}-{sh.id}-{attempt}", pure=False)
        meta[f] = (sh, j, attempt)
        ac.add(f)

    in_flight = 0
    while in_flight < window and submit_shard():
        in_flight += 1
    try:
        for f in ac:
            sh, j, attempt = meta.pop(f)
            elements = sh.logits * per * j.pairs
            if f.status == "finished":
                try:
                    rec = f.result()
                except Exception as exc:  # lost between finishing and fetching
                    rec = _error_record(plan, sh, j, exc, attempt)
            else:
                exc = f.exception()
                if attempt == 1 and not _is_killed_worker(exc):
                    # an exception in the task itself (not a crashed worker, which the
                    # scheduler already retried): once more, elsewhere
                    submit_backend(sh, j, refs[sh.id][0], 2)
                    continue
                rec = _error_record(plan, sh, j, exc, attempt)
            f.release()
            error = "error" in rec
            store.write(j.name, sh, rec)
            outcome.computed += 1
            outcome.errors += int(error)
            outcome.elements += elements
            entry = refs[sh.id]
            if not error:
                s = rec.get("seconds", {})
                if not entry[2]:  # every record of the shard carries the reference's time
                    timing["reference"] += s.get("reference", 0.0)
                    entry[2] = True
                timing["backend"] += s.get("backend", 0.0)
                timing["judge"] += s.get("judge", 0.0)
                for impl in rec.get("implementations", []):
                    k = f"{j.name}/{impl['implementation']}/{impl['device']}"
                    per_impl[k] = per_impl.get(k, 0.0) + impl.get("seconds", 0.0)
            entry[1] -= 1
            if entry[1] == 0:
                entry[0].release()
                del refs[sh.id]
                in_flight -= 1
                while in_flight < window and submit_shard():
                    in_flight += 1
            progress.update(elements, error)
    except KeyboardInterrupt:
        outcome.interrupted = True
        for f in list(meta):
            with contextlib.suppress(Exception):
                f.cancel()
    finally:
        progress.close()
    outcome.wall_s = time.monotonic() - started
    outcome.timing = {**timing, "implementations": per_impl}
    return outcome


def _is_killed_worker(exc: BaseException | None) -> bool:
    return type(exc).__name__ == "KilledWorker"


def _error_record(plan: Plan, sh: Shard, j: BackendJob, exc: BaseException | None,
                  attempt: int) -> dict[str, Any]:
    if _is_killed_worker(exc):
        why = (f"the worker process died while running this shard, {ALLOWED_FAILURES + 1} "
               "times on our LocalCluster (or as often as the cluster's "
               "distributed.scheduler.allowed-failures allows): the framework crashed or was "
               "killed; the shard was run again on a fresh worker and died again")
    else:
        msg = str(exc).strip().splitlines()
        why = f"{type(exc).__name__}: {msg[0] if msg else ''} (attempt {attempt})"
    return {"shard": sh.id, "backend": j.name, "spec": j.spec, "lo": sh.lo, "hi": sh.hi,
            "logits": sh.logits, "targets": len(plan.targets), "error": why[:1000]}
