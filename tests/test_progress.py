"""The terminal: bars on a tty, plain lines in a log, a summary table, NO_COLOR, --quiet."""

from __future__ import annotations

import io
import re
from pathlib import Path

import pytest

from harness.report.terminal import Console, summary_table
from tests.test_report_html import synthetic_report

ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")
JSON, HTML = Path("out/report.json"), Path("out/report.html")


@pytest.fixture(scope="module")
def report():
    return synthetic_report(n_random=0)


def _run(console: Console, report) -> None:
    console.start(["numpy", "torch"], cases=9, trials=108)
    for done in range(0, 11):
        console.on_progress("numpy", done, 10)
    console.on_progress("torch", 0, 0)  # nothing in this selection
    console.finish(report, JSON, HTML)
    console.close()


def test_piped_output_is_plain_lines(report, monkeypatch):
    monkeypatch.delenv("NO_COLOR", raising=False)
    buf = io.StringIO()
    _run(Console(stream=buf), report)
    out = buf.getvalue()
    assert not ANSI.search(out) and "\r" not in out
    lines = out.splitlines()
    # one line per backend when it finishes, not one per call
    assert sum("numpy:" in ln for ln in lines) == 1
    assert any(ln.startswith("numpy: 10 calls done in") for ln in lines)
    assert "torch: nothing to run" in out
    assert "mxnet: not run — mxnet is not installed" in out
    assert "9 cases → 108 trials" in lines[0]
    # the summary table names each backend/implementation with its counts
    assert re.search(r"numpy/naive\s*│\s*\d+\s*│\s*\d+", out)
    assert "slowest call" in out and re.search(r"\d+ ms: float", out)
    # the unexpected failures, in the format CI logs are grepped for
    assert re.search(r"^  FAIL numpy/naive@cpu float\d+ \S+ \[\w+\] \w", out, re.M)
    assert "more in out/report.json" in out
    assert lines[-1].startswith(f"{len(report['results'])} results: pass ")
    assert lines[-1].endswith("→ out/report.json and out/report.html")


def test_quiet_prints_only_the_final_line(report):
    buf = io.StringIO()
    _run(Console(quiet=True, stream=buf), report)
    assert buf.getvalue().count("\n") == 1
    assert buf.getvalue().startswith(f"{len(report['results'])} results:")


def test_terminal_gets_bars_and_colour(report, monkeypatch):
    monkeypatch.delenv("NO_COLOR", raising=False)
    buf = io.StringIO()
    _run(Console(stream=buf, live=True, width=120), report)
    out = buf.getvalue()
    assert ANSI.search(out)  # colour and cursor control
    assert "━" in out  # a progress bar was drawn
    assert "10/10" in out


def test_no_color_is_honoured(report, monkeypatch):
    monkeypatch.setenv("NO_COLOR", "1")
    buf = io.StringIO()
    _run(Console(stream=buf, live=True, width=120), report)
    colours = [m for m in ANSI.findall(buf.getvalue()) if re.fullmatch(r"\x1b\[[0-9;]*m", m)
               and re.search(r"\[(3\d|9\d|38)", m)]
    assert not colours, colours[:5]


def test_markup_in_names_is_printed_as_text(report):
    doc = dict(report)
    doc["results"] = [dict(r) for r in report["results"][:3]]
    doc["results"][0].update(implementation="[bold red]x[/]", status="fail",
                             message="[link=http://x]y[/link]")
    buf = io.StringIO()
    Console(stream=buf).finish(doc, JSON, HTML)
    out = buf.getvalue()
    assert "[bold red]x[/]" in out and "[link=http://x]y[/link]" in out


def test_close_is_idempotent_and_safe_before_start():
    c = Console(stream=io.StringIO(), live=True)
    c.close()
    c.start(["a"], 1, 1)
    c.close()
    c.close()


def test_summary_table_of_an_empty_report():
    buf = io.StringIO()
    Console(stream=buf).console.print(summary_table({"results": [], "backends": []}))
    assert "no results" in buf.getvalue()
