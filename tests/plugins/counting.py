"""Five numpy backends that log each call's process and time span, to count how many
worker processes run at once. The log is the file named by $BCE_TEST_CALL_LOG, one
line per call: pid, start, end (time.time())."""

from __future__ import annotations

import os
import time

from harness.backends.numpy_backend import NumpyBackend
from harness.protocol import Call, Result

LOG_ENV = "BCE_TEST_CALL_LOG"


class _Counted(NumpyBackend):
    def implementations(self) -> list[str]:
        return ["formula"]

    def run(self, call: Call) -> Result:
        start = time.time()
        time.sleep(0.02)  # long enough for calls of different workers to overlap
        result = super().run(call)
        path = os.environ.get(LOG_ENV)
        if path:
            with open(path, "a", encoding="utf-8") as fh:
                fh.write(f"{os.getpid()} {start!r} {time.time()!r}\n")
        return result


BACKENDS = [type(f"Counted{i}", (_Counted,), {"name": f"counted-{i}"}) for i in range(5)]


class Steady(NumpyBackend):
    """numpy's formula, each call 0.3 s long (a sleep: wall time, however busy the
    machine): always well inside a 1 s --timeout, and always with an answer on the way."""

    name = "steady"

    def implementations(self) -> list[str]:
        return ["formula"]

    def run(self, call: Call) -> Result:
        time.sleep(0.3)
        return super().run(call)


BACKENDS += [Steady, type("SteadyTwin", (Steady,), {"name": "steady-twin"})]
