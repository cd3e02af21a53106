"""From a report's unexpected failures to candidate expectations, with the evidence.

`python -m harness.verdict.triage reports/latest/report.json` groups every `fail` and
`error` that no expectation covers by backend, implementation and check, and prints
for each group a skeleton expectation (its scope filled in from the records) with
the evidence: how many records, in which dtypes and reductions, and a few failing
elements with their arguments and values. It concludes nothing: the `kind`, the
`reason` and the `where:` predicate are for a person to write after reading the
framework's code (docs/expectations.md), because a mechanism guessed from symptoms
is exactly what hides the next bug.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections import defaultdict

from harness.records import UNEXPECTED, Record
from harness.report import packed as layout

EXAMPLES = 4  # failing records shown per group


def groups(results: list[Record]) -> dict[tuple[str, str, str], list[Record]]:
    """Unexpected records by (backend, implementation, check), in report order."""
    out: dict[tuple[str, str, str], list[Record]] = defaultdict(list)
    for r in results:
        if r["status"] in UNEXPECTED:
            out[(r["backend"], r["implementation"], r["check"])].append(r)
    return out


def _evidence(r: Record) -> str:
    w = r.get("worst") or {}
    inputs = w.get("inputs") or {}
    args = ", ".join(f"{k}={v}" for k, v in inputs.items() if v is not None)
    where = f" [{args}]" if args else ""
    return f"{r['case']} {r['dtype']} {r.get('reduction', '')}{where}: {r['message'][:240]}"


def skeleton(key: tuple[str, str, str], records: list[Record]) -> str:
    """A commented YAML skeleton for one group: scope filled in, the rest to write."""
    backend, implementation, check = key
    dtypes = sorted({r["dtype"] for r in records})
    reductions = sorted({r.get("reduction", "") for r in records} - {""})
    devices = sorted({r["device"].split(":", 1)[0] for r in records})
    lines = [f"# {len(records)} unexpected record(s); examples:"]
    lines += [f"#   {_evidence(r)}" for r in records[:EXAMPLES]]
    lines += [f"- backend: {backend}",
              f"  implementation: {implementation}",
              f"  dtype: [{', '.join(dtypes)}]",
              f"  device: {devices[0] if len(devices) == 1 else 'any'}",
              f"  check: {check}",
              f"  reduction: [{', '.join(reductions)}]",
              "  kind: TODO  # one of docs/expectations.md's kinds",
              "  reason: TODO  # the mechanism, in one line, from the framework's code",
              "  where: TODO  # the predicate that holds exactly where the mechanism applies"]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m harness.verdict.triage", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("report", help="a report.json")
    p.add_argument("--summary", action="store_true",
                   help="one line per backend, implementation and check: the counts only")
    args = p.parse_args(argv)
    try:
        with open(args.report, encoding="utf-8") as fh:
            report = json.load(fh)
    except (OSError, json.JSONDecodeError) as exc:
        sys.stderr.write(f"error: {args.report}: {exc}. Give a report.json written by "
                         "`python -m harness report`.\n")
        return 2
    found = groups(layout.records(report) if isinstance(report, dict) else [])
    if not found:
        print("no unexpected records: nothing to triage")
        return 0
    for key, records in sorted(found.items()):
        if args.summary:
            print(f"{key[0]:12s} {key[1]:14s} {key[2]:16s} {len(records)}")
        else:
            print(skeleton(key, records) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
