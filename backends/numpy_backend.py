"""numpy: the loss as numpy users write it, carefully and naively.

`formula` is what a careful numpy user writes: the symmetric logits form with a
stable softplus, σ(±x) without cancellation, analytical gradients for all four
arguments, 16-bit reductions accumulated in float32. It is the harness's own
control: it must pass everything not listed as known.

`naive` is the seed documents' other road: sigmoid first, then the BCE formula on
the probability, with gradients by the chain rule through the probability (what an
autodiff system would do). The report shows where that breaks: saturation at
|x| ≳ 17 in float64 (far sooner in float16), log(0) = -inf, and 0·inf = NaN.
"""

from __future__ import annotations

import inspect

import numpy as np

from backends._common import literals, too_large
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
                    "log1p(exp(−|z|)), analytical gradients; float16/bfloat16 sums accumulate "
                    "in float32.")
        return ("p = 1/(1+exp(−x)), then −w·[pos_weight·y·log(p) + (1−y)·log(1−p)], gradients "
                "by the chain rule through p (as autodiff would); no clamping.")

    def run(self, call: Call) -> Result:
        if call.reduction not in ("none", "mean", "sum"):
            raise ValueError(f"{call.reduction} is not a valid value for reduction")
        if np.shape(call.input) != np.shape(call.target):
            raise ValueError(f"Target size ({np.shape(call.target)}) must be the same as input "
                             f"size ({np.shape(call.input)})")
        args = {n: _cast(getattr(call, n), call.dtype_of(n)) for n in ARGS}
        dt = np.result_type(*[a for a in args.values() if a is not None and a.dtype.kind == "f"]
                            or [numpy_dtype(call.dtype)])
        x = args["input"].astype(dt)
        y = args["target"].astype(dt)
        w = None if args["weight"] is None else args["weight"].astype(dt)
        p = None if args["pos_weight"] is None else args["pos_weight"].astype(dt)
        _check_broadcast(x.shape, call.weight, "weight")
        _check_broadcast(x.shape, call.pos_weight, "pos_weight")
        with np.errstate(all="ignore"):
            if call.implementation == "formula":
                elementwise, partials = _formula(x, y, w, p)
            elif call.implementation == "naive":
                elementwise, partials = _naive(x, y, w, p)
            else:
                raise ValueError(f"unknown implementation {call.implementation!r}")
            value = _reduce(elementwise, call.reduction)
            scale = 1.0 / x.size if call.reduction == "mean" and x.size else 1.0
            grads: dict[str, np.ndarray] = {}
            for name in call.grads:
                g = partials.get(name)
                if g is None:
                    continue
                arg = args[name]
                g = (g.astype(np.float32) * np.float32(scale)).astype(dt) if dt.itemsize == 2 \
                    else g * dt.type(scale)
                grads[name] = _sum_to_shape(g, np.shape(arg)).astype(arg.dtype)
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


def _snippet(call: Call) -> str:
    values = literals(call)
    names = [call.dtype, *(call.dtype_of(n) for n in ARGS)]
    lines = ["import numpy as np"] + (["import ml_dtypes"] if "bfloat16" in names else [])
    if values is None:
        return "\n".join([*lines, "", *too_large()])
    helpers = [_softplus, _sigmoid, _times, _formula, _nan_where_input_nan] \
        if call.implementation == "formula" else [_naive]
    helpers.append(_reduce)
    if call.grads:
        helpers.append(_sum_to_shape)
    for helper in helpers:
        lines += ["", "", inspect.getsource(helper).rstrip()]
    lines += ["", "", "args = {"]
    lines += [f"    {name!r}: np.array({source}, dtype={_dtype(dtype)}),"
              for name, (source, dtype) in values.items()]
    lines += ["}",
              "dt = np.result_type(*[a for a in args.values() if a.dtype.kind == 'f']",
              f"                    or [np.dtype({_dtype(call.dtype)})])",
              "x = args['input'].astype(dt)",
              "y = args['target'].astype(dt)",
              "w = args['weight'].astype(dt)" if "weight" in values else "w = None",
              "p = args['pos_weight'].astype(dt)" if "pos_weight" in values else "p = None",
              "with np.errstate(all='ignore'):",
              f"    elementwise, partials = _{call.implementation}(x, y, w, p)",
              f"    value = _reduce(elementwise, {call.reduction!r})",
              "    print('value', value.astype('float64').tolist())",
              "    print('dtype', value.dtype.name)"]
    if call.grads:
        scale = "1.0 / x.size if x.size else 1.0" if call.reduction == "mean" else "1.0"
        lines += [f"    scale = {scale}",
                  f"    for name in {list(call.grads)!r}:",
                  "        g = partials[name]",
                  "        if dt.itemsize == 2:  # 16-bit: scaled in float32",
                  "            g = (g.astype(np.float32) * np.float32(scale)).astype(dt)",
                  "        else:",
                  "            g = g * dt.type(scale)",
                  "        g = _sum_to_shape(g, np.shape(args[name])).astype(args[name].dtype)",
                  "        print('grad ' + name, g.astype('float64').tolist())"]
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


def _times(coef: np.ndarray, term: np.ndarray) -> np.ndarray:
    """coef·term where an exact-zero coefficient makes the product zero, even if term is inf."""
    return np.where(coef == 0, np.zeros_like(term), coef * term)


def _formula(x, y, w, p):
    one = x.dtype.type(1)
    sp_pos, sp_neg = _softplus(x), _softplus(-x)
    pos = y if p is None else p * y
    unweighted = _times(one - y, sp_pos) + _times(pos, sp_neg)
    loss = unweighted if w is None else _times(w, unweighted)
    wt = one if w is None else w
    s_pos, s_neg = _sigmoid(x), _sigmoid(-x)
    partials = {
        "input": wt * (_times(one - y, s_pos) - _times(pos, s_neg)),
        "target": wt * ((sp_neg if p is None else _times(p, sp_neg)) - sp_pos),
        "weight": unweighted,
        "pos_weight": wt * _times(y, sp_neg),
    }
    return _nan_where_input_nan(loss, x, y, w, p), partials


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


def _nan_where_input_nan(loss, *args):
    nan = np.zeros(loss.shape, dtype=bool)
    for a in args:
        if a is not None:
            nan |= np.broadcast_to(np.isnan(a), loss.shape)
    return np.where(nan, loss.dtype.type(np.nan), loss)


def _reduce(elementwise: np.ndarray, reduction: str) -> np.ndarray:
    if reduction == "none":
        return elementwise
    dt = elementwise.dtype
    acc = np.float32 if dt.itemsize == 2 else dt.type
    total = np.sum(elementwise, dtype=acc)
    if reduction == "mean":
        total = total / acc(elementwise.size) if elementwise.size else acc(np.nan)
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
