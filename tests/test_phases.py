"""A report never loses what it measured, and fits the machine.

After the calls, report.json is written first; every later step (shrinking,
validation, the HTML page, the terminal summary) is guarded: a failure is one
line in the terminal and an entry in `run.phases`, never a traceback, and the
command still writes both files and exits 1. Worker processes, for the calls and
the shrinking alike, are at most one per core (`--jobs N` to change it), and the
terminal says only what is true.
"""

from __future__ import annotations

import contextlib
import io
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from harness import report as report_mod
from harness.report.terminal import Console
from tests.test_cli import SMALL

ROOT = Path(__file__).resolve().parent.parent


MILD = """
cases:
  - name: mild
    input: [0.5, -1.0, 2.0]
    target: [1.0, 0.0, 0.25]
    dtypes: [float16, float32, float64]
"""


def _env(**extra: str) -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(ROOT), "TF_CPP_MIN_LOG_LEVEL": "3", **extra}


def harness(*args: str, cwd: Path, timeout: float = 300, env: dict | None = None,
            prelude: str = "") -> subprocess.CompletedProcess:
    """`python -m harness ARGS` from `cwd`; `prelude` runs first (to break something)."""
    code = (f"import sys\n{prelude}\nfrom harness.__main__ import main\n"
            f"sys.exit(main({list(args)!r}))\n")
    return subprocess.run([sys.executable, "-c", code], cwd=cwd, env=env or _env(),
                          capture_output=True, text=True, timeout=timeout)


def load(out: Path) -> dict:
    return report_mod.load(out / "report.json")  # flat: one record per check


@pytest.fixture
def small(tmp_path: Path) -> Path:
    p = tmp_path / "small.yaml"
    p.write_text(SMALL)
    return p


@pytest.fixture
def mild(tmp_path: Path) -> Path:
    p = tmp_path / "mild.yaml"
    p.write_text(MILD)
    return p


@pytest.mark.slow
def test_dying_workers_cost_their_calls_and_their_shrinks_never_the_report(small, tmp_path):
    """An aborting plugin (its shrinks abort too) and one that hangs on every call, beside
    numpy, with shrinking on: both files written, the plugins' calls recorded as errors,
    the shrinks skipped with the reason, exit 1, no traceback."""
    out = tmp_path / "out"
    r = harness("report", "--plugin", "tests.plugins.dying:BACKENDS", "--backend", "numpy",
                "--backend", "aborts-small", "--backend", "hangs-always", "--cases", str(small),
                "--examples", "20", "--seed", "3", "--dtype", "float32", "--timeout", "2",
                "--out", str(out),
                cwd=tmp_path)
    assert r.returncode == 1, r.stderr
    assert "Traceback" not in r.stderr and "Traceback" not in r.stdout
    assert (out / "report.html").read_text().startswith("<!doctype html>")
    doc = load(out)
    report_mod.validate(doc)
    by: dict[str, list[dict]] = {}
    for x in doc["results"]:
        by.setdefault(x["backend"], []).append(x)
    assert all(x["status"] == "pass" for x in by["numpy"] if x["implementation"] == "formula")
    aborted = [x for x in by["aborts-small"] if x["status"] == "error"]
    assert aborted and all("SIGABRT" in x["message"] for x in aborted)
    one_element = {name for name, c in doc["cases"].items()
                   if c["shape"] is not None and int(np.prod(c["shape"])) == 1}
    assert all(x["reduction"] == "sum" or x["case"] in one_element for x in aborted)
    assert any(x["reduction"] == "sum" for x in aborted)
    # the hanging backend: every record an error, the worker given up after a few timeouts
    assert by["hangs-always"] and all(x["status"] == "error" for x in by["hangs-always"]), \
        sorted({(x["status"], x["check"], x["message"][:80]) for x in by["hangs-always"]})
    assert any("did not finish within 2 s" in x["message"] for x in by["hangs-always"])
    assert "hangs-always: given up" in r.stderr
    # shrinking reached the aborting backend; its worker died; the attempt was skipped
    run = doc["run"]
    shrinks = [a for a in run["shrinks"] if a["backend"] == "aborts-small"]
    assert shrinks and all("SIGABRT" in a["why"] and "path" not in a for a in shrinks)
    assert "not shrunk: aborts-small/formula" in r.stderr
    phases = {p["phase"]: p for p in run["phases"]}
    assert [p for p in ("calls", "report.json", "shrink", "validate", "report.html", "summary")
            if phases[p]["status"] != "ok"] == []
    assert "stopped before it finished" not in r.stderr
    assert run["jobs"] == len(os.sched_getaffinity(0))
    assert not (out / "results.partial.jsonl").exists()


def test_a_shrink_that_hangs_is_abandoned_after_the_call_timeout(small, tmp_path):
    """Shrinking applies the run's per-call timeout: a candidate call that hangs costs
    that reproduction, skipped with the reason, and the report is whole."""
    out = tmp_path / "out"
    r = harness("report", "--plugin", "tests.plugins.dying:BACKENDS", "--backend",
                "hangs-small", "--cases", str(small), "--examples", "20", "--seed", "3",
                "--dtype", "float32",
                "--timeout", "2", "--shrink", "2", "--out", str(out), cwd=tmp_path)
    assert r.returncode == 1 and "Traceback" not in r.stderr, r.stderr
    doc = load(out)
    assert not [x for x in doc["results"] if x["status"] == "error"]  # the run never hung
    shrinks = doc["run"]["shrinks"]
    assert len(shrinks) == 2
    assert all("did not finish within 2 s while shrinking" in a["why"] for a in shrinks)
    assert all(p["status"] == "ok" for p in doc["run"]["phases"])
    assert (out / "report.html").exists()


def test_a_failing_phase_is_one_line_an_entry_and_exit_1(mild, tmp_path):
    """The HTML writer raising: report.json is complete and holds the failed phase,
    report.html is a plain page saying so, the terminal one line, the exit status 1."""
    out = tmp_path / "out"
    prelude = ("import harness.report as r\n"
               "def boom(doc, out):\n"
               "    raise RuntimeError('the template is broken')\n"
               "r.write_html = boom\n")
    r = harness("report", "--backend", "numpy", "--cases", str(mild), "--examples", "0",
                "--dtype", "float64", "--out", str(out), cwd=tmp_path, prelude=prelude)
    assert r.returncode == 1, r.stderr
    assert "Traceback" not in r.stderr
    doc = load(out)
    report_mod.validate(doc)
    assert doc["results"] and not report_mod.exit_code(doc["results"])  # only the phase failed
    failed = [p for p in doc["run"]["phases"] if p["status"] == "failed"]
    assert [p["phase"] for p in failed] == ["report.html"]
    assert "RuntimeError: the template is broken" in failed[0]["why"]
    assert {p["phase"] for p in doc["run"]["phases"]} >= {"calls", "report.json", "validate",
                                                          "report.html (plain)", "summary"}
    html = (out / "report.html").read_text()
    assert "the template is broken" in html and "report.json" in html
    lines = [ln for ln in r.stderr.splitlines() if "step failed" in ln]
    assert len(lines) == 1 and "report.html" in lines[0] and "the template is broken" in lines[0]


def test_report_json_is_written_before_shrinking(mild, tmp_path):
    """Shrinking itself breaking (here: raising at once) loses nothing measured."""
    out = tmp_path / "out"
    prelude = ("import harness.generate.found as f\n"
               "def boom(*a, **k):\n"
               "    raise EOFError()\n"
               "f.shrink_failures = boom\n")
    r = harness("report", "--backend", "numpy", "--cases", str(mild), "--examples", "3",
                "--dtype", "float64", "--out", str(out), cwd=tmp_path, prelude=prelude)
    assert r.returncode == 1 and "Traceback" not in r.stderr, r.stderr
    doc = load(out)
    phases = {p["phase"]: p for p in doc["run"]["phases"]}
    assert phases["shrink"]["status"] == "failed" and "EOFError" in phases["shrink"]["why"]
    assert phases["report.json"]["status"] == "ok" and phases["report.html"]["status"] == "ok"
    assert doc["results"] and (out / "report.html").exists()


def _max_overlap(intervals: list[tuple[int, float, float]]) -> int:
    """Most distinct processes with a call in flight at the same moment."""
    events = sorted([(s, 1, pid) for pid, s, _ in intervals]
                    + [(e, -1, pid) for pid, _, e in intervals])
    open_: dict[int, int] = {}
    best = 0
    for _, step, pid in events:
        open_[pid] = open_.get(pid, 0) + step
        best = max(best, sum(1 for n in open_.values() if n > 0))
    return best


@pytest.mark.slow
def test_jobs_bounds_the_worker_processes(small, tmp_path):
    """Five backends with --jobs 2: at most two worker processes at once, counted from
    the calls' own pids and time spans (and from the process table, with psutil)."""
    log = tmp_path / "calls.log"
    out = tmp_path / "out"
    args = ["report", "--plugin", "tests.plugins.counting:BACKENDS"]
    for i in range(5):
        args += ["--backend", f"counted-{i}"]
    args += ["--cases", str(small), "--examples", "0", "--dtype", "float32", "--dtype",
             "float64", "--jobs", "2", "--out", str(out)]
    code = ("import sys\nfrom harness.__main__ import main\n"
            f"sys.exit(main({args!r}))\n")
    proc = subprocess.Popen([sys.executable, "-c", code], cwd=tmp_path,
                            env=_env(BCE_TEST_CALL_LOG=str(log)), stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    seen: list[int] = []

    def watch() -> None:
        try:
            import psutil
        except ImportError:
            return
        try:
            me = psutil.Process(proc.pid)
            while proc.poll() is None:
                workers = 0
                for child in me.children(recursive=True):
                    with contextlib.suppress(psutil.Error):
                        workers += "spawn_main" in " ".join(child.cmdline())
                seen.append(workers)
                time.sleep(0.02)
        except psutil.Error:
            pass

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    _, stderr = proc.communicate(timeout=300)
    watcher.join(timeout=5)
    assert proc.returncode == 0, stderr
    intervals = []
    for line in log.read_text().splitlines():
        pid, start, end = line.split()
        intervals.append((int(pid), float(start), float(end)))
    backends = {x["backend"] for x in load(out)["results"]}
    assert backends == {f"counted-{i}" for i in range(5)}
    # 5 backends × 2 dtype shards, each shard in a worker of its own or a reused one
    assert len({pid for pid, _, _ in intervals}) >= 2
    assert _max_overlap(intervals) <= 2
    assert max(seen, default=0) <= 2, seen
    assert load(out)["run"]["jobs"] == 2
    assert "stopped before it finished" not in stderr


def test_a_complete_run_with_dtype_shards_says_nothing_false(mild, tmp_path):
    """JAX's calls split into one shard per dtype (RunOptions.split_by_dtype), numpy's
    are one: the run finishes, and no backend is said to have stopped before it
    finished."""
    pytest.importorskip("jax", reason="jax is not installed")
    out = tmp_path / "out"
    r = harness("report", "--backend", "numpy", "--backend", "jax", "--cases", str(mild),
                "--examples", "0", "--dtype", "float16", "--dtype", "float32",
                "--out", str(out), cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert "stopped before it finished" not in r.stderr
    assert "jax float16: " in r.stderr and "jax float32: " in r.stderr
    assert "numpy: " in r.stderr
    assert "RuntimeWarning" not in r.stderr
    shards = load(out)["run"]["per_backend"]
    assert set(shards) == {"jax float16", "jax float32", "numpy"}
    assert all(s["finished"] for s in shards.values())


def test_jobs_must_not_be_negative(small, tmp_path):
    r = harness("report", "--backend", "numpy", "--cases", str(small), "--jobs", "-1",
                "--out", str(tmp_path / "o"), cwd=tmp_path)
    assert r.returncode == 2 and "--jobs must be 1 or more" in r.stderr
    assert "Traceback" not in r.stderr


def _report(per_backend: dict, interrupted: bool = False) -> dict:
    return {"backends": [{"name": "numpy", "availability": None},
                         {"name": "torch", "availability": None}],
            "results": [], "run": {"interrupted": interrupted, "per_backend": per_backend}}


def test_console_says_stopped_only_for_what_did_not_finish():
    shards = {"numpy float16+bfloat16": {"finished": True},
              "numpy float32+float64": {"finished": True},
              "torch float16+bfloat16": {"finished": True},
              "torch float32+float64": {"finished": True}}

    def run(report: dict, progress: list[str]) -> str:
        buf = io.StringIO()
        console = Console(stream=buf)
        console.start(["numpy", "torch"], cases=1, trials=2)
        for label in progress:
            console.on_progress(label, 3, 3)
        console.finish(report, Path("r.json"), Path("r.html"))
        return buf.getvalue()

    complete = run(_report(shards), list(shards))
    assert "stopped before it finished" not in complete
    assert "numpy float16+bfloat16: 3 calls done in" in complete
    cut = dict(shards, **{"torch float32+float64": {"finished": False}})
    text = run(_report(cut, interrupted=True), list(shards)[:3])
    assert "torch: stopped before it finished" in text
    assert "numpy: stopped" not in text
    # interrupted before torch reported anything at all
    text = run(_report({k: v for k, v in shards.items() if k.startswith("numpy")},
                       interrupted=True), list(shards)[:2])
    assert "torch: stopped before it finished" in text and "numpy: stopped" not in text


def test_max_restarts_decides_when_a_crashing_backend_is_given_up(mild, tmp_path):
    """A backend that aborts on some calls only (every "sum") is given up after more
    than --max-restarts worker deaths, its remaining calls recorded as errors that say
    so; raised, every other call runs and is judged."""
    def run(limit: str) -> dict[str, list[dict]]:
        out = tmp_path / f"out-{limit}"
        r = harness("report", "--plugin", "tests.plugins.dying:BACKENDS", "--backend",
                    "aborts-small", "--cases", str(mild), "--examples", "0", "--shrink", "0",
                    "--max-restarts", limit, "--out", str(out), cwd=tmp_path)
        assert r.returncode == 1 and "Traceback" not in r.stderr, r.stderr
        calls: dict[str, list[dict]] = {}
        for x in load(out)["results"]:
            calls.setdefault(x["status"], []).append(x)
        return calls | {"stderr": r.stderr}

    strict = run("0")  # the first death gives the shard up
    died = [x for x in strict["error"] if "died with SIGABRT" in x["message"]
            and not x["message"].startswith("WorkerError: not run")]
    not_run = [x for x in strict["error"] if "not run:" in x["message"]]
    assert {x["reduction"] for x in died} == {"sum"}
    assert not_run and all("; no restart is allowed (report --max-restarts)" in x["message"]
                           for x in not_run)
    assert "calls not run: the worker failed once (last: the worker process died with " \
        "SIGABRT" in strict["stderr"]

    patient = run("5")  # three deaths (the three "sum" trials), every other call judged
    assert all(x["reduction"] == "sum" and "died with SIGABRT" in x["message"]
               for x in patient["error"])
    assert len({(x["dtype"], x["case"]) for x in patient["error"]}) == 3
    judged = patient.get("pass", []) + patient.get("fail", [])
    assert {x["reduction"] for x in judged} == {"none", "mean"}
    assert "given up" not in patient["stderr"]


def test_max_restarts_must_not_be_negative(tmp_path):
    r = harness("report", "--backend", "numpy", "--max-restarts", "-1", cwd=tmp_path)
    assert r.returncode == 2 and "--max-restarts must be 0 or more" in r.stderr
    assert "Traceback" not in r.stderr


def test_an_answer_waiting_while_the_parent_is_busy_is_not_a_hang(mild, tmp_path):
    """Two workers of 0.3 s calls and a 1 s --timeout; the parent takes 1.2 s over each of
    steady-twin's first two records (as judging a large call can take). Steady's calls go
    on meanwhile and their answers wait in its pipe: past its deadline, but it did not
    hang, so it is not killed and every call is judged."""
    from harness.run.job import ReportRequest, plan_report
    from harness.run.pool import Pool
    from harness.run.runner import RunOptions, run_isolated

    plan = plan_report(ReportRequest(
        cases=(str(mild),), examples=0, backends=("steady", "steady-twin"),
        plugins=("tests.plugins.counting:BACKENDS",), dtypes=("float32", "float64"),
        out=tmp_path / "out", shrink=0))
    records: list[dict] = []
    slow = [2]

    def on_records(name: str, recs: list[dict]) -> None:
        if name == "steady-twin" and slow[0] > 0:
            slow[0] -= 1
            time.sleep(1.2)
        records.extend(recs)

    with Pool(jobs=2) as pool:
        stats = run_isolated(plan.chosen, plan.trials, RunOptions(timeout=1.0, jobs=2),
                             plan.entries, on_records, pool=pool)
    assert slow == [0]
    for name in ("steady", "steady-twin"):
        mine = [r for r in records if r["backend"] == name]
        assert not [r["message"] for r in mine if r["status"] == "error"], name
        assert len({(r["case"], r["dtype"], r["reduction"]) for r in mine}) == 6
        assert stats[name]["restarts"] == 0 and stats[name]["finished"]
