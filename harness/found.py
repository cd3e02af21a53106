"""After a report: shrink failing generated cases to minimal YAML reproductions.

Shrinking calls the backend many times, so it runs where the backend's calls ran:
in a spawned process of its own (a crash or hang while shrinking costs only that
reproduction), each with a time budget. What comes back is the path of a case file
that `python -m harness report --cases <path> --backend <name>` re-runs; the report
records it on the failing results (`found`) and the terminal prints it.
"""

from __future__ import annotations

import multiprocessing as mp
import time
from pathlib import Path
from typing import Any

from harness.cases import Case

MAX_SHRINKS = 3  # failing generated calls shrunk per report run (each costs seconds)
BUDGET_S = 40.0  # seconds one shrink may take
UNSTABLE_BY_DESIGN = {"naive", "sigmoid+bce", "keras-probs"}


def _shrink_main(spec: str, plugin: str | None, implementation: str, device: str, case: Case,
                 seed: int, check: str, message: str, folder: str, conn: Any) -> None:
    # pragma: no cover - runs in a child
    from harness import known
    from harness.registry import load_spec
    from harness.runner import single_threaded
    from harness.shrink import save_found, shrink

    single_threaded()
    try:
        backend = load_spec(spec)
        small = shrink(backend, implementation, device, case, seed, check=check,
                       entries=known.load(known.SHIPPED_KNOWN), time_budget=BUDGET_S)
        if small is None:
            conn.send(None)
            return
        path = save_found(small, backend.name, implementation, f"{check}: {message}",
                          Path(folder), plugin=plugin)
        conn.send(str(path))
    except Exception as exc:  # a failed shrink must not lose the report
        conn.send(f"error: {type(exc).__name__}: {exc}")


def shrink_failures(results: list[dict[str, Any]], cases: list[Case], specs: dict[str, str],
                    seed: int, folder: Path, limit: int = MAX_SHRINKS) -> list[str]:
    """Shrink up to `limit` failing generated calls; annotate their records; return paths."""
    by_name = {c.name: c for c in cases}
    candidates = [r for r in results
                  if r["status"] in ("fail", "error") and r["case"].startswith("generated/")
                  and r["backend"] in specs and r["case"] in by_name]
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
    ctx = mp.get_context("spawn")
    running = []
    for (backend, impl, device, case_name), r in picked.items():
        spec = specs[backend]
        plugin = spec.split(":", 1)[1].rsplit("#", 1)[0] if spec.startswith("plugin:") else None
        parent, child = ctx.Pipe()
        proc = ctx.Process(target=_shrink_main, daemon=True,
                           args=(spec, plugin, impl, device, by_name[case_name], seed,
                                 r["check"], r["message"][:200], str(folder), child))
        proc.start()  # concurrently: the run is over and the cores are free
        child.close()
        running.append(((backend, impl, device, case_name), proc, parent))
    deadline = time.monotonic() + BUDGET_S + 60
    paths = []
    for key, proc, parent in running:
        answer = parent.recv() if parent.poll(max(0.0, deadline - time.monotonic())) else None
        if proc.is_alive():
            proc.kill()
        proc.join(timeout=5)
        if isinstance(answer, str) and not answer.startswith("error:"):
            paths.append(answer)
            for rec in results:
                if (rec["backend"], rec["implementation"], rec["device"], rec["case"]) == key \
                        and rec["status"] in ("fail", "error"):
                    rec["found"] = answer
    return paths
