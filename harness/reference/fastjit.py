"""The fast kernel and the long dd sums compiled with numba: the numpy code's operations,
one element at a time, with the same results bit for bit.

``fastkernel.py`` runs some four hundred numpy operations per chunk, each a pass over
memory with a fresh temporary; the double-double arithmetic itself is cheap. Here the
same operations, in the same order and on the same float64 values, run in six short
compiled loops (``fastjit_loops.py``) that keep an element's intermediates in
registers, and ``ddmath.dd_sum``'s pairwise tree likewise. numba compiles with IEEE
semantics (no fast-math, no contraction of ``a*b + c`` into an FMA), so every
operation rounds as numpy's does and the results are identical:
``tests/test_reference_fast.py`` compares them bit for bit, bounds, redo masks and
condition numerators included.

numba is optional (the ``fast`` extra, in ``all``). Without it, with
``BCE_HARNESS_JIT=0``, or if numba fails to compile the loops, the numpy code runs
(``why_not`` says why). It also does so until compiling would pay (``use``):
importing numba and loading the compiled loops from numba's on-disk cache costs a
process about 0.6 s (compiling them the first time on a machine, about 4 s), which the
numpy kernel spends on some two million elements. So a process loads them once it has
sent ``JIT_AFTER`` elements through the fast kernel in chunks of ``JIT_MIN`` or more:
a report of small cases, or a test, never imports numba; a sweep or a large case soon
runs compiled. Either way the bits are the same. The cache lives next to this file, or
in numba's user cache where that is read-only.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import numpy as np

__all__ = ["JIT_AFTER", "JIT_MIN", "OUT_ROWS", "available", "dd_sum_rows", "numpy_only", "run",
           "use", "why_not"]

#: chunks smaller than this run the numpy kernel (the compiled loops gain little there)
JIT_MIN = 2048
#: elements a process sends through the numpy kernel (in chunks of JIT_MIN or more)
#: before it loads the compiled one: about what loading it costs (module docstring)
JIT_AFTER = 1 << 21

#: rows of ``run``'s output, one per per-element quantity: each bracket's (hi, lo, bound),
#: the same times w, the condition blocks, the redo flag (1.0 or 0.0), and the low words
#: of the first loop's values, which only the other loops read
(GH, GL, GD, KH, KL, KD, BH, BL, BD, YH, YL, YD,
 WGH, WGL, WGD, WKH, WKL, WKD, WBH, WBL, WBD, WYH, WYL, WYD,
 LH, SH, SBH, SSH, C1H, PYH, LGH, REDO, TH, TL, LL, SBL, SL) = range(37)
OUT_ROWS = 37

_STATE: dict[str, Any] = {}


def available() -> bool:
    """Whether the compiled kernel can run here (numba importable, not switched off)."""
    if "kernel" not in _STATE:
        _STATE["kernel"] = None
        if os.environ.get("BCE_HARNESS_JIT", "1") != "0":
            try:
                from harness.reference import fastjit_loops
            except ImportError as exc:  # numba missing, or one that cannot load here
                _STATE["why_not"] = f"numba cannot be imported ({exc})"
            except Exception as exc:  # numba's own refusal, e.g. no cache it can write
                _STATE["why_not"] = f"numba refused the compiled loops ({exc})"
            else:
                _STATE["kernel"] = fastjit_loops
        else:
            _STATE["why_not"] = "BCE_HARNESS_JIT=0"
    return _STATE["kernel"] is not None


@contextmanager
def numpy_only() -> Iterator[None]:
    """Within the block, only the numpy code runs (the benchmark's comparison row)."""
    _STATE["off"] = True
    try:
        yield
    finally:
        _STATE.pop("off")


def why_not() -> str | None:
    """Why the compiled loops do not run here (None when they can), after ``available()``."""
    return _STATE.get("why_not")


def use(n: int) -> bool:
    """Whether a fast-kernel chunk of ``n`` elements runs compiled (module docstring);
    counts the chunk toward ``JIT_AFTER``."""
    if n < JIT_MIN or _STATE.get("off"):
        return False
    _STATE["elements"] = _STATE.get("elements", 0) + n
    return _STATE["elements"] > JIT_AFTER and available()


def _compiled_now() -> bool:
    """Whether this process runs the compiled loops already (``use`` switched it)."""
    return (not _STATE.get("off") and _STATE.get("elements", 0) > JIT_AFTER
            and _STATE.get("kernel") is not None)


def _give_up(exc: Exception) -> None:
    """numba failed at a call (a compilation error, say): the numpy code from now on."""
    _STATE["kernel"] = None
    _STATE["why_not"] = f"numba failed to run the compiled loops ({type(exc).__name__}: {exc})"


def dd_sum_rows(hi: np.ndarray, lo: np.ndarray) -> tuple[np.ndarray, np.ndarray] | None:
    """``ddmath.dd_sum(hi, lo, axis=1)`` of 2-d arrays, compiled, with the same bits; None
    unless this process already runs the compiled kernel (``use``) and the rows are long
    enough to gain from it."""
    if not _compiled_now() or hi.ndim != 2 or hi.shape[1] < 256:
        return None
    out_h = np.empty(hi.shape[0])
    out_l = np.empty(hi.shape[0])
    try:
        _STATE["kernel"].dd_sum_rows(np.ascontiguousarray(hi, np.float64),
                                     np.ascontiguousarray(lo, np.float64), out_h, out_l)
    except Exception as exc:
        _give_up(exc)
        return None
    return out_h, out_l


def run(x: np.ndarray, y: np.ndarray, w: np.ndarray | None, p: np.ndarray | None,
        eps_s: float, eps_op: float, slack: float, redo_spread: float) -> np.ndarray | None:
    """Every bracket, weighted term and condition block of the chunk, as rows of one
    array (the row constants above); call only after ``use`` said yes. None if numba
    failed (the caller then runs the numpy kernel, as every later chunk will)."""
    try:
        return _run(_STATE["kernel"], x, y, w, p, eps_s, eps_op, slack, redo_spread)
    except Exception as exc:
        _give_up(exc)
        return None


def _run(k: Any, x: np.ndarray, y: np.ndarray, w: np.ndarray | None, p: np.ndarray | None,
         eps_s: float, eps_op: float, slack: float, redo_spread: float) -> np.ndarray:
    x = np.ascontiguousarray(x)
    y = np.ascontiguousarray(y)
    has_p = p is not None
    p = np.ascontiguousarray(p) if has_p else x
    n = x.size
    # rows 8 elements longer than needed: rows a multiple of 4 KiB apart share cache sets
    out = np.empty((OUT_ROWS, n + 8))[:, :n]
    th, tl, lh, ll, sbh, sbl, ssh, sh, sl = (out[TH], out[TL], out[LH], out[LL], out[SBH],
                                             out[SBL], out[SSH], out[SH], out[SL])
    k.transcendental(x, th, tl, lh, ll, sbh, sbl, ssh, sh, sl)
    redo = out[REDO]
    k.bracket_g(has_p, x, y, p, lh, ll, eps_s, redo_spread, out[GH], out[GL], out[GD], redo,
                out[C1H], out[PYH], out[LGH])
    k.bracket_b(has_p, x, p, lh, ll, eps_s, redo_spread, out[BH], out[BL], out[BD], redo)
    k.bracket_y(x, y, lh, ll, sh, sl, eps_s, out[YH], out[YL], out[YD])
    k.bracket_k(has_p, x, y, p, th, tl, sbh, sbl, eps_s, redo_spread, out[KH], out[KL],
                out[KD], redo)
    if w is not None:
        w = np.ascontiguousarray(w)
        for plain, weighted in ((GH, WGH), (KH, WKH), (BH, WBH), (YH, WYH)):
            k.weigh(plain == YH, w, out[plain], out[plain + 1], out[plain + 2], eps_op, slack,
                    out[weighted], out[weighted + 1], out[weighted + 2])
    return out
