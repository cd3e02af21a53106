"""PyTorch with one planted bug on top of its real mechanisms (tests/test_expectations.py).

The backend keeps the name `torch`, so torch's expectations apply to it. Its loss
is multiplied by 1 + 2⁻⁸ where input > 20 and target = 0: a bug inside calls that
already fail for torch's own reasons (the cancellation at x < 0 on the same sweep),
which an expectation matched per call would have hidden.
"""

from __future__ import annotations

import numpy as np

from harness.backends.torch_backend import TorchBackend
from harness.protocol import Call, Result


class PlantedTorch(TorchBackend):
    """torch, with the loss × (1 + 2⁻⁸) where input > 20 and target = 0 (reduction none)."""

    bug = "loss × (1 + 2⁻⁸) where input > 20 and target = 0"

    def run(self, call: Call) -> Result:
        result = super().run(call)
        if call.reduction != "none":
            return result
        value = np.asarray(result.value)
        hit = (np.asarray(call.input) > 20) & (np.asarray(call.target) == 0)
        scaled = (value.astype(np.float64) * (1 + 2.0**-8)).astype(value.dtype)
        return Result(np.where(hit, scaled, value), result.grads)
