"""Known discrepancies: a plain YAML list beside the cases, not code.

An entry names calls by glob patterns (backend, implementation, device, dtype, case,
reduction, check) and says why they fail. A `fail` or `error` it covers becomes
`known`; when every check it covers in a call now passes, those checks become
`fixed`, so an upstream fix is noticed rather than silently absorbed. Matching is
per call (one case × dtype × reduction on one backend implementation and device):
an entry must only name calls that really fail, which keeps the list honest.
"""

from __future__ import annotations

import fnmatch
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from harness.registry import UsageError

FIELDS = ("backend", "implementation", "device", "dtype", "case", "reduction", "check")
SHIPPED_KNOWN = Path(__file__).resolve().parent.parent / "cases" / "known.yaml"


@dataclass(frozen=True)
class Entry:
    patterns: dict[str, tuple[str, ...]]
    kind: str
    reason: str
    issue: str | None
    where: str  # file:line, so a `fixed` message says which entry to remove

    def matches_call(self, base: dict[str, Any]) -> bool:
        return all(_match(base.get(f), self.patterns[f]) for f in FIELDS if f != "check")

    def matches_check(self, check: str) -> bool:
        return _match(check, self.patterns["check"])

    def note(self) -> dict[str, Any]:
        return {"kind": self.kind, "reason": self.reason, "issue": self.issue,
                "entry": self.where}


def _match(value: Any, patterns: tuple[str, ...]) -> bool:
    return any(fnmatch.fnmatchcase(str(value), p) for p in patterns)


def load(path: str | Path | None = SHIPPED_KNOWN) -> list[Entry]:
    """Entries of a known-discrepancy file; a missing file is an empty list."""
    if path is None:
        return []
    path = Path(path)
    if not path.exists():
        return []
    text = path.read_text(encoding="utf-8")
    try:
        root = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = f"{mark.line + 1}" if mark else "?"
        raise UsageError(f"{path}:{line}: this is not valid YAML ({getattr(exc, 'problem', exc)})."
                         " Fix the syntax; `known:` must hold a list of mappings.") from None
    data = yaml.safe_load(text) or {}
    if not isinstance(data, dict) or not isinstance(data.get("known", []), list):
        raise UsageError(f"{path}:1: the file must be a mapping with a `known:` list. Wrap the "
                         "entries as `known:` followed by `- backend: ...` items.")
    nodes = _entry_nodes(root)
    entries = []
    for i, item in enumerate(data.get("known") or []):
        line = nodes[i].start_mark.line + 1 if i < len(nodes) else 1
        where = f"{path}:{line}"
        if not isinstance(item, dict):
            raise UsageError(f"{where}: each known entry must be a mapping. Write it as "
                             "`- backend: torch` with `reason:` and `kind:` keys.")
        unknown = sorted(set(item) - set(FIELDS) - {"kind", "reason", "issue"})
        if unknown:
            raise UsageError(f"{where}: unknown key(s) {', '.join(unknown)}. Valid keys: "
                             f"{', '.join((*FIELDS, 'kind', 'reason', 'issue'))}.")
        for key in ("backend", "kind", "reason"):
            if not item.get(key):
                raise UsageError(f"{where}: the entry has no `{key}`. Every entry names its "
                                 "backend and says what kind of discrepancy it is and why.")
        patterns = {}
        for f in FIELDS:
            v = item.get(f, "*")
            patterns[f] = tuple(str(x) for x in v) if isinstance(v, list) else (str(v),)
        entries.append(Entry(patterns, str(item["kind"]), str(item["reason"]).strip(),
                             item.get("issue"), where))
    return entries


def _entry_nodes(root: yaml.Node | None) -> list[yaml.Node]:
    if not isinstance(root, yaml.MappingNode):
        return []
    for key, value in root.value:
        if key.value == "known" and isinstance(value, yaml.SequenceNode):
            return list(value.value)
    return []


def apply(records: list[dict[str, Any]], entries: list[Entry]) -> list[dict[str, Any]]:
    """Mark one call's records `known` or `fixed` according to the entries (in place)."""
    if not records or not entries:
        return records
    base = records[0]
    for entry in entries:
        if not entry.matches_call(base):
            continue
        covered = [r for r in records if entry.matches_check(r["check"])]
        failing = [r for r in covered if r["status"] in ("fail", "error")]
        if failing:
            for r in failing:
                r["status"] = "known"
                r["known"] = entry.note()
        elif any(r["status"] == "pass" for r in covered) and not any(
                r["status"] == "known" for r in covered):
            for r in covered:
                if r["status"] == "pass":
                    r["status"] = "fixed"
                    r["known"] = entry.note()
                    r["message"] = (f"{r['message']}; listed as known at {entry.where} "
                                    f"({entry.reason}) but passes now: remove or narrow the entry")
    return records
