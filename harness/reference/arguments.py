"""The arguments of the loss: converted to float64 exactly, or refused with a reason.

The reference computes on the exact values it is given, so a conversion that rounds
(a large int64, a long double) would silently change the question; it is refused
instead. Shapes follow ``BCEWithLogitsLoss``: target like input, weight and pos_weight
broadcastable to the input's shape without enlarging it. The messages name the
argument and the fix, since they reach case authors through ``raises:`` cases
(``docs/cases.md``).
"""

from __future__ import annotations

from typing import Any, NamedTuple

import numpy as np

__all__ = ["GRAD_NAMES", "REDUCTIONS", "Arguments", "NotEvaluable", "prepare", "to_f64"]


class NotEvaluable(ValueError):
    """Valid arguments, but a quantity the reference cannot give exactly: a label-smoothed
    target that is not a float64 number, Keras's row means of a 0-d input. The harness
    records such a trial as `skipped` with this message rather than judging a framework
    against a rounded or made-up value."""

REDUCTIONS: tuple[str, ...] = ("none", "mean", "sum")
GRAD_NAMES: tuple[str, ...] = ("input", "target", "weight", "pos_weight")


class Arguments(NamedTuple):
    """The four arguments as float64 arrays in their own shapes (None where absent)."""

    x: np.ndarray
    y: np.ndarray
    w: np.ndarray | None
    p: np.ndarray | None


def to_f64(arr: Any, name: str) -> np.ndarray:
    """Convert any real array-like to float64 exactly, or raise ValueError."""
    a = np.asarray(arr)
    kind = a.dtype.kind
    if kind == "c":
        raise ValueError(f"{name}: complex values are not supported")
    if kind in "USMm":
        raise ValueError(f"{name}: dtype {a.dtype} is not a real number type")
    if kind == "b":
        return a.astype(np.float64)
    if kind in "iu":
        f = a.astype(np.float64)
        big = np.abs(f) >= 2.0**53
        if np.any(big):
            for v in a[big].tolist():
                if float(v) != v:
                    raise ValueError(
                        f"{name}: integer {v} has no exact float64 value; pass floats instead"
                    )
        return f
    if kind == "f" and a.dtype.itemsize <= 8:
        return a.astype(np.float64)
    if kind == "O":
        try:
            a = np.asarray(a.tolist(), dtype=np.float64)
        except (TypeError, ValueError) as exc:
            raise ValueError(f"{name}: expected real numbers ({exc})") from None
        return a
    try:
        f = a.astype(np.float64)
        back = f.astype(a.dtype)
    except (TypeError, ValueError):
        raise ValueError(f"{name}: dtype {a.dtype} is not a real number type") from None
    same = (back == a) | (np.isnan(f) & np.isnan(back.astype(np.float64)))
    if not np.all(same):
        raise ValueError(f"{name}: dtype {a.dtype} does not convert exactly to float64")
    return f


def _fmt_shape(s: tuple[int, ...]) -> str:
    """A shape as PyTorch prints it in its messages, ``(3,)`` and ``(2, 3)``."""
    return "(" + ", ".join(str(d) for d in s) + ("," if len(s) == 1 else "") + ")"


def prepare(input: Any, target: Any, weight: Any, pos_weight: Any, reduction: str) -> Arguments:
    """Check the reduction and the shapes and convert every argument (``to_f64``)."""
    if reduction not in REDUCTIONS:
        raise ValueError(
            f"reduction {reduction!r} is not valid; valid values are " + ", ".join(REDUCTIONS)
        )
    x = to_f64(input, "input")
    y = to_f64(target, "target")
    if x.shape != y.shape:
        raise ValueError(
            f"Target size {_fmt_shape(y.shape)} must be the same as input size "
            f"{_fmt_shape(x.shape)}"
        )
    w = _broadcastable(weight, "weight", x.shape)
    p = _broadcastable(pos_weight, "pos_weight", x.shape)
    return Arguments(x, y, w, p)


def _broadcastable(v: Any, name: str, shape: tuple[int, ...]) -> np.ndarray | None:
    """weight or pos_weight converted, if it broadcasts to ``shape`` without enlarging it."""
    if v is None:
        return None
    v = to_f64(v, name)
    try:
        bshape = np.broadcast_shapes(v.shape, shape)
    except ValueError:
        bshape = None
    if bshape != shape:
        raise ValueError(
            f"{name} of shape {_fmt_shape(v.shape)} must broadcast to the input's shape "
            f"{_fmt_shape(shape)} without enlarging it"
        )
    return v
