"""From one call's outcome and the reference to the report's result records.

A call yields several checks: `shape`, `dtype`, `value`, one `grad.<name>` per
gradient asked for, or a single `raises` check when the case expects an error. Each
record is a plain JSON-ready dict (`harness.records.Record`), so the runner can
stream records to disk the moment a call finishes. Next to each record the judge
keeps its `Evidence` (which elements failed, the arguments, the two values), which
the expectations need to decide whether *every* failing element is covered.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from harness.dtypes import dtype_name, promote
from harness.protocol import Call, Result, Unsupported
from harness.records import Record, encode_float, encode_floats, fail_message, pass_message
from harness.reference.arguments import NotEvaluable
from harness.verdict import ulps
from harness.verdict.expectations import Evidence


@dataclass(frozen=True)
class Raised:
    """A backend raised something other than Unsupported: its type, bases and message."""

    type: str
    bases: tuple[str, ...]
    message: str

    @classmethod
    def from_exception(cls, exc: BaseException) -> Raised:
        bases = tuple(k.__name__ for k in type(exc).__mro__)
        message = str(exc).strip().splitlines()
        return cls(type(exc).__name__, bases, " ".join(message)[:2000])

    def __str__(self) -> str:
        return f"{self.type}: {self.message}" if self.message else self.type


Outcome = Result | Raised | Unsupported


fnum = encode_float  # the one JSON float codec (harness.records)


def _elem(arr: np.ndarray | None, index: tuple[int, ...], shape: tuple[int, ...]) -> Any:
    """The value of a (possibly broadcast) argument at an element of the input's shape."""
    if arr is None:
        return None
    a = np.asarray(arr, dtype=np.float64)
    if a.shape != shape:
        a = np.broadcast_to(a, shape)
    return fnum(a[index])


JVP_CHECKS = ("jvp.input", "jvp.target", "jvp.weight", "jvp.pos_weight")
SMALL = 16  # results this small carry every value, for the report's edge-case tables
PROFILE_POINTS = 600  # a sweep's error profile is thinned to this many points


Judged = list[tuple[Record, Evidence | None]]


def judge(call: Call, outcome: Outcome, expected: dict | Exception, raises: tuple[str, ...],
          base: dict[str, Any], profile: bool = False) -> list[Record]:
    """Records for one call (see `judge_call`, which also returns the evidence)."""
    return [rec for rec, _ in judge_call(call, outcome, expected, raises, base, profile)]


def judge_call(call: Call, outcome: Outcome, expected: dict | Exception,
               raises: tuple[str, ...], base: dict[str, Any], profile: bool = False) -> Judged:
    """Records for one call, each with the evidence expectations are matched against.

    `expected` is reference.evaluate's output, or the exception the reference raised
    for these arguments; `base` carries the fields every record shares (backend,
    implementation, device, dtype, case, reduction...). With `profile`, elementwise
    checks also carry the error at every input value (thinned), for the report's
    "ulp error against the logit" plots."""
    def record(check: str, status: str, message: str = "", **extra: Any) -> Record:
        return {**base, "check": check, "status": status, "message": message, **extra}

    def whole(rec: Record) -> tuple[Record, Evidence]:
        return rec, Evidence(call, rec["check"])

    if raises:
        return [whole(_judge_raises(outcome, raises, record))]
    if isinstance(expected, NotEvaluable):
        return [(record("value", "skipped", f"not compared: {expected}"), None)]
    if isinstance(outcome, Unsupported):
        return [(record("value", "unsupported", outcome.reason), None)]
    if isinstance(outcome, Raised):
        return [whole(record("value", "error", str(outcome)))]
    if isinstance(expected, Exception):
        return [(record("value", "error",
                        f"the reference refuses these arguments ({expected}); the case should "
                        "declare `raises:`"), None)]
    return _judge_result(call, outcome, expected, record, profile)


def determinism(first: Outcome, second: Outcome, base: dict[str, Any]) -> dict[str, Any]:
    """Did the same call, repeated, give the same bits? If not, by how much it wobbles.

    Only results are compared; an exception or Unsupported both times is consistent.
    Bitwise, because "close" is what the other checks are for: here any difference
    means the framework's answer depends on something other than its inputs
    (thread scheduling, atomics, autotuning).
    """
    rec = {**base, "check": "determinism"}
    if not isinstance(first, Result) or not isinstance(second, Result):
        same = type(first) is type(second)
        return {**rec, "status": "pass" if same else "fail",
                "message": "both runs ended the same way" if same else
                f"first run: {type(first).__name__}, second: {type(second).__name__}"}
    worst, where = 0.0, ""
    pairs = [("value", first.value, second.value)]
    pairs += [(f"grad.{k}", v, second.grads.get(k)) for k, v in first.grads.items()
              if isinstance(v, np.ndarray)]
    for name, a, b in pairs:
        a, b = np.asarray(a), np.asarray(b)
        if a.shape != b.shape or a.dtype != b.dtype:
            return {**rec, "status": "fail", "message": f"{name}: shape or dtype changed"}
        if a.tobytes() == b.tobytes():
            continue
        from harness.dtypes import FORMATS
        from harness.verdict.ulps import ulp_distance

        fmt = FORMATS.get(_safe_dtype_name(a.dtype), FORMATS["float64"])
        with np.errstate(all="ignore"):
            d = ulp_distance(b.astype(np.float64), a.astype(np.float64), fmt)
        d = np.where(np.isnan(a.astype(np.float64)) & np.isnan(b.astype(np.float64)), 0, d)
        if d.max(initial=0) >= worst:
            worst, where = float(d.max(initial=0)), name
    if not where:
        return {**rec, "status": "pass", "message": "bitwise identical when repeated"}
    return {**rec, "status": "fail", "kind": "nondeterministic", "max_ulp": fnum(worst),
            "message": f"repeating the call changes {where} by up to {worst:.3g} ulp"}


def against_twin(first: Outcome, other: Outcome, expected: dict | Exception, dtype: str,
                 base: dict[str, Any], check: str, first_name: str,
                 other_name: str) -> list[dict[str, Any]]:
    """How far one answer is from its twin's: another device's from the CPU's
    (`vs-cpu`), a compiled implementation's from its eager one's (`vs-eager`).

    Both are already judged against the reference; this check answers the porting
    questions "will my model behave the same on the GPU?" and "does compiling change
    my numbers?", in ulps of the format, with the same allowance the reference
    comparison uses.
    """
    rec = {**base, "check": check}
    if not isinstance(first, Result) or not isinstance(other, Result) or isinstance(
            expected, Exception):
        return []
    pairs = [("value", first.value, other.value)]
    pairs += [(f"grad.{k}", v, other.grads.get(k)) for k, v in first.grads.items()
              if isinstance(v, np.ndarray) and isinstance(other.grads.get(k), np.ndarray)]
    worst, where, allowed, ok = 0.0, "value", 0.0, True
    for name, a, b in pairs:
        a, b = np.asarray(a), np.asarray(b)
        ref = expected.get(name)
        if ref is None or a.shape != b.shape or a.shape != ref.value.shape:
            continue
        with np.errstate(all="ignore"):
            d = ulps.measure(b.astype(np.float64), a.astype(np.float64), ref.cond,
                             ref.spread, ref.terms, ulps.coarser(dtype, a.dtype))
        if d.ulps.size and float(d.ulps.max()) >= worst:
            i = ulps.worst_index(d)
            worst, where, allowed = float(d.ulps.max()), name, float(d.allowance[i])
        ok &= d.passed
    msg = (f"{other_name} and {first_name} agree bit for bit" if worst == 0 else
           f"{other_name} differs from {first_name} by up to {worst:.3g} ulp in {where}")
    return [{**rec, "status": "pass" if ok else "fail", "message": msg,
             "max_ulp": fnum(worst), "allowance": fnum(allowed), "worst": None}]


def _judge_raises(outcome: Outcome, raises: tuple[str, ...], record) -> dict[str, Any]:
    wanted = " or ".join(raises)
    if isinstance(outcome, Unsupported):
        return record("raises", "unsupported", outcome.reason)
    if isinstance(outcome, Raised):
        if outcome.type == "WorkerError":  # the framework never answered: no verdict on it
            return record("raises", "error", f"{outcome}; the case expects {wanted}")
        if set(outcome.bases) & set(raises):
            return record("raises", "pass", f"raised {outcome}")
        return record("raises", "fail", f"raised {outcome}; the case expects {wanted}",
                      kind="wrong-error")
    shape = tuple(np.shape(outcome.value))
    return record("raises", "fail",
                  f"returned a value of shape {shape} where {wanted} was expected: the "
                  "framework silently accepted invalid arguments (broadcast or cast)",
                  kind="silent-accept")


def _expected_dtype(call: Call) -> str:
    names = [call.dtype_of("input"), call.dtype_of("target")]
    names += [call.dtype_of(n) for n in ("weight", "pos_weight") if getattr(call, n) is not None]
    return promote(names)


def _judge_result(call: Call, result: Result, expected: dict, record,
                  profile: bool) -> Judged:
    records: Judged = []
    value = np.asarray(result.value)
    want_dtype = _expected_dtype(call)
    ref_value = expected["value"]

    # shape: the value's and every returned gradient's
    problems = []
    if value.shape != ref_value.value.shape:
        problems.append(f"value has shape {value.shape}, expected {ref_value.value.shape}")
    derivatives = _derivatives(call, result)
    for check, g, _ in derivatives:
        ref = expected.get(check)
        if isinstance(g, np.ndarray) and ref is not None and g.shape != ref.value.shape:
            problems.append(f"{check} has shape {g.shape}, expected {ref.value.shape}")
    records.append((record("shape", "fail" if problems else "pass", "; ".join(problems)),
                    Evidence(call, "shape")))

    # dtype: the value in the promoted dtype, each gradient in its argument's dtype
    problems = []
    got_name = _safe_dtype_name(value.dtype)
    if got_name != want_dtype:
        problems.append(f"value is {got_name}, expected {want_dtype}")
    for check, g, wanted in derivatives:
        if isinstance(g, np.ndarray) and _safe_dtype_name(g.dtype) != wanted:
            problems.append(f"{check} is {_safe_dtype_name(g.dtype)}, expected {wanted}")
    records.append((record("dtype", "fail" if problems else "pass", "; ".join(problems)),
                    Evidence(call, "dtype")))

    records.append(_judge_quantity(call, "value", value, ref_value, want_dtype, record, profile))
    for check, g, wanted in derivatives:
        ref = expected.get(check)
        if ref is None:
            continue
        mode = "gradient" if check.startswith("grad.") else "forward-mode derivative"
        if isinstance(g, Unsupported):
            records.append((record(check, "unsupported", g.reason), None))
        elif g is None:
            records.append((record(check, "error", f"the backend returned no {mode} for "
                                   f"{check.split('.', 1)[1]}"), None))
        else:
            records.append(_judge_quantity(call, check, np.asarray(g), ref, wanted, record,
                                           profile))
    return records


def _derivatives(call: Call, result: Result) -> list[tuple[str, Any, str]]:
    """(check, what the backend returned, the dtype it should have) for every gradient
    and forward-mode derivative the call asked for. A gradient has its argument's dtype;
    a forward-mode derivative (a change of the loss) has the loss's."""
    out: list[tuple[str, Any, str]] = [(f"grad.{n}", result.grads.get(n), call.dtype_of(n))
                                       for n in call.grads]
    forward = getattr(result, "forward", None) or {}
    out += [(f"jvp.{n}", forward.get(n), _expected_dtype(call)) for n in call.forward]
    return out


def _safe_dtype_name(dt: np.dtype) -> str:
    try:
        return dtype_name(dt)
    except TypeError:
        return str(dt)


def _judge_quantity(call: Call, check: str, got: np.ndarray, ref, want_dtype: str,
                    record, profile: bool = False) -> tuple[Record, Evidence | None]:
    if got.shape != ref.value.shape:
        return record(check, "skipped",
                      "not compared: the shape differs (see the shape check)"), None
    if got.dtype.kind not in "fc" and _safe_dtype_name(got.dtype) != "bfloat16":
        return (record(check, "fail", f"the result is not floating point ({got.dtype})",
                       max_ulp=None, worst=None), Evidence(call, check))
    measured = ulps.coarser(want_dtype, got.dtype)
    with np.errstate(invalid="ignore", over="ignore"):
        got64 = got.astype(np.float64)
    dist = ulps.measure(got64, ref.value, ref.cond, ref.spread, ref.terms, measured)
    failing = ~dist.within
    evidence = Evidence(call, check, failing=failing, expected=ref.value, got=got64,
                        measured=measured)
    passed = not failing.any()
    extra: dict[str, Any] = {"measured_in": measured, "elements": int(got.size)}
    if got.size == 0:
        return record(check, "pass", "empty result", max_ulp=0.0, allowance=None, worst=None,
                      **extra), evidence
    idx = ulps.worst_index(dist)
    worst = _element(call, check, idx, got64, ref, dist)
    largest_idx = ulps.largest_index(dist)
    largest = worst if largest_idx == idx else _element(call, check, largest_idx, got64, ref,
                                                          dist)
    if got.size <= SMALL:
        extra["values"] = {"got": encode_floats(got64), "expected": encode_floats(ref.value)}
    if profile and got.shape == np.shape(call.input) and got.ndim == 1 and got.size > SMALL:
        step = max(1, got.size // PROFILE_POINTS)
        extra["profile"] = {
            "x": encode_floats(np.asarray(call.input, dtype=np.float64)[::step]),
            "ulp": encode_floats(dist.ulps[::step]),
            "allowance": encode_floats(dist.allowance[::step])}
    max_ulp = float(dist.ulps[largest_idx])
    n_bad = int(np.count_nonzero(failing))
    if passed:
        message = pass_message(max_ulp, measured, list(largest_idx), largest["got"],
                               largest["expected"], largest["allowance"])
    else:
        extra["failing"] = n_bad
        message = fail_message(n_bad, int(got.size), list(idx), worst["got"], worst["expected"],
                               worst["ulp"], worst["allowance"])
    return record(check, "pass" if passed else "fail", message, max_ulp=fnum(max_ulp),
                  allowance=fnum(dist.allowance[idx]), cond=fnum(ref.cond[idx]), worst=worst,
                  **({} if largest is worst else {"largest": largest}), **extra), evidence


def _element(call: Call, check: str, idx: tuple[int, ...], got64: np.ndarray, ref,
             dist: ulps.Distance) -> dict[str, Any]:
    """One element of a checked quantity, as the report shows it."""
    return {
        "index": list(idx),
        "expected": fnum(ref.value[idx]),
        "got": fnum(got64[idx]),
        "ulp": fnum(dist.ulps[idx]),
        "allowance": fnum(dist.allowance[idx]),
        "cond": fnum(ref.cond[idx]),
        "inputs": _worst_inputs(call, check, idx),
    }


def _worst_inputs(call: Call, check: str, idx: tuple[int, ...]) -> dict[str, Any]:
    """The arguments at the worst element, when that element is one element of the input.

    For a reduced value or a broadcast parameter's gradient the worst element is a
    sum over many; the inputs are then described by their shapes.
    """
    shape = np.shape(call.input)
    target_shape = {"value": None, "grad.input": shape, "grad.target": shape,
                    "grad.weight": np.shape(call.weight) if call.weight is not None else None,
                    "grad.pos_weight": (np.shape(call.pos_weight)
                                        if call.pos_weight is not None else None)}.get(check)
    elementwise = (check in ("grad.input", "grad.target")
                   or (check in ("value", *JVP_CHECKS) and call.reduction == "none")
                   or (target_shape == shape))
    if elementwise and len(idx) == len(shape):
        return {name: _elem(getattr(call, name), idx, shape)
                for name in ("input", "target", "weight", "pos_weight")}
    return {name: (None if getattr(call, name) is None
                   else f"array of shape {list(np.shape(getattr(call, name)))}")
            for name in ("input", "target", "weight", "pos_weight")}

