"""The report's schema check: fast on large reports, and still strict."""

import copy
import json
from pathlib import Path

import jsonschema
import pytest

from harness import report
from harness.report import packed as layout

EXAMPLE = Path(__file__).resolve().parent.parent / "reports" / "example" / "report.json"


@pytest.fixture(scope="module")
def big():
    return json.loads(EXAMPLE.read_text())


def test_a_large_report_validates(big):
    """Validation by record shape (harness/report/__init__.py) accepts a real report; its
    speed is measured by the benchmark of the report's phases, not asserted here."""
    report.validate(big)
    assert big["schema_version"] == 3 and "results" not in big  # calls and trials
    assert len(layout.records(big)) > 10000


@pytest.mark.parametrize("field, value", [
    ("status", "bogus"), ("check", "Not A Check"), ("max_ulp", "many"), ("duration_s", -1.0),
    ("message", None),
])
def test_one_bad_record_deep_in_a_large_report_is_caught(big, field, value):
    """A record read back flat (harness.report.load), spoilt, is caught in the form
    report.json would give it."""
    doc = layout.unpack(copy.deepcopy(big))
    numeric = [r for r in doc["results"] if r["check"] == "value" and r.get("worst")]
    numeric[len(numeric) // 2 + 17][field] = value
    with pytest.raises(jsonschema.ValidationError):
        report.validate(doc)


@pytest.mark.parametrize("where", ["bare status", "call", "trial"])
def test_one_bad_entry_of_report_json_is_caught(big, where):
    doc = copy.deepcopy(big)
    call = doc["calls"][len(doc["calls"]) // 2 + 17]
    if where == "bare status":
        call["checks"]["shape"] = "bogus"
    elif where == "call":
        del call["device"]
    else:
        trial = list(doc["trials"].values())[len(doc["trials"]) // 2]
        quantity = next(iter(trial["checks"].values()))
        next(iter(quantity["at"].values()))["expected"] = "many"
    with pytest.raises(jsonschema.ValidationError):
        report.validate(doc)


def test_report_json_reads_back_as_the_records_it_was_made_from():
    """Packing (one call per line, each trial's data once, derivable fields left out)
    loses nothing but the sweep plots' precision (ulps to 3 digits)."""
    from tests.test_report_html import synthetic_report

    doc = synthetic_report(n_random=2)
    text = layout.dumps(layout.pack(doc))
    back = layout.unpack(json.loads(text))["results"]
    assert len(back) == len(doc["results"])
    for old, new in zip(doc["results"], back, strict=True):
        old, new = dict(old), dict(new)
        if "profile" in old:
            op, np_ = old.pop("profile"), new.pop("profile")
            assert op["x"] == np_["x"] and op["allowance"] == np_["allowance"]
            assert [layout._round(u, 3) for u in op["ulp"]] == np_["ulp"]
        assert layout.same(old, new), (old, new)
    assert len(text) < len(json.dumps(doc)) / 2


def test_report_json_is_flat_by_default_and_packed_on_request(tmp_path):
    """The default layout is version 2's `results` (one self-describing record per
    check, the layout every consumer relies on); --packed-json writes version 3."""
    from tests.test_report_html import synthetic_report

    doc = synthetic_report(n_random=2)
    doc["schema_version"] = 2
    flat = json.loads(report.write_json(doc, tmp_path / "flat").read_text())
    assert flat["schema_version"] == 2 and "calls" not in flat
    assert len(flat["results"]) == len(doc["results"])
    for r in flat["results"]:
        assert {"backend", "implementation", "device", "dtype", "case", "check", "status",
                "message"} <= set(r)
    report.validate(flat)
    packed = json.loads(report.write_json(doc, tmp_path / "packed", packed=True).read_text())
    assert packed["schema_version"] == 3 and "results" not in packed
    report.validate(packed)
    back = report.load(tmp_path / "packed" / "report.json")["results"]
    assert [(r["case"], r["check"], r["status"]) for r in back] == \
        [(r["case"], r["check"], r["status"]) for r in flat["results"]]


def test_rewriting_report_json_reuses_the_records_text_only_while_they_are_unchanged(
        tmp_path):
    """The end-of-run rewrite (every phase in `run`) reuses the records' streamed lines;
    the file is what a fresh write gives, and a record added in between is not lost to
    a stale text."""
    from tests.test_report_html import synthetic_report

    doc = synthetic_report(n_random=2)
    sink = report.Sink(tmp_path / "run")
    sink.add(doc["results"])
    report.write_json(doc, tmp_path / "a", lines=sink.lines)
    doc["run"] = {**doc.get("run", {}), "phases": [{"phase": "validate", "status": "ok",
                                                      "seconds": 0.1, "why": None}]}
    reused = report.write_json(doc, tmp_path / "a", lines=sink.lines).read_text()
    assert reused == report.write_json(doc, tmp_path / "fresh").read_text()
    assert json.loads(reused)["run"]["phases"][0]["phase"] == "validate"
    doc["results"].append(dict(doc["results"][0], case="added/after-the-first-write"))
    again = json.loads(report.write_json(doc, tmp_path / "a", lines=sink.lines).read_text())
    assert again["results"][-1]["case"] == "added/after-the-first-write"
    sink.close()


def test_report_json_takes_the_streamed_lines_of_unchanged_records(tmp_path):
    """report.json reuses each record's line from results.partial.jsonl (Sink.lines); a
    record relabelled after it arrived (a `fixed` one) is forgotten and written anew,
    so the file is exactly what a fresh serialization gives."""
    from tests.test_report_html import synthetic_report

    doc = synthetic_report(n_random=2)
    sink = report.Sink(tmp_path / "run")
    sink.add(doc["results"])
    streamed = (tmp_path / "run" / "results.partial.jsonl").read_text().splitlines()
    assert [json.loads(line) for line in streamed] == doc["results"]
    changed = doc["results"][0]
    changed["status"], changed["message"] = "fixed", "relabelled after it arrived"
    sink.forget([changed])
    doc["results"].reverse()  # the canonical order sorts the records: lines follow them
    reused = report.write_json(doc, tmp_path / "a", lines=sink.lines)
    assert reused.read_text() == report.write_json(doc, tmp_path / "fresh").read_text()
    sink.close()


@pytest.mark.parametrize("spoil", ["unknown field", "bad status", "sweep without x"])
def test_the_findings_are_checked_too(spoil):
    """`findings` (what the page shows, harness/report/findings.py) is described field by
    field: flat and packed, a spoilt entry is caught."""
    from tests.test_report_html import synthetic_report

    doc = synthetic_report(n_random=0, xss=False)
    doc = report.build(doc["backends"], doc["results"], doc["run"], doc["cases"])
    report.validate(doc)
    found = doc["findings"]
    if spoil == "unknown field":
        found["story"]["pairs"][0]["sweeps"][0]["surprise"] = 1
    elif spoil == "bad status":
        found["matrix"][0]["dtypes"]["float32"]["counts"]["bogus"] = 1
    else:
        del found["story"]["pairs"][0]["sweeps"][0]["first_out"]["x"]
    with pytest.raises(jsonschema.ValidationError):
        report.validate(doc)
    with pytest.raises(jsonschema.ValidationError):
        report.validate(doc, packed=True)
