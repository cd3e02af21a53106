"""Which regions of the input space a list of cases exercises.

A conformance verdict is only as good as the inputs behind it: "no failures" over
cases that never hold a subnormal logit says nothing about subnormals. This module
classifies every trial (case × dtype × reduction) by the *value classes* it holds,
in the dtype it runs in (1e-310 is subnormal in float64 and zero in float32, so
classes are decided after rounding), and counts trials per cell.

The cells are the pairs that matter, not the full product. Each value class meets
every dtype, every reduction, every weight/pos_weight configuration and every
checked quantity (value, each gradient), and separately every configuration meets
every checked quantity. The full product (value class × dtype × reduction ×
configuration × check, 1,920 reachable cells) cannot be filled by a run that must finish
in two minutes, and most bugs need one value class in one context (NaN in a sum,
a subnormal in float16, a huge logit in a gradient), which the pairs cover. The
product is still measured and reported as one number (`product`).

Structurally impossible cells are excluded by name (see `IMPOSSIBLE`): a gradient
of an argument the configuration does not pass cannot be checked. Everything else
must be reachable, and `tests/test_coverage.py` keeps the default run covering it.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import numpy as np

from harness.cases import Case
from harness.dtypes import FORMATS
from harness.protocol import DTYPES, GRAD_NAMES, REDUCTIONS

#: Value classes, with what puts a trial in them. Classes about the logits look at the
#: input; the rest look where the class lives (targets, or any argument for the values
#: that break arithmetic wherever they are).
VALUE_CLASSES: dict[str, str] = {
    "normal": "a finite logit of normal magnitude below the saturation point",
    "zero": "a logit of +0 or -0",
    "subnormal": "a subnormal value of the dtype in any argument",
    "saturated": "a finite logit past p·ln 2, where sigmoid rounds to 1 in the dtype",
    "huge": "a finite value within a factor 16 of the dtype's largest, in any argument",
    "inf": "an infinity in any argument",
    "nan": "a NaN in any argument",
    "target-outside-01": "a finite target below 0 or above 1",
    "soft-target": "a target strictly between 0 and 1",
    "empty": "an input with no elements",
}
#: weight / pos_weight configurations.
PARAMS: tuple[str, ...] = ("none", "weight", "pos_weight", "both")
#: Checked quantities of a trial that does not expect an error.
CHECKS: tuple[str, ...] = ("value", *(f"grad.{g}" for g in GRAD_NAMES))
#: The tables: for each, the row axis and the column axis.
TABLES: dict[str, tuple[str, str]] = {
    "dtype": ("value_class", "dtype"),
    "reduction": ("value_class", "reduction"),
    "params": ("value_class", "params"),
    "check": ("value_class", "check"),
    "params_check": ("params", "check"),
}
_NEEDS = {"grad.weight": ("weight", "both"), "grad.pos_weight": ("pos_weight", "both")}
#: Cells no case can fill, with the reason; they are never flagged as empty.
IMPOSSIBLE: dict[tuple[str, str, str], str] = {
    ("params_check", params, check): f"{check} needs the argument, and '{params}' lacks it"
    for check, having in _NEEDS.items() for params in PARAMS if params not in having
}


def _axes() -> dict[str, tuple[str, ...]]:
    return {"value_class": tuple(VALUE_CLASSES), "dtype": DTYPES, "reduction": REDUCTIONS,
            "params": PARAMS, "check": CHECKS}


def classify(arrays: dict[str, np.ndarray | None], dtype: str) -> set[str]:
    """The value classes a trial's arguments hold, judged in `dtype`.

    `arrays` are the materialized arguments (float64 holding values of `dtype`, as
    `Case.materialize` returns them). An empty input is only "empty": none of the
    other arguments' values can reach the result.
    """
    fmt = FORMATS[dtype]
    x = np.asarray(arrays["input"], dtype=np.float64)
    if x.size == 0:
        return {"empty"}
    found: set[str] = set()
    tiny = np.ldexp(1.0, fmt.emin)
    huge = np.ldexp(1.0, fmt.emax - 3)
    saturation = fmt.precision * np.log(2.0)
    with np.errstate(invalid="ignore"):
        ax = np.abs(x)
        finite = np.isfinite(x)
        if np.any(finite & (ax >= tiny) & (ax <= saturation)):
            found.add("normal")
        if np.any(x == 0):
            found.add("zero")
        if np.any(finite & (ax > saturation) & (ax < huge)):
            found.add("saturated")
        for name in GRAD_NAMES:
            a = arrays.get(name)
            if a is None or np.size(a) == 0:
                continue
            a = np.abs(np.asarray(a, dtype=np.float64))
            if np.any((a > 0) & (a < tiny)):
                found.add("subnormal")
            if np.any(np.isfinite(a) & (a >= huge)):
                found.add("huge")
            if np.any(np.isinf(a)):
                found.add("inf")
            if np.any(np.isnan(a)):
                found.add("nan")
        y = np.asarray(arrays["target"], dtype=np.float64)
        if np.any(np.isfinite(y) & ((y < 0) | (y > 1))):
            found.add("target-outside-01")
        if np.any((y > 0) & (y < 1)):
            found.add("soft-target")
    return found


def params_of(case: Case) -> str:
    """'none', 'weight', 'pos_weight' or 'both': which optional arguments a case passes."""
    w, p = case.weight is not None, case.pos_weight is not None
    return "both" if w and p else "weight" if w else "pos_weight" if p else "none"


def checks_of(case: Case) -> tuple[str, ...]:
    """The quantities checked for a case that expects no error (as the runner checks them)."""
    present = [g for g in case.grads if g in GRAD_NAMES and getattr(case, g) is not None]
    return ("value", *(f"grad.{g}" for g in present))


def coverage(cases: Iterable[Case], dtypes: Iterable[str] = ()) -> dict[str, Any]:
    """Trial counts per cell, the empty cells and the impossible ones (JSON-ready).

    `dtypes` narrows the trials like `--dtype` does. The result:

    - `axes`: the names along each axis (`value_class`, `dtype`, `reduction`,
      `params`, `check`) and `classes`: what each value class means;
    - `cases`, `trials`, `raises_trials` (trials expecting an error: they check the
      refusal, not a value, so they sit outside the tables) and `classes_seen`
      (trials per value class);
    - `tables`: name → {"rows": axis, "columns": axis, "counts": {row: {column: n}}};
    - `empty`: [{"table", "row", "column"}] for each cell with no trial that is
      not impossible; `impossible`: the same with a `why`;
    - `product`: {"covered", "possible"}: cells of the full product reached.
    """
    wanted = set(dtypes)
    axes = _axes()
    counts = {name: {r: dict.fromkeys(axes[cols], 0) for r in axes[rows]}
              for name, (rows, cols) in TABLES.items()}
    seen = dict.fromkeys(VALUE_CLASSES, 0)
    product: set[tuple[str, str, str, str, str]] = set()
    n_cases = n_trials = n_raises = 0
    for case in cases:
        n_cases += 1
        params = params_of(case)
        checks = checks_of(case)
        for dtype in case.dtypes:
            if wanted and dtype not in wanted:
                continue
            reductions = [r for r in case.reductions if r in REDUCTIONS]
            if case.raises:
                n_raises += len(case.reductions)
                n_trials += len(case.reductions)
                continue
            n_trials += len(reductions)
            if dtype not in FORMATS or not reductions:
                continue
            with np.errstate(all="ignore"):
                classes = classify(case.materialize(dtype), dtype)
            for check in checks:
                counts["params_check"][params][check] += len(reductions)
            for cls in classes:
                seen[cls] += len(reductions)
                counts["dtype"][cls][dtype] += len(reductions)
                counts["params"][cls][params] += len(reductions)
                for r in reductions:
                    counts["reduction"][cls][r] += 1
                    for check in checks:
                        product.add((cls, dtype, r, params, check))
                for check in checks:
                    counts["check"][cls][check] += len(reductions)
    empty, impossible = [], []
    for name, table in counts.items():
        for row, cols in table.items():
            for col, n in cols.items():
                why = IMPOSSIBLE.get((name, row, col))
                if why:
                    impossible.append({"table": name, "row": row, "column": col, "why": why})
                elif n == 0:
                    empty.append({"table": name, "row": row, "column": col})
    possible = sum(1 for p in PARAMS for c in CHECKS
                   if ("params_check", p, c) not in IMPOSSIBLE)
    possible *= len(VALUE_CLASSES) * len(DTYPES) * len(REDUCTIONS)
    return {
        "axes": {k: list(v) for k, v in axes.items()},
        "classes": dict(VALUE_CLASSES),
        "cases": n_cases,
        "trials": n_trials,
        "raises_trials": n_raises,
        "classes_seen": seen,
        "tables": {name: {"rows": TABLES[name][0], "columns": TABLES[name][1], "counts": table}
                   for name, table in counts.items()},
        "empty": empty,
        "impossible": impossible,
        "product": {"covered": len(product), "possible": possible},
    }


def summary(cov: dict[str, Any]) -> str:
    """One line for a terminal: how much is covered and the first empty cells."""
    cells = sum(len(t["counts"]) * len(next(iter(t["counts"].values())))
                for t in cov["tables"].values()) - len(cov["impossible"])
    line = (f"coverage: {cells - len(cov['empty'])}/{cells} cells over {cov['trials']} trials; "
            f"full product {cov['product']['covered']}/{cov['product']['possible']}")
    if cov["empty"]:
        first = ", ".join(f"{e['row']}×{e['column']}" for e in cov["empty"][:5])
        line += f"; empty: {first}" + (" …" if len(cov["empty"]) > 5 else "")
    return line


__all__ = ["CHECKS", "IMPOSSIBLE", "PARAMS", "TABLES", "VALUE_CLASSES", "checks_of", "classify",
           "coverage", "params_of", "summary"]
