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
from harness.protocol import GRAD_NAMES, OPTIONAL_LISTS, Call


def features(backend: Any) -> dict[str, Any]:
    """The backend's name and optional feature lists, as `variant_of` reads them (the
    registry's `info()` holds the same; in-process shrinking has only the backend)."""
    out: dict[str, Any] = {"name": backend.name}
    for hook in OPTIONAL_LISTS:
        method = getattr(backend, hook, None)
        if callable(method):
            out[hook] = list(method())
    return out


@dataclass(frozen=True)
class Variant:
    """What one implementation's call of a trial computes, beyond the plain loss.

    `last_axis_mean`: the implementation averages over the last axis first, as Keras
    does when called without an extra axis (backend hook `last_axis_mean()`), so the
    reference's matching quantity is the row means. `forward`: the call also asks for
    forward-mode derivatives of the trial's gradient arguments (hook
    `forward_mode()`). `refused`: why the call is not made at all (a trial with label
    smoothing, for an implementation that does not list it in `label_smoothing()`);
    it is recorded as `unsupported` with this reason.
    """

    last_axis_mean: bool = False
    forward: bool = False
    refused: str = ""

    @property
    def key(self) -> str:
        return f"{'rows' if self.last_axis_mean else ''}{'+jvp' if self.forward else ''}"


PLAIN = Variant()


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

    @property
    def label_smoothing(self) -> float:
        """The case's label smoothing rounded to this trial's dtype (0 for none)."""
        return self.case.smoothing(self.dtype)

    def call(self, implementation: str, device: str, variant: Variant = PLAIN) -> Call:
        a = self.arrays
        return Call(implementation=implementation, device=device, dtype=self.dtype,
                    input=a["input"], target=a["target"], weight=a["weight"],
                    pos_weight=a["pos_weight"], reduction=self.reduction, grads=self.grads,
                    arg_dtypes=dict(self.case.arg_dtypes),
                    label_smoothing=self.label_smoothing,
                    forward=self.grads if variant.forward else ())


def expand(cases: Iterable[Case], dtypes: Iterable[str] = ()) -> list[Trial]:
    """Every trial of the cases, narrowed to `dtypes` when given."""
    wanted = set(dtypes)
    return [Trial(c, d, r) for c in cases for d in c.dtypes if not wanted or d in wanted
            for r in c.reductions]


class ReferenceCache:
    """reference.evaluate per trial and variant, computed once; an exception is a result too."""

    def __init__(self) -> None:
        self._cache: dict[str, dict | Exception] = {}

    def get(self, trial: Trial, variant: Variant = PLAIN) -> dict | Exception:
        key = f"{trial.key}|{variant.key}"
        if key not in self._cache:
            a = trial.arrays
            try:
                self._cache[key] = reference.evaluate(
                    a["input"], a["target"], a["weight"], a["pos_weight"],
                    reduction=trial.reduction, grads=trial.grads,
                    jvps=trial.grads if variant.forward else (),
                    label_smoothing=trial.label_smoothing,
                    last_axis_mean=variant.last_axis_mean)
            except (ValueError, TypeError) as exc:
                self._cache[key] = exc
        return self._cache[key]

@dataclass(frozen=True)
class Task:
    """One call for a worker: indices into the trial list keep the messages small."""

    id: int
    trial: int
    implementation: str
    device: str
    variant: Variant = PLAIN


def variant_of(info: dict[str, Any], trial: Trial, implementation: str,
               forward_mode: bool = False) -> Variant:
    """How `implementation` of the backend described by `info` takes `trial`; forward-mode
    derivatives only when asked for (`report --forward-mode`)."""
    if trial.case.label_smoothing and implementation not in info.get("label_smoothing", ()):
        return Variant(refused=f"{info['name']} does not list {implementation!r} in "
                               "label_smoothing(): it has no label smoothing")
    forward = (forward_mode and implementation in info.get("forward_mode", ())
               and bool(trial.grads) and not trial.case.raises)
    return Variant(last_axis_mean=implementation in info.get("last_axis_mean", ()),
                   forward=forward)

def plan(info: dict[str, Any], trials: list[Trial], devices: tuple[str, ...] = (),
         shard: tuple[str, ...] = (), compiled: bool = False,
         forward_mode: bool = False) -> list[Task]:
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
            variant = variant_of(info, trial, impl, forward_mode)
            for dev in chosen:
                tasks.append(Task(len(tasks), i, impl, dev, variant))
    return tasks
