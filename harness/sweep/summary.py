"""From the shard files to one sweep document (`sweep-<dtype>.json`, schema version 1).

Shard summaries are sparse (the bins a shard holds); here they are merged, in shard
order so the document does not depend on which worker finished first, into dense
arrays over every bin of the format, per implementation × quantity × target. A shard
recorded as `error` adds its logits to the `errors` of every implementation of its
backend, in the bins they fall in, so the map shows where nothing was measured.

The document is validated against `harness/schema/sweep.schema.json`; its layout is
described in docs/sweep.md.
"""

from __future__ import annotations

import datetime as _dt
import json
import math
import platform
from pathlib import Path
from typing import Any

import numpy as np

from harness.records import decode_float, encode_float
from harness.sweep.engine import BackendJob, Outcome, Store
from harness.sweep.exact import QUANTITIES
from harness.sweep.patterns import PROFILE, Bins, Shard, shards
from harness.sweep.plan import Plan

SCHEMA_VERSION = 1
SCHEMA_PATH = Path(__file__).resolve().parent.parent / "schema" / "sweep.schema.json"
COUNTS = ("elements", "known", "unexpected", "errors", "errors_unexpected", "unsupported",
          "special", "nan_where_finite", "inf_where_finite")
STATUS_ORDER = ("error", "fail", "known", "unsupported", "pass")


class _Grid:
    """Dense per-bin counters of one implementation × quantity × target."""

    def __init__(self, nbins: int) -> None:
        self.counts = {k: np.zeros(nbins, dtype=np.int64) for k in COUNTS}
        self.max_ulp = np.full(nbins, -1.0)
        self.max_logit = np.full(nbins, np.nan)
        self.max_ratio = np.full(nbins, -1.0)
        self.cells = np.full(nbins * PROFILE, -1.0)
        self.worst: dict[str, Any] | None = None

    def add(self, t: dict[str, Any]) -> None:
        b = np.asarray(t["bins"], dtype=np.int64)
        for k in COUNTS:
            np.add.at(self.counts[k], b, np.asarray(t[k], dtype=np.int64))
        m = _decode(t["max_ulp"])
        better = m > self.max_ulp[b]  # a shard holds each bin once, so no repeats in b
        self.max_ulp[b[better]] = m[better]
        self.max_logit[b[better]] = _decode(t["max_ulp_logit"])[better]
        r = _decode(t["max_ratio"])
        self.max_ratio[b] = np.maximum(self.max_ratio[b], r)
        np.maximum.at(self.cells, np.asarray(t["cells"], dtype=np.int64),
                      _decode(t["cell_max_ulp"]))
        w = t.get("worst")
        if w is not None and (self.worst is None or _ratio(w) > _ratio(self.worst)):
            self.worst = w

    def error_bins(self, counts: np.ndarray) -> None:
        self.counts["elements"] += counts
        self.counts["errors"] += counts
        self.counts["errors_unexpected"] += counts

    def document(self, target: float, label: str) -> dict[str, Any]:
        c = {k: int(v.sum()) for k, v in self.counts.items()}
        i = int(np.argmax(self.max_ulp)) if self.max_ulp.size else 0
        top = self.max_ulp[i] if self.max_ulp.size else -1.0
        return {
            "target": encode_float(target), "label": label, **c,
            "max_ulp": encode_float(top) if top >= 0 else None,
            "max_ulp_logit": encode_float(self.max_logit[i]) if top >= 0 else None,
            "worst": self.worst,
            "bins": {**{k: v.tolist() for k, v in self.counts.items()},
                     "max_ulp": _floats(self.max_ulp, digits=4),
                     "max_ulp_logit": [None if m < 0 else encode_float(x)
                                       for m, x in zip(self.max_ulp.tolist(),
                                                       self.max_logit.tolist(), strict=True)],
                     "max_ratio": _floats(self.max_ratio, digits=4)},
            "profile": _floats(self.cells, digits=3, floor=1e-3),
        }


def _ratio(element: dict[str, Any]) -> float:
    r = decode_float(element.get("ratio"))
    return float("inf") if r is None or math.isnan(r) else r


def _decode(values: list[Any]) -> np.ndarray:
    """A JSON list of encoded floats as float64, None as −1 (nothing measured)."""
    return np.array([-1.0 if v is None else (float(v) if isinstance(v, str) else v)
                     for v in values], dtype=np.float64)


def _floats(a: np.ndarray, digits: int | None = None, floor: float = 0.0) -> list[Any]:
    """Encoded floats, None where negative (nothing measured), rounded to `digits`
    significant digits, values below `floor` written as 0 (a document's size is mostly
    these numbers: the profile of a bfloat16 sweep holds a million of them)."""
    out = []
    for v in a.tolist():
        if v < 0:
            out.append(None)
        elif v < floor:
            out.append(0.0)
        elif digits is not None and math.isfinite(v) and v != 0:
            out.append(float(f"{v:.{digits}g}"))
        else:
            out.append(encode_float(v))
    return out


class _Impl:
    def __init__(self, backend: str, impl: str, device: str, plan: Plan, nbins: int) -> None:
        self.key = (backend, impl, device)
        self.grids = {q: [_Grid(nbins) for _ in plan.targets] for q in QUANTITIES}
        self.unsupported: str | None = None
        self.errors: list[str] = []
        self.calls = 0
        self.dtype = {"returned": {}, "known": 0, "unexpected": 0, "message": ""}
        self.expectations: dict[str, list[int]] = {}
        self.worst: dict[str, list[dict[str, Any]]] = {q: [] for q in QUANTITIES}
        self.seconds = 0.0
        self.shard_errors = 0

    def add(self, rec: dict[str, Any]) -> None:
        self.unsupported = self.unsupported or rec.get("unsupported")
        for e in rec.get("errors", []):
            if e not in self.errors and len(self.errors) < 5:
                self.errors.append(e)
        self.calls += rec.get("calls", 0)
        d = rec.get("dtype", {})
        self.dtype["returned"].update(d.get("returned", {}))
        self.dtype["known"] += d.get("known", 0)
        self.dtype["unexpected"] += d.get("unexpected", 0)
        self.dtype["message"] = self.dtype["message"] or d.get("message", "")
        for k, (a, b) in rec.get("expectations", {}).items():
            c = self.expectations.setdefault(k, [0, 0])
            c[0] += a
            c[1] += b
        for q in QUANTITIES:
            for grid, t in zip(self.grids[q], rec["quantities"][q], strict=True):
                grid.add(t)
            self.worst[q].extend(rec.get("worst", {}).get(q, []))
        self.seconds += rec.get("seconds", 0.0)

    def document(self, plan: Plan) -> dict[str, Any]:
        quantities = {}
        totals = dict.fromkeys(COUNTS, 0)
        for q in QUANTITIES:
            per_t = [g.document(t, lab) for g, t, lab in
                     zip(self.grids[q], plan.targets, plan.target_labels, strict=True)]
            for t in per_t:
                for k in COUNTS:
                    totals[k] += t[k]
            worst = sorted(self.worst[q], key=lambda w: -(decode_float(w["ratio"]) or 0.0))
            quantities[q] = {"targets": per_t, "worst": worst[:5]}
        status = self.status(totals)
        worst = None
        for q in QUANTITIES:
            for t in quantities[q]["targets"]:
                w = t["worst"]
                if w is not None and (worst is None or _ratio(w) > _ratio(worst)):
                    worst = {**w, "quantity": q, "target": t["target"], "label": t["label"]}
        backend, impl, device = self.key
        return {"backend": backend, "implementation": impl, "device": device,
                "status": status, "totals": totals, "worst": worst,
                "unsupported": self.unsupported,
                "errors": self.errors, "shard_errors": self.shard_errors, "calls": self.calls,
                "dtype": self.dtype, "seconds": round(self.seconds, 3),
                "expectations": {k: {"failing": a, "passing_shards": b}
                                 for k, (a, b) in sorted(self.expectations.items())},
                "quantities": quantities}

    def status(self, totals: dict[str, int]) -> str:
        if totals["errors_unexpected"] or self.shard_errors:
            return "error"
        if totals["unexpected"] or self.dtype["unexpected"]:
            return "fail"
        if totals["known"] or totals["errors"] or self.dtype["known"]:
            return "known"
        if totals["elements"] and totals["unsupported"] == totals["elements"]:
            return "unsupported"
        return "pass"


def build(plan: Plan, store: Store, jobs: list[BackendJob], infos: list[dict[str, Any]],
          outcome: Outcome, exps: Any, engine: dict[str, Any]) -> dict[str, Any]:
    """The sweep document (module docstring)."""
    bins = Bins(plan.dtype)
    nb = len(bins)
    all_shards = shards(plan.space, plan.shard_logits)
    impls: dict[tuple[str, str, str], _Impl] = {}
    shard_errors: list[dict[str, Any]] = []
    missing: dict[str, int] = {}
    info_of = {i["name"]: i for i in infos}
    for j in jobs:
        info = info_of.get(j.name, {})
        pairs = [(impl, dev) for dev in info.get("devices", [])
                 if not plan.devices or dev in plan.devices
                 for impl in info.get("implementations", [])
                 if (plan.compiled or impl not in info.get("eager_twins", {}))
                 and impl not in info.get("last_axis_mean", [])]
        for impl, dev in pairs:
            impls[(j.name, impl, dev)] = _Impl(j.name, impl, dev, plan, nb)
        for sh in all_shards:
            rec = store.read(j.name, sh)
            if rec is None:
                missing[j.name] = missing.get(j.name, 0) + 1
                continue
            if "error" in rec:
                shard_errors.append({k: rec[k] for k in ("backend", "shard", "lo", "hi",
                                                          "logits", "error")})
                counts = _bin_counts(plan, bins, sh)
                for impl, dev in pairs:
                    it = impls[(j.name, impl, dev)]
                    it.shard_errors += 1
                    for q in QUANTITIES:
                        for g in it.grids[q]:
                            g.error_bins(counts)
                continue
            for r in rec["implementations"]:
                key = (j.name, r["implementation"], r["device"])
                if key not in impls:
                    impls[key] = _Impl(*key, plan, nb)
                impls[key].add(r)
    docs = [it.document(plan) for it in impls.values()]
    unexpected = sum(d["totals"]["unexpected"] + d["totals"]["errors_unexpected"]
                     + d["dtype"]["unexpected"] for d in docs) + len(shard_errors)
    known = sum(d["totals"]["known"] + d["totals"]["errors"] - d["totals"]["errors_unexpected"]
                for d in docs)
    space = plan.space
    return {
        "schema": "bce-harness/sweep",
        "schema_version": SCHEMA_VERSION,
        "dtype": plan.dtype,
        "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "host": {"python": platform.python_version(), "machine": platform.machine()},
        "plan": {"targets": [encode_float(t) for t in plan.targets],
                 "target_labels": list(plan.target_labels),
                 "weight": encode_float(plan.weight), "pos_weight": encode_float(plan.pos_weight),
                 "stride": plan.stride, "limit": plan.limit, "logits": space.logits,
                 "all_logits": 2 * space.all_magnitudes, "shard_logits": plan.shard_logits,
                 "chunk": plan.chunk, "devices": list(plan.devices),
                 "expectation_files": list(plan.known), "shipped_expectations": plan.shipped,
                 "reduction": "none", "quantities": list(QUANTITIES)},
        "run": {**engine, "shards": len(all_shards), "tasks": outcome.tasks,
                "resumed": outcome.resumed, "computed": outcome.computed,
                "errors": outcome.errors, "missing": sum(missing.values()),
                "interrupted": outcome.interrupted, "wall_s": round(outcome.wall_s, 3),
                "elements": outcome.elements,
                "elements_per_s": (round(outcome.elements / outcome.wall_s, 1)
                                   if outcome.wall_s > 0 else None),
                "timing": _round(outcome.timing)},
        "backends": infos,
        "bins": bins.describe(),
        "profile_per_bin": PROFILE,
        "implementations": docs,
        "shard_errors": shard_errors,
        "expectations": _expectations(exps, impls, plan, docs),
        "summary": {"unexpected": unexpected, "known": known,
                    "implementations": {s: sum(d["status"] == s for d in docs)
                                        for s in STATUS_ORDER},
                    "complete": not missing and not outcome.interrupted},
    }


def _round(d: Any) -> Any:
    if isinstance(d, dict):
        return {k: _round(v) for k, v in d.items()}
    return round(d, 3) if isinstance(d, float) else d


def _bin_counts(plan: Plan, bins: Bins, sh: Shard) -> np.ndarray:
    x = plan.space.logits_of(sh.lo, sh.hi)
    return np.bincount(bins.index(x), minlength=len(bins)).astype(np.int64)


def _expectations(exps: Any, impls: dict, plan: Plan, docs: list[dict]) -> list[dict]:
    """Each expectation that could apply to this sweep: used, fixed, unused or not-run."""
    covered: dict[str, list[int]] = {}
    for d in docs:
        for k, v in d["expectations"].items():
            c = covered.setdefault(k, [0, 0])
            c[0] += v["failing"]
            c[1] += v["passing_shards"]
    out = []
    for e in exps.items:
        in_scope = any(e.backend == b and e.scoped(i, dev, plan.dtype, "none")
                       and (e.checks is None or e.checks & {"value", "grad.input", "dtype"})
                       for (b, i, dev) in impls)
        failing, passing = covered.get(e.id, [0, 0])
        status = ("used" if failing else "fixed" if passing else
                  "unused" if in_scope else "not-run")
        if status == "not-run":
            continue
        out.append({"id": e.id, "backend": e.backend, "kind": e.kind, "reason": e.reason,
                    "upstream": e.upstream, "where": e.where.text if e.where else None,
                    "status": status, "failing_covered": failing,
                    "passing_shards": passing})
    return out


def schema() -> dict[str, Any]:
    return json.loads(SCHEMA_PATH.read_text(encoding="utf-8"))


_SPECIAL = {"nan", "inf", "-inf"}


def validate(doc: dict[str, Any]) -> None:
    """Raise ValueError (jsonschema.ValidationError for the structure) unless `doc` follows
    the schema.

    jsonschema spends about 14 µs per array item, 10 s on a float16 sweep's 700,000
    per-bin numbers; so the structure is validated by jsonschema on a copy whose per-bin
    and profile arrays are cut to their first two items, and the arrays in full by the
    same item rules here, with their lengths (one per bin, `profile_per_bin` per bin in
    a profile), which the schema cannot state.
    """
    import copy

    import jsonschema

    light = copy.copy(doc)
    light["implementations"] = []
    nb = len(doc.get("bins", []))
    per = doc.get("profile_per_bin", 0)
    for d in doc.get("implementations", []):
        d2 = {**d, "quantities": {}}
        for q, qd in d.get("quantities", {}).items():
            ts = []
            for t in qd.get("targets", []):
                bins = t.get("bins", {})
                for k, arr in bins.items():
                    _check_array(arr, nb, integer=k not in ("max_ulp", "max_ulp_logit",
                                                           "max_ratio"), what=f"{q} {k}")
                _check_array(t.get("profile", []), nb * per, integer=False, what=f"{q} profile")
                ts.append({**t, "bins": {k: v[:2] for k, v in bins.items()},
                           "profile": t.get("profile", [])[:2]})
            d2["quantities"][q] = {**qd, "targets": ts}
        light["implementations"].append(d2)
    jsonschema.Draft202012Validator(schema()).validate(light)


def _check_array(arr: Any, n: int, integer: bool, what: str) -> None:
    if not isinstance(arr, list) or len(arr) != n:
        raise ValueError(f"{what}: expected a list of {n} items")
    for v in arr:
        if integer:
            ok = isinstance(v, int) and not isinstance(v, bool) and v >= 0
        else:
            ok = v is None or (isinstance(v, int | float) and not isinstance(v, bool)) \
                or v in _SPECIAL
        if not ok:
            raise ValueError(f"{what}: {v!r} is not a {'count' if integer else 'number'}")


def write(doc: dict[str, Any], path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(doc, allow_nan=False, separators=(",", ":")), encoding="utf-8")
    tmp.replace(path)


def load(path: Path) -> dict[str, Any]:
    """A sweep document back (any version this harness reads: 1)."""
    doc = json.loads(Path(path).read_text(encoding="utf-8"))
    if doc.get("schema") != "bce-harness/sweep" or doc.get("schema_version") != SCHEMA_VERSION:
        raise ValueError(f"{path}: not a sweep document of schema version {SCHEMA_VERSION}")
    return doc
