"""Plugins that take their worker down, for the report's phases after the calls.

`AbortsWhenSmall` has a planted bug (every loss 2^-6 too large, so the generated
examples fail and get shrunk) and kills its process with os.abort() on calls with
reduction "sum" and on one-element inputs: the run loses a few calls to it, and
shrinking its failures, which tries one element alone early, always takes its
worker down. `HangsAlways` never answers a call, as a deadlocked runtime would, so
its worker is killed after every timeout until the harness gives up on it.
`HangsWhenSmall` hangs where `AbortsWhenSmall` aborts, but only on one element.
"""

from __future__ import annotations

import os
import time

import numpy as np

from harness.backends.numpy_backend import NumpyBackend
from harness.protocol import Call, Result


class AbortsWhenSmall(NumpyBackend):
    name = "aborts-small"

    def implementations(self) -> list[str]:
        return ["formula"]

    def run(self, call: Call) -> Result:
        if call.reduction == "sum" or np.size(call.input) == 1:
            os.abort()
        result = super().run(call)
        v = np.asarray(result.value)
        result.value = np.asarray(v * np.asarray(1 + 2.0**-6, dtype=v.dtype), dtype=v.dtype)
        return result


class HangsWhenSmall(AbortsWhenSmall):
    """The same planted bug, but a one-element input hangs instead of aborting (and no
    call aborts): the run is whole, and shrinking its failures meets the hang."""

    name = "hangs-small"

    def run(self, call: Call) -> Result:
        if np.size(call.input) == 1:
            time.sleep(3600)
        result = NumpyBackend.run(self, call)
        v = np.asarray(result.value)
        result.value = np.asarray(v * np.asarray(1 + 2.0**-6, dtype=v.dtype), dtype=v.dtype)
        return result


class HangsAlways(NumpyBackend):
    name = "hangs-always"

    def implementations(self) -> list[str]:
        return ["formula"]

    def run(self, call: Call) -> Result:
        time.sleep(3600)
        raise AssertionError("unreachable")


BACKENDS = [AbortsWhenSmall, HangsWhenSmall, HangsAlways]
