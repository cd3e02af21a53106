"""The public float64 reference for BCEWithLogitsLoss (README, "The reference").

What it promises
----------------
Every returned float64 is the exact mathematical value correctly rounded (to nearest,
ties to even): the elementwise losses, the reduced loss (``"mean"`` is the exact sum
divided by the element count, rounded once) and every gradient (summed exactly over
broadcast dimensions, then rounded once). Elementwise, with ``x`` = input, ``y`` =
target, ``w`` = weight, ``p`` = pos_weight and ``sp(z) = log(1 + e**z)``::

    loss  = w * [(1 - y) * sp(x) + p * y * sp(-x)]
    d/dx  = w * [(1 - y) * s(x) - p * y * s(-x)]          s = logistic sigmoid
    d/dy  = w * [p * sp(-x) - sp(x)]
    d/dw  = (1 - y) * sp(x) + p * y * sp(-x)
    d/dp  = w * y * sp(-x)

Nothing here evaluates those formulas in float64: each quantity is computed in
double-double with a rigorous error bound, and where the bound cannot settle the
rounding (Ziv's strategy) it is recomputed exactly. So the result is correctly rounded
always, not just almost always.

Layout
------
The data flow, one job per module:

* ``arguments.py`` -- conversion of the arguments to float64, exactly, and shape checks.
* ``specials.py`` -- NaN and infinite arguments: finite stand-ins for the kernels, and
  the limits (below) that replace their results.
* ``elementwise.py`` -- the general kernel: each quantity as ``w * (R0 + R1*F)`` in
  scaled double-double (``scaled.py``), with its error bound; ``fastkernel.py`` -- the
  same results for ordinary arguments, faster. ``terms.py`` names what they compute.
* ``condition.py`` -- the condition numbers returned beside each value.
* ``sums.py`` -- sums of the exact terms for reductions and broadcast gradients.
* ``exact.py`` -- the exact path, for the results whose rounding the bound leaves open.
* ``evaluation.py`` -- the driver tying these together chunk by chunk; ``cache.py``
  keeps elementwise terms between the calls of a report.
* ``ddmath.py`` (error-free transformations, double-double arithmetic),
  ``ddfunctions.py`` (``exp``, ``log1p``) and ``ddround.py`` (rounding to float64,
  Ziv's test): the arithmetic everything above is built on.

Special values
--------------
The value at a non-finite argument is the mathematical limit with the other
arguments fixed:

* NaN in any argument of an element: NaN for every quantity of that element.
* ``x = +-inf``: ``sp(+inf) = +inf``, ``sp(-inf) = 0``, ``s(+inf) = 1``, ``s(-inf) = 0``,
  and each quantity is a single product of arguments and one of those limits, e.g.
  loss(+inf) = ``w*(1-y)*inf``, loss(-inf) = ``w*p*y*inf``, d/dx(+inf) = ``w*(1-y)``,
  d/dx(-inf) = ``-w*p*y``. A factor that is exactly zero (w = 0, p = 0, y = 0, y = 1
  making 1 - y = 0, or a zero limit) makes the product 0 even when another factor is
  infinite; otherwise an infinite factor makes it +-inf. Infinite y, w or p together
  with an infinite x follow the same product rule (the x-limit is taken first).
* ``x`` finite and y, w or p infinite: every quantity is affine in each of y, w, p, i.e.
  ``Q = Q0 + v*Q1`` with ``Q1 = dQ/dv``. The limit is ``sign(v*Q1)*inf`` when the exact
  ``Q1`` is non-zero and ``Q0`` otherwise. For the loss and y this reads
  ``w*sp(x) + y*w*(p*sp(-x) - sp(x))``: +-inf by the sign of the y-gradient, not the NaN
  that ``(1-y)*sp(x) + p*y*sp(-x)`` gives term by term. Several of y, w, p infinite at
  once: the product of the infinite arguments with the highest such monomial dominates
  (e.g. loss with y and p infinite -> ``sign(w*p*y)*inf``). The one sign taken in float64
  is that of ``s(x) + p*s(-x)`` (d/dx with y infinite and p < 0), whose exact zero at
  x = 0, p = -1 is nevertheless honoured.

Condition numbers
-----------------
``evaluate`` returns, next to each value, the componentwise relative condition
number ``sum_z |z * dq/dz| / |q|`` over the arguments present (an absent weight or
pos_weight is a constant, not an input; in the loss, d/dx and d/dw the target counts as its
two coefficients ``1 - y`` and ``y``), the cancellation ``spread`` of a sum and the
number of terms. They are float64 estimates meant for tolerances, computed on frexp
mantissas so that they neither overflow nor produce NaN for finite inputs; the second
derivatives they need are written out in ``condition.numerators``. Conventions: ``q == 0``
with a zero numerator gives 0, with a non-zero one inf; non-finite values (and any
element with a non-finite argument, whose limits are exact) give 0. A reduced result
``sum t_i`` has ``cond = sum |t_i| cond_i / |sum t_i|`` and ``spread = sum|t_i| / |sum t_i|``.

Speed
-----
Work is done in chunks of 16384 elements so the numpy temporaries of a chunk stay
in cache; for arrays of 65536 elements or more glibc's heap trimming is relaxed once
per process (``evaluation._tune_malloc``), which otherwise costs more in page faults
than the arithmetic. On ordinary arguments (the fast kernel) expect about 1.5e6-1.7e6
elements per second for loss and all gradients with condition numbers on one core,
about 9x (mean) and 14-15x (none) the time of a plain float64 numpy formula on a quiet
machine (``benchmarks/bench_reference.py``); elements outside the fast domain cost about
twice as much. A call of up to 131072 elements keeps its elementwise terms in a small
cache (``cache.py``: 64 MiB at most, keyed by the arguments' contents), so the "none",
"mean" and "sum" calls of a report on the same arguments compute them once.

Zeros: a result whose exact value is non-zero but rounds to zero keeps the sign of
the exact value; the sign of an exact zero is not part of the contract.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from harness.reference.arguments import GRAD_NAMES, REDUCTIONS, NotEvaluable, to_f64
from harness.reference.evaluation import Quantity, compute
from harness.reference.smoothing import scaled_weight, smoothed

__all__ = ["GRAD_NAMES", "REDUCTIONS", "NotEvaluable", "Quantity", "evaluate", "grads", "loss"]


def loss(
    input: Any,
    target: Any,
    weight: Any = None,
    pos_weight: Any = None,
    reduction: str = "mean",
    *,
    label_smoothing: float = 0.0,
    last_axis_mean: bool = False,
) -> np.ndarray:
    """BCEWithLogitsLoss, correctly rounded: elementwise for ``"none"``, 0-d otherwise.

    ``label_smoothing`` (Keras's) evaluates at the smoothed target ``y(1 - a) + a/2``,
    exactly; ``last_axis_mean`` (Keras's reduction) averages each row along the last
    axis first (see ``evaluate``)."""
    return _compute(input, target, weight, pos_weight, reduction, True, (), False, (),
                    last_axis_mean, label_smoothing)["value"].value


def grads(
    input: Any,
    target: Any,
    weight: Any = None,
    pos_weight: Any = None,
    reduction: str = "mean",
    *,
    label_smoothing: float = 0.0,
    last_axis_mean: bool = False,
) -> dict[str, np.ndarray]:
    """Gradients of the reduced loss (of the sum of elementwise losses for ``"none"``).

    Keys ``"input"``, ``"target"``, and ``"weight"``/``"pos_weight"`` when given; each
    array is shaped like its argument (broadcast dimensions summed exactly). With
    ``label_smoothing`` the target gradient is with respect to the label ``y``, not the
    smoothed target.
    """
    res = _compute(input, target, weight, pos_weight, reduction, False, GRAD_NAMES, False, (),
                   last_axis_mean, label_smoothing)
    return {k[len("grad.") :]: q.value for k, q in res.items()}


def evaluate(
    input: Any,
    target: Any,
    weight: Any = None,
    pos_weight: Any = None,
    reduction: str = "mean",
    grads: tuple[str, ...] | list[str] = GRAD_NAMES,
    *,
    jvps: tuple[str, ...] | list[str] = (),
    label_smoothing: float = 0.0,
    last_axis_mean: bool = False,
) -> dict[str, Quantity]:
    """Value and gradients with condition numbers, for the comparison.

    Keys: ``"value"`` and ``"grad.<name>"`` for each name in ``grads`` whose argument is
    present (``weight``/``pos_weight`` only when given), and ``"jvp.<name>"`` for each
    name in ``jvps``: the forward-mode derivative along a tangent of ones on that
    argument (elementwise for ``"none"``, the exact sum of the gradient's terms for
    ``"mean"``/``"sum"``).

    ``label_smoothing=a``: the loss at ``y(1 - a) + a/2`` (never rounded: ValueError
    where that is not a float64 number), gradients with respect to the label.
    ``last_axis_mean``: Keras's reduction, which averages over the last axis first:
    ``"none"`` gives the row means, ``"sum"`` their sum, ``"mean"`` the mean.
    """
    for g in (*grads, *jvps):
        if g not in GRAD_NAMES:
            raise ValueError(f"unknown gradient {g!r}; valid names are {', '.join(GRAD_NAMES)}")
    return _compute(input, target, weight, pos_weight, reduction, True, tuple(grads), True,
                    tuple(jvps), last_axis_mean, label_smoothing)


def _compute(input: Any, target: Any, weight: Any, pos_weight: Any, reduction: str,
             want_value: bool, grad_names: tuple[str, ...], with_cond: bool,
             jvp_names: tuple[str, ...], last_axis_mean: bool,
             label_smoothing: float) -> dict[str, Quantity]:
    """`compute`, at the smoothed target when smoothing: the loss is the ordinary loss at
    ``y'``, and the label's gradient is ``(1 - a)`` times ``y'``'s, which is the
    gradient under the weight ``w(1 - a)`` (exact), so both stay correctly rounded."""
    if not label_smoothing:
        return compute(input, target, weight, pos_weight, reduction, want_value, grad_names,
                       with_cond, jvp_names, last_axis_mean)
    y = smoothed(to_f64(target, "target"), label_smoothing)
    rest = tuple(g for g in grad_names if g != "target")
    out = compute(input, y, weight, pos_weight, reduction, want_value, rest, with_cond,
                  tuple(g for g in jvp_names if g != "target"), last_axis_mean)
    if "target" in grad_names or "target" in jvp_names:
        w = None if weight is None else to_f64(weight, "weight")
        label = compute(input, y, scaled_weight(w, label_smoothing), pos_weight, reduction,
                        False, ("target",) if "target" in grad_names else (), with_cond,
                        ("target",) if "target" in jvp_names else (), last_axis_mean)
        out.update(label)
    return out
