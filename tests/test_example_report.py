"""reports/example/ lets people look before installing: it must stay a valid report."""

import json
from pathlib import Path

from harness import report

EXAMPLE = Path(__file__).resolve().parent.parent / "reports" / "example"
COMMAND = ("python -m harness report --dtype float32 --examples 0 --packed-json "
           "--cases cases/seeds.yaml --cases cases/extremes.yaml --out reports/example")


def test_example_report_is_current_with_the_schema():
    doc = json.loads((EXAMPLE / "report.json").read_text())
    report.validate(doc)
    assert doc["summary"]["pass"] > 0
    assert doc["summary"]["fixed"] == 0  # a narrowed run never claims a fix
    assert sum(p.stat().st_size for p in EXAMPLE.iterdir()) <= 3_000_000
    names = {b["name"] for b in doc["backends"]}
    assert {"numpy", "torch", "tensorflow", "jax"} <= names


def test_example_html_is_self_contained():
    html = (EXAMPLE / "report.html").read_text()
    assert html.startswith("<!doctype html>")
    assert "http://" not in html.replace("http://www.w3.org", "")
    assert "<script src=" not in html and "<link rel=\"stylesheet\" href=" not in html


def test_the_command_that_made_it_is_documented():
    readme = (Path(__file__).resolve().parent.parent / "README.md").read_text()
    assert COMMAND in readme
