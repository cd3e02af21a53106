"""The correctly rounded reference over one shard, each target, computed once.

`harness.reference.evaluate` gives the loss and ∂/∂x with their condition numbers.
A shard holds every logit with both signs (`harness.sweep.patterns`), and without a
pos_weight the loss is symmetric:

    L(x, y) = (1 − y)·sp(x) + y·sp(−x) = L(−x, 1 − y),   ∂L/∂x(x, y) = −∂L/∂x(−x, 1 − y)

(times the same weight on both sides). The reference is correctly rounded, so the
two sides are the same float64 bits, and the condition numbers, which count 1 − y and
y as the perturbed coefficients, are the same sum in the other order. So for a pair of
targets y and 1 − y (0 and 1: the hard labels) one evaluation over the shard serves
both, and y = 1/2 needs only the positive half. `tests/test_sweep_exact.py` checks
the identity against direct evaluation on every float16 logit and on float32 samples;
with a pos_weight each target is evaluated on its own.
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np

from harness import reference

QUANTITIES: tuple[str, ...] = ("value", "grad.input")

#: per target: quantity -> (correctly rounded value, condition number), shard order
RefTarget = dict[str, tuple[np.ndarray, np.ndarray]]


def mirror_of(targets: tuple[float, ...], pos_weight: float | None) -> list[int | None]:
    """For each target the index of the earlier hard label (1 for 0, 0 for 1) whose
    evaluation serves it, else None.

    Only the hard labels: for a soft pair such as 0.25 and 0.75 (and for 1/2, its own
    mirror) the values are the same bits too, but the condition numbers of x and −x come
    from different branches and may differ in their last bits, and the allowance must be
    the one `report` computes, bit for bit."""
    out: list[int | None] = []
    for i, y in enumerate(targets):
        found = None
        if pos_weight is None and y in (0.0, 1.0):
            found = next((j for j in range(i) if targets[j] == 1.0 - y), None)
        out.append(found)
    return out


def evaluate(x: np.ndarray, targets: tuple[float, ...], weight: float | None,
             pos_weight: float | None) -> dict[str, Any]:
    """The reference over logits `x` = [positives, their negatives] for every target.

    Only the targets that need an evaluation of their own are stored (`primary`); the
    others are derived on use by `for_target` (a float32 shard's reference is then half
    the size to keep and to send). `seconds`: the time spent in `reference.evaluate`."""
    half = x.size // 2
    mirror = mirror_of(targets, pos_weight)
    primary: dict[int, RefTarget] = {}
    spent = 0.0
    for i, y in enumerate(targets):
        if mirror[i] is not None:
            continue
        xs = x
        start = time.perf_counter()
        res = reference.evaluate(xs, np.full(xs.shape, y),
                                 None if weight is None else np.full(xs.shape, weight),
                                 None if pos_weight is None else np.full(xs.shape, pos_weight),
                                 reduction="none", grads=("input",))
        spent += time.perf_counter() - start
        primary[i] = {q: (res[q].value, res[q].cond) for q in QUANTITIES}
    return {"primary": primary, "mirror": mirror, "half": half, "seconds": spent}


def for_target(ref: dict[str, Any], t: int) -> RefTarget:
    """Target `t`'s reference from `evaluate`'s result: its own, or its mirror's swapped."""
    if t in ref["primary"]:
        return ref["primary"][t]
    half = ref["half"]
    out = {}
    for q, (v, c) in ref["primary"][ref["mirror"][t]].items():
        v2 = np.concatenate([v[half:], v[:half]])
        if q == "grad.input":
            v2 = -v2
        out[q] = (v2, np.concatenate([c[half:], c[:half]]))
    return out
