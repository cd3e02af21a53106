"""Expectations: known framework discrepancies declared as mechanisms, not as case names.

An expectation says *where* a framework is known to differ from the reference and
*why*: backend, implementation(s), dtype(s), device type, check(s), reduction(s), a
`kind` from a fixed vocabulary, a one-line `reason`, the `upstream` report where one
exists, and a `where:` predicate over each element's value classes
(`harness.verdict.predicate`), e.g. ``input < -16 and target == 0``. Keyed on
properties, never on one case, so a generated case that shows a listed mechanism is
`known`, and a renamed case cannot silently stop matching.

The rule that keeps green results worth something: a failing check becomes `known`
only when *every* failing element is covered by some expectation of that backend
implementation. One uncovered element keeps the check `fail`, and its message names
that element, so a new bug inside a call that already shows a known mechanism is
still seen.

Over a whole run each expectation is also judged (`Ledger.finish`): `used` when it
covered failing elements; `fixed` when it covered elements and all of them pass now
(an upstream fix: remove or narrow it), or `passing` when the run was narrowed by
--cases, --dtype or --device and so may not reach its failures; `unused` when it
covered nothing although its backend ran (a stale or mistyped entry, never silently
ignored); `not-run` when
nothing in its scope ran (another backend, dtype or device than this run's).
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from harness.protocol import DTYPES, REDUCTIONS, Call
from harness.records import CHECKS, Record, Status, encode_float
from harness.run.registry import DISABLE_ENV, UsageError
from harness.verdict.predicate import Elements, Predicate, PredicateError, parse

#: cases/expectations.yaml, through the package's harness/shipped_cases (a link to
#: the repository's cases/ in a checkout, a copy in an installed wheel)
SHIPPED = (Path(__file__).parents[1] / "shipped_cases").resolve() / "expectations.yaml"
SCHEMA_PATH = Path(__file__).resolve().parent.parent / "schema" / "expectations.schema.json"
#: Entry-point group through which a plugin package ships its own expectations: the
#: object it names is a path (str or Path), a list of paths, or a callable returning one.
GROUP = "bce_harness.expectations"
DEVICE_TYPES: tuple[str, ...] = ("cpu", "cuda", "any")

#: The kinds of discrepancy, each a mechanism a reader can recognise. A fixed
#: vocabulary, so that reports can be grouped and a typo is an error, not a new kind.
KINDS: dict[str, str] = {
    "unstable-by-design": "the sigmoid-then-BCE twin of the logits form: the instability the "
                          "logits form exists to avoid (reported in full, never unexpected)",
    "half-precision": "float16/bfloat16 computed op by op in the format, each intermediate "
                      "rounded to 8 or 11 bits",
    "computed-in-float32": "wider arguments computed in float32 (or a narrower type)",
    "result-dtype": "the result's dtype is not the promotion of the arguments' dtypes",
    "result-shape": "the result's shape differs from the reference's",
    "result-not-float": "the result is not a floating-point array",
    "empty-reduction": "a mean over no elements is not NaN, or a sum over none is not 0",
    "raises-on-valid-input": "an exception for arguments the reference accepts",
    "wrong-error": "invalid arguments refused with another exception type than ValueError",
    "silent-accept": "invalid arguments (shapes that do not match) silently accepted",
    "special-value-in-reduction": "a NaN or inf of one element reaches the mean or sum "
                                  "where the exact reduction is finite",
    "infinite-argument": "an infinite argument gives NaN where the limit exists",
    "nan-propagation": "a NaN argument does not reach every quantity of its element",
    "overflow": "an intermediate overflows although the exact result is representable",
    "subnormal-flushed": "a result in the subnormal range flushed to zero",
    "cancellation-negative-logit": "the loss formed as (1 − y)·x + softplus(−x): cancels for "
                                   "x < 0",
    "cancellation-soft-target": "x − x·y cancels for soft targets near 0 or 1",
    "hard-label-gradient": "∂/∂x formed as σ(x) − y: zero or inaccurate once σ(x) rounds to y",
    "target-gradient-cancellation": "∂/∂y as a difference of two softplus values, which cancels",
    "gradient-at-zero": "a wrong subgradient at x = 0 of abs/max inside the formula",
    "integer-wraparound": "integer arguments used in integer arithmetic that wraps",
    "accuracy": "beyond a backward-stable formula's allowance for another reason named in "
                "the entry",
    "missing-derivative": "a derivative the framework silently takes as zero",
    "nondeterministic": "repeating the call changes the bits",
    "device-mismatch": "an accelerator's answer differs from the CPU's beyond the allowance",
}

_SCOPE_FIELDS = ("implementation", "dtype", "device", "check", "reduction")
_FIELDS = ("backend", *_SCOPE_FIELDS, "kind", "reason", "upstream", "where")


@dataclass(eq=False)
class Expectation:
    """One declared mechanism, its scope, and what it covered in this run."""

    id: str  # file:line, so every message says which entry to look at
    backend: str
    kind: str
    reason: str
    upstream: str | None = None
    implementations: frozenset[str] | None = None  # None: every implementation
    dtypes: frozenset[str] | None = None
    device: str = "any"
    checks: frozenset[str] | None = None
    reductions: frozenset[str] | None = None
    where: Predicate | None = None
    # the run's ledger
    in_scope: int = 0  # checks judged inside its scope
    covered_failing: int = 0  # failing elements it covered
    covered_passing: int = 0  # passing elements it covered
    _passing_records: list[Record] = field(default_factory=list, repr=False)
    narrowed: bool = False  # judged in a narrowed run: `passing` instead of `fixed`

    def scoped(self, implementation: str, device: str, dtype: str, reduction: str) -> bool:
        """Whether a call lies inside this expectation's scope (the check aside)."""
        return ((self.implementations is None or implementation in self.implementations)
                and (self.dtypes is None or dtype in self.dtypes)
                and (self.device == "any" or device.split(":", 1)[0] == self.device)
                and (self.reductions is None or reduction in self.reductions))

    def note(self) -> dict[str, Any]:
        """What a covered record carries of its expectation."""
        return {"id": self.id, "kind": self.kind, "reason": self.reason,
                "upstream": self.upstream}

    @property
    def outcome(self) -> str:
        """used / fixed / passing / unused / not-run (module docstring)."""
        if self.covered_failing:
            return "used"
        if self.covered_passing:
            return "passing" if self.narrowed else "fixed"
        return "unused" if self.in_scope else "not-run"

    def summary(self) -> dict[str, Any]:
        """The report's `expectations` entry."""
        return {**self.note(), "backend": self.backend,
                "scope": {"implementation": _listed(self.implementations),
                          "dtype": _listed(self.dtypes), "device": self.device,
                          "check": _listed(self.checks), "reduction": _listed(self.reductions)},
                "where": self.where.text if self.where else None,
                "status": self.outcome, "checks_in_scope": self.in_scope,
                "failing_covered": self.covered_failing,
                "passing_covered": self.covered_passing}


def _listed(values: frozenset[str] | None) -> list[str] | str:
    return "any" if values is None else sorted(values)


# ----------------------------------------------------------------- evidence ----

@dataclass(frozen=True)
class Evidence:
    """What the judge saw of one check, element by element, for the expectations.

    `failing` is shaped like the checked quantity (True where beyond the allowance);
    None for a check about the whole call (raises, dtype, shape, an exception,
    determinism, vs-cpu), which counts as one element whose arguments are all of the
    call's elements.
    """

    call: Call
    check: str
    failing: np.ndarray | None = None
    expected: np.ndarray | None = None
    got: np.ndarray | None = None
    measured: str | None = None


_ARGS = ("input", "target", "weight", "pos_weight")


def _argument_rows(call: Call) -> tuple[dict[str, np.ndarray | None], int]:
    """Every argument broadcast to the input's shape and flattened: one row per element.

    An argument that does not broadcast (a case that expects an error) is left out
    (absent to the predicate) rather than guessed at.
    """
    x = np.asarray(call.input, dtype=np.float64)
    n = x.size
    rows: dict[str, np.ndarray | None] = {"input": x.reshape(-1)}
    for name in _ARGS[1:]:
        a = getattr(call, name)
        if a is None:
            rows[name] = None
            continue
        try:
            rows[name] = np.broadcast_to(np.asarray(a, dtype=np.float64), x.shape).reshape(-1)
        except ValueError:
            rows[name] = None
    return rows, n


def _groups(call: Call, check: str, result_shape: tuple[int, ...], n: int) -> np.ndarray | None:
    """For each input element, the index of the result element it contributes to.

    Elementwise results map one to one; a mean or sum maps everything to its one
    element; the gradient of a broadcast weight maps each input element to the weight
    element it was broadcast from. None when the shapes say nothing sensible (the
    caller then treats the check as one element).
    """
    shape = np.shape(call.input)
    size = int(np.prod(result_shape, dtype=np.int64))
    if tuple(result_shape) == tuple(shape):
        return np.arange(n)
    if size == 1:
        return np.zeros(n, dtype=np.int64)
    if check == "value" and len(shape) and tuple(result_shape) == tuple(shape[:-1]):
        # Keras's row means (a broadcast weight's gradient may have that shape too: below)
        return np.arange(n) // max(1, shape[-1])
    if check in ("grad.weight", "grad.pos_weight"):
        try:
            idx = np.arange(size).reshape(result_shape)
            return np.broadcast_to(idx, shape).reshape(-1)
        except ValueError:
            return None
    return None


class Coverage:
    """Which result elements of one check each expectation covers (computed lazily)."""

    def __init__(self, ev: Evidence) -> None:
        self.ev = ev
        call = ev.call
        rows, n = _argument_rows(call)
        self.call_level = ev.failing is None
        result_shape = () if self.call_level else tuple(ev.failing.shape)
        groups = None if self.call_level else _groups(call, ev.check, result_shape, n)
        if groups is None:
            self.call_level = True
            groups = np.zeros(n, dtype=np.int64)
            self.size = 1
        else:
            self.size = int(np.prod(result_shape, dtype=np.int64))
        values: dict[str, np.ndarray | None] = dict(rows)
        if n == 0:  # one virtual row, so call-level tests ('input empty') can hold
            values = dict.fromkeys(rows)
            groups = np.zeros(1, dtype=np.int64)
            n = 1
        for name, arr in (("expected", ev.expected), ("got", ev.got)):
            values[name] = (None if arr is None or self.call_level or rows["input"].size == 0
                            else np.asarray(arr, dtype=np.float64).reshape(-1)[groups])
        values["size"] = np.full(n, float(np.size(call.input)))
        values["smoothing"] = np.full(n, float(getattr(call, "label_smoothing", 0.0)))
        self.groups = groups
        self.identity = groups.size == self.size and bool(
            (groups == np.arange(groups.size)).all())
        self.elements = Elements(values=values, dtype=call.dtype,
                                 measured=ev.measured or call.dtype,
                                 arg_dtypes={a: call.dtype_of(a) for a in _ARGS
                                             if a == "input" or a == "target"
                                             or getattr(call, a) is not None},
                                 empty=np.size(call.input) == 0, n=n)

    @property
    def failing(self) -> np.ndarray:
        """Failing result elements, flat (one element for a call-level check)."""
        if self.call_level:
            return np.ones(1, dtype=bool)
        return np.asarray(self.ev.failing, dtype=bool).reshape(-1)

    def covered(self, e: Expectation) -> np.ndarray:
        """Result elements (flat) with at least one contributing row where `e` holds."""
        if e.where is None:
            return np.ones(self.size, dtype=bool)
        rows = e.where.evaluate(self.elements)
        if self.size == 1:  # a whole call, or a reduced result: any contributing row
            return np.array([rows.any()])
        if self.identity:  # an elementwise result: each row is its own element
            return rows
        return np.bincount(self.groups, weights=rows, minlength=self.size)[: self.size] > 0

    def describe(self, flat: int) -> str:
        """One failing element for a message: its index, arguments and values."""
        call = self.ev.call
        if self.call_level:
            return "the call as a whole"
        idx = np.unravel_index(flat, self.ev.failing.shape) if self.ev.failing.ndim else ()
        parts = [f"at {list(map(int, idx))}"]
        rows = np.flatnonzero(self.groups == flat)
        if rows.size == 1 or (self.ev.failing.shape == np.shape(call.input)):
            r = int(rows[0]) if rows.size else flat
            for name in _ARGS:
                v = self.elements.values.get(name)
                if v is not None and r < v.size:
                    parts.append(f"{name}={_short(v[r])}")
        else:
            parts.append(f"(a sum over {rows.size} elements)")
        if self.ev.got is not None and self.ev.expected is not None:
            got = np.asarray(self.ev.got).reshape(-1)[flat]
            want = np.asarray(self.ev.expected).reshape(-1)[flat]
            parts.append(f"got {_short(got)}, expected {_short(want)}")
        return " ".join(parts)


def _short(v: Any) -> str:
    return f"{float(v):.6g}"


# ------------------------------------------------------------------ the list ----

class Expectations:
    """The expectations of a run, indexed by backend, and the run's ledger."""

    def __init__(self, items: Iterable[Expectation] = ()) -> None:
        self.items: list[Expectation] = list(items)
        self._by_backend: dict[str, list[Expectation]] = {}
        for e in self.items:
            self._by_backend.setdefault(e.backend, []).append(e)
        self._scope_cache: dict[tuple[str, str, str, str, str], list[Expectation]] = {}

    def __len__(self) -> int:
        return len(self.items)

    def for_call(self, backend: str, implementation: str, device: str, dtype: str,
                 reduction: str) -> list[Expectation]:
        key = (backend, implementation, device, dtype, reduction)
        found = self._scope_cache.get(key)
        if found is None:
            found = [e for e in self._by_backend.get(backend, ())
                     if e.scoped(implementation, device, dtype, reduction)]
            self._scope_cache[key] = found
        return found

    def apply(self, judged: list[tuple[Record, Evidence | None]]) -> list[Record]:
        """Turn failing records whose every failing element is covered into `known`.

        `judged` pairs each record with the judge's evidence (None: nothing to
        cover, e.g. `unsupported`). Also keeps the ledger: what each expectation
        covered, failing or passing. Returns the records (changed in place).
        """
        out = []
        for rec, ev in judged:
            out.append(rec)
            status = rec.get("status")
            if ev is None or status not in (Status.FAIL, Status.ERROR, Status.PASS):
                continue
            scope = [e for e in self.for_call(rec["backend"], rec["implementation"],
                                              rec["device"], rec["dtype"], rec["reduction"])
                     if e.checks is None or rec["check"] in e.checks]
            if not scope:
                continue
            for e in scope:
                e.in_scope += 1
            if status == Status.PASS:
                self._ledger_pass(rec, ev, scope)
            else:
                self._cover_failure(rec, ev, scope)
        return out

    def _ledger_pass(self, rec: Record, ev: Evidence, scope: list[Expectation]) -> None:
        # An expectation that already covered a failure cannot be `fixed`: skip the
        # predicate. This keeps matching cheap (most expectations are used early).
        live = [e for e in scope if not e.covered_failing]
        if not live:
            return
        cov = Coverage(ev)
        for e in live:
            n = int(np.count_nonzero(cov.covered(e)))
            if n:
                e.covered_passing += n
                e._passing_records.append(rec)

    def _cover_failure(self, rec: Record, ev: Evidence, scope: list[Expectation]) -> None:
        cov = Coverage(ev)
        failing = cov.failing
        union = np.zeros_like(failing)
        used = []
        for e in scope:
            c = cov.covered(e)
            hit = int(np.count_nonzero(c & failing))
            if hit:
                e.covered_failing += hit
                e._passing_records.clear()
                used.append(e)
            e.covered_passing += int(np.count_nonzero(c & ~failing))
            union |= c
        uncovered = np.flatnonzero(failing & ~union)
        if used:
            rec["expected_by"] = [e.note() for e in used]
        if uncovered.size == 0 and used:
            rec["status"] = Status.KNOWN.value
            return
        if used:
            n_fail = int(np.count_nonzero(failing))
            rec["uncovered"] = int(uncovered.size)
            rec["message"] = (f"{rec.get('message', '')}; {uncovered.size} of {n_fail} failing "
                              f"element(s) not covered by any expectation, first "
                              f"{cov.describe(int(uncovered[0]))}")

    def finish(self, narrowed: bool = False) -> list[dict[str, Any]]:
        """Close the ledger: mark the records of `fixed` expectations; the summaries.

        `narrowed`: the run left out some of the shipped cases, dtypes or devices. Every
        shipped expectation is shown failing by the whole shipped run; a narrowed run
        may reach only an expectation's passing elements (float32 alone, or a case file
        without the failing cases), which is no evidence of a fix. Its expectations are
        then `passing`, not `fixed`, and their records stay `pass`."""
        for e in self.items:
            if e.outcome == "fixed" and narrowed:
                e.narrowed = True
            elif e.outcome == "fixed":
                for rec in e._passing_records:
                    if rec.get("status") == Status.PASS:
                        rec["status"] = Status.FIXED.value
                        rec["expected_by"] = [e.note()]
                        rec["message"] = (f"{rec.get('message', '')}; expected to fail by "
                                          f"{e.id} ({e.kind}) but every element it covers "
                                          "passes now: remove or narrow the expectation")
            e._passing_records.clear()
        return [e.summary() for e in self.items]

    def reset(self) -> None:
        """Forget what was covered (a fresh run with the same list)."""
        for e in self.items:
            e.in_scope = e.covered_failing = e.covered_passing = 0
            e.narrowed = False
            e._passing_records.clear()


# ------------------------------------------------------------------- loading ----

def schema() -> dict[str, Any]:
    return json.loads(SCHEMA_PATH.read_text(encoding="utf-8"))


def _loader() -> type:
    return getattr(yaml, "CSafeLoader", yaml.SafeLoader)


def load_file(path: str | Path) -> list[Expectation]:
    """The expectations of one file; bad content is a UsageError naming file:line."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise UsageError(f"{path}: cannot read the expectations file ({exc.strerror}). Give "
                         "the path of a YAML file with an `expectations:` list.") from None
    try:
        root = yaml.compose(text, Loader=_loader())
        data = yaml.load(text, Loader=_loader())
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"{path}:{mark.line + 1}:{mark.column + 1}" if mark else f"{path}"
        raise UsageError(f"{where}: this is not valid YAML "
                         f"({getattr(exc, 'problem', None) or exc}). Fix the syntax; the file "
                         "holds `expectations:` followed by `- backend: ...` entries "
                         "(docs/expectations.md).") from None
    if isinstance(data, dict) and "known" in data and "expectations" not in data:
        raise UsageError(f"{path}:1: this is a per-case known-discrepancy list (`known:`), the "
                         "format before expectations. Rewrite its entries as mechanisms under "
                         "`expectations:` with a `where:` predicate (docs/expectations.md).")
    if not isinstance(data, dict) or not isinstance(data.get("expectations"), list):
        raise UsageError(f"{path}:1: the file must be a mapping with an `expectations:` list. "
                         "Write `expectations:` followed by `- backend: torch` entries "
                         "(docs/expectations.md).")
    nodes = _entry_nodes(root)
    _validate(data, path, nodes)
    out = []
    for i, item in enumerate(data["expectations"]):
        node = nodes[i]
        out.append(_build(item, f"{_display(path)}:{node.start_mark.line + 1}", node, path))
    return out


def _display(path: Path) -> str:
    """A path as messages show it: relative to the working directory or, for the
    shipped list, to the repository, so ids read the same on every machine."""
    path = path.resolve()
    for root in (Path.cwd(), SHIPPED.parent.parent):
        try:
            return str(path.relative_to(root))
        except ValueError:
            continue
    return str(path)


def _entry_nodes(root: Any) -> list[Any]:
    for key, value in root.value:
        if key.value == "expectations":
            return list(value.value)
    return []


def _line_of(node: Any, key: str | None = None) -> tuple[int, int]:
    if key is not None and isinstance(node, yaml.MappingNode):
        for k, v in node.value:
            if k.value == key:
                return v.start_mark.line + 1, v.start_mark.column + 1
    return node.start_mark.line + 1, node.start_mark.column + 1


_FIXES = {
    "backend": "name the backend as `python -m harness backends` lists it, e.g. `torch`",
    "kind": "use one of the kinds in docs/expectations.md",
    "reason": "say in one line what the framework does and why it differs",
    "dtype": f"use one of {', '.join(DTYPES)} or `any`",
    "device": f"use one of {', '.join(DEVICE_TYPES)}",
    "check": f"use one of {', '.join(CHECKS)} or `any`",
    "reduction": f"use one of {', '.join(REDUCTIONS)} or `any`",
    "upstream": "give the URL of the upstream issue or pull request",
}


def _validate(data: dict[str, Any], path: Path, nodes: list[Any]) -> None:
    import jsonschema

    validator = jsonschema.Draft202012Validator(schema())
    errors = sorted(validator.iter_errors(data), key=lambda e: list(e.absolute_path))
    if not errors:
        return
    err = errors[0]
    p = list(err.absolute_path)
    node, key = None, None
    if len(p) >= 2 and p[0] == "expectations" and isinstance(p[1], int) and p[1] < len(nodes):
        node = nodes[p[1]]
        key = p[2] if len(p) >= 3 and isinstance(p[2], str) else None
    line, col = _line_of(node, key) if node is not None else (1, 1)
    what = err.message
    fix = ""
    if err.validator == "additionalProperties":
        extra = sorted(set(err.instance) - set(_FIELDS))
        what = f"unknown key(s) {', '.join(map(repr, extra))}"
        fix = f"valid keys are {', '.join(_FIELDS)}"
        line, col = _line_of(node, extra[0]) if node is not None else (line, col)
    elif err.validator == "required":
        missing = err.message.split("'")[1] if "'" in err.message else "?"
        what = f"the entry has no `{missing}`"
        fix = _FIXES.get(missing, "")
    elif key in _FIXES:
        what = f"`{key}`: {err.message}"
        fix = _FIXES[key]
    raise UsageError(f"{path}:{line}:{col}: {what}." + (f" Fix: {fix}." if fix else "")
                     + " See docs/expectations.md.")


def _as_set(value: Any) -> frozenset[str] | None:
    if value is None or value == "any":
        return None
    if isinstance(value, list):
        return None if "any" in value else frozenset(str(v) for v in value)
    return frozenset([str(value)])


def _build(item: dict[str, Any], where: str, node: Any, path: Path) -> Expectation:
    predicate = None
    if item.get("where") is not None:
        text = str(item["where"])
        try:
            predicate = parse(text)
        except PredicateError as exc:
            line, col = _line_of(node, "where")
            raise UsageError(f"{path}:{line}:{col + exc.column}: in `where: {text}`: {exc} "
                             "(the predicate language is in docs/expectations.md)") from None
    return Expectation(id=where, backend=str(item["backend"]), kind=str(item["kind"]),
                       reason=" ".join(str(item["reason"]).split()),
                       upstream=item.get("upstream"),
                       implementations=_as_set(item.get("implementation")),
                       dtypes=_as_set(item.get("dtype")),
                       device=str(item.get("device", "any")),
                       checks=_as_set(item.get("check")),
                       reductions=_as_set(item.get("reduction")), where=predicate)


def plugin_files() -> list[Path]:
    """Expectation files shipped by installed packages (entry-point group GROUP)."""
    if os.environ.get(DISABLE_ENV):
        return []
    paths: list[Path] = []
    for ep in metadata.entry_points(group=GROUP):
        try:
            obj = ep.load()
            obj = obj() if callable(obj) else obj
        except Exception as exc:
            raise UsageError(f"the expectations entry point {ep.name!r} ({ep.value}) cannot be "
                             f"loaded ({type(exc).__name__}: {exc}). Fix or uninstall the "
                             f"package, or set {DISABLE_ENV}=1 to ignore entry points.") from None
        for p in obj if isinstance(obj, list | tuple) else [obj]:
            paths.append(Path(p))
    return paths


def load(paths: Iterable[str | Path] | None = None, *, shipped: bool = True,
         plugins: bool = True) -> Expectations:
    """The run's expectations: the shipped list, plugin packages' lists, and `paths`."""
    files: list[Path] = []
    if shipped and SHIPPED.exists():
        files.append(SHIPPED)
    if plugins:
        files.extend(plugin_files())
    files.extend(Path(p) for p in paths or ())
    items: list[Expectation] = []
    for f in dict.fromkeys(files):
        items.extend(load_file(f))
    return Expectations(items)


__all__ = ["DEVICE_TYPES", "GROUP", "KINDS", "SHIPPED", "Coverage", "Evidence", "Expectation",
           "Expectations", "encode_float", "load", "load_file", "plugin_files"]
