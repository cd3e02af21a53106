"""Trials and the calls they make: what a run does, before anything runs.

A *trial* is one case in one dtype with one reduction; the reference is evaluated
once per trial (`ReferenceCache`) and shared by every backend. `plan` is the one
place that enumerates a backend's calls: trial × implementation × device, narrowed
by the run's devices and a dtype shard.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from functools import cached_property
from typing import Any

import numpy as np

from harness import reference
from harness.cases import Case
from harness.protocol import GRAD_NAMES, Call


@dataclass(frozen=True)
class Trial:
    """One case × dtype × reduction: the unit the reference is computed for."""

    case: Case
    dtype: str
    reduction: str

    @property
    def key(self) -> str:
        return f"{self.case.name}|{self.dtype}|{self.reduction}"

    @cached_property
    def arrays(self) -> dict[str, np.ndarray | None]:
        return self.case.materialize(self.dtype)

    @property
    def grads(self) -> tuple[str, ...]:
        a = self.arrays
        return tuple(g for g in self.case.grads if g in GRAD_NAMES and a.get(g) is not None)

    def call(self, implementation: str, device: str) -> Call:
        a = self.arrays
        return Call(implementation=implementation, device=device, dtype=self.dtype,
                    input=a["input"], target=a["target"], weight=a["weight"],
                    pos_weight=a["pos_weight"], reduction=self.reduction, grads=self.grads,
                    arg_dtypes=dict(self.case.arg_dtypes))


def expand(cases: Iterable[Case], dtypes: Iterable[str] = ()) -> list[Trial]:
    """Every trial of the cases, narrowed to `dtypes` when given."""
    wanted = set(dtypes)
    return [Trial(c, d, r) for c in cases for d in c.dtypes if not wanted or d in wanted
            for r in c.reductions]


class ReferenceCache:
    """reference.evaluate per trial, computed once; an exception is a result too."""

    def __init__(self) -> None:
        self._cache: dict[str, dict | Exception] = {}

    def get(self, trial: Trial) -> dict | Exception:
        if trial.key not in self._cache:
            a = trial.arrays
            try:
                self._cache[trial.key] = reference.evaluate(
                    a["input"], a["target"], a["weight"], a["pos_weight"],
                    reduction=trial.reduction, grads=trial.grads)
            except (ValueError, TypeError) as exc:
                self._cache[trial.key] = exc
        return self._cache[trial.key]

@dataclass(frozen=True)
class Task:
    """One call for a worker: indices into the trial list keep the messages small."""

    id: int
    trial: int
    implementation: str
    device: str

def plan(info: dict[str, Any], trials: list[Trial], devices: tuple[str, ...] = (),
         shard: tuple[str, ...] = (), compiled: bool = False) -> list[Task]:
    """The calls one backend (or one dtype shard of it) will make, from what it offers:
    every trial in its dtypes × implementation × device (narrowed to `devices`).
    Compiled implementations (the backend's `eager_twins`) only when `compiled`:
    each costs a compilation per shape, so they are asked for (`--compiled`)."""
    if info.get("availability") is not None:
        return []
    chosen = [d for d in info["devices"] if not devices or d in devices]
    dtypes = set(info["dtypes"]) & (set(shard) if shard else set(info["dtypes"]))
    tasks: list[Task] = []
    for i, trial in enumerate(trials):
        if trial.dtype not in dtypes:
            continue
        for impl in info["implementations"]:
            if impl in info.get("eager_twins", {}) and not compiled:
                continue
            for dev in chosen:
                tasks.append(Task(len(tasks), i, impl, dev))
    return tasks
