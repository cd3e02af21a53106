"""numpy: the loss as numpy users write it, carefully and naively.

`formula` is what a careful numpy user writes: the symmetric logits form with a
stable softplus, σ(±x) without cancellation, ∂/∂target split by the sign of x
rather than a difference of two softplus values, analytical gradients for all four
arguments, float32/float16/bfloat16 computed in float64 and rounded once (the usual
advice: compute the loss in higher precision). It is the harness's own
control: it must pass everything not listed as known.

`naive` is the other road (README.md, "Findings"): sigmoid first, then the BCE formula on
the probability, with gradients by the chain rule through the probability (what an
autodiff system would do). The report shows where that breaks: saturation at
|x| ≳ 17 in float64 (far sooner in float16), log(0) = -inf, and 0·inf = NaN.
"""

from __future__ import annotations

import inspect

import numpy as np

from harness.backends._common import literals, too_large
from harness.dtypes import numpy_dtype
from harness.protocol import DTYPES, Call, Result

ARGS = ("input", "target", "weight", "pos_weight")


class NumpyBackend:
    """Always available: numpy is a core dependency of the harness."""

    name = "numpy"

    def availability(self) -> str | None:
        return None

    def versions(self) -> dict[str, str]:
        import ml_dtypes

        return {"numpy": np.__version__, "ml_dtypes": ml_dtypes.__version__}

    def devices(self) -> list[str]:
        return ["cpu"]

    def dtypes(self) -> list[str]:
        return list(DTYPES)

    def implementations(self) -> list[str]:
        return ["formula", "naive"]

    def describe(self, implementation: str) -> str:
        if implementation == "formula":
            return ("w·[(1−y)·softplus(x) + p·y·softplus(−x)] with softplus(z) = max(z,0) + "
                    "log1p(exp(−|z|)), analytical gradients (∂/∂y split by the sign of x, no "
                    "cancellation);"
                    " float32/float16/bfloat16 computed in float64 and rounded once.")
        return ("p = 1/(1+exp(−x)), then −w·[pos_weight·y·log(p) + (1−y)·log(1−p)], gradients "
                "by the chain rule through p (as autodiff would); no clamping.")

    def run(self, call: Call) -> Result:
        if call.reduction not in ("none", "mean", "sum"):
            raise ValueError(f"{call.reduction} is not a valid value for reduction")
        if np.shape(call.input) != np.shape(call.target):
            raise ValueError(f"Target size ({np.shape(call.target)}) must be the same as input "
                             f"size ({np.shape(call.input)})")
        args = {n: _cast(getattr(call, n), call.dtype_of(n)) for n in ARGS}
        _check_broadcast(np.shape(call.input), call.weight, "weight")
        _check_broadcast(np.shape(call.input), call.pos_weight, "pos_weight")
        if call.implementation not in ("formula", "naive"):
            raise ValueError(f"unknown implementation {call.implementation!r}")
        value, grads = _compute(args, numpy_dtype(call.dtype), call.implementation,
                                call.reduction, call.grads)
        return Result(value=value, grads=grads)

    def snippet(self, call: Call) -> str:
        """A numpy-only program doing what `run` does: its helpers inlined, value and gradients.

        The harness's own argument checks (`run`'s ValueErrors) are made here
        instead, so an invalid call gets the generic reproduction.
        """
        if call.reduction not in ("none", "mean", "sum"):
            raise ValueError(f"{call.reduction} is not a valid value for reduction")
        if np.shape(call.input) != np.shape(call.target):
            raise ValueError(f"Target size ({np.shape(call.target)}) must be the same as input "
                             f"size ({np.shape(call.input)})")
        _check_broadcast(np.shape(call.input), call.weight, "weight")
        _check_broadcast(np.shape(call.input), call.pos_weight, "pos_weight")
        if call.implementation not in ("formula", "naive"):
            raise ValueError(f"unknown implementation {call.implementation!r}")
        return _snippet(call)


def _compute(args, call_dtype, implementation, reduction, grad_names):
    """The loss and its gradients: `run`'s arithmetic, inlined verbatim into snippets.

    formula computes float32 and 16-bit formats in float64 and rounds once at the end
    (intermediates near the format's overflow stay finite); naive computes in the
    format itself, as a naive user does.
    """
    floats = [a for a in args.values() if a is not None and a.dtype.kind == "f"]
    dt = np.result_type(*floats) if floats else call_dtype
    work = np.dtype(np.float64) if dt.itemsize <= 4 and implementation == "formula" else dt
    x, y, w, p = (None if args[n] is None else args[n].astype(work)
                  for n in ("input", "target", "weight", "pos_weight"))
    compute = _formula if implementation == "formula" else _naive
    with np.errstate(all="ignore"):
        elementwise, partials = compute(x, y, w, p)
        value = _reduce(elementwise, reduction).astype(dt)
        scale = 1.0 / x.size if reduction == "mean" and x.size else 1.0
        grads = {}
        for name in grad_names:
            g = partials[name]
            g = (g.astype(np.float32) * np.float32(scale)).astype(work) \
                if work.itemsize == 2 else g * work.type(scale)
            grads[name] = _sum_to_shape(g, np.shape(args[name])).astype(args[name].dtype)
    return value, grads


def _snippet(call: Call) -> str:
    values = literals(call)
    names = [call.dtype, *(call.dtype_of(n) for n in ARGS)]
    lines = ["import numpy as np"] + (["import ml_dtypes"] if "bfloat16" in names else [])
    if values is None:
        return "\n".join([*lines, "", *too_large()])
    helpers = [_softplus, _sigmoid, _times, _formula, _nan_where_input_nan, _naive, _reduce,
               _sum_to_shape, _compute]
    for helper in helpers:
        lines += ["", "", inspect.getsource(helper).rstrip()]
    lines += ["", "", "args = {"]
    lines += [f"    {name!r}: np.array({source}, dtype={_dtype(dtype)}),"
              for name, (source, dtype) in values.items()]
    lines += ["}"]
    lines += [f"args.setdefault({n!r}, None)" for n in ARGS if n not in values]
    lines += [f"value, grads = _compute(args, np.dtype({_dtype(call.dtype)}), "
              f"{call.implementation!r}, {call.reduction!r}, {tuple(call.grads)!r})",
              "print('value', value.astype('float64').tolist())",
              "print('dtype', value.dtype.name)",
              "for name, g in grads.items():",
              "    print('grad ' + name, g.astype('float64').tolist())"]
    return "\n".join(lines) + "\n"


def _dtype(name: str) -> str:
    """Source for the numpy dtype `name` in a snippet."""
    return "ml_dtypes.bfloat16" if name == "bfloat16" else repr(name)


def _cast(values: np.ndarray | None, name: str) -> np.ndarray | None:
    if values is None:
        return None
    return np.asarray(values).astype(numpy_dtype(name))


def _check_broadcast(shape: tuple[int, ...], arg: np.ndarray | None, name: str) -> None:
    if arg is None:
        return
    try:
        out = np.broadcast_shapes(shape, np.shape(arg))
    except ValueError as exc:
        raise ValueError(f"{name} of shape {np.shape(arg)} does not broadcast to the input's "
                         f"shape {shape}") from exc
    if out != shape:
        raise ValueError(f"{name} of shape {np.shape(arg)} would enlarge the input's shape "
                         f"{shape} to {out}")


def _softplus(z: np.ndarray) -> np.ndarray:
    return np.maximum(z, 0) + np.log1p(np.exp(-np.abs(z)))


def _sigmoid(z: np.ndarray) -> np.ndarray:
    """σ(z) without overflow and without 1 − σ cancellation: e = exp(−|z|) ≤ 1."""
    e = np.exp(-np.abs(z))
    one = z.dtype.type(1)
    return np.where(z >= 0, one / (one + e), e / (one + e))


def _times(a, b):
    """a·b where an exact-zero factor makes the product zero even if the other is infinite
    (the limit for fixed other arguments); NaN still propagates."""
    product = a * b
    vanish = ((a == 0) & ~np.isnan(b)) | ((b == 0) & ~np.isnan(a))
    return np.where(vanish, np.zeros_like(product), product)


def _formula(x, y, w, p):
    one = x.dtype.type(1)
    sp_pos, sp_neg = _softplus(x), _softplus(-x)
    finite = np.isfinite(x)

    def scaled(c, t):
        """c·t for t = softplus or σ of x: positive for finite x even where it underflowed
        to 0, so an infinite c keeps the product infinite (the limit), unlike 0·c."""
        return np.where(np.isinf(c) & finite & (t == 0), c, _times(c, t))

    pos = y if p is None else _times(p, y)
    # ∂/∂y = p·sp(−x) − sp(x) without cancelling two softplus values: with
    # sp(x) = x + sp(−x) it is (p−1)·sp(−x) − x for x ≥ 0 and (p−1)·sp(x) − p·x for x < 0,
    # each a small term and a large one
    d_target = -x if p is None else np.where(
        x >= 0, scaled(p - one, sp_neg) - x, scaled(p - one, sp_pos) - _times(p, x))
    symmetric = scaled(one - y, sp_pos) + scaled(pos, sp_neg)
    # an infinite target: the limit sp(x) + y·(∂/∂y); the symmetric form gives inf − inf
    unweighted = np.where(np.isinf(y), sp_pos + _times(y, d_target), symmetric)
    loss = unweighted if w is None else _times(w, unweighted)
    wt = one if w is None else w
    s_pos, s_neg = _sigmoid(x), _sigmoid(-x)
    partials = {
        "input": _times(wt, scaled(one - y, s_pos) - scaled(pos, s_neg)),
        "target": _times(wt, d_target),
        "weight": unweighted,
        "pos_weight": _times(wt, scaled(y, sp_neg)),
    }
    args = (x, y, w, p)
    return (_nan_where_input_nan(loss, *args),
            {k: _nan_where_input_nan(v, *args) for k, v in partials.items()})


def _naive(x, y, w, p):
    one = x.dtype.type(1)
    prob = one / (one + np.exp(-x))
    pw = one if p is None else p
    wt = one if w is None else w
    log_p, log_q = np.log(prob), np.log(one - prob)
    unweighted = -(pw * y * log_p + (one - y) * log_q)
    loss = wt * unweighted
    # chain rule through prob, as autodiff would: dL/dprob · dprob/dx
    dprob = -(pw * y / prob - (one - y) / (one - prob))
    partials = {
        "input": wt * dprob * prob * (one - prob),
        "target": wt * -(pw * log_p - log_q),
        "weight": unweighted,
        "pos_weight": wt * -(y * log_p),
    }
    return loss, partials


def _nan_where_input_nan(values, *args):
    """NaN in any argument of an element makes everything of that element NaN."""
    values = np.asarray(values)
    nan = np.zeros(values.shape, dtype=bool)
    for a in args:
        if a is not None:
            nan |= np.broadcast_to(np.isnan(a), values.shape)
    return np.where(nan, values.dtype.type(np.nan), values)


def _reduce(elementwise: np.ndarray, reduction: str) -> np.ndarray:
    if reduction == "none":
        return elementwise
    dt = elementwise.dtype
    acc = np.float32 if dt.itemsize == 2 else dt.type
    total = np.sum(elementwise, dtype=acc)
    if reduction == "mean" and elementwise.size:
        big = np.max(np.abs(elementwise)) if np.isinf(total) else 0
        if np.isfinite(big) and big > 0:
            # the sum overflowed though every term is finite: sum the terms divided by
            # the largest (one more rounding each), so a mean near the largest float is
            # not lost to an infinite partial sum
            total = np.sum(elementwise / big, dtype=acc) / acc(elementwise.size) * big
        else:
            total = total / acc(elementwise.size)
    elif reduction == "mean":
        total = acc(np.nan)
    return np.asarray(total).astype(dt)


def _sum_to_shape(g: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    """Sum a gradient over the dimensions its argument was broadcast along."""
    if g.shape == tuple(shape):
        return g
    acc = np.float32 if g.dtype.itemsize == 2 else g.dtype.type
    lead = g.ndim - len(shape)
    axes = tuple(range(lead)) + tuple(
        lead + i for i, n in enumerate(shape) if n == 1 and g.shape[lead + i] != 1)
    out = np.sum(g, axis=axes, dtype=acc, keepdims=True)
    return out.reshape(shape).astype(g.dtype)
