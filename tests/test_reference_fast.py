"""Tests of the reference's fast paths: the fast kernel, the exact sums of level 2, the cache.

The fast kernel (``fastkernel.chunk_fast``) must give the same bits as the general one
(``elementwise.chunk``) for everything ``evaluate`` returns -- values, condition numbers,
spreads -- so each test here evaluates the same arguments twice, once with the fast
domain switched off, and compares bit patterns. Level 2 of the exact path (exact
rational parts in integer arithmetic, dd transcendental parts) must decide what it
claims to decide without the ``fractions``/``decimal`` evaluation, and hand everything
else to it.
"""

from __future__ import annotations

import math
from fractions import Fraction

import numpy as np
import pytest

from harness import reference as R
from harness.reference import cache, exact, fastkernel, scaled
from harness.reference.terms import GRAD_INPUT, GRAD_TARGET, LOSS
from tests import oracle as O
from tests.test_reference import (
    CHUNK_KEY,
    HALF,
    Y_POOL,
    _near_zero_gradient_points,
    accuracy_points,
)

NAMES = ("value", "grad.input", "grad.target", "grad.weight", "grad.pos_weight")


def _clear_cache():
    cache.CACHE.clear()


def _evaluate_both(monkeypatch, args, red, what="evaluate"):
    """(fast kernel allowed, fast kernel off), cache cleared before each."""
    out = []
    real = fastkernel.fast_mask
    for fast in (True, False):
        _clear_cache()
        monkeypatch.setattr(fastkernel, "fast_mask", real if fast else
                            (lambda x, y, w, p: np.zeros(np.shape(x), bool)))
        if what == "evaluate":
            res = R.evaluate(*args, reduction=red)
            out.append({k: (q.value, q.cond, q.spread, q.terms) for k, q in res.items()})
        elif what == "loss":
            out.append({"value": (R.loss(*args, reduction=red),)})
        else:
            out.append({k: (v,) for k, v in R.grads(*args, reduction=red).items()})
    monkeypatch.setattr(fastkernel, "fast_mask", real)
    _clear_cache()
    return out


def _assert_same_bits(a, b, ctx):
    assert a.keys() == b.keys(), ctx
    for k in a:
        for i, (u, v) in enumerate(zip(a[k], b[k], strict=True)):
            u, v = np.asarray(u), np.asarray(v)
            assert u.shape == v.shape and u.dtype == v.dtype, (ctx, k, i)
            assert u.tobytes() == v.tobytes(), (ctx, k, ["value", "cond", "spread", "terms"][i])


def _random_args(rng, n, kind):
    if kind == 0:
        x = rng.uniform(-70, 70, n)  # across the |x| <= 64 edge
    elif kind == 1:
        x = rng.standard_normal(n) * 10.0 ** rng.uniform(-25, 2.5, n)
    else:
        x = rng.standard_normal(n) * 4
    y = rng.random(n) if kind == 2 else np.array([*Y_POOL, 0.3, 2.0])[rng.integers(0, 10, n)]
    w = rng.random(n) * 3 - (1.0 if kind == 1 else 0.0) if rng.random() < 0.7 else None
    if rng.random() < 0.3:
        p = None
    elif rng.random() < 0.5:
        p = rng.random(n) * 4
    else:
        p = np.full(n, [0.0, 1e-10, 3.0, 1e10, 0.5][int(rng.integers(5))])
    return x, y, w, p


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_fast_kernel_gives_the_general_kernels_bits(monkeypatch, seed):
    rng = np.random.default_rng(seed)
    for kind in range(3):
        args = _random_args(rng, int(rng.integers(1, 3000)), kind)
        for red in R.REDUCTIONS:
            a, b = _evaluate_both(monkeypatch, args, red)
            _assert_same_bits(a, b, (seed, kind, red))
        for what in ("loss", "grads"):
            a, b = _evaluate_both(monkeypatch, args, "mean", what)
            _assert_same_bits(a, b, (seed, kind, what))


def test_fast_kernel_bits_with_broadcast_weights_and_specials(monkeypatch):
    rng = np.random.default_rng(7)
    x = rng.standard_normal((300, 40)) * 5
    y = rng.random((300, 40))
    x[3, 4], x[5, 6], y[7, 8] = np.inf, -np.inf, np.nan  # special elements mixed in
    cases = [
        (x, y, rng.random((300, 1)) + 0.5, rng.random(40) * 3),
        (x, y, rng.random(40), None),
        (x, y, None, rng.random((1, 40)) * 2),
        (x[:, :1], y[:, :1], 2.0, 0.5),
    ]
    for args in cases:
        for red in R.REDUCTIONS:
            a, b = _evaluate_both(monkeypatch, args, red)
            _assert_same_bits(a, b, red)


def test_hard_points_give_the_general_kernels_bits(monkeypatch):
    """Near-zero gradients (badly conditioned: recomputed by the general kernel), hard regions."""
    pts = accuracy_points(seed=5)[::3] + [(x, y, 0.5, p) for x, y, p in
                                          _near_zero_gradient_points()]
    groups: dict[tuple[bool, bool], list] = {}
    for t in pts:
        groups.setdefault((t[2] is not None, t[3] is not None), []).append(t)
    redone = 0
    for (hw, hp), g in groups.items():
        x = np.array([t[0] for t in g])
        y = np.array([t[1] for t in g])
        w = np.array([t[2] for t in g]) if hw else None
        p = np.array([t[3] for t in g]) if hp else None
        m = fastkernel.fast_mask(x, y, w, p)
        if m.any():
            _, redo = fastkernel.chunk_fast(
                x[m], y[m], None if w is None else w[m], None if p is None else p[m],
                {LOSS, GRAD_INPUT, GRAD_TARGET}, True)
            redone += 0 if redo is None else int(redo.sum())
        for red in R.REDUCTIONS:
            a, b = _evaluate_both(monkeypatch, (x, y, w, p), red)
            _assert_same_bits(a, b, red)
    assert redone > 0  # the cancelling brackets did go to the general kernel


def test_fast_kernel_error_bounds_are_rigorous():
    """|dd value - exact| <= the bound Ziv's test relies on, for fast-domain points."""
    rng = np.random.default_rng(11)
    pts = [t for t in accuracy_points(seed=3)[::4]
           if fastkernel.fast_mask(np.array([t[0]]), np.array([t[1]]),
                                   None if t[2] is None else np.array([t[2]]),
                                   None if t[3] is None else np.array([t[3]]))[0]]
    pts += [(float(x), float(y), float(w), float(p)) for x, y, w, p in zip(
        rng.uniform(-64, 64, 150), rng.random(150), rng.random(150) + 0.1, rng.random(150) * 3,
        strict=True)]
    assert len(pts) > 300
    worst = 0.0
    for hw, hp in [(False, False), (True, False), (False, True), (True, True)]:
        g = [t for t in pts if (t[2] is not None) == hw and (t[3] is not None) == hp]
        if not g:
            continue
        x = np.array([t[0] for t in g])
        y = np.array([t[1] for t in g])
        w = np.array([t[2] for t in g]) if hw else None
        p = np.array([t[3] for t in g]) if hp else None
        out = fastkernel.chunk_fast(x, y, w, p, set(CHUNK_KEY.values()), False)[0].terms
        for j, t in enumerate(g):
            exact = O.elementwise(*t)
            for k, key in CHUNK_KEY.items():
                if (k == "weight" and not hw) or (k == "pos_weight" and not hp):
                    continue
                (h, lo, e), d = out[key]
                assert e == 0
                got = Fraction(float(h[j])) + Fraction(float(lo[j]))
                err = abs(got - exact[k])
                assert err <= Fraction(float(d[j])) + abs(exact[k]) / 10**60, (k, t)
                if d[j]:
                    worst = max(worst, float(err / Fraction(float(d[j]))))
    assert worst < 2.0**-4


# ===========================================================================
# level 2 of the exact path
# ===========================================================================


def _no_fractions(monkeypatch):
    def fail(*a, **k):
        raise AssertionError("level 3 (fractions/decimal) was not expected here")

    monkeypatch.setattr(exact, "slow_round", fail)


def test_level2_decides_cancelling_sums(monkeypatch):
    # +1e16, sp(1), -1e16 repeated: the dd bound cannot settle the sum, level 2 must
    calls = []
    real = exact.slow_sum
    monkeypatch.setattr(exact, "slow_sum", lambda *a, **k: calls.append(1) or real(*a, **k))
    _no_fractions(monkeypatch)
    k = 3000
    x = np.tile([1e16, 1.0, 1e16], k)
    y = np.tile([0.0, 0.0, 2.0], k)
    ex = O.elementwise(1.0, 0.0)["loss"]
    for red, want in (("sum", ex * k), ("mean", ex / 3)):
        got = R.loss(x, y, reduction=red)
        assert O.ulp_error(float(got), want) <= HALF
    assert calls  # it did take the exact path
    g = R.grads(x, y, weight=np.ones(1), reduction="sum")["weight"][0]
    assert O.ulp_error(float(g), ex * k) <= HALF


def test_level2_breaks_hidden_ties(monkeypatch):
    _no_fractions(monkeypatch)
    x = 2.0**52 + 3
    assert R.loss([x], [0.0], [3.0], reduction="none")[0] == 13510798882111498.0
    assert R.loss([x], [4.0], None, [0.5], reduction="none")[0] == -13510798882111498.0
    v = R.loss([x], [2.0], [1.5], [0.5], reduction="none")[0]
    assert v == float(O.nearest(Fraction(-3, 2) * Fraction(x)))
    # a whole array of such ties (y*|x| half-way between floats, e**-|x| deciding)
    rng = np.random.default_rng(2)
    xs = -np.ldexp(rng.integers(2**52, 2**53, 200) | 1, 0).astype(np.float64)
    ys = np.where(rng.random(200) < 0.5, 3.0, -3.0)
    got = R.loss(xs, ys, reduction="none")
    for xv, yv, gv in zip(xs, ys, got, strict=True):
        # l = 1 > 0 here: the exact value lies just above y*|x|
        want = float(O.nearest(Fraction(yv) * Fraction(-xv) + Fraction(1, 10**4000)))
        assert gv == want


def test_level3_takes_over_when_level2_cannot_decide(monkeypatch):
    calls = []
    real = exact.slow_round
    monkeypatch.setattr(exact, "slow_round", lambda *a, **k: calls.append(1) or real(*a, **k))
    monkeypatch.setattr(exact, "_EPS_F_BITS", -40)  # a useless bound on the F parts
    monkeypatch.setattr(scaled, "EPS", 2.0**-8)  # and on the dd values
    rng = np.random.default_rng(4)
    x = rng.standard_normal(12) * 3
    y = rng.random(12)
    res = R.evaluate(x, y, None, None, reduction="none")
    for i in range(12):
        ex = O.elementwise(float(x[i]), float(y[i]))
        assert O.ulp_error(float(res["value"].value[i]), ex["loss"]) <= HALF
        assert O.ulp_error(float(res["grad.input"].value[i]), ex["input"]) <= HALF
    tot = O.total(O.elementwise_many(x, y)["loss"], "mean")
    assert O.ulp_error(float(R.loss(x, y, reduction="mean")), tot) <= HALF
    assert calls


def test_dyadic_rounding_matches_fraction_rounding():
    rng = np.random.default_rng(9)
    cases = [((0, 0), 1, 0), ((0, 0), 3, 1), ((0, 0), 3, -1)]
    for _ in range(3000):
        m = int(rng.integers(1, 2**62)) * (1 if rng.random() < 0.5 else -1)
        e = int(rng.integers(-1200, 1000))
        div = int(rng.choice([1, 3, 7, 10, 120000, 2**20 + 1]))
        cases.append(((m, e), div, int(rng.integers(-1, 2))))
    for _ in range(500):  # exact ties: an odd multiple of half an ulp
        q = int(rng.integers(-1074, 970))
        n = (int(rng.integers(2**52, 2**53)) * 2 + 1) * (1 if rng.random() < 0.5 else -1)
        cases.append(((n, q - 1), 1, int(rng.integers(-1, 2))))
    cases.append(((2**53 - 1, 971), 1, 0))  # 2**1024 - 2**971: rounds to +inf (a tie)
    cases.append(((-(2**53 - 1), 970), 1, 0))  # the largest finite value
    for (m, e), div, s in cases:
        want = exact._round_frac(exact._dy_frac((m, e)) / div, s)
        got = exact._dy_round_ratio((m, e), div, s)
        assert got == want and math.copysign(1, got) == math.copysign(1, want), (m, e, div, s)


# ===========================================================================
# the cache
# ===========================================================================


def test_cache_is_transparent():
    rng = np.random.default_rng(6)
    x = rng.standard_normal((40, 30)) * 6
    y = rng.random((40, 30))
    w = rng.random(30)
    _clear_cache()
    first = {red: R.evaluate(x, y, w, None, red) for red in R.REDUCTIONS}
    again = {red: R.evaluate(x, y, w, None, red) for red in R.REDUCTIONS}  # from the cache
    assert len(cache.CACHE) == 1
    for red in R.REDUCTIONS:
        for k in first[red]:
            for f in ("value", "cond", "spread", "terms"):
                assert getattr(first[red][k], f).tobytes() == getattr(again[red][k], f).tobytes()
    # results are the caller's to modify; the arguments' contents key the cache
    again["none"]["value"].value[...] = 0.0
    assert R.evaluate(x, y, w, None, "none")["value"].value.tobytes() == \
        first["none"]["value"].value.tobytes()
    x[0, 0] += 1.0
    changed = R.evaluate(x, y, w, None, "none")["value"].value
    assert changed[0, 0] != first["none"]["value"].value[0, 0]
    assert np.array_equal(changed[1:], first["none"]["value"].value[1:])
    _clear_cache()


def test_cache_is_bounded(monkeypatch):
    monkeypatch.setattr(cache.CACHE, "max_bytes", 4 << 20)
    _clear_cache()
    rng = np.random.default_rng(8)
    for _ in range(12):
        x = rng.standard_normal(5000)
        R.evaluate(x, rng.random(5000), reduction="mean")
    assert 0 < cache.CACHE.nbytes <= 4 << 20
    assert cache.CACHE.nbytes == sum(a.nbytes for v in cache.CACHE.entries.values()
                                     for a in cache.iter_arrays(v))
    R.evaluate(rng.standard_normal(cache.MAX_N + 1), rng.random(cache.MAX_N + 1))
    assert cache.CACHE.nbytes <= 4 << 20
    monkeypatch.setattr(cache.CACHE, "max_entries", 5)
    for i in range(20):
        R.evaluate([float(i)], [0.5])
    assert len(cache.CACHE) == 5
    _clear_cache()


def test_fast_kernel_bits_at_the_edges_of_its_domain(monkeypatch):
    edge = [2.0**-100, 2.0**100, 3 * 2.0**-99, 0.75 * 2.0**100]
    xs = [2.0**-60, -(2.0**-60), 64.0, -64.0, 63.99999999999999, 1.5 * 2.0**-60, 36.7, -0.5]
    rng = np.random.default_rng(12)
    n = 600
    x = np.array(xs)[rng.integers(0, len(xs), n)]
    pick = np.array(edge + [-v for v in edge] + [0.0, 1.0, 0.5])
    y = pick[rng.integers(0, pick.size, n)]
    w = np.array(edge + [-v for v in edge])[rng.integers(0, 8, n)]
    p = pick[rng.integers(0, pick.size, n)]
    assert fastkernel.fast_mask(x, y, w, p).mean() > 0.8
    for red in R.REDUCTIONS:
        a, b = _evaluate_both(monkeypatch, (x, y, w, p), red)
        _assert_same_bits(a, b, red)


# ===========================================================================
# the compiled fast kernel (numba): the numpy kernel's bits
# ===========================================================================

def _skip_without_numba() -> None:
    from harness.reference import fastjit

    if not fastjit.available():
        pytest.skip(f"the compiled loops cannot run here: {fastjit.why_not()} (numba is the "
                    "`fast` extra); the numpy kernel runs everywhere")


def _fast_domain_args(rng, n):
    """Arguments inside the fast domain, ordinary and at its edges, with y and p of
    every kind the kernels branch on (0, 1, -0 excluded by the domain, tiny, huge)."""
    x = np.concatenate([rng.standard_normal(n) * 10.0 ** rng.uniform(-17, 1.8, n),
                        np.array([2.0**-60, -(2.0**-60), 64.0, -64.0, 36.7, -0.5] * 20)])
    m = x.size
    pick = np.array([0.0, 1.0, 0.5, 0.3, 2.0, -0.25, 2.0**-100, 2.0**100, 1e-10, 7e4])
    y = np.where(rng.random(m) < 0.5, rng.random(m), pick[rng.integers(0, pick.size, m)])
    w = (rng.random(m) + 0.01) * np.array([1.0, -1.0, 2.0**-99, 2.0**99])[rng.integers(0, 4, m)]
    p = np.where(rng.random(m) < 0.5, rng.random(m) * 4, pick[rng.integers(0, pick.size, m)])
    p = np.abs(p)
    keep = fastkernel.fast_mask(x, y, w, p)
    return x[keep], y[keep], w[keep], p[keep]


def _chunk_bits(result):
    """A chunk's terms, numerators and redo mask as bytes, for an exact comparison."""
    chunk, redo = result
    out = {}
    for t, ((h, lo, e), d) in chunk.terms.items():
        assert e == 0
        out[str(t)] = (h.tobytes(), lo.tobytes(), np.asarray(d, np.float64).tobytes())
    for t, (nm, ne) in chunk.numerators.items():
        out["num " + str(t)] = (nm.tobytes(), np.asarray(ne).tobytes())
    out["redo"] = None if redo is None else redo.tobytes()
    return out


@pytest.mark.parametrize("with_cond", [True, False])
@pytest.mark.parametrize("has_w", [True, False])
@pytest.mark.parametrize("has_p", [True, False])
def test_compiled_kernel_gives_the_numpy_kernels_bits(monkeypatch, has_p, has_w, with_cond):
    """The numba loops (fastjit_loops.py) repeat the numpy kernel's operations one
    element at a time: every bit of every term, bound, numerator and redo flag agrees."""
    from harness.reference import fastjit

    _skip_without_numba()
    rng = np.random.default_rng(21 + 4 * has_p + 2 * has_w + with_cond)
    wants = [{LOSS, GRAD_INPUT, GRAD_TARGET}, {LOSS}, {GRAD_TARGET}]
    from harness.reference.terms import GRAD_POS_WEIGHT, GRAD_WEIGHT

    wants.append({t for t in (LOSS, GRAD_INPUT, GRAD_TARGET, GRAD_WEIGHT, GRAD_POS_WEIGHT)
                  if (has_w or t is not GRAD_WEIGHT) and (has_p or t is not GRAD_POS_WEIGHT)})
    redone = 0
    for n in (1, 5000):
        x, y, w, p = _fast_domain_args(rng, n)
        args = (x, y, w if has_w else None, p if has_p else None)
        monkeypatch.setattr(fastjit, "JIT_AFTER", 0)
        for want in wants:
            monkeypatch.setattr(fastjit, "JIT_MIN", 1)
            compiled = fastkernel.chunk_fast(*args, want, with_cond)
            monkeypatch.setattr(fastjit, "JIT_MIN", 10**12)
            plain = fastkernel.chunk_fast(*args, want, with_cond)
            assert _chunk_bits(compiled) == _chunk_bits(plain), (n, sorted(map(str, want)))
            redone += 0 if compiled[1] is None else int(compiled[1].sum())
    if with_cond:
        assert redone > 0  # cancelling brackets met, and flagged alike


def test_large_evaluations_run_the_compiled_kernel(monkeypatch):
    """Once a process has sent JIT_AFTER elements through the fast kernel, a chunk of
    JIT_MIN elements or more goes through the compiled kernel, a smaller one through
    numpy's; both give evaluate() the same bits."""
    from harness.reference import fastjit

    _skip_without_numba()
    monkeypatch.setitem(fastjit._STATE, "elements", 0)
    monkeypatch.setattr(fastjit, "JIT_AFTER", 4 * fastjit.JIT_MIN)
    calls = []
    real = fastjit.run
    monkeypatch.setattr(fastjit, "run", lambda *a: calls.append(a[0].size) or real(*a))
    rng = np.random.default_rng(3)
    x, y, w = rng.standard_normal(3 * fastjit.JIT_MIN) * 3, rng.random(3 * fastjit.JIT_MIN), None
    _clear_cache()
    first = R.evaluate(x, y, w, 2.0, reduction="none")  # 3 * JIT_MIN elements: not yet
    assert calls == []
    _clear_cache()
    big = R.evaluate(x, y, w, 2.0, reduction="none")  # past JIT_AFTER
    assert calls and min(calls) >= fastjit.JIT_MIN
    calls.clear()
    _clear_cache()
    small = R.evaluate(x[:100], y[:100], w, 2.0, reduction="none")
    assert calls == []
    monkeypatch.setattr(fastjit, "JIT_MIN", 10**12)
    _clear_cache()
    plain = R.evaluate(x, y, w, 2.0, reduction="none")
    _clear_cache()
    for k in big:
        assert first[k].value.tobytes() == plain[k].value.tobytes(), k
        assert big[k].value.tobytes() == plain[k].value.tobytes(), k
        assert big[k].cond.tobytes() == plain[k].cond.tobytes(), k
        if k != "grad.pos_weight":  # elementwise: the first 100 are the small call's
            assert small[k].value.tobytes() == plain[k].value[:100].tobytes(), k


def test_compiled_pairwise_sums_give_ddmaths_bits(monkeypatch):
    """fastjit.dd_sum_rows walks ddmath.dd_sum's tree (odd levels padded with a zero):
    the same hi and lo words for every row, odd and even lengths, signed zeros, huge
    and cancelling terms."""
    from harness.reference import ddmath, fastjit

    _skip_without_numba()
    monkeypatch.setitem(fastjit._STATE, "elements", fastjit.JIT_AFTER + 1)
    rng = np.random.default_rng(8)
    for rows, n in [(1, 16384), (40, 1000), (3, 257), (7, 511), (2, 300)]:
        h = rng.standard_normal((rows, n)) * 10.0 ** rng.integers(-8, 8, (rows, n))
        lo = h * 2.0**-60 * rng.standard_normal((rows, n))
        h[0, :6] = [0.0, -0.0, 1e300, -1e300, 3.0, -3.0]
        lo[0, :2] = [-0.0, -0.0]
        got = fastjit.dd_sum_rows(h, lo)
        want = ddmath.dd_sum(h, lo, axis=1)
        assert got is not None
        assert got[0].tobytes() == want[0].tobytes() and got[1].tobytes() == want[1].tobytes()
    assert fastjit.dd_sum_rows(h[:, :100], lo[:, :100]) is None  # short rows: numpy's


def test_a_failing_compiled_loop_leaves_the_numpy_code_running(monkeypatch):
    """numba compiles at the first call; if that fails (or any call does), the chunk and
    every later one run the numpy code, with the same bits, and why_not says why."""
    from harness.reference import fastjit

    class Broken:
        def __getattr__(self, name):
            def fail(*args):
                raise RuntimeError(f"no {name} today")
            return fail

    monkeypatch.setattr(fastjit, "_STATE", {"kernel": Broken(), "elements": 0})
    monkeypatch.setattr(fastjit, "JIT_AFTER", 0)
    rng = np.random.default_rng(4)
    x, y = rng.standard_normal(5000) * 3, rng.random(5000)
    _clear_cache()
    got = R.evaluate(x, y, None, 2.0, reduction="sum")
    assert fastjit.available() is False
    assert "RuntimeError: no transcendental today" in fastjit.why_not()
    monkeypatch.setattr(fastjit, "_STATE", {"kernel": None, "why_not": "switched off here"})
    _clear_cache()
    plain = R.evaluate(x, y, None, 2.0, reduction="sum")
    _clear_cache()
    for k in plain:
        assert got[k].value.tobytes() == plain[k].value.tobytes(), k
