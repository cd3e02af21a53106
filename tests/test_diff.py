"""`python -m harness diff`: worse, better, changed, new, gone; exit 1 / 0 / 2."""

from __future__ import annotations

import argparse
import copy
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from harness.report import diff
from harness.report import packed as layout
from tests.test_report_html import XSS_CASE, synthetic_report

ROOT = Path(__file__).resolve().parent.parent


def _find(doc: dict[str, Any], **kw: Any) -> dict[str, Any]:
    return next(r for r in doc["results"] if all(r.get(k) == v for k, v in kw.items()))


@pytest.fixture(scope="module")
def pair() -> tuple[dict[str, Any], dict[str, Any]]:
    """An old report and a new one with one change of every kind, planted."""
    old = synthetic_report(n_random=1, xss=True)
    new = copy.deepcopy(old)
    at = dict(backend="torch", implementation="functional", dtype="float32", reduction="none")
    # worse by status: a pass that now fails
    _find(new, **at, case="random-normal-0000", check="value").update(
        status="fail", max_ulp=40.0, message="1 of 12 element(s) beyond the allowance")
    # worse by ulp only: still a pass, but 0.4 → 3 ulp (×7.5, +2.6)
    r = _find(new, **at, case="random-normal-0000", check="grad.input")
    _find(old, **at, case="random-normal-0000", check="grad.input")["max_ulp"] = 0.4
    r["max_ulp"] = 3.0
    # jitter that is not news: 0.3 → 0.9 ulp (×3 but +0.6 < 1 ulp)
    _find(old, **at, case="random-normal-0000", check="grad.target")["max_ulp"] = 0.3
    _find(new, **at, case="random-normal-0000", check="grad.target")["max_ulp"] = 0.9
    # better: the numpy naive float32 sweep now passes
    nv = dict(backend="numpy", implementation="naive", dtype="float32",
              case="sweep-logit-target-0", check="value")
    _find(new, **nv).update(status="pass", max_ulp=0.5)
    # changed, same severity: fail → error
    _find(new, backend="jax", implementation="jax.nn", dtype="float64",
          case="shape-mismatch").update(status="error", message="RuntimeError: boom")
    # gone and new
    gone = _find(new, backend="jax", implementation="optax", dtype="float16", case="empty",
                 reduction="sum", check="value")
    new["results"].remove(gone)
    added = copy.deepcopy(_find(new, **at, case=XSS_CASE, check="value"))
    added.update(case="brand-new-case", status="fail", message="new & failing <b>")
    new["results"].append(added)
    new["results"].append({**copy.deepcopy(added), "case": "brand-new-pass", "status": "pass"})
    new["backends"][1]["versions"] = {"torch": "2.13.0"}
    return old, new


def test_every_kind_of_change_is_classified(pair):
    old, new = pair
    d = diff.diff_reports(old, new)
    worse = {(c.key[0], c.key[1], c.key[4], c.key[6]) for c in d.worse}
    assert worse == {("torch", "functional", "random-normal-0000", "value"),
                     ("torch", "functional", "random-normal-0000", "grad.input")}
    assert [(c.key[1], c.key[4]) for c in d.better] == [("naive", "sweep-logit-target-0")]
    assert [(c.old["status"], c.new["status"]) for c in d.changed] == [("fail", "error")]
    assert [c.key[4] for c in d.gone] == ["empty"]
    assert sorted(c.key[4] for c in d.new) == ["brand-new-case", "brand-new-pass"]
    assert [c.key[4] for c in d.new_failures] == ["brand-new-case"]
    assert d.regressed
    assert ("torch", "torch", "1.0", "2.13.0") in d.versions
    assert d.unchanged == len(old["results"]) - 5  # 2 worse, 1 better, 1 changed, 1 gone


def test_thresholds_are_the_documented_ones(pair):
    old, new = pair
    # a looser factor forgives the 0.4 → 3 ulp pass; a tighter floor flags the jitter
    loose = diff.diff_reports(old, new, factor=10.0)
    assert all(c.key[6] != "grad.input" for c in loose.worse)
    tight = diff.diff_reports(old, new, min_ulp=0.5)
    assert any(c.key[6] == "grad.target" for c in tight.worse)
    # becoming non-finite is worse whatever the factor
    a, b = {"max_ulp": 1.0}, {"max_ulp": "inf"}
    assert diff._ulp_move(diff._ulp(a), diff._ulp(b), 1e9, 1e9) == 1
    assert diff._ulp_move(diff._ulp(b), diff._ulp(a), 1e9, 1e9) == -1


def _args(*argv: str) -> argparse.Namespace:
    p = argparse.ArgumentParser()
    diff.add_arguments(p)
    return p.parse_args(list(argv))


def _write(tmp_path: Path, name: str, doc: Any) -> Path:
    path = tmp_path / name
    path.write_text(json.dumps(doc), encoding="utf-8")
    return path


def test_exit_codes_and_text(pair, tmp_path, capsys):
    old, new = pair
    a, b = _write(tmp_path, "old.json", old), _write(tmp_path, "new.json", new)
    assert diff.run(_args(str(a), str(b))) == 1
    out = capsys.readouterr().out
    assert "WORSE (2)" in out and "NEW FAILING (1)" in out and "BETTER (1)" in out
    assert "pass → fail" in out and "torch torch 1.0 → 2.13.0" in out
    assert out.rstrip().endswith(f"{len(old['results']) - 5} unchanged")
    assert diff.run(_args(str(a), str(a))) == 0
    assert "no regression" in capsys.readouterr().out
    # reversed, the planted improvement (naive fail → pass) is a regression
    assert diff.run(_args(str(b), str(a))) == 1
    # and a diff with only improvements exits 0
    fixed_only = copy.deepcopy(old)
    _find(fixed_only, backend="numpy", implementation="naive", dtype="float32",
          case="sweep-logit-target-0", check="value").update(status="pass", max_ulp=0.5)
    c = _write(tmp_path, "fixed.json", fixed_only)
    assert diff.run(_args(str(a), str(c))) == 0
    assert "BETTER (1)" in capsys.readouterr().out


def test_html_diff_is_self_contained_and_escaped(pair, tmp_path, capsys):
    old, new = pair
    new = copy.deepcopy(new)
    _find(new, backend="numpy", implementation=old["results"][0]["implementation"],
          case=XSS_CASE, dtype="float32", reduction="none", check="value").update(
        status="fail", message="<script>alert(9)</script>")
    a, b = _write(tmp_path, "old.json", old), _write(tmp_path, "new.json", new)
    out = tmp_path / "sub" / "diff.html"
    assert diff.run(_args(str(a), str(b), "--html", str(out))) == 1
    page = out.read_text(encoding="utf-8")
    assert page.startswith("<!doctype html>")
    assert XSS_CASE not in page and "<script>alert(9)</script>" not in page
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    assert "<script" not in page and "http://" not in page and "https://" not in page
    assert "REGRESSED" in page
    capsys.readouterr()


@pytest.mark.parametrize("content, expect", [
    (None, "no such file"),
    ("<!doctype html><html></html>", "HTML page"),
    ('{"schema_version": 1, "results": []}\n{"x": 1}\n', "not valid JSON"),
    ("[1, 2, 3]", "top level is a JSON list"),
    ('{"schema_version": 4, "results": []}', "schema_version is 4"),
    ('{"schema_version": 1, "results": [{"backend": "x"}]}', "results[0] has no string"),
    ('{"schema_version": 3, "trials": {}}', "no 'calls'"),
    ('{"schema_version": 3, "calls": [{"backend": "x"}]}', "calls[0] has no string"),
    ('{"schema_version": 3, "calls": [{"backend": "x", "implementation": "y", "device": "z", '
     '"dtype": "float32", "case": "c", "checks": {"value": "bogus"}}]}', "unknown status"),
    ('{"results": []}', "no 'schema_version'"),
])
def test_bad_files_exit_2_with_one_paragraph(tmp_path, capsys, pair, content, expect):
    good = _write(tmp_path, "good.json", pair[0])
    bad = tmp_path / "bad.json"
    if content is not None:
        bad.write_text(content, encoding="utf-8")
    assert diff.run(_args(str(good), str(bad))) == 2
    err = capsys.readouterr().err
    assert expect in err and str(bad) in err and "report.json" in err
    assert err.count("\n") == 1 and "Traceback" not in err


def test_every_readable_schema_version_gives_the_same_diff(tmp_path, pair):
    """Version 3 files (calls and trials, each datum once) read back as the flat records
    of versions 1 and 2: the same diff from each."""
    old, new = pair
    flat = diff.diff_reports(old, new)
    v1 = {**copy.deepcopy(old), "schema_version": 1}
    for r in v1["results"]:
        r.pop("expected_by", None)
    for i, (a, b) in enumerate([(old, new), (v1, new)]):
        pa = tmp_path / f"a{i}.json"
        pa.write_text(json.dumps(a), encoding="utf-8")
        pb = tmp_path / f"b{i}.json"
        pb.write_text(layout.dumps(layout.pack(b)), encoding="utf-8")
        assert json.loads(pb.read_text())["schema_version"] == 3
        d = diff.diff_reports(diff.load(pa), diff.load(pb))
        for section in ("worse", "better", "changed", "new", "gone"):
            assert [c.key for c in getattr(d, section)] == \
                [c.key for c in getattr(flat, section)], section
        assert d.unchanged == flat.unchanged
    packed = diff.load(pb)
    assert [r["status"] for r in packed["results"]] == [r["status"] for r in new["results"]]


def test_a_folder_points_at_its_report(tmp_path, capsys, pair):
    (tmp_path / "run").mkdir()
    _write(tmp_path / "run", "report.json", pair[0])
    assert diff.run(_args(str(tmp_path / "run"), str(tmp_path / "run" / "report.json"))) == 2
    assert "run/report.json" in capsys.readouterr().err


def test_command_line_has_no_traceback(tmp_path):
    r = subprocess.run([sys.executable, "-m", "harness.report.diff", str(tmp_path / "a.json"),
                        str(tmp_path / "b.json")], cwd=ROOT, capture_output=True, text=True,
                       timeout=60)
    assert r.returncode == 2
    assert "Traceback" not in r.stderr and "a.json: no such file" in r.stderr
