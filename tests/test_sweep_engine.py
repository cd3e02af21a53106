"""The sweep on a real Dask cluster: a whole float16 sweep, crashes, a killed worker,
resume after losing shards and after Ctrl-C, an existing scheduler, usage errors.

Each test starts its own LocalCluster of two one-thread workers (a few seconds).
The crashing backends are in tests/plugins/sweep_crash.py.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

pytest.importorskip("distributed")

from harness.sweep import cli, summary

ROOT = Path(__file__).resolve().parent.parent
PLUGIN = "tests.plugins.sweep_crash:BACKENDS"
# float32, every 2^18+3-th magnitude: 16,384 logits in 4 shards of 4,096
SAMPLE = ("--dtype", "float32", "--stride", "262147", "--workers", "2", "--quiet")


def sweep(*argv: str) -> int:
    p = argparse.ArgumentParser()
    cli.add_arguments(p)
    return cli.main(p.parse_args(list(argv)))


def document(out: Path, dtype: str = "float32") -> dict:
    doc = summary.load(out / f"sweep-{dtype}.json")
    summary.validate(doc)
    return doc


def shard_files(out: Path, dtype: str = "float32") -> dict[str, float]:
    root = out / f"sweep-{dtype}.shards"
    return {str(p.relative_to(root)): p.stat().st_mtime_ns for p in sorted(root.glob("*/*.json"))}


@pytest.mark.slow
def test_every_float16_logit_through_numpy(tmp_path, capsys):
    out = tmp_path / "out"
    assert sweep("--dtype", "float16", "--backend", "numpy", "--out", str(out), "--workers",
                 "2", "--quiet") == 0
    doc = document(out, "float16")
    by = {d["implementation"]: d for d in doc["implementations"]}
    assert by["formula"]["status"] == "pass"
    assert by["naive"]["status"] == "known"  # sigmoid-then-BCE, declared unstable by design
    assert by["formula"]["totals"]["elements"] == 2 * 7 * 65536  # 2 quantities, 7 targets
    assert doc["run"]["workers"] == 2 and doc["summary"]["complete"]
    assert doc["plan"]["logits"] == 65536 and len(doc["plan"]["targets"]) == 7
    page = (out / "sweep-float16.html").read_text()
    assert "numpy/formula" in page and "<svg" in page
    printed = capsys.readouterr().out
    assert "pass        numpy/formula" in printed and "wrote" in printed


@pytest.mark.slow
def test_crashes_and_a_killed_worker(tmp_path, monkeypatch):
    """A framework that crashes once is run again on a fresh process; one that crashes
    every time is an error shard; a Dask worker killed mid-shard costs nothing."""
    monkeypatch.setenv("BCE_SWEEP_MARKER", str(tmp_path / "marker"))
    out = tmp_path / "out"
    rc = sweep(*SAMPLE, "--plugin", PLUGIN, "--backend", "crashes-once", "--backend",
               "crashes-always", "--backend", "kills-worker", "--out", str(out),
               "--no-shipped-expectations")
    assert rc == 1
    doc = document(out)
    by = {d["backend"]: d for d in doc["implementations"]}
    # the worker that ran the first shard of kills-worker was killed...
    killed = int((tmp_path / "marker.kills-worker").read_text())
    with pytest.raises(ProcessLookupError):
        os.kill(killed, 0)
    # ...and the shard was computed again on another one, completely
    first = json.loads((out / "sweep-float32.shards/kills-worker/000000.json").read_text())
    assert "error" not in first and first["worker"] != killed
    assert by["kills-worker"]["status"] == "pass"
    assert (tmp_path / "marker.crashes-once").exists() and by["crashes-once"]["status"] == "pass"
    assert by["crashes-always"]["status"] == "error"
    (err,) = doc["shard_errors"]
    assert err["backend"] == "crashes-always" and err["shard"] == "000000"
    assert "died" in err["error"] and "fresh process" in err["error"]
    # its logits are errors on the map, in their bins (±0 is in the first shard)
    t = by["crashes-always"]["quantities"]["value"]["targets"][0]
    zero = next(i for i, b in enumerate(doc["bins"]) if b["label"] == "+0")
    assert t["bins"]["errors_unexpected"][zero] == 1
    assert t["errors_unexpected"] == 4096
    assert doc["summary"]["unexpected"] >= 1
    assert doc["run"]["errors"] == 1 and doc["run"]["computed"] == 12


@pytest.mark.slow
def test_resume_computes_only_what_is_missing(tmp_path):
    out = tmp_path / "out"
    assert sweep(*SAMPLE, "--backend", "numpy", "--out", str(out)) == 0
    before = shard_files(out)
    assert len(before) == 4
    root = out / "sweep-float32.shards"
    (root / "numpy/000001.json").unlink()
    rec = json.loads((root / "numpy/000002.json").read_text())
    (root / "numpy/000002.json").write_text(json.dumps({**rec, "error": "a crash, say"}))
    time.sleep(0.01)
    assert sweep(*SAMPLE, "--backend", "numpy", "--out", str(out), "--resume") == 0
    after = shard_files(out)
    doc = document(out)
    assert doc["run"]["computed"] == 2 and doc["run"]["resumed"] == 2
    assert after["numpy/000000.json"] == before["numpy/000000.json"]
    assert after["numpy/000003.json"] == before["numpy/000003.json"]
    assert after["numpy/000002.json"] != before["numpy/000002.json"]
    assert doc["summary"]["complete"] and not doc["shard_errors"]
    # another plan on the same folder is refused, not mixed in
    assert sweep(*SAMPLE, "--backend", "numpy", "--out", str(out), "--resume",
                 "--targets", "0") == 2


@pytest.mark.slow
def test_interrupted_sweep_resumes_where_it_stopped(tmp_path):
    out = tmp_path / "out"
    env = {**os.environ, "PYTHONPATH": str(ROOT), "BCE_SWEEP_SLOW": "0.4"}
    args = [sys.executable, "-m", "harness.sweep", "--dtype", "float32", "--stride", "65537",
            "--plugin", PLUGIN, "--backend", "slow", "--out", str(out), "--workers", "2",
            "--shard", "2048", "--no-shipped-expectations"]
    # Ctrl-C as a terminal delivers it: a suite started in the background (`cmd &` in a
    # script) inherits SIGINT ignored, and the sweep would inherit that too and never see
    # it. A handled signal is reset to its default at exec (an ignored one stays ignored),
    # so SIGINT is handled here while the sweep starts: no preexec_fn, which would fork
    # this multithreaded process (JAX warns of deadlocks)
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        proc = subprocess.Popen(args, cwd=ROOT, env=env, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True, start_new_session=True)
    finally:
        signal.signal(signal.SIGINT, previous)
    root = out / "sweep-float32.shards/slow"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and len(list(root.glob("*.json"))) < 3:
        time.sleep(0.2)
    os.killpg(proc.pid, signal.SIGINT)  # Ctrl-C reaches the whole process group
    _, stderr = proc.communicate(timeout=120)
    assert proc.returncode == 130, stderr[-2000:]
    assert "--resume" in stderr and "Traceback" not in stderr
    done = shard_files(out)
    assert 3 <= len(done) < 32
    doc = document(out)
    assert doc["run"]["interrupted"] and not doc["summary"]["complete"]
    env["BCE_SWEEP_SLOW"] = "0"
    r = subprocess.run([*args, "--resume", "--quiet"], cwd=ROOT, env=env, capture_output=True,
                       text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]
    doc = document(out)
    assert doc["run"]["resumed"] == len(done) and doc["run"]["computed"] == 32 - len(done)
    assert doc["summary"]["complete"]
    after = shard_files(out)
    assert all(after[k] == v for k, v in done.items())


@pytest.mark.slow
def test_an_existing_scheduler_is_used_as_it_is(tmp_path):
    from distributed import Client, LocalCluster

    with LocalCluster(n_workers=1, threads_per_worker=1, dashboard_address=":0",
                      processes=True) as cluster, Client(cluster) as client:
        before = set(client.scheduler_info()["workers"])
        out = tmp_path / "out"
        assert sweep(*SAMPLE, "--backend", "numpy", "--out", str(out), "--scheduler",
                     cluster.scheduler_address) == 0
        doc = document(out)
        assert doc["run"]["scheduler"] == cluster.scheduler_address
        assert doc["run"]["workers"] == 1
        assert set(client.scheduler_info()["workers"]) == before  # still there, unchanged
        assert not (out / "sweep-float32.shards/workers.log").exists()


@pytest.mark.parametrize(("argv", "message"), [
    (("--dtype", "float64"), "2^64 logits"),
    (("--dtype", "float16", "--targets", "0,half"), "--targets"),
    (("--dtype", "float16", "--backend", "nonesuch"), "unknown backend"),
    (("--dtype", "float16", "--stride", "0"), "--stride must be 1 or more"),
    (("--dtype", "float16", "--known", "/nonexistent.yaml"), "no such file"),
    (("--dtype", "float16", "--scheduler", "tcp://127.0.0.1:9"), "cannot connect"),
])
def test_bad_usage_is_one_paragraph_and_exit_2(argv, message, tmp_path, capsys, monkeypatch):
    if "--scheduler" in argv:
        # the unreachable scheduler: retried for 1 s, not the engine's 10 s, which only
        # delays the same message
        import distributed

        client = distributed.Client
        monkeypatch.setattr(distributed, "Client",
                            lambda *a, **kw: client(*a, **{**kw, "timeout": "1s"}))
    assert sweep(*argv, "--out", str(tmp_path)) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err and err.count("\n") == 1
