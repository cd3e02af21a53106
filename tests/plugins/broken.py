"""A plugin whose formula is subtly wrong, as real ports are.

`log(1 + exp(-|x|))` instead of `log1p(exp(-|x|))`: identical for moderate logits,
so a spot check at x = 0.5 passes, but the positive term of a confident correct
prediction (x ≳ 37 with y = 1) rounds to exactly 0 instead of ≈ e^-x. The harness
must catch it. Standalone on purpose: this is what a third-party plugin looks like.
"""

from __future__ import annotations

import numpy as np

from harness.protocol import Call, Result, Unsupported


class SubtlyWrong:
    name = "subtly-wrong"

    def availability(self) -> str | None:
        return None

    def versions(self) -> dict[str, str]:
        return {"numpy": np.__version__}

    def devices(self) -> list[str]:
        return ["cpu"]

    def dtypes(self) -> list[str]:
        return ["float32", "float64"]

    def implementations(self) -> list[str]:
        return ["log-of-1-plus"]

    def run(self, call: Call) -> Result:
        if call.weight is not None or call.pos_weight is not None:
            raise Unsupported("this plugin implements the unweighted loss only")
        x = call.input.astype(call.dtype)
        y = call.target.astype(call.dtype)
        one = x.dtype.type(1)

        def softplus(z):
            return np.maximum(z, 0) + np.log(one + np.exp(-np.abs(z)))  # the bug

        with np.errstate(all="ignore"):
            loss = (one - y) * softplus(x) + y * softplus(-x)
            sig = one / (one + np.exp(-x))
            grad = sig - y
        if call.reduction == "mean":
            value, grad = loss.mean(), grad / x.dtype.type(max(x.size, 1))
        elif call.reduction == "sum":
            value = loss.sum()
        else:
            value = loss
        grads = {}
        if "input" in call.grads:
            grads["input"] = grad.astype(x.dtype)
        if "target" in call.grads:
            grads["target"] = Unsupported("no target gradient in this plugin")
        return Result(np.asarray(value, dtype=x.dtype), grads)
