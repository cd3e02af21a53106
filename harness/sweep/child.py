"""The process one backend runs in (see `harness.sweep.isolate`): `python -m harness.sweep.child`.

It reads requests from stdin and answers on a private copy of the original stdout;
file descriptor 1 is pointed at stderr, so whatever a framework prints cannot corrupt
the answers. Requests: ("info", spec) → `Loaded.info()`; ("shard", args) →
`harness.sweep.shard.compute(*args)`; None or end of input ends the process. It
also ends when its parent (the Dask worker) dies.
"""

from __future__ import annotations

import os
import sys
import traceback


def _die_with_parent() -> None:
    """Linux: SIGKILL this process when the worker that started it goes away."""
    if not sys.platform.startswith("linux"):
        return
    try:
        import ctypes
        import signal

        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except Exception:
        pass


def main() -> None:
    _die_with_parent()
    from harness.run.pool import single_threaded
    from harness.sweep import isolate, shard

    single_threaded()  # before any framework is imported here
    answers = os.fdopen(os.dup(1), "wb")
    os.dup2(2, 1)
    sys.stdout = sys.stderr
    requests = sys.stdin.buffer
    while True:
        try:
            msg = isolate.receive(requests)
        except EOFError:
            return
        if msg is None:
            return
        kind, payload = msg
        try:
            if kind == "info":
                answer = shard.info(payload)
            elif kind == "shard":
                answer = shard.compute(*payload)
            else:
                raise ValueError(f"unknown request {kind!r}")
            isolate.send(answers, ("ok", answer))
        except Exception as exc:
            lines = str(exc).strip().splitlines()
            tb = traceback.format_exc(limit=4).strip().splitlines()
            where = tb[-3].strip() if len(tb) >= 3 else ""
            isolate.send(answers, ("exc", f"{type(exc).__name__}: "
                                          f"{lines[0] if lines else ''} ({where})"))


if __name__ == "__main__":
    main()
