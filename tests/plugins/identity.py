"""A backend with two different bugs, for shrinking that must keep a failure's identity.

With reduction "none": the loss of a confident correct prediction (x ≤ -30, y = 0:
the exact value is ≈ e^x, about 1.9e-22 at x = -50) underflows to 0, and an input of
exactly 0 gives NaN. Shrinking the first bug toward simpler values meets the second
(x = -50 → x = 0), which is a different failure: a shrunk reproduction of the
underflow must still show an underflow.
"""

from __future__ import annotations

import numpy as np

from harness.backends.numpy_backend import NumpyBackend
from harness.protocol import Call, Result


class TwoBugs(NumpyBackend):
    name = "two-bugs"

    def implementations(self) -> list[str]:
        return ["formula"]

    def run(self, call: Call) -> Result:
        result = super().run(call)
        if call.reduction != "none":
            return result
        v = np.array(result.value, copy=True)
        v[np.asarray(call.input) <= -30] = 0  # underflow: 0 where the loss is tiny
        v[np.asarray(call.input) == 0] = np.nan  # NaN at x = 0
        result.value = v
        return result


BACKENDS = [TwoBugs]
