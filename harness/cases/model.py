"""The case model: what one test case is, and how its published values are checked.

A `Case` holds the four arguments of the loss exactly as written (float64, before
rounding to any dtype), so one case serves every dtype; `Case.materialize` does the
rounding when a dtype is chosen. Cases come from YAML files (harness/cases/loading.py)
or from Hypothesis (harness/generate/strategies.py); both end here, under the same
invariants, so nothing downstream needs to know where a case came from.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from harness.dtypes import round_to
from harness.protocol import DTYPES, GRAD_NAMES, REDUCTIONS

__all__ = ["ARG_DTYPES", "ARG_NAMES", "INT_DTYPES", "Case", "check_expect", "shape_text"]

ARG_NAMES: tuple[str, ...] = GRAD_NAMES  # the four arguments of the loss, in call order
#: Integer and bool dtypes an argument may be passed in (`arg_dtypes`), with their ranges.
INT_DTYPES: dict[str, tuple[int, int]] = {
    "bool": (0, 1),
    "uint8": (0, 255),
    "int8": (-(2**7), 2**7 - 1),
    "int16": (-(2**15), 2**15 - 1),
    "int32": (-(2**31), 2**31 - 1),
    "int64": (-(2**63), 2**63 - 1),
}
ARG_DTYPES: tuple[str, ...] = (*DTYPES, *INT_DTYPES)


@dataclass(frozen=True, eq=False)
class Case:
    """One test case: the four arguments as written, and what to run them through.

    `eq=False` keeps identity hashing: cases hold arrays, and the runner uses
    them as dictionary keys. Arrays are float64, read-only, holding the values
    exactly as written (before rounding to a dtype), so one case serves every dtype.
    """

    name: str
    source: str
    description: str
    input: np.ndarray
    target: np.ndarray
    weight: np.ndarray | None = None
    pos_weight: np.ndarray | None = None
    reductions: tuple[str, ...] = REDUCTIONS
    dtypes: tuple[str, ...] = DTYPES
    grads: tuple[str, ...] = ("input", "target")
    raises: tuple[str, ...] = ()
    arg_dtypes: dict[str, str] = field(default_factory=dict)
    expect: dict[str, Any] = field(default_factory=dict)
    tags: tuple[str, ...] = ()
    label_smoothing: float = 0.0  # Keras's: the target becomes y*(1 - a) + a/2

    def __post_init__(self) -> None:
        # Normalise here too, so cases built in code (Hypothesis strategies) obey
        # the same invariants as loaded ones.
        for name in ARG_NAMES:
            value = getattr(self, name)
            if value is None and name in ("weight", "pos_weight"):
                continue
            arr = np.array(value, dtype=np.float64)
            arr.setflags(write=False)
            object.__setattr__(self, name, arr)
        for name in ("reductions", "dtypes", "grads", "raises", "tags"):
            value = getattr(self, name)
            object.__setattr__(self, name, (value,) if isinstance(value, str) else tuple(value))
        object.__setattr__(self, "arg_dtypes", dict(self.arg_dtypes))
        object.__setattr__(self, "expect", dict(self.expect))
        object.__setattr__(self, "label_smoothing", float(self.label_smoothing))

    def smoothing(self, dtype: str) -> float:
        """The label smoothing in `dtype`, as every framework receives it (0 for none)."""
        if not self.label_smoothing:
            return 0.0
        with np.errstate(over="ignore", under="ignore"):
            return float(np.asarray(round_to(np.float64(self.label_smoothing), dtype)))

    def materialize(self, dtype: str) -> dict[str, np.ndarray | None]:
        """The four arguments as float64 arrays holding values exactly representable in `dtype`.

        Each argument is rounded to nearest-even in `dtype` (float16 overflow gives
        ±inf, bfloat16 is rounded correctly, not through float32) or in its own
        `arg_dtypes` entry. Integer and bool arguments were checked at load time to
        hold integral / 0-1 values, so they pass unchanged. Keys: input, target,
        weight, pos_weight (None when absent). Fresh arrays each call.
        """
        if dtype not in DTYPES:
            raise ValueError(f"unknown dtype {dtype!r}; expected one of {', '.join(DTYPES)}")
        out: dict[str, np.ndarray | None] = {}
        for name in ARG_NAMES:
            value = getattr(self, name)
            if value is None:
                out[name] = None
                continue
            wanted = self.arg_dtypes.get(name, dtype)
            if wanted in INT_DTYPES or wanted == "float64":
                out[name] = np.array(value, dtype=np.float64)
            else:
                with np.errstate(over="ignore", under="ignore", invalid="ignore"):
                    out[name] = np.asarray(round_to(value, wanted), dtype=np.float64)
        return out

    @property
    def shape(self) -> tuple[int, ...]:
        """The input's shape, which is also the shape of the unreduced loss."""
        return tuple(self.input.shape)

    def variants(self) -> list[tuple[str, str]]:
        """The (dtype, reduction) pairs this case expands to, in run order."""
        return [(d, r) for d in self.dtypes for r in self.reductions]

    def summary(self) -> str:
        """One line for `python -m harness cases`: name, shapes, what runs, where it is."""
        parts = [f"input{shape_text(self.input.shape)}"]
        for name in ("weight", "pos_weight"):
            value = getattr(self, name)
            if value is not None:
                parts.append(f"{name}{shape_text(value.shape)}")
        if self.arg_dtypes:
            parts.append("arg_dtypes " + ",".join(f"{k}={v}" for k, v in self.arg_dtypes.items()))
        if self.raises:
            parts.append("raises " + "|".join(self.raises))
        if self.label_smoothing:
            parts.append(f"label_smoothing {self.label_smoothing:g}")
        n = len(self.variants())
        return (f"{self.name}  {' '.join(parts)}  × {len(self.dtypes)} dtypes × "
                f"{len(self.reductions)} reductions = {n}  ({self.source})")


def shape_text(shape: tuple[int, ...]) -> str:
    """A shape as Python writes a tuple, `(3,)` included, for messages and summaries."""
    return "(" + ", ".join(map(str, shape)) + ("," if len(shape) == 1 else "") + ")"


# ----------------------------------------------------------------- published values


def check_expect(case: Case, loss: Callable[..., Any]) -> list[str]:
    """Compare a case's published values (`expect`) with `loss`; one message per mismatch.

    `loss` has the signature of `harness.reference.loss`. The arguments are first
    rounded to `expect.dtype` (default float64), the dtype the publisher held them
    in. A value passes when |got − want| ≤ abs + rel·|want|; NaN matches NaN and an
    infinity only itself. An empty list means every published value reproduced.
    """
    if not case.expect:
        return []
    args = case.materialize(case.expect.get("dtype", "float64"))
    rel = float(case.expect.get("rel", 0.0))
    tol_abs = float(case.expect.get("abs", 0.0))
    problems = []
    for reduction in REDUCTIONS:
        if reduction not in case.expect:
            continue
        want = np.asarray(case.expect[reduction], dtype=np.float64)
        got = np.asarray(loss(args["input"], args["target"], weight=args["weight"],
                              pos_weight=args["pos_weight"], reduction=reduction),
                         dtype=np.float64)
        if got.shape != want.shape:
            problems.append(f"{case.name} ({case.source}): {reduction} has shape {got.shape}, "
                            f"published {want.shape}")
            continue
        ok = _close(got, want, rel, tol_abs)
        if not ok.all():
            i = np.unravel_index(int(np.argmin(ok.ravel())), ok.shape) if ok.ndim else ()
            g, w = float(got[i]), float(want[i])
            where = f"[{', '.join(map(str, i))}]" if ok.ndim else ""
            problems.append(
                f"{case.name} ({case.source}): {reduction}{where} is {g!r}, published {w!r}, "
                f"off by {abs(g - w):.3g} (allowed {tol_abs + rel * abs(w):.3g})")
    return problems


def _close(got: np.ndarray, want: np.ndarray, rel: float, tol_abs: float) -> np.ndarray:
    with np.errstate(invalid="ignore", over="ignore"):
        both_nan = np.isnan(got) & np.isnan(want)
        near = np.abs(got - want) <= tol_abs + rel * np.abs(want)
        return both_nan | (got == want) | (np.isfinite(got) & np.isfinite(want) & near)
