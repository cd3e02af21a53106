"""The driver: from the public call to rounded results, chunk by chunk.

``compute`` runs the steps every public function shares:

1. convert and check the arguments (``arguments.py``), pick the outputs asked for;
2. flatten them, broadcasting weight and pos_weight to the input's shape;
3. find the special elements and replace them by finite stand-ins (``specials.py``);
4. take the elementwise terms from the cache (``cache.py``) or compute them in chunks of
   ``CHUNK`` elements -- the numpy temporaries of a chunk then stay in cache -- with the
   fast or the general kernel (``elementwise.run_chunk``);
5. hand each chunk's terms to one plan per output, which rounds them at once
   (elementwise outputs) or keeps them for a sum (``sums.py``);
6. finish each output: the exact path for what Ziv's test left unsettled (``exact.py``),
   the special values' limits, the condition numbers (``condition.py``).
"""

from __future__ import annotations

import os
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple

import numpy as np

from harness.reference import cache, condition, elementwise, exact, fastkernel, specials, sums
from harness.reference import ddmath as dm
from harness.reference import ddround as dr
from harness.reference import scaled as sd
from harness.reference.arguments import Arguments, NotEvaluable, prepare
from harness.reference.specials import CODE, KIND_VALUES, Sanitised
from harness.reference.terms import (
    GRAD_INPUT,
    GRAD_POS_WEIGHT,
    GRAD_TARGET,
    GRAD_WEIGHT,
    LOSS,
    ChunkResult,
    Term,
)

__all__ = ["CHUNK", "Quantity", "compute"]

#: elements per chunk: small enough for a chunk's temporaries to stay in the CPU cache
CHUNK = 1 << 14


@dataclass(frozen=True)
class Quantity:
    """One returned result and what the comparison needs to judge it.

    ``value``: float64, correctly rounded, shaped as returned. ``cond``: componentwise
    relative condition number (0 for non-finite values and where every partial is 0;
    inf for an exact zero that has non-zero partials). ``spread``: ``sum|t_i| / |sum t_i|``
    over the summed terms (1.0 where nothing is summed). ``terms``: how many terms were
    summed into each element (int64).
    """

    value: np.ndarray
    cond: np.ndarray
    spread: np.ndarray
    terms: np.ndarray


class _Output(NamedTuple):
    """One output ``evaluate`` can return: its key, its argument, the term it sums."""

    name: str
    arg: str | None  # the argument a gradient is taken with respect to; None: the loss
    term: Term
    forward: bool = False  # a forward-mode derivative: tangent of ones on ``arg``


_OUTPUTS = (
    _Output("value", None, LOSS),
    _Output("grad.input", "input", GRAD_INPUT),
    _Output("grad.target", "target", GRAD_TARGET),
    _Output("grad.weight", "weight", GRAD_WEIGHT),
    _Output("grad.pos_weight", "pos_weight", GRAD_POS_WEIGHT),
)
_JVP_OUTPUTS = tuple(_Output("jvp." + o.arg, o.arg, o.term, True) for o in _OUTPUTS[1:])
_ARG_FIELD = {"input": "x", "target": "y", "weight": "w", "pos_weight": "p"}


def compute(input: Any, target: Any, weight: Any, pos_weight: Any, reduction: str,
            want_value: bool, grad_names: Sequence[str], with_cond: bool,
            jvp_names: Sequence[str] = (), last_axis_mean: bool = False,
            ) -> dict[str, Quantity]:
    """The loss (``want_value``) and the gradients named in ``grad_names`` whose argument
    is present, keyed ``"value"`` and ``"grad.<name>"``; condition numbers only with
    ``with_cond`` (otherwise ``cond``/``spread``/``terms`` of elementwise outputs are
    read-only placeholders).

    ``jvp_names`` adds forward-mode derivatives, ``"jvp.<name>"``: the derivative of the
    reduced loss along a tangent of ones on that argument (zeros on the others). For
    ``"none"`` it is elementwise (each loss depends on one element of the argument, so
    it is the gradient with the argument broadcast to the input's shape); for
    ``"mean"``/``"sum"`` it is the exact sum of the elementwise terms, rounded once.

    ``last_axis_mean`` is Keras's convention: each row along the last axis is averaged
    before the reduction. ``"none"`` then returns the row means (the input's shape
    without its last axis), ``"sum"`` their sum (the total divided by the row length,
    rounded once), and ``"mean"`` is unchanged (the mean of equal-length row means is
    the mean); gradients follow.
    """
    args = prepare(input, target, weight, pos_weight, reduction)  # step 1
    if last_axis_mean and args.x.ndim == 0:
        raise NotEvaluable("input: a 0-d input has no last axis to average over "
                         "(last_axis_mean needs at least one dimension)")
    outputs = [o for o in _OUTPUTS
               if (o.arg is None and want_value)
               or (o.arg in grad_names and _arg(args, o.arg) is not None)]
    outputs += [o for o in _JVP_OUTPUTS if o.arg in jvp_names and _arg(args, o.arg) is not None]
    n = args.x.size
    if n == 0:
        return _empty(outputs, args, reduction, last_axis_mean)
    if n >= 1 << 16:
        _tune_malloc()
    flat = _flatten(args)  # step 2
    special, san = specials.classify(flat)  # step 3
    terms = {o.term for o in outputs}
    # step 4: the cache is read at each call (the benchmark sets MAX_N to 0)
    ck = cache.key(args, terms, with_cond) if n <= cache.MAX_N else None
    hit = cache.CACHE.get(ck) if ck is not None else None
    if hit is not None:
        kinds, chunks = hit
    else:
        kinds = {} if special is None else specials.override_kinds(terms, flat, san, special)
        chunks = None
    plans = [_plan(o, args, reduction, with_cond, last_axis_mean) for o in outputs]  # step 5
    computed = _run_chunks(plans, flat, san, special, kinds, chunks, terms, with_cond,
                           keep=ck is not None and hit is None)
    if computed is not None:
        cache.CACHE.put(ck, (kinds, computed))
    out = {pl.output.name: pl.finish(san, kinds.get(pl.output.term)) for pl in plans}  # step 6
    if last_axis_mean and reduction == "none" and "value" in out:  # (..., 1) -> (...)
        q = out["value"]
        rows = args.x.shape[:-1]
        out["value"] = Quantity(q.value.reshape(rows), q.cond.reshape(rows),
                                q.spread.reshape(rows), q.terms.reshape(rows))
    return out


def _arg(args: Arguments, name: str) -> np.ndarray | None:
    """The argument called ``name`` in the public API."""
    return getattr(args, _ARG_FIELD[name])


def _flatten(args: Arguments) -> Arguments:
    """The arguments as 1-d arrays of the input's size (weight and pos_weight broadcast)."""
    shape = args.x.shape

    def full(v):
        return None if v is None else np.ascontiguousarray(np.broadcast_to(v, shape)).reshape(-1)

    return Arguments(args.x.reshape(-1), args.y.reshape(-1), full(args.w), full(args.p))


def _run_chunks(plans: list[_Plan], flat: Arguments, san: Sanitised,
                special: np.ndarray | None, kinds: dict[Term, np.ndarray],
                cached: list | None, terms: set[Term], with_cond: bool, keep: bool,
                ) -> list | None:
    """Compute (or take from ``cached``) each chunk's terms and hand them to the plans.

    Returns the chunks' results when ``keep`` (for the cache), else None.
    """
    x, y, w, p = flat
    n = x.size
    kept: list | None = [] if keep else None
    for ci, s0 in enumerate(range(0, n, CHUNK)):
        sl = slice(s0, min(n, s0 + CHUNK))
        wc = None if w is None else w[sl]
        if cached is not None:
            r, allfast = cached[ci]
        else:
            # looked up at each call: the tests switch the fast kernel off by replacing it
            fm = fastkernel.fast_mask(x[sl], y[sl], wc, None if p is None else p[sl])
            r, allfast = elementwise.run_chunk(
                (san.x[sl], san.y[sl], None if san.w is None else san.w[sl],
                 None if san.p is None else san.p[sl]),
                None if san.tz is None else san.tz[sl], fm, terms, with_cond)
            if kept is not None:
                kept.append((r, allfast))
        spc = special[sl] if special is not None else None
        for pl in plans:
            term = pl.output.term
            (h, lo, e), d = r.terms[term]
            # an all-fast chunk has no special element (NaN and inf are outside the domain)
            kd = kinds[term][sl] if term in kinds and not allfast else None
            if kd is not None:
                overridden = kd != CODE.FINITE
                h = np.where(overridden, 0.0, h)
                lo = np.where(overridden, 0.0, lo)
                d = np.where(overridden, 0.0, d)
            num = _numerator(r, term, wc, allfast, spc) if with_cond else None
            pl.add(s0, sl, h, lo, e, d, num, kd, spc, allfast)
    return kept


def _numerator(r: ChunkResult, term: Term, wc: np.ndarray | None, allfast: bool,
               spc: np.ndarray | None) -> tuple[np.ndarray, np.ndarray | int]:
    """A term's condition numerator for one chunk: times ``|w|`` where the term is
    weighted, 0 at special elements (their limits are exact)."""
    nm, ne = r.numerators[term]
    if term.weighted and wc is not None:
        if allfast:  # unscaled numerators: times |w| itself, same bits
            nm = nm * np.abs(wc)
        else:
            mw, ew = sd.frexp(wc)
            with np.errstate(invalid="ignore"):  # inf·0 where an argument is
                nm = nm * np.abs(mw)             # special: same bits, no warning
            ne = ne + ew
    if spc is not None:
        nm = np.where(spc, 0.0, nm)
    return nm, ne


# ---------------------------------------------------------------------------
# one plan per output: elementwise, summed over everything, or summed per group
# ---------------------------------------------------------------------------


class _Plan:
    """How one output is produced from the chunks' terms."""

    def __init__(self, output: _Output, div: int, out_shape: tuple[int, ...],
                 with_cond: bool) -> None:
        self.output = output
        self.div = div  # the element count for a mean, else 1
        self.out_shape = out_shape
        self.with_cond = with_cond

    def add(self, s0: int, sl: slice, h: np.ndarray, lo: np.ndarray, e: np.ndarray | int,
            d: np.ndarray, num: tuple[np.ndarray, np.ndarray | int] | None,
            kd: np.ndarray | None, spc: np.ndarray | None, allfast: bool) -> None:
        """Take one chunk's terms: elements ``sl`` (the first of which is ``s0``), their
        scaled dd values ``(h + lo) * 2**e`` with bounds ``d``, condition numerators
        ``num`` (None without condition numbers), special kinds ``kd`` and special mask
        ``spc`` (None where there are none), ``allfast`` if all came from the fast kernel.
        """
        raise NotImplementedError

    def finish(self, san: Sanitised, kd: np.ndarray | None) -> Quantity:
        """The output, once every chunk was added; ``kd``: the term's special kinds."""
        raise NotImplementedError


def _plan(o: _Output, args: Arguments, reduction: str, with_cond: bool,
          last_axis_mean: bool = False) -> _Plan:
    """The plan for one output: a sum wherever the reduction or a broadcast asks for one.

    A forward-mode output is elementwise for ``"none"`` and a total otherwise; Keras's
    ``last_axis_mean`` divides by the row length instead of 1 for ``"none"`` and
    ``"sum"``, and makes the ``"none"`` loss one sum per row."""
    shape = args.x.shape
    n = args.x.size
    div = n if reduction == "mean" else 1
    if last_axis_mean and reduction != "mean":
        div = shape[-1]
    if o.forward:
        if reduction == "none":
            return _Elementwise(o, div, shape, with_cond, n)
        return _Total(o, div, (), with_cond, n)
    if last_axis_mean and o.arg is None and reduction == "none":
        return _Groups(o, div, (*shape[:-1], 1), with_cond, n, shape, shape[-1])
    if o.arg in ("input", "target") or (o.arg is None and reduction == "none"):
        return _Elementwise(o, div, shape, with_cond, n)
    if o.arg is None:
        return _Total(o, div, (), with_cond, n)
    tshape = tuple(_arg(args, o.arg).shape)
    kcols = _broadcast_count(shape, tshape)
    if kcols == 1:
        return _Elementwise(o, div, tshape, with_cond, n)
    return _Groups(o, div, tshape, with_cond, n, shape, kcols)


class _Elementwise(_Plan):
    """Rounded chunk by chunk; the few unsettled elements take the exact path at the end."""

    def __init__(self, output, div, out_shape, with_cond, n) -> None:
        super().__init__(output, div, out_shape, with_cond)
        self.val = np.empty(n)
        self.cond = np.zeros(n) if with_cond else None
        self.unsettled: list[int] = []

    def add(self, s0, sl, h, lo, e, d, num, kd, spc, allfast) -> None:
        h0 = h
        if allfast:
            # normal results in the 2**0 frame: round_settle's main case, leaner
            if self.div != 1:
                h, lo = dm.dd_div_fp_arr(h, lo, float(self.div))
                d = d * (sd.SLACK / self.div)
                t = np.abs(h)
                t *= sd.EPS_OP
                d += t
            self.val[sl] = h
            settled = dr.settled_normal(h, lo, d)
            if not settled.all():
                self.unsettled.extend((np.flatnonzero(~settled) + s0).tolist())
            if num is not None:
                self.cond[sl] = condition.ratio(num, (h0, e))
            return
        if self.div != 1:
            h, lo = dm.dd_div_fp(h, lo, float(self.div))
            d = d / self.div * sd.SLACK + sd.EPS_OP * np.abs(h) * (lo != 0)
        v, settled = dr.round_settle(h, lo, e, d, normalized=True)
        if kd is not None:
            overridden = kd != CODE.FINITE
            settled = settled | overridden
            v = np.where(overridden, KIND_VALUES[kd], v)
        self.val[sl] = v
        bad = np.flatnonzero(~settled)
        if bad.size:
            self.unsettled.extend((bad + s0).tolist())
        if num is not None:
            c = condition.ratio(num, (h0, e))
            c = np.where(np.isfinite(v), c, 0.0)
            if spc is not None:
                c = np.where(spc, 0.0, c)
            self.cond[sl] = c

    def finish(self, san, kd) -> Quantity:
        for i in self.unsettled:
            self.val[i] = exact.slow_sum(self.output.term, [i], san, self.div)
        osh = self.out_shape
        if self.with_cond:
            cond, spread, nterms = self.cond.reshape(osh), np.ones(osh), np.ones(osh, np.int64)
        else:  # loss()/grads() only read the value: no need to fill 3 more arrays
            cond = spread = np.broadcast_to(np.float64(0.0), osh)
            nterms = np.broadcast_to(np.int64(1), osh)
        return Quantity(self.val.reshape(osh), cond, spread, nterms)


class _Total(_Plan):
    """Summed over every element: one partial sum per chunk, combined at the end."""

    def __init__(self, output, div, out_shape, with_cond, n) -> None:
        super().__init__(output, div, out_shape, with_cond)
        self.n = n
        self.partials: list[sums.RowSums] = []

    def add(self, s0, sl, h, lo, e, d, num, kd, spc, allfast) -> None:
        self.partials.append(sums.align_sum(
            h[None], lo[None], sums.row(e), d[None],
            None if num is None else (num[0][None], sums.row(num[1])),
            None if kd is None else kd[None]))

    def finish(self, san, kd) -> Quantity:
        res = sums.combine_partials(self.partials, self.with_cond)
        val, cond, spread = sums.round_rows(res, self.div, self.output.term,
                                            lambda r: np.arange(self.n), kd, san, self.with_cond)
        return _summed(val, cond, spread, self.out_shape, self.n)


class _Groups(_Plan):
    """Summed over the broadcast dimensions of a weight or pos_weight: one sum per element
    of that argument, the terms kept until every chunk is in."""

    def __init__(self, output, div, out_shape, with_cond, n, shape, kcols) -> None:
        super().__init__(output, div, out_shape, with_cond)
        self.shape = shape  # the input's
        self.kcols = kcols
        self.h, self.lo, self.d = np.empty(n), np.empty(n), np.empty(n)
        self.e = np.empty(n, np.int32)
        if with_cond:
            self.nm = np.empty(n)
            self.ne = np.empty(n, np.int32)

    def add(self, s0, sl, h, lo, e, d, num, kd, spc, allfast) -> None:
        self.h[sl], self.lo[sl], self.e[sl], self.d[sl] = h, lo, e, d
        if num is not None:
            self.nm[sl], self.ne[sl] = num

    def finish(self, san, kd) -> Quantity:
        shape = self.shape
        nd = len(shape)
        padded = (1,) * (nd - len(self.out_shape)) + self.out_shape
        kept = [i for i in range(nd) if padded[i] != 1]
        perm = kept + [i for i in range(nd) if padded[i] == 1]
        mrows = int(np.prod([shape[i] for i in kept], dtype=np.int64))
        kcols = self.kcols

        def rows(v):  # one row per element of the argument, its terms along the row
            return np.transpose(v.reshape(shape), perm).reshape(mrows, kcols)

        extra = (rows(self.nm), rows(self.ne)) if self.with_cond else None
        res = sums.align_sum(rows(self.h), rows(self.lo), rows(self.e), rows(self.d), extra,
                             None if kd is None else rows(kd))
        index = rows(np.arange(self.h.size))
        val, cond, spread = sums.round_rows(res, self.div, self.output.term,
                                            lambda r: index[r], kd, san, self.with_cond)
        return _summed(val, cond, spread, self.out_shape, kcols)


def _summed(val: np.ndarray, cond: np.ndarray, spread: np.ndarray, osh: tuple[int, ...],
            kcols: int) -> Quantity:
    """A reduced output, each element the sum of ``kcols`` terms."""
    return Quantity(val.reshape(osh), cond.reshape(osh), spread.reshape(osh),
                    np.full(osh, kcols, np.int64))


# ---------------------------------------------------------------------------
# empty arguments, broadcasting, malloc
# ---------------------------------------------------------------------------


def _empty(outputs: list[_Output], args: Arguments, reduction: str,
           last_axis_mean: bool = False) -> dict[str, Quantity]:
    """Results for zero elements: an empty sum is 0, an empty mean NaN (0/0).

    A forward-mode derivative of a reduced loss is a sum over no element (0), divided
    by the count for ``"mean"`` (NaN, as the mean itself). Keras's row means of rows of
    length 0 are NaN."""
    shape = args.x.shape
    res = {}
    for o in outputs:
        if o.forward and reduction != "none":
            v = np.array(np.nan if reduction == "mean" else 0.0)
            terms = np.zeros((), np.int64)
        elif o.forward:
            v, terms = np.zeros(shape), np.ones(shape, np.int64)
        elif o.arg is None and last_axis_mean and reduction == "none":
            v = np.full(shape[:-1], np.nan if shape[-1] == 0 else 0.0)
            terms = np.full(v.shape, shape[-1], np.int64)
        elif o.arg is None and last_axis_mean and reduction == "sum" and shape[-1] == 0:
            # a sum of row means over rows of length 0: NaN for each row, 0 with no rows
            v = np.array(np.nan if int(np.prod(shape[:-1])) else 0.0)
            terms = np.zeros((), np.int64)
        elif o.arg is None:
            if reduction == "none":
                v = np.zeros(shape)
            else:
                v = np.array(0.0 if reduction == "sum" else np.nan)
            terms = np.ones(v.shape, np.int64) if reduction == "none" else np.zeros((), np.int64)
        elif (last_axis_mean and o.arg in ("weight", "pos_weight") and shape[-1] == 0
              and np.prod(shape[:-1]) > 0):
            # rows of length 0 exist and each row mean is 0/0: the weight of a row
            # multiplies a NaN, so its derivative is that NaN (a broadcast sum of them)
            v = np.full(_arg(args, o.arg).shape, np.nan)
            terms = np.full(v.shape, _broadcast_count(shape, v.shape), np.int64)
        else:
            v = np.zeros(_arg(args, o.arg).shape)
            if o.arg in ("input", "target"):
                terms = np.ones(v.shape, np.int64)
            else:
                terms = np.full(v.shape, _broadcast_count(shape, v.shape), np.int64)
        res[o.name] = Quantity(v, np.zeros(v.shape), np.ones(v.shape), terms)
    return res


def _broadcast_count(shape: tuple[int, ...], arg_shape: tuple[int, ...]) -> int:
    """How many input elements feed each element of an argument of shape ``arg_shape``."""
    padded = (1,) * (len(shape) - len(arg_shape)) + tuple(arg_shape)
    return int(np.prod([s for s, q in zip(shape, padded, strict=True) if q == 1], dtype=np.int64))


_MALLOC_TUNED = False


def _tune_malloc() -> None:
    """Keep glibc from returning freed memory to the OS between numpy temporaries.

    Every dd operation allocates fresh arrays; with glibc's default thresholds the
    heap top is trimmed and re-faulted for each chunk, and page faults then cost more
    than the arithmetic (measured: ~2800 minor faults and a 4x slowdown per 32k-element
    chunk). Raising the mmap and trim thresholds once per process removes that. The
    only effect on anything else is that up to 256 MiB of freed heap stays mapped.
    Set ``BCE_HARNESS_MALLOPT=0`` to leave malloc alone.
    """
    global _MALLOC_TUNED
    if _MALLOC_TUNED:
        return
    _MALLOC_TUNED = True
    if os.environ.get("BCE_HARNESS_MALLOPT", "1") == "0" or not sys.platform.startswith("linux"):
        return
    try:
        import ctypes

        libc = ctypes.CDLL("libc.so.6")
        libc.mallopt(-3, 32 * 1024 * 1024)  # M_MMAP_THRESHOLD
        libc.mallopt(-1, 256 * 1024 * 1024)  # M_TRIM_THRESHOLD
    except (OSError, AttributeError):  # not glibc
        pass
