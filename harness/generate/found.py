"""After a report: shrink failing generated cases to minimal YAML reproductions.

Shrinking calls the backend many times, so it runs where the backend's calls ran:
in a worker process of the report's pool (`harness.run.pool.Pool`: the same
processes as the run, and the same limit on how many run at once), so a crash or
a hang while shrinking costs only that reproduction, which is skipped with the
reason, never the report. Each shrink has a time budget, and each backend call in
it the run's per-call timeout. A failure keeps its identity: the shrunk case fails
the same check with the same kind of disagreement (`harness.generate.shrink.disagreement`).
What comes back, per attempt, is the path of a case file and the command that
re-runs exactly that case (`python -m harness report --cases <path> --backend
<name> --dtype <dtype> --examples 0`), or why there is none; the report records
the path on the failing results (`found`) and the terminal prints the command.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from multiprocessing.connection import wait
from pathlib import Path
from typing import Any

from harness.cases import Case

MAX_SHRINKS = 3  # failing generated calls shrunk per report run (each costs seconds)
BUDGET_S = 40.0  # seconds one shrink may take
SLACK_S = 30.0  # past the budget: saving the file, a last slow call
UNSTABLE_BY_DESIGN = {"naive", "sigmoid+bce", "keras-probs"}


def crashed_its_worker(record: dict[str, Any]) -> bool:
    """A call that killed or hung its worker: shrinking runs calls in a worker's own
    process, so it cannot survive one; such a failure is not shrunk."""
    message = str(record.get("message") or "")
    return message.startswith(("WorkerError:", "raised WorkerError:"))


class _Ticking:
    """The backend, saying "a call starts" before each call, so the parent can apply
    the per-call timeout while shrinking as it does during the run."""

    def __init__(self, backend: Any, tick: Callable[[], None]) -> None:
        self._backend = backend
        self._tick = tick

    def __getattr__(self, name: str) -> Any:
        return getattr(self._backend, name)

    def run(self, call: Any) -> Any:
        self._tick()
        return self._backend.run(call)


def shrink_job(backend: Any, job: dict[str, Any],
               tick: Callable[[], None]) -> dict[str, Any]:  # pragma: no cover - in a worker
    """Inside a worker: shrink one failure and save it. {"path", "command"}, or {"why"}."""
    from harness.generate.shrink import repro_command, save_found, shrink
    from harness.verdict import expectations as expect

    try:
        entries = expect.load(job.get("known") or (), shipped=job.get("shipped", True))
        small = shrink(_Ticking(backend, tick), job["implementation"], job["device"],
                       job["case"], job["seed"], check=job["check"], kind=job["kind"],
                       entries=entries, time_budget=job["budget"])
        if small is None:
            return {"why": f"the {job['check']} failure ({job['kind']}) does not reproduce "
                           "in the worker"}
        path = save_found(small, backend.name, job["implementation"], job["reason"],
                          Path(job["folder"]), plugin=job["plugin"], device=job["device"])
        return {"path": str(path),
                "command": repro_command(path, backend.name, small.dtypes,
                                         plugin=job["plugin"], device=job["device"])}
    except Exception as exc:  # a failed shrink must not lose the report
        return {"why": f"shrinking raised {type(exc).__name__}: {exc}"[:500]}


def pick(results: list[dict[str, Any]], cases: list[Case], specs: dict[str, str],
         limit: int = MAX_SHRINKS) -> list[dict[str, Any]]:
    """The failing records to shrink: generated cases, real implementations first,
    one per backend before a second, none that crashed or hung its worker."""
    by_name = {c.name: c for c in cases}
    candidates = [r for r in results
                  if r["status"] in ("fail", "error") and r["case"].startswith("generated/")
                  and r["backend"] in specs and r["case"] in by_name
                  and not crashed_its_worker(r)]
    # the unstable twins fail by design: real implementations first, one backend at a time
    candidates.sort(key=lambda r: r["implementation"] in UNSTABLE_BY_DESIGN)
    picked: dict[tuple, dict[str, Any]] = {}
    for spread_out in (True, False):
        for r in candidates:
            if len(picked) >= limit:
                break
            key = (r["backend"], r["implementation"], r["device"], r["case"])
            if spread_out and any(k[0] == r["backend"] for k in picked):
                continue
            picked.setdefault(key, r)
    return list(picked.values())


def _narrowed(case: Case, dtype: str, reduction: str) -> Case:
    """The case in the failing record's one dtype and reduction."""
    if case.dtypes == (dtype,) and case.reductions == (reduction,):
        return case
    from harness.generate.shrink import _with

    return _with(case, dtypes=(dtype,), reductions=(reduction,))


def shrink_failures(results: list[dict[str, Any]], cases: list[Case], specs: dict[str, str],
                    seed: int, folder: Path, limit: int = MAX_SHRINKS, *,
                    pool: Any = None, jobs: int = 0, timeout: float = 120.0,
                    startup_timeout: float = 300.0, budget: float = BUDGET_S,
                    known: list[str] | tuple[str, ...] = (),
                    shipped: bool = True) -> list[dict[str, Any]]:
    """Shrink up to `limit` failing generated calls in `pool`'s workers (a pool of
    `jobs` made here when None); annotate their records with `found`.

    Returns one entry per attempt: backend, implementation, device, case, check and
    kind (the disagreement kept), then `path` and `command` of the reproduction, or
    `why` there is none. The workers load the run's expectations again (`known`
    files, and the shipped list unless `shipped` is false), so a failure the run
    expects is not one shrinking counts. Never raises for a worker that dies, hangs (no call for
    `timeout` s, or past `budget` + slack) or cannot be reached: that attempt is
    skipped with the reason.
    """
    from harness.generate.shrink import disagreement
    from harness.run.pool import Pool, exit_reason, unread

    by_name = {c.name: c for c in cases}
    attempts: list[dict[str, Any]] = []
    for r in pick(results, cases, specs, limit):
        spec = specs[r["backend"]]
        plugin = spec.split(":", 1)[1].rsplit("#", 1)[0] if spec.startswith("plugin:") else None
        kind = disagreement(r)
        attempt = {"backend": r["backend"], "implementation": r["implementation"],
                   "device": r["device"], "case": r["case"], "dtype": r["dtype"],
                   "reduction": r["reduction"], "check": r["check"], "kind": kind}
        job = {"implementation": r["implementation"], "device": r["device"],
               "case": _narrowed(by_name[r["case"]], r["dtype"], r["reduction"]),
               "seed": seed, "check": r["check"], "kind": kind,
               "reason": f"{r['check']} {r['status']}, {kind}; originally "
                         f"{' '.join(str(r.get('message', '')).split())[:200]}",
               "folder": str(folder), "plugin": plugin, "budget": budget,
               "known": [str(k) for k in known], "shipped": shipped}
        attempts.append({**attempt, "_spec": spec, "_job": job})

    own_pool = pool is None
    pool = Pool(jobs) if own_pool else pool
    queue = list(attempts)
    running: dict[Any, list[Any]] = {}  # Proc -> [attempt, call deadline, overall deadline]

    def skip(p: Any, a: dict[str, Any], why: str) -> None:
        a["why"] = why
        running.pop(p, None)
        pool.discard(p)

    try:
        while queue or running:
            while queue and pool.free():
                a = queue.pop(0)
                p = pool.acquire(a["_spec"])
                now = time.monotonic()
                loaded = p.info is not None
                running[p] = [a, now + (timeout if loaded else startup_timeout),
                              now + budget + timeout + SLACK_S if loaded else None]
                try:
                    p.conn.send(("shrink", a["_job"]))
                except (OSError, ValueError) as exc:
                    skip(p, a, f"the worker could not be reached ({type(exc).__name__})")
            if not running:
                if queue and not pool.free():  # the pool is busy elsewhere: do not wait
                    for a in queue:
                        a["why"] = "no worker was free"
                    break
                continue
            ready = wait([p.conn for p in running], timeout=0.5)
            for p in list(running):
                a = running[p][0]
                now = time.monotonic()
                if p.conn in ready:
                    try:
                        msg = p.conn.recv()
                    except (EOFError, OSError):
                        p.process.join(timeout=5)
                        skip(p, a, "while shrinking, " + exit_reason(p.process.exitcode))
                        continue
                    kind = msg[0]
                    if kind == "info":
                        p.info = msg[1]
                        running[p][1:] = [now + timeout, now + budget + timeout + SLACK_S]
                    elif kind == "fatal":
                        skip(p, a, "the backend could not be loaded in a worker: "
                                   + str(msg[1]).splitlines()[0])
                        continue
                    elif kind == "tick":
                        running[p][1] = now + timeout
                    elif kind == "shrunk":
                        a.update(msg[1] if isinstance(msg[1], dict) else {"why": str(msg[1])})
                        running.pop(p)
                        pool.release(p)
                        continue
                _, deadline, overall = running[p]
                if now > deadline and not unread(p.conn):
                    what = "a call" if p.info is not None else "loading the backend"
                    limit_s = timeout if p.info is not None else startup_timeout
                    skip(p, a, f"{what} did not finish within {limit_s:g} s while shrinking "
                               "(hang?); the worker was killed")
                elif overall is not None and now > overall:
                    skip(p, a, f"shrinking took longer than {budget + timeout + SLACK_S:g} s; "
                               "the worker was killed")
    finally:
        for p in list(running):
            running[p][0].setdefault("why", "interrupted")
            pool.discard(p)
        if own_pool:
            pool.close()

    for a in attempts:
        a.pop("_spec", None)
        a.pop("_job", None)
        if a.get("path"):
            for rec in results:
                if (rec["backend"], rec["implementation"], rec["device"], rec["case"],
                        rec["check"]) == (a["backend"], a["implementation"], a["device"],
                                          a["case"], a["check"]) \
                        and rec["status"] in ("fail", "error"):
                    rec["found"] = a["path"]
        elif not a.get("why"):
            a["why"] = "no answer from the worker"
    return attempts
