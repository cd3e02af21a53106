"""Judging a sweep's calls element by element, and tallying them per binade × target.

The same error model as `report`: the distance in ulps of the format
(`harness.verdict.ulps.ulp_distance`, measured in the coarser of the format asked for
and the one returned, as the judge does), the allowance
(`harness.verdict.ulps.allowance`) from the reference's condition number, and the
expectations' predicates evaluated on every element (`harness.verdict.expectations.
Coverage`): an element beyond its allowance is `known` when an expectation in scope
covers it, `unexpected` otherwise. A call that raised makes each of its elements an
error, known where an expectation covers that element.

Each element ends as one code (`PASS` ... `UNSUPPORTED`) and an ulp distance; a shard's
elements are then reduced per bin of the logit (`tally`) with `numpy.ufunc.reduceat`
over the runs of equal bins, never element by element in Python.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from harness.dtypes import FORMATS, dtype_name
from harness.protocol import Call, Result, Unsupported
from harness.records import encode_float
from harness.sweep.patterns import runs
from harness.verdict.expectations import Coverage, Evidence, Expectation, Expectations
from harness.verdict.ulps import allowance, coarser, ulp_distance

PASS, KNOWN, FAIL, ERROR_KNOWN, ERROR, UNSUPPORTED = range(6)
#: per element: the ulp distance where nothing was measured (an error, unsupported)
NOT_MEASURED = -1.0
#: unexpected elements kept per implementation and quantity, worst first
WORST = 5


@dataclass
class Elements:
    """One quantity of one implementation at one target, over a shard's logits."""

    n: int
    ulps: np.ndarray = field(init=False)
    code: np.ndarray = field(init=False)
    nan_bad: np.ndarray = field(init=False)
    inf_bad: np.ndarray = field(init=False)
    ratio: np.ndarray = field(init=False)
    got: np.ndarray = field(init=False)
    allow: np.ndarray = field(init=False)

    def __post_init__(self) -> None:
        self.ulps = np.full(self.n, NOT_MEASURED)
        self.code = np.full(self.n, UNSUPPORTED, dtype=np.uint8)
        self.nan_bad = np.zeros(self.n, dtype=bool)
        self.inf_bad = np.zeros(self.n, dtype=bool)
        self.ratio = np.zeros(self.n)
        self.got = np.full(self.n, np.nan)
        self.allow = np.full(self.n, np.nan)


@dataclass
class Ledger:
    """What one implementation's calls told about expectations and dtypes in a shard."""

    # id -> [failing elements covered, 1 if it covered an element within the allowance]
    covered: dict[str, list[int]] = field(default_factory=dict)
    passing: set[str] = field(default_factory=set)
    calls: int = 0
    dtype_known: int = 0
    dtype_unexpected: int = 0
    dtypes: dict[str, str] = field(default_factory=dict)  # quantity -> dtype returned
    dtype_message: str = ""
    errors: list[str] = field(default_factory=list)
    unsupported: str | None = None

    def count(self, e: Expectation, failing: int, passing: int) -> None:
        c = self.covered.setdefault(e.id, [0, 0])
        c[0] += failing
        c[1] = max(c[1], passing)


class Allowances:
    """The allowance of each reference element, per target, quantity and format (cached:
    every implementation of the shard measured in the same format shares it)."""

    def __init__(self, ref: Any) -> None:
        self.ref = ref
        self._cache: dict[tuple[int, str, str], np.ndarray] = {}

    def get(self, t: int, q: str, measured: str) -> np.ndarray:
        key = (t, q, measured)
        if key not in self._cache:
            _, cond = self.ref[t][q]
            self._cache[key] = allowance(cond, np.float64(1.0), np.int64(1), measured)
        return self._cache[key]


def scope(exps: Expectations, backend: str, implementation: str, device: str, dtype: str,
          check: str) -> list[Expectation]:
    """The expectations that can cover `check` of this call (reduction "none")."""
    return [e for e in exps.for_call(backend, implementation, device, dtype, "none")
            if e.checks is None or check in e.checks]


def judge_call(call: Call, outcome: Result | Unsupported | str, idx: np.ndarray, t: int,
               ref: Any, allowed: Allowances,
               out: dict[str, Elements], exps: Expectations, backend: str,
               ledger: Ledger) -> None:
    """Judge one call (its elements are `idx` of the shard) into `out[quantity]`.

    `outcome` is the backend's Result, an Unsupported, or the message of an exception.
    """
    ledger.calls += 1
    dtype = call.dtype
    if isinstance(outcome, Unsupported):
        ledger.unsupported = ledger.unsupported or outcome.reason
        for q in out:
            out[q].code[idx] = UNSUPPORTED
        return
    if isinstance(outcome, str):
        _error(call, outcome, idx, t, ref, out, exps, backend, ledger)
        return
    results = {"value": outcome.value, "grad.input": outcome.grads.get("input")}
    _judge_dtypes(call, results, exps, backend, ledger)
    for q, got in results.items():
        if q not in out:
            continue
        if isinstance(got, Unsupported):
            ledger.unsupported = ledger.unsupported or got.reason
            out[q].code[idx] = UNSUPPORTED
            continue
        if got is None or np.shape(got) != (idx.size,):
            what = ("no gradient for input" if got is None else
                    f"{q} has shape {np.shape(got)}, expected ({idx.size},)")
            _error(call, f"the backend returned {what}", idx, t, ref, {q: out[q]}, exps,
                   backend, ledger)
            continue
        got = np.asarray(got)
        measured = coarser(dtype, got.dtype)
        with np.errstate(all="ignore"):
            got64 = got.astype(np.float64)
        exact, _ = ref[t][q]
        exact = exact[idx]
        ulps = ulp_distance(got64, exact, FORMATS[measured])
        allow = allowed.get(t, q, measured)[idx]
        failing = ~(np.isfinite(ulps) & (ulps <= allow))
        known = _cover(call, q, failing, exact, got64, measured, exps, backend, ledger)
        el = out[q]
        el.ulps[idx] = ulps
        code = np.zeros(idx.size, dtype=np.uint8)  # PASS
        code[failing] = FAIL
        code[known] = KNOWN
        el.code[idx] = code
        if not np.isfinite(got64).all():  # NaN or inf returned: where the reference is finite?
            finite = np.isfinite(exact)
            el.nan_bad[idx] = finite & np.isnan(got64)
            el.inf_bad[idx] = finite & np.isinf(got64)
        with np.errstate(divide="ignore", invalid="ignore"):
            # 0 where ulps is 0; NaN only for an infinite distance with an infinite
            # allowance, which `tally` reads as beyond it (np.fmax skips NaN, so see there)
            el.ratio[idx] = ulps / allow
        el.got[idx] = got64
        el.allow[idx] = allow


def _cover(call: Call, check: str, failing: np.ndarray, exact: np.ndarray,
           got64: np.ndarray | None, measured: str, exps: Expectations, backend: str,
           ledger: Ledger) -> np.ndarray:
    """Per element: beyond the allowance and covered by an expectation; keeps the ledger.

    The predicates are evaluated on the failing elements only (what decides `known`),
    and on the whole call only for the expectations not yet seen, in this shard, to
    cover an element within the allowance (what tells `fixed` from `unused`): that
    second question needs one yes per shard, not a count, and asking it of every
    call made expectations a third of the judging."""
    known = np.zeros(failing.shape, dtype=bool)
    entries = scope(exps, backend, call.implementation, call.device, call.dtype, check)
    if not entries:
        return known
    bad = np.flatnonzero(failing)
    full = None
    if bad.size:
        whole = bad.size == failing.size or any(
            e.where is not None and "size" in e.where.variables for e in entries)
        if whole:  # `size` is the call's: the predicate must see the call as it was
            full = Coverage(Evidence(call, check, failing=failing, expected=exact, got=got64,
                                     measured=measured))
            cov = full
        else:
            cov = Coverage(Evidence(_subcall(call, bad), check,
                                    failing=np.ones(bad.size, dtype=bool),
                                    expected=exact[bad],
                                    got=None if got64 is None else got64[bad],
                                    measured=measured))
        for e in entries:
            c = cov.covered(e)
            c = c[bad] if whole else c
            n = int(np.count_nonzero(c))
            if n:
                ledger.count(e, n, 0)
                known[bad[c]] = True
    pending = [e for e in entries if e.id not in ledger.passing]
    if pending and bad.size < failing.size:
        if full is None:
            full = Coverage(Evidence(call, check, failing=failing, expected=exact, got=got64,
                                     measured=measured))
        for e in pending:
            if np.any(full.covered(e) & ~failing):
                ledger.passing.add(e.id)
                ledger.count(e, 0, 1)
    return known


def _subcall(call: Call, rows: np.ndarray) -> Call:
    """The same call restricted to some of its elements (all arrays are elementwise here)."""
    def pick(a: np.ndarray | None) -> np.ndarray | None:
        return None if a is None else np.asarray(a)[rows]

    return Call(implementation=call.implementation, device=call.device, dtype=call.dtype,
                input=pick(call.input), target=pick(call.target), weight=pick(call.weight),
                pos_weight=pick(call.pos_weight), reduction=call.reduction, grads=call.grads,
                arg_dtypes=dict(call.arg_dtypes))


def _error(call: Call, message: str, idx: np.ndarray, t: int,
           ref: Any, out: dict[str, Elements],
           exps: Expectations, backend: str, ledger: Ledger) -> None:
    if len(ledger.errors) < 3 and message not in ledger.errors:
        ledger.errors.append(message)
    for q, el in out.items():
        exact = ref[t][q][0][idx]
        failing = np.ones(idx.size, dtype=bool)
        known = _cover(call, q, failing, exact, None, call.dtype, exps, backend, ledger)
        el.code[idx] = np.where(known, ERROR_KNOWN, ERROR)


def _judge_dtypes(call: Call, results: dict[str, Any], exps: Expectations, backend: str,
                  ledger: Ledger) -> None:
    problems = []
    for q, got in results.items():
        if not isinstance(got, np.ndarray) and not np.isscalar(got):
            continue
        try:
            name = dtype_name(np.asarray(got).dtype)
        except TypeError:
            name = str(np.asarray(got).dtype)
        ledger.dtypes[q] = name
        if name != call.dtype:
            problems.append(f"{q} is {name}, expected {call.dtype}")
    if not problems:
        return
    ledger.dtype_message = "; ".join(problems)
    entries = scope(exps, backend, call.implementation, call.device, call.dtype, "dtype")
    cov = Coverage(Evidence(call, "dtype")) if entries else None
    if cov is not None and any(cov.covered(e).any() for e in entries):
        ledger.dtype_known += 1
    else:
        ledger.dtype_unexpected += 1


# ------------------------------------------------------------------ tallies ----

@dataclass(frozen=True)
class Layout:
    """Where a shard's bins and profile cells begin (runs of equal keys)."""

    bin_starts: np.ndarray
    bin_keys: np.ndarray
    cell_starts: np.ndarray
    cell_keys: np.ndarray
    x: np.ndarray

    @classmethod
    def of(cls, x: np.ndarray, bins) -> Layout:
        bs, bk = runs(bins.index(x))
        cs, ck = runs(bins.cell(x))
        return cls(bs, bk, cs, ck, x)


def _per_key(values: np.ndarray, keys: np.ndarray, how: str) -> tuple[np.ndarray, np.ndarray]:
    """Combine per-run values of equal keys (a bin can be two runs: NaN in both halves)."""
    uniq, inv = np.unique(keys, return_inverse=True)
    if how == "sum":
        out = np.zeros(uniq.size, dtype=values.dtype)
        np.add.at(out, inv, values)
    else:
        out = np.full(uniq.size, -np.inf)
        np.maximum.at(out, inv, values)
    return uniq, out


def tally(el: Elements, layout: Layout, exact: np.ndarray) -> dict[str, Any]:
    """Per-bin counters (sparse: the bins this shard holds), the profile cells' largest
    finite ulp error, and the element farthest beyond (or nearest to) its allowance."""
    starts, keys = layout.bin_starts, layout.bin_keys
    code = el.code

    def count(mask: np.ndarray) -> list[int]:
        per_run = np.add.reduceat(mask.astype(np.int64), starts)
        return _per_key(per_run, keys, "sum")[1].tolist()

    bins, elements = _per_key(np.diff(np.append(starts, code.size)), keys, "sum")
    # the largest *finite* distance: an infinite one (a special value where the reference
    # has another) is counted apart, as `special`, so it does not hide the finite errors
    ulps = np.where(np.isfinite(el.ulps), el.ulps, NOT_MEASURED)
    run_max = np.maximum.reduceat(ulps, starts)
    _, bin_max = _per_key(run_max, keys, "max")
    ratio = np.where(el.ulps >= 0, np.where(np.isnan(el.ratio), np.inf, el.ratio), -1.0)
    _, bin_ratio = _per_key(np.maximum.reduceat(ratio, starts), keys, "max")
    # the worst element with a finite distance: special-value mismatches are counted
    # apart (`special`) and would otherwise always be the worst
    finite_ratio = np.where(np.isfinite(el.ulps), ratio, -1.0)
    top = int(np.argmax(finite_ratio)) if ratio.size else 0
    worst_element = (None if not ratio.size or finite_ratio[top] < 0 else
                     _element(el, layout.x, exact, top))
    # the logit where each run's maximum is first reached, then each bin's best run
    rep = np.repeat(run_max, np.diff(np.append(starts, ulps.size)))
    hits = np.flatnonzero(ulps == rep)
    first = hits[np.searchsorted(hits, starts)]
    where: dict[int, tuple[float, float]] = {}
    for k, m, i in zip(keys.tolist(), run_max.tolist(), first.tolist(), strict=True):
        if k not in where or m > where[k][0]:
            where[k] = (m, float(layout.x[i]))
    cell_max = np.maximum.reduceat(ulps, layout.cell_starts)
    cells, cell_max = _per_key(cell_max, layout.cell_keys, "max")
    logits = np.array([where[k][1] if where[k][0] >= 0 else np.nan for k in bins.tolist()])
    return {
        "bins": bins.tolist(),
        "elements": elements.tolist(),
        "known": count(code == KNOWN),
        "unexpected": count(code == FAIL),
        "errors": count((code == ERROR) | (code == ERROR_KNOWN)),
        "errors_unexpected": count(code == ERROR),
        "unsupported": count(code == UNSUPPORTED),
        "special": count(np.isinf(el.ulps)),
        "nan_where_finite": count(el.nan_bad),
        "inf_where_finite": count(el.inf_bad),
        "max_ulp": encode(bin_max, bin_max < 0),
        "max_ulp_logit": encode(logits, bin_max < 0),
        "max_ratio": encode(bin_ratio, bin_ratio < 0),
        "cells": cells.tolist(),
        "cell_max_ulp": encode(cell_max, cell_max < 0),
        "worst": worst_element,
    }


def _element(el: Elements, x: np.ndarray, exact: np.ndarray, i: int,
             target: float | None = None) -> dict[str, Any]:
    out = {"logit": encode_float(x[i]), "got": encode_float(el.got[i]),
           "expected": encode_float(exact[i]), "ulp": encode_float(el.ulps[i]),
           "allowance": encode_float(el.allow[i]), "ratio": encode_float(el.ratio[i]),
           "status": {KNOWN: "known", FAIL: "fail"}.get(int(el.code[i]), "pass")}
    if target is not None:
        out["target"] = encode_float(target)
    return out


def encode(values: np.ndarray, missing: np.ndarray) -> list[Any]:
    """Floats for JSON, as `harness.records.encode_float` writes them ('nan', 'inf',
    '-inf' for the non-finite), None where `missing`; vectorised (a float32 shard's
    tallies have thousands of cells)."""
    out = values.tolist()
    for i in np.flatnonzero(missing | ~np.isfinite(values)).tolist():
        out[i] = None if missing[i] else encode_float(values[i])
    return out


def worst(el: Elements, x: np.ndarray, target: float, exact: np.ndarray,
          k: int = WORST) -> list[dict[str, Any]]:
    """The k unexpected elements farthest beyond their allowance (ratio ulp/allowance)."""
    bad = np.flatnonzero(el.code == FAIL)
    if bad.size == 0:
        return []
    r = np.nan_to_num(el.ratio[bad], nan=np.inf, posinf=np.inf)
    top = bad[np.argsort(-r, kind="stable")[:k]]
    return [_element(el, x, exact, i, target) for i in top.tolist()]
