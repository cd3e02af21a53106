"""Label smoothing, exactly: the smoothed target and the factor on its gradient.

Keras's ``BinaryCrossentropy(label_smoothing=a)`` (and optax's ``smooth_labels`` over
two classes) train on ``y' = y * (1 - a) + a / 2`` in place of ``y``. The loss is then
the ordinary loss at ``y'``, and the gradient with respect to the label ``y`` is
``(1 - a)`` times the gradient with respect to ``y'``.

The reference never rounds ``y'``: it evaluates the loss at ``y'`` only where ``y'`` is
a float64 number, and refuses (ValueError, saying how to fix the case) where it is
not. For the labels and ``a`` of float32 and narrower cases ``y'`` is exact in float64
(a product of two 24-bit significands and a sum within 53 bits), so the refusals
are float64 cases with a smoothing that is not a power of two; the harness records
those trials as `skipped` with this module's message rather than judging a
framework against a rounded target.
"""

from __future__ import annotations

from fractions import Fraction

import numpy as np

from harness.reference import ddmath as dm
from harness.reference.arguments import NotEvaluable

__all__ = ["scaled_weight", "smoothed"]

# Where the unscaled two_prod/two_sum are exact witnesses (no overflow in the split,
# an error term that cannot underflow); other finite elements are checked with Fraction.
_SAFE_HI = 2.0 ** 500
_SAFE_LO = 2.0 ** -400


def _check_alpha(alpha: float) -> float:
    a = float(alpha)
    if not (0.0 <= a <= 1.0):
        raise ValueError(f"label_smoothing: {alpha!r} is outside [0, 1]; Keras and optax "
                         "smooth toward 1/2 with a factor between 0 and 1")
    return a


def _exact_product(a: np.ndarray, b: float | np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``fl(a * b)`` and a mask of the elements where it is the exact product."""
    a, b = np.broadcast_arrays(np.asarray(a, np.float64), np.asarray(b, np.float64))
    with np.errstate(all="ignore"):
        p, e = dm.two_prod_arr(a, b)
    finite = np.isfinite(p)
    witnessed = ((np.abs(a) < _SAFE_HI) & (np.abs(b) < _SAFE_HI)
                 & ((np.abs(p) >= _SAFE_LO) | (a == 0) | (b == 0)))
    ok = ~finite | (witnessed & (e == 0))
    for i in zip(*np.nonzero(finite & ~witnessed), strict=True):
        ok[i] = Fraction(float(a[i])) * Fraction(float(b[i])) == Fraction(float(p[i]))
    return p, ok


def smoothed(target: np.ndarray, alpha: float) -> np.ndarray:
    """``target * (1 - alpha) + alpha / 2``, exact, or ValueError where it is not a float64."""
    a = _check_alpha(alpha)
    y = np.asarray(target, np.float64)
    if a == 0.0:
        return y
    keep = 1.0 - a
    half = a / 2
    if keep + a != 1.0 or half * 2 != a:
        raise NotEvaluable(f"label_smoothing: 1 - {a!r} or {a!r} / 2 is not a float64 number; "
                         "use a smoothing representable in the case's dtype")
    p, ok = _exact_product(y, keep)
    with np.errstate(all="ignore"):
        s, e = dm.two_sum_arr(p, np.full_like(p, half))
    finite = np.isfinite(s)
    ok &= ~finite | (e == 0)
    if not ok.all():
        bad = int(np.count_nonzero(~ok))
        first = float(y.reshape(-1)[np.flatnonzero(~ok.reshape(-1))[0]])
        raise NotEvaluable(
            f"label_smoothing: the smoothed target y*(1 - {a!r}) + {a!r}/2 is not a float64 "
            f"number for {bad} of {y.size} targets (first: y = {first!r}); the reference "
            "evaluates only exact smoothed targets: use float32 or narrower cases, or a "
            "smoothing and targets with short significands (e.g. a power of two)")
    return s.reshape(y.shape)


def scaled_weight(weight: np.ndarray | None, alpha: float) -> np.ndarray:
    """``weight * (1 - alpha)`` exactly (``1 - alpha`` for no weight): the gradient with
    respect to the label is the gradient with respect to ``y'`` under this weight."""
    keep = 1.0 - _check_alpha(alpha)
    if weight is None:
        return np.float64(keep)
    w, ok = _exact_product(np.asarray(weight, np.float64), keep)
    if not ok.all():
        raise NotEvaluable(f"label_smoothing: weight * (1 - {alpha!r}) is not a float64 number "
                         f"for {int(np.count_nonzero(~ok))} weights; the reference evaluates "
                         "the label gradient only where it is exact")
    return w
