"""A backend with a compiled implementation that drifts from its eager twin.

`formula` is numpy's stable formula (eager); `formula+fused` stands for a compiled
version of it that rewrites the loss where x > 20 as x·(1 − y) (dropping the
log1p(e^(−x)) term, as a fusing compiler that "simplifies" softplus might): about
2e-9 relative at x = 20, far beyond float64's allowance. Both are judged against the
reference; `vs-eager` must also say the compiled one moved away from the eager one.
`formula+same` is a faithful compiled twin: it must agree bit for bit.
"""

from __future__ import annotations

import numpy as np

from harness.backends.numpy_backend import NumpyBackend
from harness.protocol import Call, Result


class CompiledTwin(NumpyBackend):
    name = "compiled-twin"

    def implementations(self) -> list[str]:
        return ["formula", "formula+fused", "formula+same"]

    def eager_twins(self) -> dict[str, str]:
        return {"formula+fused": "formula", "formula+same": "formula"}

    def run(self, call: Call) -> Result:
        from dataclasses import replace

        result = super().run(replace(call, implementation="formula"))
        if call.implementation != "formula+fused" or call.reduction != "none":
            return result
        x, y = np.asarray(call.input), np.asarray(call.target)
        v = np.array(result.value, copy=True)
        big = x > 20
        v[big] = (x * (1 - y))[big]
        result.value = v
        return result


BACKENDS = [CompiledTwin]
