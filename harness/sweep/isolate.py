"""Each backend in a process of its own, inside a Dask worker, as `report` does it.

A Dask worker runs shards of every backend; the frameworks do not always share a
process well (Keras picks its engine once per process, so `keras-jax` cannot run
where the TensorFlow backend already loaded Keras), and a framework that crashes
must cost its shard, not the worker and the references it holds. So a worker keeps
one child process per backend spec (`python -m harness.sweep.child`), started on
first use and reused for every later shard of that backend.

A child that dies during a shard is started afresh and the shard run again once;
dying a second time makes the shard an `error` record, as does running past the
timeout (the child is killed). Messages are length-prefixed pickles over the child's
stdin and a private copy of its stdout; the child's stderr goes to the worker log.
"""

from __future__ import annotations

import os
import pickle
import select
import struct
import subprocess
import sys
import time
from typing import Any

_HEADER = struct.Struct("<Q")
_CHILDREN: dict[tuple[str, str | None], Child] = {}


class ChildDied(Exception):
    """The child process ended while working (a crash, an abort, a kill)."""


class ChildHung(Exception):
    """The child did not answer within the timeout and was killed."""


class ChildFailed(Exception):
    """The child raised a Python exception (its message is the text)."""


def send(stream: Any, obj: Any) -> None:
    data = pickle.dumps(obj, protocol=pickle.HIGHEST_PROTOCOL)
    stream.write(_HEADER.pack(len(data)))
    stream.write(data)
    stream.flush()


def receive(stream: Any) -> Any:
    head = _read_exactly(stream, _HEADER.size)
    if head is None:
        raise EOFError
    (n,) = _HEADER.unpack(head)
    data = _read_exactly(stream, n)
    if data is None:
        raise EOFError
    return pickle.loads(data)


def _read_exactly(stream: Any, n: int) -> bytes | None:
    chunks, got = [], 0
    while got < n:
        b = stream.read(n - got)
        if not b:
            return None
        chunks.append(b)
        got += len(b)
    return b"".join(chunks)


class Child:
    """One child process serving one backend spec."""

    def __init__(self, log: str | None) -> None:
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(p for p in sys.path if p)
        self.log = open(log, "ab") if log else None  # noqa: SIM115 - lives with the child
        self.proc = subprocess.Popen([sys.executable, "-m", "harness.sweep.child"],
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     stderr=self.log, env=env)

    def ask(self, message: Any, timeout: float | None) -> Any:
        try:
            send(self.proc.stdin, message)
        except (BrokenPipeError, OSError):
            raise ChildDied(self._how()) from None
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            wait = None if deadline is None else max(0.0, deadline - time.monotonic())
            ready, _, _ = select.select([self.proc.stdout], [], [], wait)
            if ready:
                break
            if deadline is not None and time.monotonic() >= deadline:
                self.kill()
                raise ChildHung(f"no answer within {timeout:g} s")
        try:
            kind, payload = receive(self.proc.stdout)
        except (EOFError, OSError, pickle.UnpicklingError):
            raise ChildDied(self._how()) from None
        if kind == "exc":
            raise ChildFailed(payload)
        return payload

    def _how(self) -> str:
        try:
            code = self.proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            self.kill()
            code = self.proc.returncode
        if code is not None and code < 0:
            import signal

            try:
                return f"killed by {signal.Signals(-code).name}"
            except ValueError:
                return f"killed by signal {-code}"
        return f"exit code {code}"

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        if self.log is not None:
            self.log.close()
            self.log = None

    def close(self) -> None:
        try:
            send(self.proc.stdin, None)
            self.proc.stdin.close()
            self.proc.wait(timeout=10)
        except Exception:
            self.kill()


def ask(spec: str, message: Any, log: str | None, timeout: float | None,
        retry: bool = True) -> Any:
    """Send `message` to the child of `spec` (started if needed) and return its answer.

    A child that dies is replaced and asked again once when `retry`; ChildDied on the
    second death, ChildHung on a timeout, ChildFailed for a Python exception there.
    """
    key = (spec, log)
    attempts = 2 if retry else 1
    for attempt in range(attempts):
        child = _CHILDREN.get(key)
        if child is None or child.proc.poll() is not None:
            child = _CHILDREN[key] = Child(log)
        try:
            return child.ask(message, timeout)
        except ChildDied as exc:
            _CHILDREN.pop(key, None)
            child.kill()
            if attempt + 1 == attempts:
                raise ChildDied(f"{exc}; it died again when the shard was run on a fresh "
                                "process") from None
        except ChildHung:
            _CHILDREN.pop(key, None)
            raise
    raise AssertionError("unreachable")
