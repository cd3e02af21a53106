"""The report's schema check: fast on large reports, and still strict."""

import copy
import json
import time
from pathlib import Path

import jsonschema
import pytest

from harness import report

EXAMPLE = Path(__file__).resolve().parent.parent / "reports" / "example" / "report.json"


@pytest.fixture(scope="module")
def big():
    return json.loads(EXAMPLE.read_text())


def test_a_large_report_validates_quickly(big):
    start = time.perf_counter()
    report.validate(big)
    assert len(big["results"]) > 10000
    assert time.perf_counter() - start < 10


@pytest.mark.parametrize("field, value", [
    ("status", "bogus"), ("check", "Not A Check"), ("max_ulp", "many"), ("duration_s", -1.0),
    ("message", None),
])
def test_one_bad_record_deep_in_a_large_report_is_caught(big, field, value):
    doc = copy.deepcopy(big)
    doc["results"][len(doc["results"]) // 2 + 17][field] = value
    with pytest.raises(jsonschema.ValidationError):
        report.validate(doc)
