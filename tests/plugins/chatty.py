"""A correct backend that prints to stderr on every call, from C and from Python, as
frameworks do once imported in a worker (absl, oneDNN): that chatter belongs in
OUT/workers.log, not in the harness's terminal."""

from __future__ import annotations

import os
import sys

from harness.backends.numpy_backend import NumpyBackend
from harness.protocol import Call, Result


class Chatty(NumpyBackend):
    name = "chatty"

    def run(self, call: Call) -> Result:
        os.write(2, b"I0000 chatty.cc:1] the framework's own start-up line\n")
        print("W chatty: a warning of the framework's own", file=sys.stderr)
        return super().run(call)
