"""Test cases: YAML case files in, validated `Case` objects out, and back again.

A case is data, not code, so that a backend author can add the example that broke
their kernel without reading the harness (the format is docs/cases.md). That only
works if a broken case file is answered with one readable paragraph naming the
file, the line and the fix, so every problem found while loading becomes a
`CaseFileError` pointing at the offending YAML node.

One module per job, each readable on its own:

- `model`: `Case` (values kept in float64 exactly as written; rounding to the
  dtype under test happens in `Case.materialize`, so one case serves every dtype)
  and `check_expect` (a case's published values against a loss);
- `loading`: `load_cases`, file discovery and the three loading steps;
- `syntax`: the YAML 1.2 number reading and node positions;
- `schema_errors`: JSON-schema violations as messages with a line and a fix;
- `values`: numbers, nested lists and generators (`linspace`, `random`, ...);
- `builder`: the rules the schema cannot express (shapes, dtypes, `raises`);
- `errors`: `CaseFileError`;
- `writer`: `case_yaml`, a case written back as a case file.

The names below are the package's interface; importers need not know the modules.
"""

from __future__ import annotations

from harness.cases.errors import CaseFileError
from harness.cases.loading import SHIPPED_CASES, SKIPPED_FILES, load_cases
from harness.cases.model import ARG_DTYPES, ARG_NAMES, INT_DTYPES, Case, check_expect
from harness.cases.schema_errors import SCHEMA_PATH
from harness.cases.values import DISTRIBUTIONS, GENERATORS, MAX_ELEMENTS
from harness.cases.writer import case_yaml

__all__ = [
    "ARG_DTYPES",
    "ARG_NAMES",
    "DISTRIBUTIONS",
    "GENERATORS",
    "INT_DTYPES",
    "MAX_ELEMENTS",
    "SCHEMA_PATH",
    "SHIPPED_CASES",
    "SKIPPED_FILES",
    "Case",
    "CaseFileError",
    "case_yaml",
    "check_expect",
    "load_cases",
]
