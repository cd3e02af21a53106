"""Shared by the tests of forward mode, label smoothing and Keras's last-axis mean.

`judged` runs one backend over cases in this process exactly as a report does
(the plan's variant per trial, the same judge and expectations), so a test asserts
on the records a user would read. `ExactBackend` answers with the reference itself,
rounded to the dtype: the bugless control every planted variant departs from, so a
catch is the plant's doing and not the base's.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from harness import reference
from harness.cases import Case
from harness.dtypes import numpy_dtype, round_to
from harness.protocol import DTYPES, Call, Result
from harness.run.calls import perform, records_for
from harness.run.trials import ReferenceCache, expand, features, variant_of
from harness.verdict.expectations import load

BAD = ("fail", "error")


def judged(backend: Any, cases: list[Case], implementation: str, forward_mode: bool = False,
           dtypes: tuple[str, ...] = ()) -> list[dict[str, Any]]:
    """Every record of `implementation` over the cases' trials, as `report` makes them."""
    info = features(backend)
    refs, entries = ReferenceCache(), load()
    out: list[dict[str, Any]] = []
    for trial in expand(cases, dtypes):
        variant = variant_of(info, trial, implementation, forward_mode)
        outcome, seconds, again = perform(backend, trial, implementation, "cpu", variant)
        out += records_for(backend.name, implementation, "cpu", trial, outcome, seconds, refs,
                           entries, again, variant)
    return out


def framework(name: str) -> Any:
    """The installed backend `name`, or a skip with its own reason."""
    import pytest

    from harness.run.registry import discover

    found = [loaded for loaded in discover() if loaded.name == name]
    if not found or found[0].availability() is not None:
        pytest.skip(f"{name}: {found[0].availability() if found else 'not found'}")
    return found[0].backend


def bad(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [r for r in records if r["status"] in BAD]


def _rounded(v: np.ndarray, dtype: str) -> np.ndarray:
    with np.errstate(over="ignore", under="ignore"):
        return np.asarray(round_to(np.asarray(v, np.float64), dtype)).astype(numpy_dtype(dtype))


class ExactBackend:
    """The reference rounded once to the dtype: value, gradients, forward-mode derivatives,
    smoothing and the last-axis mean, each exactly as the protocol asks."""

    name = "exact"
    rows = False  # True: "none" is the mean over the last axis (the last_axis_mean hook)

    def availability(self) -> str | None:
        return None

    def versions(self) -> dict[str, str]:
        return {}

    def devices(self) -> list[str]:
        return ["cpu"]

    def dtypes(self) -> list[str]:
        return list(DTYPES)

    def implementations(self) -> list[str]:
        return ["exact"]

    def forward_mode(self) -> list[str]:
        return ["exact"]

    def label_smoothing(self) -> list[str]:
        return ["exact"]

    def last_axis_mean(self) -> list[str]:
        return ["exact"] if self.rows else []

    def smoothed(self, call: Call) -> float:
        return call.label_smoothing

    def run(self, call: Call) -> Result:
        args = (call.input, call.target, call.weight, call.pos_weight)
        q = reference.evaluate(*args, reduction=call.reduction, grads=call.grads,
                               jvps=call.forward, label_smoothing=self.smoothed(call),
                               last_axis_mean=self.rows)
        grads = {n: _rounded(q[f"grad.{n}"].value, call.dtype) for n in call.grads}
        forward = {n: self.tangent(call, n, q[f"jvp.{n}"].value) for n in call.forward}
        return Result(value=_rounded(q["value"].value, call.dtype), grads=grads, forward=forward)

    def tangent(self, call: Call, name: str, exact: np.ndarray) -> np.ndarray:
        return _rounded(exact, call.dtype)
