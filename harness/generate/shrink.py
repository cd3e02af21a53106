"""Shrinking a failing generated case to a minimal one, and saving it as a case file.

A generated case that fails is rarely the case to put in a bug report: 300
elements, a weight, three gradients, and one NaN that matters. `shrink` asks
Hypothesis for the smallest case that fails *the same way* (the same check, with
the same status and the same kind of disagreement (`disagreement`: NaN where
finite, zero where non-zero, finite where -inf, ...), in the same dtype and
reduction, on the same backend implementation and device; expected discrepancies
do not count) and `save_found` writes it as a case file that reproduces it with
`python -m harness report --cases <file> --backend <name> --dtype <dtype>
--examples 0` (`repro_command`).

How the search starts from the failing case: generated example i of seed s is the
first random input of a Hypothesis run seeded by (s, i) (see
`harness.generate.seeding.run_example`), so running that same seeded search with a test
that raises on the failure makes Hypothesis meet the failing case again and then
shrink it with its own shrinker. A case that did not come from `generate_cases`
(or a Hypothesis version that draws differently) falls back to a plain search for
one failing element.

Everything here is a plain function of its arguments, with no global state, so
the report can call it inside a backend's worker process.
"""

from __future__ import annotations

import hashlib
import os
import re
import shlex
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np

from harness.cases import SHIPPED_CASES, Case, case_yaml
from harness.generate.seeding import parse_source, run_example
from harness.generate.strategies import broadcasts_into, case_tags, draw_case
from harness.run.calls import run_inprocess
from harness.run.trials import ReferenceCache, Trial, features, variant_of
from harness.verdict import expectations as expect

#: Where found cases go by default: beside the shipped cases, so the default run
#: keeps checking them once they are committed.
FOUND = SHIPPED_CASES / "found"

BAD = ("fail", "error")


class _Reproduced(Exception):
    """Raised inside the search when a drawn case fails the same way; carries it."""

    def __init__(self, case: Case) -> None:
        super().__init__(f"the failure reproduces on {case.shape}")
        self.case = case


def _number(v: Any) -> float | None:
    """A record's number ('nan', 'inf', '-inf' included) as a float; None if not one."""
    try:
        return float(v)
    except (TypeError, ValueError):
        return None


def _where(v: float) -> str:
    if np.isnan(v):
        return "NaN"
    if np.isinf(v):
        return "+inf" if v > 0 else "-inf"
    return "zero" if v == 0 else "finite"


def disagreement(record: dict[str, Any]) -> str:
    """The kind of disagreement a failing record shows: its failure's identity.

    A shrunk case must fail the way the original did: the same check and the same
    kind, so that shrinking a gradient that underflows to 0 does not end on a case
    that returns NaN, and one expecting -inf does not end on one expecting +inf.
    For an elementwise comparison the kind comes from the worst element (`worst`:
    got against expected): "NaN where finite" (or where ±inf, or zero), "number
    where NaN", "±inf where finite", "finite where ±inf", "+inf where -inf" (and the
    reverse), "zero where non-zero", "non-zero where zero", "wrong sign",
    "inaccurate (same sign, finite)". Otherwise from the check and the message:
    "raised <ExceptionType>", "silent accept", "missing gradient", "wrong shape",
    "wrong dtype", "not floating point", "nondeterministic", "differs from cpu".
    """
    check, status = record.get("check", ""), record.get("status", "")
    message = str(record.get("message") or "")
    if status == "error":
        if message.startswith("the backend returned no gradient"):
            return "missing gradient"
        if message.startswith("the reference refuses"):
            return "reference refuses the arguments"
        m = re.match(r"([A-Za-z_][\w.]*)(:|$)", message)
        return f"raised {m.group(1)}" if m else "error"
    if check == "raises":
        if record.get("kind") == "silent-accept" or message.startswith("returned a value"):
            return "silent accept"
        m = re.match(r"raised ([A-Za-z_][\w.]*)", message)
        return f"raised {m.group(1)}" if m else "wrong error"
    fixed = {"shape": "wrong shape", "dtype": "wrong dtype", "determinism": "nondeterministic",
             "vs-cpu": "differs from cpu"}
    if check in fixed:
        return fixed[check]
    if message.startswith("the result is not floating point"):
        return "not floating point"
    worst = record.get("worst") or {}
    got, expected = _number(worst.get("got")), _number(worst.get("expected"))
    if got is None or expected is None:
        return "fail"
    if np.isnan(got):
        return f"NaN where {_where(expected)}"
    if np.isnan(expected):
        return "number where NaN"
    if np.isinf(got) and np.isinf(expected):
        return f"{_where(got)} where {_where(expected)}"
    if np.isinf(got):
        return f"{_where(got)} where finite"
    if np.isinf(expected):
        return f"finite where {_where(expected)}"
    if got == 0 and expected != 0:
        return "zero where non-zero"
    if expected == 0 and got != 0:
        return "non-zero where zero"
    if (got < 0) != (expected < 0):
        return "wrong sign"
    return "inaccurate (same sign, finite)"


def failure_kinds(backend: Any, implementation: str, device: str, case: Case,
                  entries: expect.Expectations) -> set[tuple[str, str, str]]:
    """(check, status, disagreement) of every unexpected fail or error of one case's
    trials in-process."""
    found: set[tuple[str, str, str]] = set()
    offered = features(backend)
    for dtype in case.dtypes:
        for reduction in case.reductions:
            trial = Trial(case, dtype, reduction)
            records = run_inprocess(backend, trial, implementation, device, ReferenceCache(),
                                    entries, variant_of(offered, trial, implementation, True))
            found |= {(r["check"], r["status"], disagreement(r)) for r in records
                      if r["status"] in BAD}
    return found


def failures(backend: Any, implementation: str, device: str, case: Case,
             entries: expect.Expectations) -> set[tuple[str, str]]:
    """(check, status) of every unexpected fail or error of one case's trials in-process."""
    return {(c, s) for c, s, _ in failure_kinds(backend, implementation, device, case, entries)}


def _fingerprint(case: Case) -> str:
    h = hashlib.sha256(repr((case.dtypes, case.reductions, case.grads, case.raises)).encode())
    for name in ("input", "target", "weight", "pos_weight"):
        a = getattr(case, name)
        h.update(b"-" if a is None else repr(a.shape).encode() + a.tobytes())
    return h.hexdigest()


def size_of(case: Case) -> int:
    """Elements over all arguments: what shrinking makes small."""
    return sum(int(np.size(a)) for a in (case.input, case.target, case.weight, case.pos_weight)
               if a is not None)


def shrink(backend: Any, implementation: str, device: str, failing: Case, seed: int,
           max_examples: int = 500, *, check: str | None = None, kind: str | None = None,
           entries: expect.Expectations | None = None, time_budget: float = 120.0) -> Case | None:
    """The smallest case Hypothesis finds that fails like `failing` does, or None.

    `failing` is a generated case (one dtype, one reduction) that failed on
    `backend`'s `implementation` on `device`; `seed` is the seed it was generated
    with. The failure is re-established in-process first: the (check, status,
    disagreement) of its unexpected records (see `disagreement`), narrowed to
    `check` and `kind` (a disagreement) when given; None if it does not fail here
    (a crash only a worker sees, or a flaky backend). A candidate counts when it
    fails one of those the same way, same check and same kind of disagreement, in
    the same dtype and reduction; records covered by an expectation (`entries`, default
    the shipped list) never count. `max_examples` bounds the backend calls spent
    on candidates and `time_budget` the seconds; past either, the smallest case
    found so far is returned. The result is `failing` itself when nothing
    smaller fails the same way.
    """
    entries = expect.load() if entries is None else entries
    target = failure_kinds(backend, implementation, device, failing, entries)
    if check is not None:
        target = {t for t in target if t[0] == check}
    if kind is not None:
        target = {t for t in target if t[2] == kind}
    if not target:
        return None

    deadline = time.monotonic() + time_budget
    results: dict[str, bool] = {}
    smallest = [failing]

    def reproduces(case: Case) -> bool:
        """Whether `case` fails the same way; each distinct case runs once, within budget."""
        if case.dtypes != failing.dtypes or case.reductions != failing.reductions:
            return False
        key = _fingerprint(case)
        if key not in results:
            if len(results) >= max_examples or time.monotonic() > deadline:
                return False  # out of budget: unseen candidates count as passing
            results[key] = bool(failure_kinds(backend, implementation, device, case, entries)
                                & target)
            if results[key] and size_of(case) < size_of(smallest[0]):
                smallest[0] = case
        return results[key]

    origin = parse_source(failing.source)
    start = failing
    if origin is not None and origin[0] == seed:
        start = _hypothesis_search(seed, origin[1], failing, reproduces) or failing
    best = min((start, smallest[0]), key=size_of)
    best = _polish(best, reproduces)
    return _renamed(best, failing, backend, implementation, target)


def _hypothesis_search(seed: int, index: int, failing: Case,
                       reproduces: Callable[[Case], bool]) -> Case | None:
    """Replay example `index` of `seed` with a test that raises on the failure, so
    Hypothesis shrinks it; the minimal case, or None if the replay never failed."""

    def test(data: Any) -> None:
        case = draw_case(data, name=failing.name, source=failing.source)
        if reproduces(case):
            raise _Reproduced(case)

    try:
        run_example(seed, index, test, shrink=True)
    except _Reproduced as exc:
        return exc.case
    except Exception:  # Hypothesis gave up (e.g. a flaky backend): use what was seen
        return None
    return None


# --------------------------------------------------------------- case-level ----

def _polish(case: Case, reproduces: Callable[[Case], bool]) -> Case:
    """Greedy case-level shrinking after Hypothesis's, until no step reproduces.

    Hypothesis shrinks choices; an array whose length was fixed by an earlier
    shape draw cannot lose an element that way (the length and the elements would
    have to change together), so a NaN at position 20 keeps 19 companions. These
    steps work on the case itself: one element alone, halves and ends of each axis
    (equal axes together, so a square stays square), dropping weight, pos_weight
    and unneeded gradients, and simpler values. Each is kept only if the failure
    reproduces, so this never loses the failure.
    """
    improved = True
    while improved:
        improved = False
        for candidate in _simpler(case):
            if case.raises and not _refused(candidate):
                continue  # a refusal case must stay one, or it checks nothing
            if _complexity(candidate) < _complexity(case) and reproduces(candidate):
                case, improved = candidate, True
                break
    return case


def _refused(case: Case) -> bool:
    return any(getattr(case, n) is not None
               and not broadcasts_into(getattr(case, n).shape, case.input.shape)
               for n in ("weight", "pos_weight"))


def _complexity(case: Case) -> tuple[int, int, int, int]:
    """What `_polish` makes smaller, in order: elements, optional arguments, gradients,
    then how unusual the values are (0 and 1 are the plainest targets, 1 the
    plainest weight). Every accepted step lowers it, so polishing ends."""
    def plain(a: np.ndarray | None, simplest: float, next_: float) -> int:
        if a is None:
            return 0
        with np.errstate(invalid="ignore"):
            return int(2 * a.size - np.count_nonzero(a == simplest) * 2
                       - np.count_nonzero(a == next_))

    params = sum(getattr(case, n) is not None for n in ("weight", "pos_weight"))
    values = (plain(case.input, 0.0, 1.0) + plain(case.target, 0.0, 1.0)
              + plain(case.weight, 1.0, 0.0) + plain(case.pos_weight, 1.0, 0.0))
    return (size_of(case), params, len(case.grads), values)


def _with(case: Case, **changes: Any) -> Case:
    fields = {n: getattr(case, n) for n in ("input", "target", "weight", "pos_weight",
                                            "reductions", "dtypes", "grads", "raises",
                                            "arg_dtypes", "tags")}
    fields.update(changes)
    fields["grads"] = tuple(g for g in fields["grads"]
                            if g in ("input", "target") or fields.get(g) is not None)
    return Case(name=case.name, source=case.source, description=case.description, **fields)


def _simpler(case: Case) -> Iterator[Case]:
    """Candidate simplifications of `case`, most aggressive first."""
    x = case.input
    shape = x.shape
    args = ("input", "target", "weight", "pos_weight")
    if not case.raises and x.size > 1:
        flat = {n: None if getattr(case, n) is None else
                np.broadcast_to(getattr(case, n), shape).reshape(-1) for n in args}
        for j in range(min(x.size, 64)):
            yield _with(case, **{n: None if a is None else a[j:j + 1] for n, a in flat.items()})
    for axes in _axis_groups(shape):
        n = shape[axes[0]]
        for keep in (slice(0, n // 2), slice(n // 2, n), slice(1, n), slice(0, n - 1)):
            yield _with(case, **{a: _sliced(getattr(case, a), shape, axes, keep)
                                 for a in args})
    for name in ("weight", "pos_weight"):
        if getattr(case, name) is not None:
            yield _with(case, **{name: None})
    for g in case.grads:
        yield _with(case, grads=tuple(h for h in case.grads if h != g))
    for name, simple in (("target", 0.0), ("target", 1.0), ("weight", 1.0),
                         ("pos_weight", 1.0)):
        a = getattr(case, name)
        if a is not None and a.size and not np.all(a == simple):
            yield _with(case, **{name: np.full(a.shape, simple)})
    if x.size <= 16:
        for name in args:
            a = getattr(case, name)
            if a is None:
                continue
            for j in range(a.size):
                for simple in (0.0, 1.0):
                    v = a.reshape(-1)[j]
                    if np.isfinite(v) and abs(v) not in (0.0, 1.0) and abs(v) > simple:
                        b = a.reshape(-1).copy()
                        b[j] = simple
                        yield _with(case, **{name: b.reshape(a.shape)})


def _axis_groups(shape: tuple[int, ...]) -> list[tuple[int, ...]]:
    """Axes to shorten together: all axes of one length (a square stays square), then each."""
    groups: list[tuple[int, ...]] = []
    for n in sorted({m for m in shape if m > 1}, reverse=True):
        same = tuple(i for i, m in enumerate(shape) if m == n)
        groups.append(same)
        if len(same) > 1:
            groups.extend((i,) for i in same)
    return groups


def _sliced(a: np.ndarray | None, shape: tuple[int, ...], axes: tuple[int, ...],
            keep: slice) -> np.ndarray | None:
    """`a` (broadcasting into `shape`) cut to `keep` along the input's `axes`."""
    if a is None:
        return None
    index = [slice(None)] * a.ndim
    lead = len(shape) - a.ndim
    for ax in axes:
        k = ax - lead
        if k >= 0 and a.shape[k] == shape[ax]:
            index[k] = keep
    return a[tuple(index)]


def _renamed(case: Case, failing: Case, backend: Any, implementation: str,
             target: set[tuple[str, str, str]]) -> Case:
    what = ", ".join(f"{c} {s} ({k})" for c, s, k in sorted(target))
    arrays = {n: getattr(case, n) for n in ("input", "target", "weight", "pos_weight")}
    refused = tuple(n for n in ("weight", "pos_weight") if arrays[n] is not None
                    and not broadcasts_into(arrays[n].shape, case.input.shape))
    with np.errstate(all="ignore"):
        tags = case_tags(case.materialize(case.dtypes[0]), case.dtypes[0], refused)
    return Case(name=f"{failing.name}-min", source=f"{failing.source}:shrunk",
                description=(f"{getattr(backend, 'name', backend)}/{implementation}: {what}; "
                             f"shrunk from {failing.name} ({size_of(failing)} elements) to "
                             f"{size_of(case)}."),
                input=case.input, target=case.target, weight=case.weight,
                pos_weight=case.pos_weight, reductions=case.reductions, dtypes=case.dtypes,
                grads=case.grads, raises=case.raises, arg_dtypes=case.arg_dtypes,
                tags=(*tags, "shrunk"))


# ------------------------------------------------------------------- saving ----

def found_name(case: Case, backend: str, implementation: str) -> str:
    """The file stem for a found case: backend, implementation and the case's own name,
    in the characters case names allow."""
    short = case.name.rsplit("/", 1)[-1]
    return re.sub(r"[^A-Za-z0-9._+-]+", "_", f"{backend}-{implementation}-{short}").strip("_")


def repro_command(path: Path | str, backend: str, dtypes: tuple[str, ...] | list[str] = (), *,
                  plugin: str | None = None, device: str | None = None) -> str:
    """The command that re-runs exactly the saved case, and nothing else: its
    backend, its dtype, its device (when not the CPU), no generated examples."""
    command = ["python", "-m", "harness", "report", "--cases", str(path)]
    if plugin:
        command += ["--plugin", plugin]
    command += ["--backend", backend]
    for dtype in dtypes:
        command += ["--dtype", dtype]
    if device and device != "cpu":
        command += ["--device", device]
    command += ["--examples", "0"]
    return " ".join(shlex.quote(c) for c in command)


def save_found(case: Case, backend: str, implementation: str, reason: str,
               folder: Path = FOUND, *, plugin: str | None = None,
               device: str | None = None) -> Path:
    """Write `case` to `<folder>/<name>.yaml` as a case file that reproduces the failure.

    The file holds the case alone, every float exact (repr; .inf/-.inf/.nan;
    "-0.0"), its one dtype and reduction, its gradients, and a header saying what
    failed and the command that re-runs exactly it (`repro_command`; `plugin`: the
    --plugin spec of a backend that is not installed as an entry point; `device`:
    where it failed). The name is stable, so saving the same failure again
    rewrites the same file.
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    name = found_name(case, backend, implementation)
    path = folder / f"{name}.yaml"
    command = repro_command(path, backend, case.dtypes, plugin=plugin, device=device)
    inner = case.name.rsplit("/", 1)[-1]
    inner = re.sub(r"[^A-Za-z0-9._+-]+", "_", inner).strip("_") or "case"
    text = case_yaml(
        Case(name=case.name, source=case.source, description=case.description,
             input=case.input, target=case.target, weight=case.weight,
             pos_weight=case.pos_weight, reductions=case.reductions, dtypes=case.dtypes,
             grads=case.grads, raises=case.raises, arg_dtypes=case.arg_dtypes,
             tags=tuple(dict.fromkeys((*case.tags, "found")))),
        name=inner, description=f"{backend}/{implementation}: {reason}",
        comment=[f"Found by bce-harness on {backend}/{implementation}: {' '.join(reason.split())}",
                 f"from {case.source}",
                 "reproduce with: " + command])
    tmp = path.with_suffix(f".yaml.{os.getpid()}.tmp")
    tmp.write_text(text, encoding="utf-8")
    tmp.replace(path)
    return path


__all__ = ["FOUND", "disagreement", "failure_kinds", "failures", "found_name", "repro_command",
           "save_found", "shrink", "size_of"]
