"""The packed layout of report.json (schema_version 3, `report --packed-json`): each
datum once.

The default report.json is flat (schema_version 2: `results`, one self-describing
record per check), the layout every consumer of the report can rely on. The packed
layout is for archiving many runs or shipping a report where size matters.

In memory a report is flat: `results` holds one record per check
(`harness.records.Record`), and each record repeats its call (backend,
implementation, device, dtype, case, reduction, source, duration) and its trial's
exact numbers (the expected values of a small result, a sweep's logits and
allowance, the arguments and the exact value at its worst element), which are the
same for every backend and implementation. Written like that, a default run was
58 MB of JSON. On disk (`pack`), schema version 3 writes instead:

* `calls`: one object per call, with its `backend`, `implementation`, `device`,
  `dtype`, `case`, `reduction` and `duration_s`, and its `checks`: the records
  without those fields;
* `trials`: per trial (`"case|dtype|reduction"`), `x` (a sweep's logits) and per
  checked quantity (`checks`): `elements`, `measured_in`, `expected` (every exact
  value of a small result), `profile.allowance` (along a sweep), and `at`: for
  every element some record names (key: its index, `"2,5"`), its `expected`,
  `allowance`, `cond` and `inputs`.

A check record then leaves out what another field already says, and only that:

* `largest`, when it is the worst element (the element then also leaves out its
  `ulp`: it is `max_ulp`); `"largest": null` says a record had none;
* in an element, the fields equal to the trial's `at` entry for its index (an
  element without `expected` takes the missing ones from there);
* `allowance` and `cond`, when they are the worst element's; `elements` and
  `measured_in`, when they are the trial's; `values.expected`, `profile.x` and
  `profile.allowance`, when they are the trial's;
* `expected_by` entries become the expectation's `id`, when the report's
  `expectations` section says the same kind, reason and upstream for it;
* `message`, when it is empty or exactly what the record's numbers say
  (`harness.records.quantity_message`: the judge's own words for a numeric check);
* a sweep's per-point ulps (`profile.ulp`, plot data) keep 4 significant digits.

`unpack` puts every one of them back, so a version 3 file reads as the same flat
records (`harness.report.load`, `harness diff`); version 1 and 2 files are flat
already. Everything else is written as the run measured it.
"""

from __future__ import annotations

import json
import math
from typing import Any

from harness.records import NUMERIC_CHECKS, quantity_message

#: The fields a call's records share, written once on the call.
CALL_FIELDS: tuple[str, ...] = ("backend", "implementation", "device", "dtype", "case",
                                "reduction", "source", "duration_s")
#: An element's fields that depend on the trial, not on the backend.
SHARED_ELEMENT_FIELDS: tuple[str, ...] = ("expected", "allowance", "cond", "inputs")
#: Significant digits kept of a sweep's per-point ulps (they draw the plots).
PROFILE_DIGITS = 3
#: The arguments an element's `inputs` names (null ones are left out of `trials`).
ARGUMENTS: tuple[str, ...] = ("input", "target", "weight", "pos_weight")

_MISSING = object()
_NUMERIC = frozenset(NUMERIC_CHECKS)


def trial_key(case: Any, dtype: Any, reduction: Any) -> str:
    """`case|dtype|reduction`: a case name may hold `|`, a dtype and a reduction do not."""
    return f"{case}|{dtype}|{'' if reduction is None else reduction}"


def index_key(index: Any) -> str:
    return ",".join(str(i) for i in index) if isinstance(index, list) else str(index)


def same(a: Any, b: Any) -> bool:
    """Equal as JSON: 1 is not 1.0 and -0.0 is not 0.0."""
    if type(a) is not type(b):
        return False
    if isinstance(a, float):
        return a == b and (a != 0.0 or math.copysign(1.0, a) == math.copysign(1.0, b))
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(same(v, b[k]) for k, v in a.items())
    if isinstance(a, list):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b, strict=True))
    return a == b


def _round(v: Any, digits: int) -> Any:
    if type(v) is float and math.isfinite(v) and v:
        return float(format(v, f".{digits}g"))
    return v


# -------------------------------------------------------------------- pack ----

def is_packed(doc: dict[str, Any]) -> bool:
    return "calls" in doc and "results" not in doc


def pack(doc: dict[str, Any]) -> dict[str, Any]:
    """The report as report.json holds it (schema version 3). A packed doc is returned
    as it is; a flat one (any version) is laid out anew."""
    if is_packed(doc):
        return doc
    from harness.records import PACKED_SCHEMA_VERSION

    cases = doc.get("cases") or {}
    notes = {e.get("id"): e for e in doc.get("expectations") or [] if isinstance(e, dict)}
    trials: dict[str, dict[str, Any]] = {}
    calls: list[dict[str, Any]] = []
    current: dict[str, Any] | None = None
    call_values: tuple[Any, ...] = ()
    seen_checks: set[Any] = set()
    for r in doc.get("results") or []:
        values = tuple(r.get(f, _MISSING) for f in CALL_FIELDS)
        if (current is None or not _same_call(values, call_values)
                or r.get("check") in seen_checks):
            current = {f: v for f, v in zip(CALL_FIELDS, values, strict=True)
                       if v is not _MISSING}
            source = (cases.get(r.get("case")) or {}).get("source")
            if source is not None and same(current.get("source"), source):
                del current["source"]
            current["checks"] = {}
            calls.append(current)
            call_values, seen_checks = values, set()
        seen_checks.add(r.get("check"))
        rec = _pack_record(r, trials, notes)
        check = rec.pop("check", None)
        # a check that says nothing but its status is written as the status
        bare = list(rec) == ["status"] and isinstance(rec["status"], str)
        current["checks"][str(check)] = rec["status"] if bare else rec
    out = {k: v for k, v in doc.items() if k != "results"}
    out["schema_version"] = PACKED_SCHEMA_VERSION
    out["trials"] = trials
    out["calls"] = calls
    return out


def _same_call(a: tuple[Any, ...], b: tuple[Any, ...]) -> bool:
    return all(x is y or (x is not _MISSING and y is not _MISSING and same(x, y))
               for x, y in zip(a, b, strict=True))


def _pack_record(r: dict[str, Any], trials: dict[str, dict[str, Any]],
                 notes: dict[Any, dict[str, Any]]) -> dict[str, Any]:
    rec = {k: v for k, v in r.items() if k not in CALL_FIELDS}
    message = rec.get("message", _MISSING)
    check = rec.get("check")
    worst = rec.get("worst")
    if check in _NUMERIC and isinstance(worst, dict):
        tkey = trial_key(r.get("case"), r.get("dtype"), r.get("reduction"))
        trial = trials.setdefault(tkey, {})
        quantity = trial.setdefault("checks", {}).setdefault(check, {})
        if isinstance(message, str) and message and message == quantity_message(r):
            del rec["message"]
        largest = rec.get("largest", _MISSING)
        for f in ("elements", "measured_in"):
            if f in rec:
                if f not in quantity:
                    quantity[f] = rec[f]
                if same(rec[f], quantity[f]):
                    del rec[f]
        for f in ("allowance", "cond"):
            if f in rec and f in worst and same(rec[f], worst[f]):
                del rec[f]
        at = quantity.setdefault("at", {})
        rec["worst"] = _pack_element(worst, at)
        if largest is _MISSING:
            rec["largest"] = None  # none was given (a version 1 record): say so
        elif isinstance(largest, dict):
            if same(largest, worst):
                del rec["largest"]
                if "ulp" in rec["worst"] and same(rec["worst"]["ulp"], rec.get("max_ulp")):
                    del rec["worst"]["ulp"]
            else:
                rec["largest"] = _pack_element(largest, at)
        values = rec.get("values")
        if isinstance(values, dict) and "expected" in values:
            quantity.setdefault("expected", values["expected"])
            if same(values["expected"], quantity["expected"]):
                rec["values"] = {k: v for k, v in values.items() if k != "expected"}
        profile = rec.get("profile")
        if isinstance(profile, dict):
            rec["profile"] = _pack_profile(profile, trial, quantity)
    elif message == "":
        del rec["message"]
    by = rec.get("expected_by")
    if isinstance(by, list):
        rec["expected_by"] = [e["id"] if isinstance(e, dict) and _note_of(notes.get(e.get("id")))
                              == e else e for e in by]
    return rec


def _note_of(entry: dict[str, Any] | None) -> dict[str, Any] | None:
    """What a covered record carries of an expectation (its `note`), from the report's
    `expectations` section."""
    if not entry:
        return None
    return {"id": entry.get("id"), "kind": entry.get("kind"), "reason": entry.get("reason"),
            "upstream": entry.get("upstream")}


def _pack_element(el: dict[str, Any], at: dict[str, dict[str, Any]]) -> dict[str, Any]:
    if "expected" not in el or "index" not in el:
        return dict(el)  # not in the judge's form: written as it is
    key = index_key(el["index"])
    mine = {f: el[f] for f in SHARED_ELEMENT_FIELDS if f in el}
    inputs = mine.get("inputs")
    if isinstance(inputs, dict) and set(inputs) == set(ARGUMENTS):
        mine["inputs"] = {k: v for k, v in inputs.items() if v is not None}
    shared = at.setdefault(key, mine)
    return {k: v for k, v in el.items()
            if k not in mine or k not in shared or not same(mine[k], shared[k])}


def _pack_profile(profile: dict[str, Any], trial: dict[str, Any],
                  quantity: dict[str, Any]) -> dict[str, Any]:
    out = dict(profile)
    if "x" in profile:
        trial.setdefault("x", profile["x"])
        if same(profile["x"], trial["x"]):
            del out["x"]
    if "allowance" in profile:
        shared = quantity.setdefault("profile", {"allowance": profile["allowance"]})
        if same(profile["allowance"], shared["allowance"]):
            del out["allowance"]
    if isinstance(profile.get("ulp"), list):
        out["ulp"] = [_round(v, PROFILE_DIGITS) for v in profile["ulp"]]
    return out


# ------------------------------------------------------------------ unpack ----

def unpack(doc: dict[str, Any]) -> dict[str, Any]:
    """The flat form of a report (`results`: one record per check), whatever its version.

    A version 3 file's `calls` and `trials` are expanded back into records (see the
    module docstring); a flat doc is returned as it is.
    """
    if not is_packed(doc):
        return doc
    out = {k: v for k, v in doc.items() if k not in ("calls", "trials")}
    out["results"] = records(doc)
    return out


def records(doc: dict[str, Any]) -> list[dict[str, Any]]:
    """Every record of a report, flat, whatever its layout."""
    if not is_packed(doc):
        return list(doc.get("results") or [])
    cases = doc.get("cases") or {}
    trials = doc.get("trials") or {}
    notes = {e.get("id"): _note_of(e) for e in doc.get("expectations") or []
             if isinstance(e, dict)}
    out = []
    for call in doc.get("calls") or []:
        base = {f: call[f] for f in CALL_FIELDS if f in call}
        if "source" not in base:
            source = (cases.get(call.get("case")) or {}).get("source")
            if source is not None:
                base["source"] = source
        trial = trials.get(trial_key(call.get("case"), call.get("dtype"),
                                     call.get("reduction"))) or {}
        quantities = trial.get("checks") or {}
        for check, chk in (call.get("checks") or {}).items():
            rec = {**base, "check": check,
                   **({"status": chk} if isinstance(chk, str) else chk)}
            _unpack_record(rec, trial, quantities.get(rec.get("check")) or {}, notes)
            out.append(rec)
    return out


def _unpack_record(rec: dict[str, Any], trial: dict[str, Any], quantity: dict[str, Any],
                   notes: dict[Any, dict[str, Any] | None]) -> None:
    worst = rec.get("worst")
    if rec.get("check") in _NUMERIC and isinstance(worst, dict):
        at = quantity.get("at") or {}
        if "largest" in rec:
            worst = rec["worst"] = _unpack_element(worst, at)
            if isinstance(rec["largest"], dict):
                rec["largest"] = _unpack_element(rec["largest"], at)
            else:
                del rec["largest"]
        else:  # the worst element is the largest error too: its ulp is max_ulp
            worst = rec["worst"] = _unpack_element(worst, at, rec.get("max_ulp", _MISSING))
            rec["largest"] = dict(worst)
        for f in ("allowance", "cond"):
            if f not in rec and f in worst:
                rec[f] = worst[f]
        for f in ("elements", "measured_in"):
            if f not in rec and f in quantity:
                rec[f] = quantity[f]
        values = rec.get("values")
        if isinstance(values, dict) and "expected" not in values and "expected" in quantity:
            rec["values"] = {**values, "expected": quantity["expected"]}
        profile = rec.get("profile")
        if isinstance(profile, dict):
            profile = rec["profile"] = dict(profile)
            if "x" not in profile and "x" in trial:
                profile["x"] = trial["x"]
            shared = quantity.get("profile") or {}
            if "allowance" not in profile and "allowance" in shared:
                profile["allowance"] = shared["allowance"]
        if "message" not in rec:
            rec["message"] = quantity_message(rec) or ""
    elif "message" not in rec:
        rec["message"] = ""
    by = rec.get("expected_by")
    if isinstance(by, list):
        rec["expected_by"] = [dict(notes[e]) if isinstance(e, str) and notes.get(e) else e
                              for e in by]


def _unpack_element(el: dict[str, Any], at: dict[str, dict[str, Any]],
                    ulp: Any = _MISSING) -> dict[str, Any]:
    shared = (at.get(index_key(el["index"])) if "index" in el else None) or {}
    full = {**shared, **el}
    if isinstance(full.get("inputs"), dict) and "inputs" not in el:
        full["inputs"] = {k: full["inputs"].get(k) for k in ARGUMENTS}
    if "ulp" not in full and ulp is not _MISSING:
        full["ulp"] = ulp
    out = {k: full[k] for k in _ELEMENT_ORDER if k in full}
    out.update((k, v) for k, v in full.items() if k not in out)
    return out


_ELEMENT_ORDER = ("index", "expected", "got", "ulp", "allowance", "cond", "inputs")


# ------------------------------------------------------------------ writing ----

def compact(v: Any) -> str:
    """One value as one line of strict JSON, as report.json lays out its records."""
    return json.dumps(v, separators=(",", ":"), ensure_ascii=False, allow_nan=False)


def dumps(doc: dict[str, Any], lines: dict[int, str] | None = None) -> str:
    """Strict JSON, for people too: the small sections indented, then one line per trial
    and one line per call (or per record, for a flat doc), so `grep` finds a call.

    `lines`, when given, maps id(record) to that record's line as the results file
    streamed it (harness.report.Sink), for records that have not changed since: they
    are not serialized again (in a default run, that was most of writing report.json,
    which is written twice: when the records are in, and at the end with every phase)."""
    lines = lines or {}
    parts = []
    for k, v in doc.items():
        if k in ("calls", "results") and isinstance(v, list) and v:
            text = "[\n" + ",\n".join("  " + (lines.get(id(x)) or compact(x))
                                       for x in v) + "\n ]"
        elif k == "trials" and isinstance(v, dict) and v:
            text = "{\n" + ",\n".join(f"  {compact(t)}: {compact(x)}"
                                      for t, x in v.items()) + "\n }"
        else:
            text = json.dumps(v, indent=1, ensure_ascii=False, allow_nan=False)
            text = text.replace("\n", "\n ")
        parts.append(f" {compact(k)}: {text}")
    return "{\n" + ",\n".join(parts) + "\n}\n"


__all__ = ["CALL_FIELDS", "PROFILE_DIGITS", "compact", "dumps", "is_packed", "pack", "records",
           "same", "trial_key", "unpack"]
