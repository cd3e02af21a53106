"""From a report's unexpected failures to candidate known-discrepancy entries.

`python -m harness.triage reports/latest/report.json` groups every `fail` and
`error` no entry covers into entries that match only calls that fail (known
entries are matched per call, and one that covers a passing call reports
`fixed`), and sorts them by *kind*: what went wrong, read off the evidence
(the worst element's inputs, the message, the check). A maintainer then writes the
one-line reason for each kind and backend; the grouping and the evidence are the
harness's, never written from memory.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections import defaultdict
from typing import Any

import yaml


def _num(v: Any) -> float | None:
    if v is None or isinstance(v, list):
        return None
    try:
        return float(v)
    except (TypeError, ValueError):
        return None


def kind_of(r: dict[str, Any]) -> str:
    """What went wrong in one record, from its evidence alone."""
    check, impl = r["check"], r["implementation"]
    if check == "raises":
        return r.get("kind", "wrong-error")
    if check == "dtype":
        return "result-dtype"
    if check == "determinism":
        return "nondeterministic"
    if check == "shape":
        return "result-shape"
    if r["status"] == "error":
        return "raises-on-valid-input"
    if impl in ("naive", "sigmoid+bce", "keras-probs"):
        return "sigmoid-then-bce"
    if r["message"].startswith("the result is not floating point"):
        return "result-not-float"
    worst = r.get("worst") or {}
    inputs = worst.get("inputs") or {}
    got, want = _num(worst.get("got")), _num(worst.get("expected"))
    if r["dtype"] == "float64" and impl == "keras":
        return "computed-in-float32"  # every keras float64 failure traced back to this
    if r["dtype"] == "float64" and _num(worst.get("ulp")) and 1e6 < _num(worst.get("ulp")) \
            < 1e10 and got and want and abs(got - want) <= 2.0**-20 * abs(want):
        return "computed-in-float32"
    if check == "grad.input" and _num(inputs.get("input")) == 0 and impl == "weighted":
        return "gradient-at-zero"
    if got is not None and got != got and (want is None or want == want) and isinstance(
            inputs.get("input"), str):
        return "special-value-in-reduction"
    tiny = {"float64": 2.0**-1022, "float32": 2.0**-126, "float16": 2.0**-14,
            "bfloat16": 2.0**-126}[r["dtype"]]
    if got == 0 and want is not None and 0 < abs(want) < tiny:
        return "subnormal-flushed"
    values = [_num(v) for v in inputs.values()]
    if any(v is not None and v != v for v in values) or (want is not None and want != want):
        return "nan-propagation"
    if any(v is not None and abs(v) == float("inf") for v in values):
        return "infinite-argument"
    if any(inputs.get(k) in (0.0, -0.0) for k in ("weight", "pos_weight")) and got is not None \
            and got != got:
        return "zero-coefficient"
    if got is not None and want is not None and abs(got) == float("inf") and want == want \
            and abs(want) != float("inf"):
        return "overflow"
    if r["dtype"] in ("float16", "bfloat16"):
        return "half-precision"
    x = _num(inputs.get("input"))
    y = _num(inputs.get("target"))
    if check == "value" and y is not None and y not in (0.0, 1.0):
        return "cancellation-soft-target"
    if check == "grad.target":
        return "target-gradient-cancellation"
    if x is not None and x < 0 and check == "value":
        return "cancellation-negative-logit"
    return "accuracy"


def propose(report: dict[str, Any]) -> list[dict[str, Any]]:
    """Candidate entries: per backend, case and kind, as products of the failing calls."""
    calls: dict[tuple, dict[str, list[dict[str, Any]]]] = defaultdict(lambda: defaultdict(list))
    for r in report["results"]:
        if r["status"] not in ("fail", "error"):
            continue
        key = (r["backend"], r["case"], kind_of(r))
        calls[key][(r["implementation"], r["device"], r["dtype"], r["reduction"])].append(r)
    entries = []
    for (backend, case, kind), by_call in sorted(calls.items()):
        # implementations failing on the same set of (device, dtype, reduction) merge
        per_impl: dict[str, set] = defaultdict(set)
        checks: set[str] = set()
        for (impl, dev, dt, red), recs in by_call.items():
            per_impl[impl].add((dev, dt, red))
            checks |= {x["check"] for x in recs}
        groups: dict[frozenset, list[str]] = defaultdict(list)
        for impl, combos in per_impl.items():
            groups[frozenset(combos)].append(impl)
        for combos, impls in groups.items():
            # within a group, dtypes failing on the same reductions merge
            per_dtype: dict[tuple, set] = defaultdict(set)
            for dev, dt, red in combos:
                per_dtype[(dev, dt)].add(red)
            sub: dict[frozenset, list[tuple]] = defaultdict(list)
            for dd, reds in per_dtype.items():
                sub[frozenset(reds)].append(dd)
            for reds, dds in sub.items():
                sample = next(iter(by_call[(impls[0], dds[0][0], dds[0][1], next(iter(reds)))]))
                entries.append({
                    "backend": backend,
                    "implementation": sorted(impls),
                    "device": sorted({d for d, _ in dds}),
                    "dtype": sorted({t for _, t in dds}),
                    "case": case,
                    "reduction": sorted(reds),
                    "check": sorted(checks),
                    "kind": kind,
                    "evidence": sample["message"][:200],
                })
    return entries


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m harness.triage", description=__doc__)
    p.add_argument("report", help="a report.json")
    p.add_argument("--summary", action="store_true", help="counts per backend and kind only")
    args = p.parse_args(argv)
    try:
        with open(args.report, encoding="utf-8") as fh:
            report = json.load(fh)
    except (OSError, json.JSONDecodeError) as exc:
        sys.stderr.write(f"error: {args.report}: {exc}. Give a report.json written by "
                         "`python -m harness report`.\n")
        return 2
    entries = propose(report)
    if args.summary:
        counts: dict[tuple[str, str], int] = defaultdict(int)
        for e in entries:
            counts[(e["backend"], e["kind"])] += 1
        for (b, k), n in sorted(counts.items()):
            print(f"{b:12s} {k:32s} {n}")
        return 0
    yaml.safe_dump({"known": entries}, sys.stdout, sort_keys=False, width=100)
    return 0


if __name__ == "__main__":
    sys.exit(main())
