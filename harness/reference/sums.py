"""Sums of elementwise terms: aligned, summed in dd with a bound, rounded once.

A reduced result (the ``"sum"``/``"mean"`` loss, or a gradient with respect to a
broadcast weight) is a sum of the exact dd terms, not of the rounded elementwise
values. ``align_sum`` aligns each row of scaled terms to a common exponent and sums it
by ``ddmath.dd_sum``'s pairwise tree; the bound then covers the terms' own bounds and
the tree's rounding, and ``round_rows`` applies Ziv's test again, sending an unsettled
row to the exact path (``exact.slow_sum``). The condition number of a sum is
``sum |t_i| cond_i / |sum t_i|`` and its ``spread`` (cancellation) is
``sum |t_i| / |sum t_i|``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

import numpy as np

from harness.reference import ddmath as dm
from harness.reference import ddround as dr
from harness.reference import exact, fastjit
from harness.reference import scaled as sd
from harness.reference.specials import CODE, KIND_VALUES, Sanitised
from harness.reference.terms import Term

__all__ = ["RowSums", "align_sum", "combine_partials", "round_rows", "row"]


class RowSums(NamedTuple):
    """Per row: the dd sum ``(hi + lo) * 2**exp``, its error ``bound`` in that frame, the
    row's ``flags`` (a ``specials.Kind`` code: ``FINITE``, ``POS_INF``, ``NEG_INF`` or
    ``NAN``), ``abs_sum = sum|t|`` and ``num_sum`` = the sum of the terms' condition
    numerators, both plain floats in the same ``2**exp`` frame."""

    hi: np.ndarray
    lo: np.ndarray
    exp: np.ndarray
    bound: np.ndarray
    flags: np.ndarray
    abs_sum: np.ndarray
    num_sum: np.ndarray


def row(e: np.ndarray | int) -> np.ndarray:
    """Exponents as one row for ``align_sum`` (the fast kernel's are the int 0)."""
    return np.zeros((1, 1), np.int32) if np.ndim(e) == 0 else e[None]


def align_sum(h: np.ndarray, lo: np.ndarray, e: np.ndarray, d: np.ndarray,
              num: tuple[np.ndarray, np.ndarray] | None, kd: np.ndarray | None,
              absum: tuple[np.ndarray, np.ndarray] | None = None,
              flags_in: np.ndarray | None = None) -> RowSums:
    """Sum each row of scaled-dd terms exactly enough, with a rigorous error bound.

    Terms are aligned to the row's largest exponent (those more than ~1000 binades
    below lose bits; the loss is charged to the bound), then summed by ``dd_sum``.
    ``num``: the terms' condition numerators as scaled floats; ``kd``: their
    ``specials.Kind`` codes, which decide the row's ``flags``.

    ``absum`` (pairs ``(sum|t|, exponent)`` of already-summed partials) and ``flags_in``
    let partial sums from chunks be combined with the same code (``combine_partials``).
    """
    ex = e + np.frexp(h)[1] + sd.NOEXP * (h == 0)
    emax = ex.max(axis=1)
    if absum is not None:
        aex = absum[1] + np.frexp(absum[0])[1] + sd.NOEXP * (absum[0] == 0)
        emax = np.maximum(emax, aex.max(axis=1))
    if num is not None:
        nex = num[1] + np.frexp(num[0])[1] + sd.NOEXP * (num[0] == 0)
        emax = np.maximum(emax, nex.max(axis=1))
    emax = np.where(emax < sd.NOEXP // 2, 0, emax).astype(np.int32)
    shift = (e - emax[:, None]).clip(-5000, 5000)
    hs = np.ldexp(h, shift)
    ls = np.ldexp(lo, shift)
    ds = np.ldexp(d, shift) * sd.SLACK + (shift < -960) * 2.0**-1070
    if absum is None:
        tot_abs = np.abs(hs).sum(axis=1) + np.abs(ls).sum(axis=1)
    else:
        ash = (absum[1] - emax[:, None]).clip(-5000, 5000)
        tot_abs = np.ldexp(absum[0], ash).sum(axis=1)
    compiled = fastjit.dd_sum_rows(hs, ls)
    sh, sl = compiled if compiled is not None else dm.dd_sum(hs, ls, axis=1)
    kcols = h.shape[1]
    delta = ds.sum(axis=1) * sd.SLACK + dm.dd_sum_error_factor(kcols) * tot_abs * sd.SLACK
    ntot = np.zeros(h.shape[0])
    if num is not None:
        nsh = (num[1] - emax[:, None]).clip(-5000, 5000)
        ntot = np.ldexp(num[0], nsh).sum(axis=1)
    flags = np.zeros(h.shape[0], np.int8)
    if kd is not None or flags_in is not None:
        k2 = kd if kd is not None else flags_in
        has_nan = (k2 == CODE.NAN).any(axis=1)
        has_pinf = (k2 == CODE.POS_INF).any(axis=1)
        has_ninf = (k2 == CODE.NEG_INF).any(axis=1)
        flags = np.where(has_nan | (has_pinf & has_ninf), CODE.NAN,
                         np.where(has_pinf, CODE.POS_INF,
                                  np.where(has_ninf, CODE.NEG_INF, CODE.FINITE))).astype(np.int8)
    return RowSums(sh, sl, emax, delta, flags, tot_abs, ntot)


def combine_partials(parts: list[RowSums], with_cond: bool) -> RowSums:
    """One row summing the chunks' one-row partial sums (``align_sum`` on them)."""
    cat = [np.concatenate([q[i] for q in parts])[None] for i in range(4)]
    extra = None
    if with_cond:
        extra = (np.concatenate([q.num_sum for q in parts])[None],
                 np.concatenate([q.exp for q in parts])[None])
    fl = np.concatenate([q.flags for q in parts])[None]
    return align_sum(cat[0], cat[1], cat[2], cat[3], extra, None,
                     absum=(np.concatenate([q.abs_sum for q in parts])[None], cat[2]),
                     flags_in=fl)


def round_rows(res: RowSums, div: int, term: Term, members_of: Callable[[int], np.ndarray],
               kd: np.ndarray | None, san: Sanitised, with_cond: bool,
               ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Each row's total divided by ``div``, correctly rounded; its cond and spread.

    ``members_of(r)``: the flat element indices summed into row ``r``, for the exact
    path; ``kd``: the term's ``specials.Kind`` codes over all elements (elements of a
    zero kind are left out there), ``san`` the sanitised arguments it reads.
    """
    sh, sl_, emax, delta, flags, absum, ntot = res
    if div != 1:
        sh, sl_ = dm.dd_div_fp(sh, sl_, float(div))
        delta = delta / div * sd.SLACK + sd.EPS_OP * np.abs(sh)
    val, settled = dr.round_settle(sh, sl_, emax, delta)
    settled = settled | (flags != CODE.FINITE)
    for rr in np.flatnonzero(~settled):
        members = members_of(rr)
        if kd is not None:
            members = members[kd[members] != CODE.ZERO]
        val[rr] = exact.slow_sum(term, members.tolist(), san, div)
    val = np.where(flags != CODE.FINITE, KIND_VALUES[flags], val)
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        mag = np.abs(sh) * div
        spread = np.where(sh != 0, absum / mag, np.where(absum == 0, 1.0, np.inf))
        cond = np.zeros(sh.shape[0])
        if with_cond:
            cond = np.where(sh != 0, ntot / mag, np.where(ntot == 0, 0.0, np.inf))
    fin = np.isfinite(val)
    cond = np.where(fin, cond, 0.0)
    spread = np.where(fin, spread, 1.0)
    return val, cond, spread
