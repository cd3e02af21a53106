"""One call, start to verdict: run it, repeat it when large, judge it, and compare
it with its twins (the CPU's answer, the eager implementation's answer).

Used alike by the worker processes of a report (harness/run/pool.py) and by the
in-process runs of the pytest conformance suite and of shrinking.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import numpy as np

from harness.protocol import Call, Result, Unsupported
from harness.run.registry import Loaded
from harness.run.trials import PLAIN, ReferenceCache, Trial, Variant, plan
from harness.verdict import judge
from harness.verdict.expectations import Evidence, Expectations


def execute(backend: Any, call: Call) -> tuple[judge.Outcome, float]:
    """Run one call, turning every way it can end into an Outcome."""
    start = time.perf_counter()
    try:
        out: judge.Outcome = backend.run(call)
        if not isinstance(out, Result):
            out = judge.Raised("TypeError", ("TypeError",),
                               f"run() returned {type(out).__name__}, not harness.protocol.Result")
    except Unsupported as exc:
        out = Unsupported(exc.reason)
    except Exception as exc:
        out = judge.Raised.from_exception(exc)
    return out, time.perf_counter() - start


def perform(backend: Any, trial: Trial, implementation: str, device: str,
            variant: Variant = PLAIN) -> tuple[judge.Outcome, float, judge.Outcome | None]:
    """Make one planned call (twice when large: the determinism check).

    A call the plan refused (`variant.refused`) is not made: its outcome is
    `Unsupported` with the reason, so it is recorded as such."""
    if variant.refused:
        return Unsupported(variant.refused), 0.0, None
    call = trial.call(implementation, device, variant)
    outcome, duration = execute(backend, call)
    again = execute(backend, call)[0] if repeats(trial) else None
    return outcome, duration, again


def base_fields(backend: str, implementation: str, device: str, trial: Trial) -> dict[str, Any]:
    return {"backend": backend, "implementation": implementation, "device": device,
            "dtype": trial.dtype, "case": trial.case.name, "reduction": trial.reduction,
            "source": trial.case.source}


REPEAT_FROM = 1024  # calls with this many elements or more run twice (determinism check)


def repeats(trial: Trial) -> bool:
    """Whether a call is run twice: large inputs, where reduction order can vary."""
    return np.size(trial.arrays["input"]) >= REPEAT_FROM and not trial.case.raises


def records_for(backend_name: str, implementation: str, device: str, trial: Trial,
                outcome: judge.Outcome, duration: float, refs: ReferenceCache,
                entries: Expectations,
                again: judge.Outcome | None = None,
                variant: Variant = PLAIN) -> list[dict[str, Any]]:
    """Judge one finished call (and its repetition, if any); apply the expectations."""
    call = trial.call(implementation, device, variant)
    base = base_fields(backend_name, implementation, device, trial)
    base["duration_s"] = round(duration, 6)
    profile = "sweep" in trial.case.tags and trial.reduction == "none"
    judged = judge.judge_call(call, outcome, refs.get(trial, variant), tuple(trial.case.raises),
                              base, profile)
    if again is not None:
        judged.append((judge.determinism(outcome, again, base), Evidence(call, "determinism")))
    return entries.apply(judged)


def run_inprocess(backend: Any, trial: Trial, implementation: str, device: str,
                  refs: ReferenceCache, entries: Expectations,
                  variant: Variant = PLAIN) -> list[dict[str, Any]]:
    """One call in this process (the pytest conformance suite and shrinking use this)."""
    outcome, duration, again = perform(backend, trial, implementation, device, variant)
    return records_for(backend.name, implementation, device, trial, outcome, duration, refs,
                       entries, again, variant)


class Twins:
    """Holds each call's outcome until the outcomes it is compared with arrive.

    Two comparisons pair calls of one backend on one trial: another device's answer
    with the CPU's (`vs-cpu`), and a compiled implementation's answer with its eager
    twin's on the same device (`vs-eager`; backends name the pairs with the optional
    `eager_twins()` hook). An outcome is held only while a partner it is compared
    with has not arrived, so memory stays bounded by the calls in flight.
    """

    def __init__(self, refs: ReferenceCache, entries: Expectations,
                 implementations: list[str], devices: list[str],
                 eager_twins: dict[str, str]) -> None:
        self.refs, self.entries = refs, entries
        self.devices = devices
        self.eager_of = {c: e for c, e in eager_twins.items()
                         if c in implementations and e in implementations}
        self._held: dict[tuple[int, str, str], tuple[judge.Outcome, set, Variant]] = {}

    def _partners(self, impl: str, device: str) -> set[tuple[str, str]]:
        out: set[tuple[str, str]] = set()
        if len(self.devices) > 1 and "cpu" in self.devices:
            out |= ({(impl, d) for d in self.devices if d != "cpu"} if device == "cpu"
                    else {(impl, "cpu")})
        if impl in self.eager_of:
            out.add((self.eager_of[impl], device))
        out |= {(c, device) for c, e in self.eager_of.items() if e == impl}
        return out

    def add(self, backend: str, impl: str, device: str, index: int, trial: Trial,
            outcome: judge.Outcome, variant: Variant = PLAIN) -> list[dict[str, Any]]:
        """The comparison records this outcome completes (often none yet)."""
        waiting = self._partners(impl, device)
        out: list[dict[str, Any]] = []
        for p_impl, p_dev in sorted(waiting):
            held = self._held.get((index, p_impl, p_dev))
            if held is None:
                continue
            other, other_waits, other_variant = held
            if other_variant.last_axis_mean == variant.last_axis_mean:
                out += self._compare(backend, trial, (impl, device, outcome),
                                     (p_impl, p_dev, other), variant)
            waiting.discard((p_impl, p_dev))
            other_waits.discard((impl, device))
            if not other_waits:
                del self._held[(index, p_impl, p_dev)]
        if waiting:
            self._held[(index, impl, device)] = (outcome, waiting, variant)
        return out

    def _compare(self, backend: str, trial: Trial, a: tuple, b: tuple,
                 variant: Variant) -> list[dict[str, Any]]:
        (ia, da, oa), (ib, db, ob) = a, b
        if ia == ib:  # two devices: the CPU's answer is the yardstick
            (cpu, other, dev) = (oa, ob, db) if da == "cpu" else (ob, oa, da)
            check, impl, first, second = "vs-cpu", ia, cpu, other
            names = ("cpu", dev)
            device = dev
        else:  # compiled and eager: the eager answer is the yardstick
            eager_first = self.eager_of.get(ib) == ia
            (first, second) = (oa, ob) if eager_first else (ob, oa)
            impl = ib if eager_first else ia
            check, device = "vs-eager", da
            names = (f"eager {self.eager_of[impl]}", impl)
        base = base_fields(backend, impl, device, trial)
        recs = judge.against_twin(first, second, self.refs.get(trial, variant), trial.dtype,
                                  base, check, *names)
        call = trial.call(impl, device, variant)
        return self.entries.apply([(r, Evidence(call, check)) for r in recs])


def iter_inprocess(loaded: Loaded, trials: list[Trial], devices: tuple[str, ...],
                   entries: Expectations, refs: ReferenceCache | None = None,
                   compiled: bool = False,
                   forward_mode: bool = False) -> Iterator[dict[str, Any]]:
    """The whole run of one backend in this process (the pytest conformance suite).

    `refs` may be shared between backends: the reference of a trial is the same for
    every backend, so one process running several of them computes it once."""
    info = loaded.info()
    refs = ReferenceCache() if refs is None else refs
    tasks = plan(info, trials, devices, compiled=compiled, forward_mode=forward_mode)
    twins = Twins(refs, entries, sorted({t.implementation for t in tasks}),
                  sorted({t.device for t in tasks}), info.get("eager_twins", {}))
    for task in tasks:
        trial = trials[task.trial]
        outcome, duration, again = perform(loaded.backend, trial, task.implementation,
                                           task.device, task.variant)
        yield from records_for(loaded.name, task.implementation, task.device, trial, outcome,
                               duration, refs, entries, again, task.variant)
        yield from twins.add(loaded.name, task.implementation, task.device, task.trial, trial,
                             outcome, task.variant)
