"""Backends that take their process down on one shard of a sweep, for tests/test_sweep_engine.py.

Each computes what numpy's `formula` computes, except on a call whose logits include
the trigger value 0 (magnitude 0, always swept: the first shard), where:

* `CrashesOnce` ends its own process with os._exit (as a segfaulting kernel would), the
  first time only: a marker file ($BCE_SWEEP_MARKER) remembers it happened;
* `CrashesAlways` ends its own process every time;
* `KillsWorkerOnce` kills the Dask worker process that runs it (its parent), once, as
  the OOM killer or a lost node would, and writes that worker's pid into its marker;
* `Slow` sleeps $BCE_SWEEP_SLOW seconds in every call, so a test can interrupt a sweep
  while it is running.
"""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

import numpy as np

from harness.backends.numpy_backend import NumpyBackend
from harness.protocol import Call, Result

TRIGGER = 0.0


def _triggered(call: Call) -> bool:
    return bool(np.any(np.asarray(call.input) == TRIGGER))


def _first_time(name: str, note: str = "") -> bool:
    """True once per backend name: a marker file $BCE_SWEEP_MARKER.<name> holds `note`."""
    marker = Path(f"{os.environ['BCE_SWEEP_MARKER']}.{name}")
    try:
        fd = os.open(marker, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
    except FileExistsError:
        return False
    os.write(fd, note.encode())
    os.close(fd)
    return True


class _Formula(NumpyBackend):
    def implementations(self) -> list[str]:
        return ["formula"]


class CrashesOnce(_Formula):
    name = "crashes-once"

    def run(self, call: Call) -> Result:
        if _triggered(call) and _first_time(self.name):
            os._exit(3)
        return super().run(call)


class CrashesAlways(_Formula):
    name = "crashes-always"

    def run(self, call: Call) -> Result:
        if _triggered(call):
            os._exit(3)
        return super().run(call)


class KillsWorkerOnce(_Formula):
    name = "kills-worker"

    def run(self, call: Call) -> Result:
        if _triggered(call) and _first_time(self.name, str(os.getppid())):
            os.kill(os.getppid(), signal.SIGKILL)
            time.sleep(30)  # the worker is gone; this process goes with it
        return super().run(call)


class Slow(_Formula):
    name = "slow"

    def run(self, call: Call) -> Result:
        time.sleep(float(os.environ.get("BCE_SWEEP_SLOW", "0.5")))
        return super().run(call)


BACKENDS = [CrashesOnce, CrashesAlways, KillsWorkerOnce, Slow]
