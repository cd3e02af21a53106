"""The command line as users and CI meet it: exit codes, messages, isolation."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

SMALL = """
cases:
  - name: small
    description: moderate and confident logits
    input: [0.5, -1.0, 40.0, -50.0]
    target: [1.0, 0.0, 1.0, 0.0]
    dtypes: [float32, float64]
"""


def harness(*args, cwd=ROOT, timeout=300):
    if args and args[0] == "report" and "--examples" not in args:
        args = (*args, "--examples", "0")  # these tests mean their own case files only
    env = {**os.environ, "PYTHONPATH": str(ROOT), "TF_CPP_MIN_LOG_LEVEL": "3"}
    return subprocess.run([sys.executable, "-m", "harness", *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=timeout)


@pytest.fixture
def small(tmp_path):
    p = tmp_path / "small.yaml"
    p.write_text(SMALL)
    return p


def load(out):
    from harness.report import load as read  # report.json reads back as flat records

    return read(out / "report.json")


def test_numpy_formula_passes_and_naive_fails_with_exit_1(small, tmp_path):
    out = tmp_path / "out"
    r = harness("report", "--backend", "numpy", "--cases", str(small), "--out", str(out),
                "--no-shipped-expectations")
    assert r.returncode == 1, r.stderr + r.stdout
    doc = load(out)
    formula = [x for x in doc["results"] if x["implementation"] == "formula"]
    assert formula and all(x["status"] == "pass" for x in formula)
    naive = [x for x in doc["results"] if x["implementation"] == "naive"]
    # sigmoid then BCE saturates at x = 40: log(1 - 1) = -inf, NaN gradients
    assert any(x["status"] == "fail" and x["worst"]["inputs"]["input"] == 40.0 for x in naive
               if x["check"] == "value" and x["reduction"] == "none")
    assert (out / "report.html").read_text().startswith("<!doctype html>")
    assert not (out / "results.partial.jsonl").exists()


def test_the_unstable_twin_is_reported_in_full_but_expected(small, tmp_path):
    """numpy `naive` is declared unstable by design: its failures stay in the report,
    with their messages, as `known`, and do not make the run exit 1."""
    out = tmp_path / "out"
    r = harness("report", "--backend", "numpy", "--cases", str(small), "--out", str(out))
    assert r.returncode == 0, r.stderr + r.stdout
    naive = [x for x in load(out)["results"] if x["implementation"] == "naive"
             and x["check"] == "value" and x["reduction"] == "none"]
    saturated = [x for x in naive if x["status"] == "known"]
    assert saturated and "beyond the allowance" in saturated[0]["message"]
    assert saturated[0]["expected_by"][0]["kind"] == "unstable-by-design"


def test_clean_run_exits_0(tmp_path):
    case = tmp_path / "mild.yaml"
    case.write_text("cases:\n  - name: mild\n    input: [0.5, -1.0, 2.0]\n"
                    "    target: [1.0, 0.0, 0.25]\n    dtypes: [float64]\n")
    r = harness("report", "--backend", "numpy", "--cases", str(case), "--out",
                str(tmp_path / "out"))
    assert r.returncode == 0, r.stderr + r.stdout
    assert "fail" not in load(tmp_path / "out")["summary"] or not load(
        tmp_path / "out")["summary"]["fail"]
    # the page, written before the command ends, shows the time to the last call, which
    # report.json keeps apart from the whole command's `seconds`
    run = load(tmp_path / "out")["run"]
    assert 0 < run["calls_done_s"] <= run["seconds"]
    page = (tmp_path / "out" / "report.html").read_text(encoding="utf-8")
    assert f"computed in {run['calls_done_s']} s" in page


def test_subtly_wrong_plugin_is_caught_with_exit_1(small, tmp_path):
    out = tmp_path / "out"
    r = harness("report", "--plugin", "tests.plugins.broken:SubtlyWrong", "--backend",
                "subtly-wrong", "--cases", str(small), "--out", str(out))
    assert r.returncode == 1, r.stderr
    doc = load(out)
    fails = [x for x in doc["results"] if x["status"] == "fail" and x["reduction"] == "none"]
    # log(1 + e^-|x|) rounds to 0 for the confident rows: x = -50 (y = 0) and x = 40 (y = 1)
    value = next(x for x in fails if x["check"] == "value")
    assert value["message"].startswith("2 of 4 element(s)"), value
    assert value["worst"]["inputs"]["input"] in (-50.0, 40.0) and value["worst"]["got"] == 0
    # its gradient σ(x) − y is 0 at x = 40, y = 1 where the exact one is −4.2e−18: the
    # target counts as its coefficients 1 − y and y, so an exact hard label is exact
    grad = [x for x in fails if x["check"] == "grad.input"]
    assert grad and all(g["message"].startswith("1 of 4 element(s)") for g in grad), grad
    assert all(g["worst"]["inputs"] == {"input": 40.0, "target": 1.0, "weight": None,
                                        "pos_weight": None} for g in grad)
    assert "FAIL subtly-wrong/log-of-1-plus" in r.stderr


def test_aborting_and_hanging_workers_leave_a_complete_report(small, tmp_path):
    out = tmp_path / "out"
    r = harness("report", "--plugin", "tests.plugins.crashy:BACKENDS", "--backend", "numpy",
                "--backend", "aborting", "--backend", "hanging", "--cases", str(small),
                "--dtype", "float64", "--timeout", "2", "--out", str(out))
    assert r.returncode == 1, r.stderr
    doc = load(out)
    by = {}
    for x in doc["results"]:
        by.setdefault(x["backend"], []).append(x)
    # numpy: every call judged, all formula checks pass
    assert {x["reduction"] for x in by["numpy"]} == {"none", "mean", "sum"}
    assert all(x["status"] == "pass" for x in by["numpy"] if x["implementation"] == "formula")
    for name, why in (("aborting", "SIGABRT"), ("hanging", "did not finish within 2 s")):
        errors = [x for x in by[name] if x["status"] == "error"]
        assert [x["reduction"] for x in errors] == ["sum"], by[name]
        assert why in errors[0]["message"]
        assert all(x["status"] == "pass" for x in by[name] if x["reduction"] != "sum")


@pytest.mark.parametrize("args, message", [
    (["report", "--backend", "nope"], "unknown backend 'nope'"),
    (["report", "--plugin", "no_such_mod:X"], "cannot be imported"),
    (["report", "--cases", "does/not/exist.yaml"], "no such file"),
    (["report", "--dtype", "float8"], "invalid choice"),
    (["report", "--examples", "-1"], "--examples must be 0 or more"),
    (["report", "--seed", "abc"], "invalid int value"),
    # an option the command does not have: that command's usage and its --help
    (["report", "--no-shrink"], "unrecognized arguments: --no-shrink. Run `python -m harness "
                                "report --help`"),
])
def test_bad_usage_exits_2_without_traceback(args, message, tmp_path):
    r = harness(*args, "--out", str(tmp_path / "o"))
    assert r.returncode == 2, r.stderr
    assert message in r.stderr
    assert "Traceback" not in r.stderr


def test_broken_case_file_exits_2_naming_file_and_line(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("cases:\n  - name: x\n    input: [1.0, 2.0]\n    target: [1.0]\n")
    for args in (["cases", str(bad)], ["report", "--cases", str(bad), "--out", str(tmp_path)]):
        r = harness(*args)
        assert r.returncode == 2
        assert f"{bad}:" in r.stderr or "bad.yaml:" in r.stderr
        assert "Traceback" not in r.stderr


def test_cases_lists_the_shipped_cases():
    r = harness("cases")
    assert r.returncode == 0, r.stderr
    assert "all valid" in r.stdout


def test_backends_lists_every_backend_with_json():
    r = harness("backends", "--json")
    assert r.returncode == 0, r.stderr
    names = {b["name"] for b in json.loads(r.stdout)}
    assert {"numpy", "torch", "tensorflow", "jax"} <= names


def test_second_device_is_compared_with_cpu(small, tmp_path):
    out = tmp_path / "out"
    r = harness("report", "--plugin", "tests.plugins.crashy:TwoDevices", "--backend",
                "two-devices", "--cases", str(small), "--out", str(out))
    doc = load(out)
    vs = [x for x in doc["results"] if x["check"] == "vs-cpu"]
    assert vs and all(x["device"] == "fake:0" for x in vs), r.stderr
    assert any("differs from cpu by up to 1 ulp" in x["message"] for x in vs)


def test_same_seed_same_report_apart_from_timings(small, tmp_path):
    docs = []
    for run in ("a", "b"):
        out = tmp_path / run
        r = harness("report", "--backend", "numpy", "--cases", str(small), "--examples", "6",
                    "--seed", "7", "--shrink", "0", "--out", str(out))
        assert r.returncode in (0, 1), r.stderr
        doc = load(out)
        docs.append([{k: v for k, v in x.items() if k != "duration_s"} for x in doc["results"]])
        assert doc["run"]["examples"] == 6 and doc["coverage"]["tables"]
    assert docs[0] == docs[1]
    assert any(x["case"].startswith("generated/s7-") for x in docs[0])


def test_device_narrows_the_report(small, tmp_path):
    out = tmp_path / "cpu"
    r = harness("report", "--plugin", "tests.plugins.crashy:TwoDevices", "--backend",
                "two-devices", "--device", "fake:0", "--cases", str(small), "--out", str(out))
    assert r.returncode in (0, 1), r.stderr
    devices = {x["device"] for x in load(out)["results"]}
    assert devices == {"fake:0"}


def test_pytest_backend_and_device_narrow_the_conformance_suite():
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    r = subprocess.run([sys.executable, "-m", "pytest", "tests/test_conformance.py", "-q",
                        "--collect-only", "-p", "no:cacheprovider", "--backend", "numpy",
                        "--device", "cpu", "--dtype", "float64"],
                       cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stdout + r.stderr
    ids = [ln for ln in r.stdout.splitlines() if "test_conformance[" in ln]
    assert ids == ["tests/test_conformance.py::test_conformance[numpy-float64]"], ids
    r = subprocess.run([sys.executable, "-m", "pytest", "tests/test_conformance.py", "-q", "-rs",
                        "-p", "no:cacheprovider", "--backend", "numpy", "--device", "cuda:0",
                        "--dtype", "float32"],
                       cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "numpy has no device cuda:0 here (it has cpu)" in r.stdout


COLLECT_AND_LOOK = """
import os, sys, pytest
code = pytest.main([sys.argv[1], "-q", "-p", "no:cacheprovider", *sys.argv[2:]])
frameworks = [m for m in ("torch", "tensorflow", "jax") if m in sys.modules]
print("FRAMEWORKS", frameworks, "OMP", os.environ.get("OMP_NUM_THREADS"), "CODE", int(code))
"""


def test_collecting_the_suite_imports_no_framework_and_others_see_no_change():
    """Collection is fast and side-effect free; a session with no conformance item
    keeps the environment as it was (no single-threading forced on the user)."""
    env = {k: v for k, v in os.environ.items() if k != "OMP_NUM_THREADS"}
    env["PYTHONPATH"] = str(ROOT)
    r = subprocess.run([sys.executable, "-c", COLLECT_AND_LOOK, "tests/test_conformance.py",
                        "--collect-only"], cwd=ROOT, env=env, capture_output=True, text=True,
                       timeout=300)
    assert "FRAMEWORKS [] OMP None CODE 0" in r.stdout, r.stdout + r.stderr
    r = subprocess.run([sys.executable, "-c", COLLECT_AND_LOOK, "tests/test_predicate.py"],
                       cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert "FRAMEWORKS [] OMP None CODE 0" in r.stdout, r.stdout + r.stderr


def test_the_frameworks_own_stderr_goes_to_the_workers_log(small, tmp_path):
    out = tmp_path / "out"
    r = harness("report", "--plugin", "tests.plugins.chatty:Chatty", "--backend", "chatty",
                "--cases", str(small), "--out", str(out), cwd=tmp_path)
    assert r.returncode in (0, 1), r.stderr
    terminal = r.stdout + r.stderr
    assert "start-up line" not in terminal and "a warning of the framework" not in terminal
    log = (out / "workers.log").read_text()
    assert "the framework's own start-up line" in log and "a warning of the framework" in log
    assert f"their workers' stderr) are in {out / 'workers.log'}" in r.stderr


def test_a_bad_expectations_file_is_exit_2_with_file_line_and_fix(small, tmp_path):
    bad = tmp_path / "mine.yaml"
    bad.write_text("expectations:\n- backend: numpy\n  kind: accuracy\n"
                   "  reason: a reason that is long enough\n  where: input < -16 and tagret == 0\n")
    r = harness("report", "--backend", "numpy", "--cases", str(small), "--known", str(bad),
                "--out", str(tmp_path / "out"))
    assert r.returncode == 2, r.stdout + r.stderr
    assert f"{bad.name}:5:" in r.stderr and "tagret" in r.stderr and "target" in r.stderr
    assert "Traceback" not in r.stderr and r.stderr.count("\n") == 1


@pytest.mark.parametrize("request_fields, message", [
    ({"backends": ("nope",)}, "unknown backend 'nope'"),
    ({"cases": ("does/not/exist.yaml",)}, "no such file"),
    ({"known": (Path("does/not/exist.yaml"),)}, "exist.yaml"),
])
def test_bad_input_is_refused_before_the_examples_are_generated(request_fields, message,
                                                                monkeypatch):
    """A mistyped backend or a missing file is refused at once: generating the default
    80 examples (a second or two) comes after every check that can refuse the command."""
    from harness.generate import seeding
    from harness.run import job
    from harness.run.registry import UsageError

    def generation_started(*args, **kwargs):
        raise AssertionError("examples generated before the input was checked")

    monkeypatch.setattr(seeding, "generate_cases", generation_started)
    with pytest.raises((UsageError, ValueError, OSError)) as exc:
        job.plan_report(job.ReportRequest(**request_fields))
    assert message in str(exc.value)
