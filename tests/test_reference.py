"""Tests of harness.reference: the accuracy proof against the oracle, the traps, the
special values, shapes and dtypes, reductions and condition numbers.

The accuracy proof evaluates thousands of seeded points spread over the hard regions
and measures every result's error in float64 ulps *exactly* (``tests/oracle.py``
returns Fractions good to ~1e-68 relative). The claim tested is the strong one: every
value and every gradient is correctly rounded (<= 1/2 ulp), not merely 99.99 % of them.
Run ``pytest tests/test_reference.py -s -k accuracy`` to see the counts.
"""

from __future__ import annotations

import math
from decimal import Decimal, localcontext
from fractions import Fraction

import ml_dtypes
import numpy as np
import pytest

from harness import reference as R
from harness.reference import elementwise, exact, scaled
from harness.reference.terms import GRAD_INPUT, GRAD_POS_WEIGHT, GRAD_TARGET, GRAD_WEIGHT, LOSS
from tests import oracle as O

MAXF = 1.7976931348623157e308
# the oracle keeps >= 68 correct digits: its ulp measurements are good to ~1e-50
HALF = Fraction(1, 2) + Fraction(1, 10**40)
QUANT = {"loss": "value", "input": "grad.input", "target": "grad.target",
         "weight": "grad.weight", "pos_weight": "grad.pos_weight"}
#: the kernels' term behind each quantity (harness/reference/terms.py)
CHUNK_KEY = {"loss": LOSS, "input": GRAD_INPUT, "target": GRAD_TARGET, "weight": GRAD_WEIGHT,
             "pos_weight": GRAD_POS_WEIGHT}


# ===========================================================================
# the point set
# ===========================================================================

Y_POOL = [0.0, 1.0, 0.5, 1 - 2.0**-53, 1e-17, -3.0, 7.0, 1 + 2.0**-52]
P_POOL = [None, 0.0, 1.0, 3.0, 1e10, 1e-10]
W_POOL = [None, 0.5, 3.0, 1e-300]
X_SPECIAL = [0.0, -0.0, 37.0, 50.0, 709.78, 745.1, 1e-17, 5e-324, MAXF, 1e-300,
             2.2250738585072014e-308, 40.0, 36.7, 745.1332191019412, 709.782712893384,
             1.0, 2.0**-30, 3000.0, 6000.5, 1e5, 2.0**52 + 3]
X_SPECIAL = X_SPECIAL + [-v for v in X_SPECIAL]


def _bisect_float(f, lo: float, hi: float) -> float:
    """The float where the decreasing function f (exact sign via the oracle) changes sign."""
    for _ in range(200):
        mid = float(np.nextafter(lo, hi)) if lo == hi else (lo + hi) / 2
        if mid in (lo, hi):
            return lo
        if f(mid) > 0:
            lo = mid
        else:
            hi = mid
    return lo


def _near_zero_gradient_points():
    """(x, y, p) where d/dx or d/dy is (nearly) zero: the cancellation traps."""
    pts = []
    with localcontext() as c:
        c.prec = 50
        for y in [0.5, 0.3, 1e-17, 1 - 2.0**-53, 0.9, 1e-5]:
            for p in [None, 3.0, 1e10, 1e-10]:
                pv = 1.0 if p is None else p
                xstar = float((Decimal(pv) * Decimal(y) / (1 - Decimal(y))).ln())
                x = xstar
                for _ in range(3):
                    x = float(np.nextafter(x, -np.inf))
                for _ in range(7):
                    pts.append((x, y, p))
                    x = float(np.nextafter(x, np.inf))
    for p in [3.0, 1e10, 1e-10, 0.5, 2.0]:
        def g(x, p=p):
            return O.elementwise(x, 0.0, None, p)["target"]

        root = _bisect_float(g, -800.0, 800.0)
        x = root
        for _ in range(2):
            x = float(np.nextafter(x, -np.inf))
        for _ in range(5):
            pts.append((x, 0.5, p))
            x = float(np.nextafter(x, np.inf))
    return pts


def accuracy_points(seed: int = 20240601):
    """~5000 deterministic points (x, y, w, p) over the hard regions."""
    rng = np.random.default_rng(seed)
    xs = list(X_SPECIAL)
    mags = 10.0 ** rng.uniform(-300, 308.2, 1700)
    xs += list(np.where(rng.random(mags.size) < 0.5, -mags, mags))
    xs += list(rng.uniform(-60, 60, 1400))
    xs += list(rng.uniform(-800, 800, 300))
    xs += list(rng.uniform(700, 746, 150)) + list(rng.uniform(-746, -700, 150))
    pts = []
    for x in xs:
        y = Y_POOL[rng.integers(len(Y_POOL))]
        p = P_POOL[rng.integers(len(P_POOL))]
        w = W_POOL[rng.integers(len(W_POOL))]
        pts.append((float(x), y, w, p))
    for x in xs[: len(X_SPECIAL)]:  # every special x with every target
        for y in Y_POOL:
            pts.append((float(x), y, None, None))
    # subnormal and underflowing results
    for x in rng.uniform(700, 745.2, 150):
        pts.append((float(x), 1.0, W_POOL[rng.integers(4)], P_POOL[rng.integers(1, 6)]))
    for x in rng.uniform(-60, 60, 150):
        pts.append((float(x), Y_POOL[rng.integers(8)], 1e-300, P_POOL[rng.integers(6)]))
    for x, y, p in _near_zero_gradient_points():
        pts.append((x, y, W_POOL[rng.integers(4)], p))
    return pts


def evaluate_points(pts):
    """Reference results for each point, grouped by which of w and p are present."""
    out = [None] * len(pts)
    groups: dict[tuple[bool, bool], list[int]] = {}
    for i, (_, _, w, p) in enumerate(pts):
        groups.setdefault((w is not None, p is not None), []).append(i)
    for (hw, hp), idx in groups.items():
        x = np.array([pts[i][0] for i in idx])
        y = np.array([pts[i][1] for i in idx])
        w = np.array([pts[i][2] for i in idx]) if hw else None
        p = np.array([pts[i][3] for i in idx]) if hp else None
        res = R.evaluate(x, y, w, p, reduction="none")
        for j, i in enumerate(idx):
            out[i] = {k: float(res[q].value[j]) for k, q in QUANT.items() if q in res}
    return out


#: The tests reading `accuracy_data` (seconds of exact arithmetic) share one
#: pytest-xdist worker under --dist loadgroup, so it is computed once.
ACCURACY = pytest.mark.xdist_group("reference-accuracy")


@pytest.fixture(scope="module")
def accuracy_data():
    pts = accuracy_points()
    ref = evaluate_points(pts)
    exact = [O.elementwise(x, y, w, p) for x, y, w, p in pts]
    return pts, ref, exact


# ===========================================================================
# the accuracy proof
# ===========================================================================


@ACCURACY
def test_accuracy_every_result_correctly_rounded(accuracy_data, capsys):
    pts, ref, exact = accuracy_data
    stats = {k: [0, 0, Fraction(0)] for k in QUANT}
    bad = []
    for i, (x, y, w, p) in enumerate(pts):
        for k, v in ref[i].items():
            err = O.ulp_error(v, exact[i][k])
            st = stats[k]
            st[0] += 1
            st[1] += err <= HALF
            st[2] = max(st[2], err)
            if err > HALF:
                bad.append((k, x, y, w, p, v, O.nearest(exact[i][k]), float(err)))
    with capsys.disabled():
        print("\naccuracy (reduction='none'): quantity: points, fraction <= 0.5 ulp, max ulp")
        for k, (n, ok, mx) in stats.items():
            print(f"  {k:10s} {n:6d}  {ok / n:.6f}  {float(mx):.4f}")
    assert sum(s[0] for s in stats.values()) > 20000
    assert not bad, bad[:10]


@ACCURACY
def test_accuracy_error_bound_is_rigorous(accuracy_data):
    """|dd value - exact| <= the bound Ziv's test relies on, at every point."""
    pts, _, exact = accuracy_data
    worst = 0.0
    for (hw, hp) in [(False, False), (True, False), (False, True), (True, True)]:
        idx = [i for i, (_, _, w, p) in enumerate(pts) if (w is not None) == hw
               and (p is not None) == hp]
        x = np.array([pts[i][0] for i in idx])
        y = np.array([pts[i][1] for i in idx])
        w = np.array([pts[i][2] for i in idx]) if hw else None
        p = np.array([pts[i][3] for i in idx]) if hp else None
        out = elementwise.chunk(x, y, w, p, None, set(CHUNK_KEY.values()), False).terms
        for k, key in CHUNK_KEY.items():
            if (k == "weight" and not hw) or (k == "pos_weight" and not hp):
                continue
            (h, lo, e), d = out[key]
            for j, i in enumerate(idx):
                if h[j] == 0 and lo[j] == 0 and d[j] == 0:  # exact zero (no exponent)
                    assert exact[i][k] == 0 or abs(exact[i][k]) < Fraction(1, 10**4000), pts[i]
                    continue
                scale = Fraction(2) ** int(e[j])
                got = (Fraction(float(h[j])) + Fraction(float(lo[j]))) * scale
                bound = Fraction(float(d[j])) * scale
                err = abs(got - exact[i][k])
                # the oracle itself is good to ~1e-68 relative, not exact
                assert err <= bound + abs(exact[i][k]) / 10**60, (k, pts[i], float(err))
                if bound and abs(pts[i][0]) <= 3000:  # beyond, a stand-in is charged whole
                    worst = max(worst, float(err / bound))
    assert worst < 2.0**-4  # the bound is conservative, not tight


def test_accuracy_exact_slow_path_alone(monkeypatch):
    """With a useless error bound every element takes the fractions/decimal path."""
    pts = accuracy_points(seed=99)[::25]
    calls = []
    real = exact.slow_sum
    monkeypatch.setattr(exact, "slow_sum", lambda *a: calls.append(1) or real(*a))
    monkeypatch.setattr(scaled, "EPS", 2.0**-8)
    ref = evaluate_points(pts)
    assert len(calls) > 0.8 * sum(len(r) for r in ref)
    for (x, y, w, p), r in zip(pts, ref, strict=True):
        ex = O.elementwise(x, y, w, p)
        for k, v in r.items():
            assert O.ulp_error(v, ex[k]) <= HALF, (k, x, y, w, p)


def test_slow_path_is_rare_on_ordinary_data(monkeypatch):
    calls = []
    real = exact.slow_sum
    monkeypatch.setattr(exact, "slow_sum", lambda *a: calls.append(1) or real(*a))
    rng = np.random.default_rng(5)
    n = 100_000
    x, y = rng.standard_normal(n) * 5, rng.random(n)
    R.evaluate(x, y, rng.random(n) + 0.5, rng.random(n) * 3, reduction="none")
    R.evaluate(x, y, reduction="mean")
    assert len(calls) <= 3


# ===========================================================================
# the known traps, each shown to catch the naive formula
# ===========================================================================


def naive_textbook(x, y, p=1.0):
    lw = 1 + (p - 1) * y
    return (1 - y) * x + lw * (np.log1p(np.exp(-np.abs(x))) + np.maximum(-x, 0))


def test_trap_textbook_form_at_x_minus_50():
    assert naive_textbook(-50.0, 0.0) == 0.0  # every digit lost
    v = R.loss([-50.0], [0.0], reduction="none")[0]
    assert v == 1.9287498479639178e-22
    assert O.ulp_error(v, O.elementwise(-50.0, 0.0)["loss"]) <= HALF


def test_trap_sigmoid_minus_target_cancellation():
    y = 0.3
    x = float(np.log(y / (1 - y)))
    naive = 1 / (1 + np.exp(-x)) - y
    exact = O.elementwise(x, y)["input"]
    assert O.ulp_error(float(naive), exact) > 100  # the naive form is far off
    got = R.grads([x], [y], reduction="sum")["input"][0]
    assert O.ulp_error(got, exact) <= HALF


def test_trap_one_minus_sigmoid_for_positive_x():
    # d/dx at y = 1, x = 40 is -s(-40) ~ -4.2e-18; 1 - s(40) is 0 in float64
    assert 1 - 1 / (1 + np.exp(-40.0)) == 0.0
    got = R.grads([40.0], [1.0], reduction="sum")["input"][0]
    assert got != 0 and O.ulp_error(got, O.elementwise(40.0, 1.0)["input"]) <= HALF


def test_trap_softplus_large_and_very_negative():
    assert np.log(1 + np.exp(-40.0)) == 0.0
    v = R.loss([40.0, -740.0, -745.1, 800.0], [1.0, 0.0, 0.0, 0.0], reduction="none")
    assert v[0] == 4.248354255291589e-18
    assert v[1] == float(O.nearest(O.elementwise(-740.0, 0.0)["loss"]))  # subnormal
    assert 0 < v[1] < 2.2250738585072014e-308
    assert v[2] == float(O.nearest(O.elementwise(-745.1, 0.0)["loss"]))
    assert v[3] == 800.0


def test_trap_extreme_magnitudes_and_overflow():
    v = R.loss([MAXF, MAXF, -MAXF, 1e-300, -5e-324], [-3.0, -3.0, 1.0, 0.0, 0.0],
               [1.0, 1e-300, 1.0, 1.0, 1.0], reduction="none")
    assert v[0] == np.inf  # 4 * MAXF overflows: correctly rounded overflow
    assert v[1] == float(O.nearest(O.elementwise(MAXF, -3.0, 1e-300)["loss"]))
    assert v[2] == MAXF
    for i, (x, y) in enumerate([(1e-300, 0.0), (-5e-324, 0.0)]):
        assert v[3 + i] == float(O.nearest(O.elementwise(x, y)["loss"]))


def test_trap_products_near_underflow_are_rounded_once():
    # w * loss lands in the subnormal range: rounding w*fl(loss) would round twice
    x = np.array([-50.0, 3.0, -700.0])
    w = np.array([1e-300, 1e-320, 1e10])
    v = R.loss(x, np.zeros(3), w, reduction="none")
    for i in range(3):
        assert v[i] == float(O.nearest(O.elementwise(x[i], 0.0, w[i])["loss"]))


def test_hidden_tie_is_broken_by_the_invisible_tail():
    """3*(2**52 + 3) is exactly halfway between floats; e**-4.5e15 decides the rounding.

    Ties-to-even would give ...496 in both cases; the exact values lie just above
    (positive tail) and just below (negative tail, l = 1 - y + p*y < 0) the midpoint.
    """
    x = 2.0**52 + 3
    assert R.loss([x], [0.0], [3.0], reduction="none")[0] == 13510798882111498.0
    assert R.loss([x], [4.0], None, [0.5], reduction="none")[0] == -13510798882111498.0
    # and an exact tie (no tail: l = 0) does round to even
    v = R.loss([x], [2.0], [1.5], [0.5], reduction="none")[0]
    assert v == float(O.nearest(Fraction(-3, 2) * Fraction(x)))


# ===========================================================================
# special values
# ===========================================================================

INF, NAN = np.inf, np.nan


@pytest.mark.parametrize(
    "x,y,w,p,expect",
    [
        # loss, d/dx, d/dy, d/dw, d/dp
        (INF, 1.0, None, None, (0.0, 0.0, -INF, None, None)),
        (INF, 0.0, None, None, (INF, 1.0, -INF, None, None)),
        (-INF, 0.0, None, None, (0.0, 0.0, INF, None, None)),
        (-INF, 1.0, None, 3.0, (INF, -3.0, INF, None, INF)),
        (-INF, 1.0, None, 0.0, (0.0, 0.0, 0.0, None, INF)),  # p = 0 kills the positive term
        (INF, 0.5, 0.0, None, (0.0, 0.0, 0.0, INF, None)),  # w = 0 times inf is 0
        (INF, 0.5, 2.0, None, (INF, 1.0, -INF, INF, None)),
        (NAN, 0.5, 0.0, None, (NAN, NAN, NAN, NAN, None)),  # NaN wins over a zero weight
        (1.0, NAN, None, None, (NAN, NAN, NAN, None, None)),
        (1.0, 0.5, None, NAN, (NAN, NAN, NAN, None, NAN)),
        (1.0, INF, None, None, (-INF, -INF, -1.0, None, None)),  # affine in y: y*(-x)
        (0.0, INF, None, None, (math.log(2), -INF, 0.0, None, None)),  # slope exactly 0
        (-1.0, -INF, None, None, (-INF, INF, 1.0, None, None)),
        (2.0, 0.5, INF, None, (INF, INF, -INF, None, None)),
        (2.0, 0.5, -INF, None, (-INF, -INF, INF, None, None)),
        (2.0, 0.0, None, INF, (None, None, INF, None, 0.0)),
        (2.0, 0.5, None, INF, (INF, -INF, INF, None, None)),
        (2.0, 1.0, 0.0, INF, (0.0, 0.0, 0.0, INF, 0.0)),
        (INF, INF, None, None, (-INF, -INF, -INF, None, None)),
        (-INF, 1.0, INF, 2.0, (INF, -INF, INF, INF, INF)),
    ],
)
def test_special_values(x, y, w, p, expect):
    args = ([x], [y], None if w is None else [w], None if p is None else [p])
    res = R.evaluate(*args, reduction="none")
    names = ["value", "grad.input", "grad.target", "grad.weight", "grad.pos_weight"]
    for name, want in zip(names, expect, strict=True):
        if want is None or name not in res:
            continue
        got = res[name].value[0]
        if np.isnan(want):
            assert np.isnan(got), name
        else:
            assert got == want, (name, got, want)
        assert res[name].cond[0] == 0


def test_special_values_in_reductions():
    x = np.array([INF, 1.0, -2.0])
    y = np.array([0.0, 0.5, 0.5])
    assert R.loss(x, y, reduction="sum") == INF
    assert R.loss(x, y, reduction="mean") == INF
    assert R.loss(x, np.array([1.0, 0.5, 0.5]), reduction="mean") == R.loss(
        x[1:], y[1:], reduction="sum"
    ) / 3
    g = R.grads(x, y, weight=[2.0], reduction="sum")
    assert g["weight"][0] == INF and g["input"][0] == 2.0
    both = R.loss([INF, -INF], [0.0, 1.0], [1.0, -1.0], reduction="sum")
    assert np.isnan(both)  # +inf + -inf


def test_empty_input():
    e = np.zeros((0, 3))
    assert R.loss(e, e, reduction="none").shape == (0, 3)
    assert R.loss(e, e, reduction="sum") == 0.0
    assert np.isnan(R.loss(e, e, reduction="mean"))
    for red in ("none", "sum", "mean"):
        g = R.grads(e, e, [1.0, 2.0, 3.0], [[1.0, 1.0, 1.0]], reduction=red)
        assert g["input"].shape == (0, 3) and g["target"].shape == (0, 3)
        assert g["weight"].tolist() == [0.0, 0.0, 0.0]
        assert g["pos_weight"].tolist() == [[0.0, 0.0, 0.0]]
    q = R.evaluate(e, e, [1.0, 2.0, 3.0], reduction="mean")
    assert q["grad.weight"].terms.tolist() == [0, 0, 0] and q["value"].terms == 0


# ===========================================================================
# arguments: shapes, broadcasting, dtypes, validation
# ===========================================================================


def test_shape_mismatch_message():
    msg = r"Target size \(2,\) must be the same as input size \(3,\)"
    with pytest.raises(ValueError, match=msg):
        R.loss([1.0, 2.0, 3.0], [1.0, 0.0])


@pytest.mark.parametrize("wshape", [(2, 3), (4, 1, 3), (3, 3)])
def test_weight_must_not_enlarge(wshape):
    with pytest.raises(ValueError, match="without enlarging"):
        R.loss(np.zeros(3), np.zeros(3), np.ones(wshape))
    with pytest.raises(ValueError, match="pos_weight"):
        R.loss(np.zeros(3), np.zeros(3), None, np.ones(wshape))


def test_unknown_reduction_and_grad_names():
    with pytest.raises(ValueError, match="none, mean, sum"):
        R.loss([1.0], [1.0], reduction="avg")
    with pytest.raises(ValueError, match="input, target, weight, pos_weight"):
        R.evaluate([1.0], [1.0], grads=("bias",))


@pytest.mark.parametrize(
    "dtype", [np.float16, np.float32, np.float64, ml_dtypes.bfloat16, np.int32, np.int64,
              np.uint8, np.bool_]
)
def test_dtypes_convert_exactly(dtype):
    vals = np.array([0, 1, 1, 0], dtype=np.float64) if dtype is np.bool_ else np.array(
        [-3.0, 0.0, 1.0, 2.5 if np.dtype(dtype).kind == "f" or dtype is ml_dtypes.bfloat16 else 2.0]
    )
    if np.dtype(dtype).kind == "u":
        vals = np.abs(vals)
    a = vals.astype(dtype)
    got = R.loss(a, a, a, a, reduction="none")
    want = R.loss(a.astype(np.float64), a.astype(np.float64), a.astype(np.float64),
                  a.astype(np.float64), reduction="none")
    assert got.dtype == np.float64 and np.array_equal(got, want)


def test_inexact_conversions_are_refused():
    with pytest.raises(ValueError, match="exact float64"):
        R.loss(np.array([2**53 + 1], dtype=np.int64), np.array([1], dtype=np.int64))
    with pytest.raises(ValueError, match="complex"):
        R.loss(np.array([1j]), np.array([1.0]))
    with pytest.raises(ValueError, match="not a real number"):
        R.loss(np.array(["1.5"]), np.array([1.0]))
    assert R.loss(np.array([2**60], dtype=np.int64), np.array([0]), reduction="sum") == 2.0**60


def test_broadcast_weights_and_scalars():
    rng = np.random.default_rng(3)
    x = rng.standard_normal((3, 4, 5))
    y = rng.random((3, 4, 5))
    for ws in [(), (5,), (4, 1), (1, 4, 5), (3, 1, 1), (3, 4, 5)]:
        w = rng.random(ws) + 0.5
        p = rng.random(ws[-1:] if ws else ()) * 3
        g = R.grads(x, y, w, p, reduction="mean")
        assert g["weight"].shape == np.shape(w) and g["pos_weight"].shape == np.shape(p)
        wf = np.broadcast_to(w, x.shape)
        pf = np.broadcast_to(p, x.shape)
        full = R.evaluate(x, y, np.ascontiguousarray(wf), np.ascontiguousarray(pf),
                          reduction="none")
        assert np.array_equal(R.loss(x, y, w, p, reduction="none"), full["value"].value)
        ex = O.elementwise_many(x.ravel(), y.ravel(), wf.ravel(), pf.ravel())
        # the weight gradient is the exact sum over broadcast axes, divided by n, rounded once
        terms = np.array(ex["weight"], dtype=object).reshape(x.shape)
        padded = (1,) * (3 - len(np.shape(w))) + np.shape(w)
        axes = tuple(i for i in range(3) if padded[i] == 1)
        for idx in np.ndindex(*np.shape(w)):
            full_idx = [slice(None)] * 3
            pidx = (0,) * (3 - len(idx)) + idx
            for ax in range(3):
                if ax not in axes:
                    full_idx[ax] = pidx[ax]
            tot = sum(np.asarray(terms[tuple(full_idx)]).ravel().tolist(), Fraction(0)) / x.size
            assert O.ulp_error(float(g["weight"][idx]), tot) <= HALF
    assert R.loss(2.0, 1.0, reduction="none").shape == ()


def test_loss_and_grads_are_the_evaluate_values():
    rng = np.random.default_rng(4)
    x, y = rng.standard_normal(50) * 10, rng.random(50)
    w, p = rng.random(50), rng.random(1) * 3
    for red in R.REDUCTIONS:
        ev = R.evaluate(x, y, w, p, red)
        assert np.array_equal(R.loss(x, y, w, p, red), ev["value"].value)
        g = R.grads(x, y, w, p, red)
        assert set(g) == {"input", "target", "weight", "pos_weight"}
        for k, v in g.items():
            assert np.array_equal(v, ev["grad." + k].value)
    assert set(R.grads(x, y)) == {"input", "target"}
    assert set(R.evaluate(x, y, grads=("weight", "input"))) == {"value", "grad.input"}


# ===========================================================================
# reductions against the oracle's exact sums
# ===========================================================================


def _random_case(rng):
    n = int(rng.integers(1, 40))
    kind = rng.integers(4)
    if kind == 0:
        x = rng.standard_normal(n) * 10
    elif kind == 1:
        mags = 10.0 ** rng.uniform(-300, 300, n)
        x = np.where(rng.random(n) < 0.5, -mags, mags)
    elif kind == 2:
        x = rng.uniform(-800, 800, n)
    else:
        x = rng.standard_normal(n) * 1e-8
    y = np.array(Y_POOL)[rng.integers(0, len(Y_POOL), n)]
    if rng.random() < 0.4:  # cancelling sums: targets outside [0, 1]
        y = np.where(rng.random(n) < 0.5, -3.0, 7.0)
    w = rng.random(n) * 3 if rng.random() < 0.5 else None
    p = np.array([float(P_POOL[rng.integers(1, len(P_POOL))])]) if rng.random() < 0.5 else None
    return x, y, w, p


def test_reductions_match_exact_sums():
    rng = np.random.default_rng(11)
    worst = Fraction(0)
    for _ in range(250):
        x, y, w, p = _random_case(rng)
        pf = None if p is None else np.broadcast_to(p, x.shape)
        ex = O.elementwise_many(x, y, w, pf)
        for red in ("sum", "mean"):
            ev = R.evaluate(x, y, w, p, red)
            pairs = [("value", ex["loss"])]
            if w is not None:
                pairs.append(("grad.weight", None))
            if p is not None:
                pairs.append(("grad.pos_weight", ex["pos_weight"]))
            for name, terms in pairs:
                if terms is None:  # weight is elementwise here
                    want = [t / (len(x) if red == "mean" else 1) for t in ex["weight"]]
                    got = ev[name].value
                    for g_, t_ in zip(got, want, strict=True):
                        worst = max(worst, O.ulp_error(float(g_), t_))
                    continue
                tot = O.total(terms, red)
                err = O.ulp_error(float(np.ravel(ev[name].value)[0]), tot)
                worst = max(worst, err)
                assert err <= HALF, (name, red, x, y, w, p)
                mag = sum((abs(t) for t in terms), Fraction(0))
                s = abs(sum(terms, Fraction(0)))
                if s and np.isfinite(ev[name].value).all():
                    spread = float(mag / s)
                    assert math.isclose(float(np.ravel(ev[name].spread)[0]), spread, rel_tol=1e-9)
            for k in ("input", "target"):
                want = [t / (len(x) if red == "mean" else 1) for t in ex[k]]
                for g_, t_ in zip(ev["grad." + k].value, want, strict=True):
                    assert O.ulp_error(float(g_), t_) <= HALF
    assert worst <= HALF


def test_mean_is_rounded_once():
    # sum = 1 + 2**-52 + tiny, n = 3: rounding the sum first and then dividing differs
    x = np.array([1.0, 2.0**-52 * 3, 1e-20])
    # use d/dp = w*y*sp(-x) at x -> -inf-like slopes: simpler with a linear quantity:
    # gy = -w*x for p = 1, so the mean of gy is exactly -sum(w*x)/n
    w = np.array([1.0, 1.0, 1.0])
    got = R.grads(-x, np.zeros(3), w, reduction="mean")["target"]
    exact = [Fraction(float(v)) / 3 for v in x]
    for g_, t_ in zip(got, exact, strict=True):
        assert O.ulp_error(float(g_), t_) <= HALF
    val = R.loss([-1e-30] * 3, [0.5, 0.5, 0.5], [1.0, 3.0, 2.0 ** -52], reduction="mean")
    tot = O.total(O.elementwise_many([-1e-30] * 3, [0.5] * 3, [1.0, 3.0, 2.0**-52])["loss"],
                  "mean")
    assert O.ulp_error(float(val), tot) <= HALF


def test_cancelling_sum_far_beyond_float64():
    # terms of +-4e300 that cancel exactly, plus ln 2: float64 summation returns 0
    x = np.array([1e300, -1e-300, 1e300])
    y = np.array([-3.0, 0.0, 5.0])  # (1-y)*sp(x) = 4e300 and -4e300; sp(-1e-300) ~ ln 2
    with np.errstate(over="ignore"):
        naive = np.sum(naive_textbook(x, y))
    assert naive == 0.0
    ev = R.evaluate(x, y, reduction="sum")
    tot = O.total(O.elementwise_many(x, y)["loss"], "sum")
    assert O.ulp_error(float(ev["value"].value), tot) <= HALF
    assert math.isclose(float(ev["value"].spread), 8e300 / float(tot), rel_tol=1e-12)


# ===========================================================================
# condition numbers
# ===========================================================================


def _quantities(x, c, d, w, p):
    """The five quantities with the target's two coefficients c = 1 - y, d = y apart."""
    with localcontext(O._CTX) as ctx:
        ctx.prec = 120
        spx, spn = O.softplus(x), O.softplus(-x)
        sx, sn = O.sigmoid(x), O.sigmoid(-x)
        return {
            "loss": w * (c * spx + p * d * spn),
            "input": w * (c * sx - p * d * sn),
            "target": w * (p * spn - spx),
            "weight": c * spx + p * d * spn,
            "pos_weight": w * d * spn,
        }


def _cond_fd(x, y, w, p, key):
    """sum_z |z dq/dz| / |q| by central differences at 120 digits.

    The inputs are x, w and p when present, and the target: in the loss, d/dx and d/dw
    as its two coefficients 1 - y and y perturbed separately (an exact hard label is
    not a perturbed input), in d/dy and d/dp as one input y -- the model the
    reference's condition numbers use (see condition.numerators).
    """
    coef = key in ("loss", "weight", "input")
    args = {"x": Decimal(x), "c": 1 - Decimal(y), "d": Decimal(y),
            "w": None if w is None else Decimal(w), "p": None if p is None else Decimal(p)}
    full = {k: (Decimal(1) if v is None else v) for k, v in args.items()}
    base = _quantities(**full)[key]
    num = Decimal(0)
    with localcontext(O._CTX) as ctx:
        ctx.prec = 120
        moves = [(n, {n: z}) for n, z in args.items() if n not in "cd" and z]
        if coef:
            moves += [(n, {n: args[n]}) for n in "cd" if args[n]]
        elif y:
            moves.append(("y", {"c": 1 - Decimal(y), "d": Decimal(y)}))
        for name, _ in moves:
            z = Decimal(y) if name == "y" else args[name]
            h = abs(z) * Decimal("1e-40")
            if name == "y":
                up = {"c": 1 - (z + h), "d": z + h}
                dn = {"c": 1 - (z - h), "d": z - h}
            else:
                up, dn = {name: z + h}, {name: z - h}
            qu = _quantities(**{**full, **up})[key]
            qd = _quantities(**{**full, **dn})[key]
            num += abs(z * (qu - qd) / (2 * h))
        return float(num / abs(base)) if base else (0.0 if num == 0 else math.inf)


def test_condition_numbers_match_finite_differences():
    rng = np.random.default_rng(8)
    cases = [(float(rng.standard_normal() * 6), float(rng.choice([*Y_POOL[:5], 0.25, -3.0])),
              float(rng.random() + 0.2), float(rng.random() * 4)) for _ in range(25)]
    cases += [(0.0, 0.5, 2.0, 1.0), (-50.0, 0.0, 1.0, 3.0), (30.0, 1.0, 0.5, 2.0)]
    for x, y, w, p in cases:
        for wv, pv in [(w, p), (None, None), (w, None)]:
            ev = R.evaluate([x], [y], None if wv is None else [wv], None if pv is None else [pv],
                            reduction="none")
            for k, name in QUANT.items():
                if name not in ev:
                    continue
                want = _cond_fd(x, y, wv, pv, k)
                got = float(ev[name].cond[0])
                if math.isinf(want) or want == 0:
                    assert got == want or (want == 0 and got < 1e-12), (k, x, y, wv, pv)
                else:
                    assert math.isclose(got, want, rel_tol=1e-9), (k, x, y, wv, pv, got, want)


def test_condition_number_conventions():
    # d/dx at x = 0, y = 1/2 is exactly 0 while moving x changes it: infinite cond
    ev = R.evaluate([0.0], [0.5], reduction="none")
    assert ev["grad.input"].value[0] == 0 and ev["grad.input"].cond[0] == np.inf
    # w = 0: everything vanishes and no partial moves it
    ev = R.evaluate([1.0], [0.5], [0.0], reduction="none")
    assert ev["value"].cond[0] == 0 and ev["grad.input"].cond[0] == 0
    # huge arguments: no overflow, no NaN
    ev = R.evaluate([1e300], [-1e300], [1e300], [1e300], reduction="none")
    for q in ev.values():
        assert not np.isnan(q.cond).any()
    # reduced: cond = sum|t_i| cond_i / |sum t_i|, terms = n
    x = np.array([1.0, -2.0, 3.0])
    y = np.array([0.2, 0.7, 0.1])
    ev_n = R.evaluate(x, y, reduction="none")
    ev_s = R.evaluate(x, y, reduction="mean")
    t = ev_n["value"].value
    want = float(np.sum(np.abs(t) * ev_n["value"].cond) / abs(np.sum(t)))
    assert math.isclose(float(ev_s["value"].cond), want, rel_tol=1e-12)
    assert ev_s["value"].terms == 3 and ev_s["grad.input"].terms.tolist() == [1, 1, 1]
    assert np.array_equal(ev_s["grad.input"].cond, ev_n["grad.input"].cond)
