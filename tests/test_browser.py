"""The page in a real browser: it opens from disk offline, runs without console errors,
and its matrix, filters and detail views work.

Needs Debian's `chromium` package (and, for the interactive test, `playwright` from
PyPI, driving that same binary: no browser download). Each test skips with the
reason when its piece is missing.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from harness.report.html import render
from tests.test_report_html import XSS_CASE, synthetic_report

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser") or (
    "/usr/bin/chromium" if Path("/usr/bin/chromium").exists() else None)
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
         "--disable-component-update", "--no-first-run"]
# one worker under --dist loadgroup: the module's page and browser are made once
pytestmark = pytest.mark.xdist_group("browser")
needs_chromium = pytest.mark.skipif(
    CHROMIUM is None, reason="chromium is not installed (Debian: apt-get install chromium)")


EMPTY = {"schema_version": 2, "created": "2025-01-01T00:00:00+00:00",
         "environment": {"python": "3", "platform": "p", "cpu": "c"}, "backends": [],
         "results": [], "summary": {}}


@pytest.fixture(scope="module")
def synthetic() -> dict:
    return synthetic_report(n_random=4)


@pytest.fixture(scope="module")
def page_path(tmp_path_factory, synthetic) -> Path:
    path = tmp_path_factory.mktemp("page") / "report.html"
    path.write_text(render(synthetic), encoding="utf-8")
    return path


@needs_chromium
@pytest.mark.parametrize("which", ["synthetic", "empty"])
def test_headless_chromium_runs_the_page_without_console_messages(page_path, tmp_path, which):
    """The plain command a CI job would use: the script ran to the end, nothing logged."""
    if which == "empty":  # a run where nothing ran must not break the script either
        page_path = tmp_path / "empty.html"
        page_path.write_text(render(EMPTY), encoding="utf-8")
    r = subprocess.run([CHROMIUM, *FLAGS, f"--user-data-dir={tmp_path / 'profile'}",
                        "--enable-logging=stderr", "--v=0", "--dump-dom",
                        page_path.as_uri()], capture_output=True, text=True, timeout=90)
    assert r.returncode == 0, r.stderr[-2000:]
    dom = r.stdout
    assert 'data-ready="1"' in dom  # report.js got to its last line
    assert ('class="row"' in dom) == (which == "synthetic")  # it drew the explorer's rows
    # every console message (errors, uncaught exceptions) is logged as CONSOLE
    console = [ln for ln in r.stderr.splitlines() if ":CONSOLE" in ln or "Uncaught" in ln]
    assert not console, "\n".join(console)


@pytest.fixture(scope="module")
def browser():
    if CHROMIUM is None:
        pytest.skip("chromium is not installed (Debian: apt-get install chromium)")
    sync_api = pytest.importorskip(
        "playwright.sync_api", reason="playwright is not installed (pip install playwright)")
    with sync_api.sync_playwright() as p:
        b = p.chromium.launch(executable_path=os.path.realpath(CHROMIUM), args=FLAGS[1:])
        yield b
        b.close()


def test_filters_matrix_and_details_in_a_browser(browser, page_path, tmp_path, synthetic):
    page = browser.new_page(viewport={"width": 1400, "height": 1000})
    problems: list[str] = []
    fetched: list[str] = []
    page.on("console", lambda m: problems.append(f"console.{m.type}: {m.text}"))
    page.on("pageerror", lambda e: problems.append(f"page error: {e}"))
    page.on("dialog", lambda d: (problems.append(f"dialog: {d.message}"), d.dismiss()))
    page.on("request", lambda req: fetched.append(req.url)
            if not req.url.startswith(("file:", "data:", "about:")) else None)
    page.goto(page_path.as_uri())
    page.wait_for_selector("html[data-ready='1']", timeout=15_000)

    # the matrix: a cell per backend/implementation@device × dtype, coloured by its worst
    rows = page.locator("#matrix tbody tr")
    assert rows.count() == 13
    naive32 = page.locator("#matrix tr", has_text="numpy / naive").locator(
        "td[data-dtype='float32']")
    assert "s-fail" in naive32.get_attribute("class")

    # clicking a count lists exactly those results
    fail_button = naive32.locator("button[data-status='fail']")
    n_fail = int(fail_button.locator("b").inner_text())
    fail_button.click()
    assert page.locator(".match-count").first.inner_text().startswith(f"{n_fail} of ")
    assert page.locator("select[data-filter='backend']").input_value() == "numpy"
    assert page.locator("select[data-filter='dtype']").input_value() == "float32"
    statuses = page.locator("#explorer tbody tr.row td.status").all_inner_texts()
    assert statuses and set(statuses) == {"fail"}
    # a message the page left out because the numbers say it reads as the judge wrote it
    shown = page.locator("#explorer tbody tr.row")
    for k in range(shown.count()):
        i = int(shown.nth(k).get_attribute("data-index"))
        assert shown.nth(k).locator("td.msg").inner_text() == synthetic["results"][i]["message"]

    # a filter: only grad.input checks
    page.select_option("select[data-filter='check']", "grad.input")
    checks = page.locator("#explorer tbody tr.row td:nth-child(6)").all_inner_texts()
    assert checks and set(checks) == {"grad.input"}

    # the detail view: the worst element and a reproduction built from its inputs
    page.locator("#explorer tbody tr.row").first.click()
    detail = page.locator("#explorer tr.detail")
    assert detail.locator("h4", has_text="Worst element").count() == 1
    repro = detail.locator("pre.repro").inner_text()
    assert "Call(implementation=\"naive\"" in repro and "grads=(\"input\",)" in repro
    assert re.search(r"input=np\.array\(\[-?[\d.]+(e-?\d+)?\]\)", repro), repro

    # severity sort: errors first, then fails by how far past the allowance
    page.click("button.plain:has-text('reset filters')")
    first = page.locator("#explorer tbody tr.row td.status").first.inner_text()
    assert first == "error"

    # a case named like markup is text, not markup, wherever it shows
    page.fill("input[data-filter='text']", "alert(1)")
    page.wait_for_function("name => [...document.querySelectorAll('#explorer td.case-name')]"
                           ".every(td => td.textContent === name)", arg=XSS_CASE)
    assert page.locator("#explorer td.case-name").first.inner_text() == XSS_CASE
    assert page.locator("#explorer script").count() == 0

    # plots: one SVG panel per dtype, with the allowance drawn, and edge-case tables
    assert page.locator("#plot-panels .plot svg").count() == 4
    assert page.locator("#plot-panels path.allowance").count() >= 4
    assert page.locator("#edge-area table.edge").count() >= 3

    page.screenshot(path=str(tmp_path / "report.png"), full_page=True)
    extra = os.environ.get("BCE_REPORT_SCREENSHOT")
    if extra:  # e.g. BCE_REPORT_SCREENSHOT=/tmp/report.png, to look at the page once
        page.screenshot(path=extra, full_page=True)
    assert (tmp_path / "report.png").stat().st_size > 10_000
    assert not problems, problems
    assert not fetched, fetched
    page.close()
