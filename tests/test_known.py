"""Known discrepancies: a fail becomes known, a listed call that passes becomes fixed."""

import pytest

from harness import known
from harness.registry import UsageError


def write(tmp_path, text):
    p = tmp_path / "known.yaml"
    p.write_text(text)
    return p


BASE = {"backend": "torch", "implementation": "functional", "device": "cpu",
        "dtype": "float32", "case": "logits/x-minus-50", "reduction": "sum"}


def recs(*statuses):
    checks = ["value", "grad.input", "dtype"]
    return [{**BASE, "check": c, "status": s, "message": ""}
            for c, s in zip(checks, statuses, strict=False)]


ENTRY = """
known:
  - backend: torch
    implementation: [functional, module]
    case: "logits/*"
    check: value
    kind: cancellation
    reason: the textbook form cancels
    issue: https://example.invalid/1
"""


def test_fail_becomes_known(tmp_path):
    entries = known.load(write(tmp_path, ENTRY))
    out = known.apply(recs("fail", "pass", "pass"), entries)
    assert [r["status"] for r in out] == ["known", "pass", "pass"]
    assert out[0]["known"]["kind"] == "cancellation"
    assert out[0]["known"]["entry"].endswith("known.yaml:3")


def test_pass_under_an_entry_is_fixed(tmp_path):
    entries = known.load(write(tmp_path, ENTRY))
    out = known.apply(recs("pass", "fail", "pass"), entries)
    assert [r["status"] for r in out] == ["fixed", "fail", "pass"]
    assert "passes now" in out[0]["message"]


def test_other_calls_are_untouched(tmp_path):
    entries = known.load(write(tmp_path, ENTRY))
    other = [{**r, "backend": "jax"} for r in recs("fail", "pass", "pass")]
    assert [r["status"] for r in known.apply(other, entries)] == ["fail", "pass", "pass"]


def test_missing_reason_is_a_clear_error(tmp_path):
    with pytest.raises(UsageError, match=r"known.yaml:2: the entry has no `reason`"):
        known.load(write(tmp_path, "known:\n  - backend: torch\n    kind: x\n"))


def test_unknown_key_is_named(tmp_path):
    with pytest.raises(UsageError, match="unknown key"):
        known.load(write(tmp_path, "known:\n- backend: t\n  kind: k\n  reason: r\n  dtypes: x\n"))


def test_broken_yaml_names_the_line(tmp_path):
    with pytest.raises(UsageError, match=r"known.yaml:\d+: this is not valid YAML"):
        known.load(write(tmp_path, "known:\n  - backend: [torch\n"))


def test_shipped_list_loads():
    for entry in known.load(known.SHIPPED_KNOWN):
        assert entry.reason and entry.kind
