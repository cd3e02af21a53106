"""A small cache of elementwise terms, so a report's repeated calls compute them once.

A report evaluates the same arguments for each reduction ("none", "mean", "sum"), and
often for several dtypes whose arrays come out identical: the elementwise terms
(everything before the reduction) are the same each time. A call of up to ``MAX_N``
elements keeps them here -- 64 MiB at most, least recently used first out, keyed by a
digest of the arguments' contents -- and the next call on the same arguments only sums
and rounds. Kept arrays are made read-only; results handed to callers are always
fresh arrays, so a caller who modifies them cannot corrupt the cache.
"""

from __future__ import annotations

import hashlib
import threading
from collections import OrderedDict
from collections.abc import Iterable, Iterator
from typing import Any

import numpy as np

from harness.reference.arguments import Arguments
from harness.reference.terms import Term

__all__ = ["CACHE", "MAX_N", "TermCache", "iter_arrays", "key"]

#: calls with at most this many elements keep their elementwise terms in the cache
#: (read at each call: the benchmark sets it to 0 to time every call in full)
MAX_N = 1 << 17


def key(args: Arguments, terms: Iterable[Term], with_cond: bool) -> bytes:
    """Digest of the arguments' float64 contents and shapes and of what is computed."""
    h = hashlib.blake2b(digest_size=20)
    shapes = [None if v is None else v.shape for v in args]
    h.update(repr((sorted(str(t) for t in terms), with_cond, shapes)).encode())
    for v in args:
        if v is not None:
            h.update(np.ascontiguousarray(v, dtype=np.float64).view(np.uint8))
    return h.digest()


def iter_arrays(obj: Any) -> Iterator[np.ndarray]:
    """Every numpy array inside nested tuples, lists and dict values."""
    if isinstance(obj, np.ndarray):
        yield obj
    elif isinstance(obj, (tuple, list)):
        for v in obj:
            yield from iter_arrays(v)
    elif isinstance(obj, dict):
        for v in obj.values():
            yield from iter_arrays(v)


class TermCache:
    """A thread-safe LRU map from ``key`` digests to ``(kinds, per-chunk results)``."""

    def __init__(self, max_bytes: int = 64 << 20, max_entries: int = 256) -> None:
        self.max_bytes = max_bytes
        self.max_entries = max_entries
        self.entries: OrderedDict[bytes, tuple[dict, list]] = OrderedDict()
        self.nbytes = 0
        self.lock = threading.Lock()

    def __len__(self) -> int:
        return len(self.entries)

    def clear(self) -> None:
        """Forget everything (the tests start from an empty cache)."""
        with self.lock:
            self.entries.clear()
            self.nbytes = 0

    def get(self, k: bytes) -> tuple[dict, list] | None:
        """The entry for ``k`` (now the most recently used), or None."""
        with self.lock:
            hit = self.entries.get(k)
            if hit is not None:
                self.entries.move_to_end(k)
            return hit

    def put(self, k: bytes, value: tuple[dict, list]) -> None:
        """Keep ``value``, read-only, unless it would fill more than half the cache."""
        size = 0
        for arr in iter_arrays(value):
            if arr.flags.writeable:
                arr.flags.writeable = False
            size += arr.nbytes
        if size > self.max_bytes // 2:
            return
        with self.lock:
            if k in self.entries:
                return
            self.entries[k] = value
            self.nbytes += size
            while self.entries and (self.nbytes > self.max_bytes
                                    or len(self.entries) > self.max_entries):
                _, old = self.entries.popitem(last=False)
                self.nbytes -= sum(a.nbytes for a in iter_arrays(old))


#: the process-wide cache ``evaluation.py`` uses
CACHE = TermCache()
