"""Plugins that take their own worker down mid-run: one aborts, one hangs.

Both compute correctly except for calls with reduction "sum", where `Aborting`
kills its process with os.abort() (as a segfaulting kernel would) and `Hanging`
sleeps far past any timeout (as a deadlocked runtime would).
"""

from __future__ import annotations

import os
import time

from harness.backends.numpy_backend import NumpyBackend
from harness.protocol import Call, Result


class Aborting(NumpyBackend):
    name = "aborting"

    def implementations(self) -> list[str]:
        return ["formula"]

    def run(self, call: Call) -> Result:
        if call.reduction == "sum":
            os.abort()
        return super().run(call)


class Hanging(NumpyBackend):
    name = "hanging"

    def implementations(self) -> list[str]:
        return ["formula"]

    def run(self, call: Call) -> Result:
        if call.reduction == "sum":
            time.sleep(3600)
        return super().run(call)


BACKENDS = [Aborting, Hanging]


class TwoDevices(NumpyBackend):
    """numpy on "cpu", and on a pretend accelerator "fake:0" whose float32 results are
    one ulp off: the harness must compare the two devices and say how far apart."""

    name = "two-devices"

    def devices(self) -> list[str]:
        return ["cpu", "fake:0"]

    def implementations(self) -> list[str]:
        return ["formula"]

    def run(self, call: Call) -> Result:
        import numpy as np

        result = super().run(call)
        if call.device == "fake:0":
            v = np.asarray(result.value)
            result.value = np.nextafter(v, np.asarray(np.inf, dtype=v.dtype)).astype(v.dtype)
        return result
