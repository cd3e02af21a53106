"""Deliberately broken backends: one planted bug each, of the kinds real ports have.

They prove the harness's power: `tests/test_planted.py` runs the default report
(the shipped YAML cases plus the default generated examples) on every one of them
and requires each to be caught, while `PlantedControl` (the same code with no bug)
and the numpy backend are not flagged, so a catch is the bug's doing and not the
base implementation's.

Standalone on purpose, like tests/plugins/broken.py: numpy only, one small class
per bug over a careful base (`PlantedControl`) whose hooks each bug overrides.
The base is what a careful port does: the symmetric logits form with a stable
softplus and sigmoid, natively in float32/float64 and in float32 for the 16-bit
formats (rounded once at the end), sums accumulated in float32 or wider, gradients
summed over broadcast dimensions.

Load them with `--plugin tests.plugins.planted:PLANTED`.
"""

from __future__ import annotations

import math

import ml_dtypes
import numpy as np

from harness.dtypes import FORMATS, numpy_dtype, promote
from harness.protocol import DTYPES, Call, Result

ARGS = ("input", "target", "weight", "pos_weight")
BF16 = np.dtype(ml_dtypes.bfloat16)


def _times(coef: np.ndarray, term: np.ndarray) -> np.ndarray:
    """coef·term where an exact-zero coefficient gives 0 even when term is infinite."""
    coef, term = np.broadcast_arrays(coef, term)
    return np.where(coef == 0, np.zeros_like(term), coef * term)


def _sum_to_shape(g: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    """Sum a gradient over the dimensions its argument was broadcast along."""
    if g.shape == tuple(shape):
        return g
    lead = g.ndim - len(shape)
    axes = tuple(range(lead)) + tuple(lead + i for i, n in enumerate(shape)
                                      if n == 1 and g.shape[lead + i] != 1)
    return np.sum(g, axis=axes, keepdims=True).reshape(shape)


class PlantedControl:
    """The base with no bug: it must pass everything the numpy backend passes."""

    name = "planted-control"
    bug = "none: the control, a careful port with no planted bug"

    # -- the Backend protocol

    def availability(self) -> str | None:
        return None

    def versions(self) -> dict[str, str]:
        return {"numpy": np.__version__}

    def devices(self) -> list[str]:
        return ["cpu"]

    def dtypes(self) -> list[str]:
        return list(DTYPES)

    def implementations(self) -> list[str]:
        return ["planted"]

    def describe(self, implementation: str) -> str:
        return self.bug

    def run(self, call: Call) -> Result:
        if call.reduction not in ("none", "mean", "sum"):
            raise ValueError(f"{call.reduction} is not a valid value for reduction")
        shape = np.shape(call.input)
        if np.shape(call.target) != shape:
            raise ValueError(f"target size {np.shape(call.target)} must be the same as input "
                             f"size {shape}")
        given = {n: getattr(call, n) for n in ARGS if getattr(call, n) is not None}
        for n in ("weight", "pos_weight"):
            if n in given and not _broadcasts(np.shape(given[n]), shape):
                raise ValueError(f"{n} of shape {np.shape(given[n])} does not broadcast to the "
                                 f"input's shape {shape} without enlarging it")
        dt = numpy_dtype(promote([call.dtype_of(n) for n in given]))
        work = np.dtype(np.float32) if dt.itemsize == 2 else dt
        cast = {n: np.asarray(a).astype(numpy_dtype(call.dtype_of(n))).astype(work)
                for n, a in given.items()}
        x, y = cast["input"], cast["target"]
        w = None if "weight" not in cast else self.expand("weight", cast["weight"], shape)
        p = None if "pos_weight" not in cast else self.expand("pos_weight", cast["pos_weight"],
                                                              shape)
        with np.errstate(all="ignore"):
            loss, partials = self.elementwise(x, y, w, p)
            value = self.reduce(loss, call.reduction, dt)
            scale = self.grad_scale(call.reduction, shape)
            grads = {}
            for n in call.grads:
                g = partials[n] * work.type(scale)
                g = self.collapse(n, g, np.shape(given[n]))
                grads[n] = self.to_dtype(g, numpy_dtype(call.dtype_of(n)))
        return Result(value=value, grads=grads)

    # -- the hooks a planted bug overrides

    def expand(self, name: str, values: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
        """weight / pos_weight broadcast to the input's shape."""
        return np.broadcast_to(values, shape)

    def collapse(self, name: str, g: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
        """A gradient summed back to its argument's shape."""
        return _sum_to_shape(g, shape)

    def softplus(self, z: np.ndarray) -> np.ndarray:
        return np.maximum(z, 0) + np.log1p(np.exp(-np.abs(z)))

    def sigmoids(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """σ(x) and σ(−x), each without cancellation: e = exp(−|x|) ≤ 1."""
        e = np.exp(-np.abs(x))
        one = x.dtype.type(1)
        big, small = one / (one + e), e / (one + e)
        return np.where(x >= 0, big, small), np.where(x >= 0, small, big)

    def terms(self, x, y, w, p) -> np.ndarray:
        """The elementwise loss w·[(1−y)·softplus(x) + p·y·softplus(−x)]."""
        one = x.dtype.type(1)
        positive = y if p is None else p * y
        unweighted = _times(one - y, self.softplus(x)) + _times(positive, self.softplus(-x))
        return unweighted if w is None else _times(w, unweighted)

    def elementwise(self, x, y, w, p) -> tuple[np.ndarray, dict[str, np.ndarray]]:
        one = x.dtype.type(1)
        loss = self.terms(x, y, w, p)
        nan = np.isnan(x) | np.isnan(y)
        for a in (w, p):
            if a is not None:
                nan = nan | np.isnan(a)
        loss = np.where(nan, x.dtype.type(np.nan), loss)
        sp_pos, sp_neg = self.softplus(x), self.softplus(-x)
        s_pos, s_neg = self.sigmoids(x)
        positive = y if p is None else p * y
        wt = one if w is None else w
        partials = {  # NaN in any argument of an element makes each of its partials NaN
            "input": self.grad_input(x, y, wt, p, s_pos, s_neg),
            "target": wt * self.grad_target(x, p, sp_pos, sp_neg),
            "weight": _times(one - y, sp_pos) + _times(positive, sp_neg),
            "pos_weight": wt * _times(y, sp_neg),
        }
        partials = {k: np.where(nan, x.dtype.type(np.nan), v) for k, v in partials.items()}
        return loss, partials

    def grad_input(self, x, y, wt, p, s_pos, s_neg) -> np.ndarray:
        one = x.dtype.type(1)
        positive = y if p is None else p * y
        return wt * (_times(one - y, s_pos) - _times(positive, s_neg))

    def grad_target(self, x, p, sp_pos, sp_neg) -> np.ndarray:
        """p·softplus(−x) − softplus(x) without cancelling two ≈ ln 2 terms at small |x|:
        it is −x without pos_weight and (p − 1)·softplus(−x) − x for x > −1."""
        if p is None:
            return -x
        one = x.dtype.type(1)
        near = (p - one) * sp_neg - x
        return np.where(x > -one, near, _times(p, sp_neg) - sp_pos)

    def grad_scale(self, reduction: str, shape: tuple[int, ...]) -> float:
        n = math.prod(shape)
        return 1.0 / n if reduction == "mean" and n else 1.0

    def reduce(self, loss: np.ndarray, reduction: str, dt: np.dtype) -> np.ndarray:
        if reduction == "none":
            return self.to_dtype(loss, dt)
        total = np.sum(loss, dtype=loss.dtype)
        if reduction == "mean":
            total = total / loss.dtype.type(loss.size) if loss.size else loss.dtype.type(np.nan)
        return self.to_dtype(np.asarray(total), dt)

    def to_dtype(self, values: np.ndarray, dt: np.dtype) -> np.ndarray:
        """Round to the result dtype (to nearest: float32 → bfloat16 is a single rounding)."""
        return np.asarray(values).astype(dt)


def _broadcasts(shape: tuple[int, ...], into: tuple[int, ...]) -> bool:
    if len(shape) > len(into):
        return False
    return all(s in (1, t) for s, t in zip(reversed(shape), reversed(into), strict=False))


# ------------------------------------------------------------- the planted bugs ----

class PosWeightWrongAxis(PlantedControl):
    name = "planted-pos-weight-axis"
    bug = ("a pos_weight of shape (n,) on a square (n, n) input is broadcast along the rows "
           "(p[:, None]) instead of the class axis; the shapes still agree, so nothing raises")

    def expand(self, name, values, shape):
        if (name == "pos_weight" and len(shape) == 2 and shape[0] == shape[1]
                and values.shape == (shape[1],)):
            return np.broadcast_to(values[:, None], shape)
        return super().expand(name, values, shape)

    def collapse(self, name, g, shape):
        if name == "pos_weight" and g.ndim == 2 and g.shape[0] == g.shape[1] \
                and shape == (g.shape[1],):
            return np.sum(g, axis=1)
        return super().collapse(name, g, shape)


class LosesElementPastThousand(PlantedControl):
    name = "planted-blocked-sum"
    bug = ("the blocked sum starts its second block of 1000 one element late, so element "
           "1000 is never added (mean still divides by the full count)")

    def reduce(self, loss, reduction, dt):
        if reduction != "none" and loss.size > 1000:
            flat = loss.reshape(-1)
            loss = np.concatenate([flat[:1000], flat[1001:]])
            if reduction == "mean":
                return self.to_dtype(np.asarray(np.sum(loss, dtype=loss.dtype)
                                                / loss.dtype.type(flat.size)), dt)
        return super().reduce(loss, reduction, dt)


class Float16Accumulator(PlantedControl):
    name = "planted-float16-accumulator"
    bug = "float16 sums and means accumulate left to right in a float16 accumulator"

    def reduce(self, loss, reduction, dt):
        if reduction != "none" and dt == np.float16:
            half = loss.astype(np.float16).reshape(-1)
            total = np.cumsum(half, dtype=np.float16)[-1] if half.size else np.float16(0)
            if reduction == "mean":
                total = total / np.float16(half.size) if half.size else np.float16(np.nan)
            return np.asarray(total, dtype=np.float16)
        return super().reduce(loss, reduction, dt)


class NanToZero(PlantedControl):
    name = "planted-nan-to-zero"
    bug = "a nan_to_num 'for stability' turns NaN losses into 0 (infinities kept)"

    def elementwise(self, x, y, w, p):
        loss, partials = super().elementwise(x, y, w, p)
        return np.nan_to_num(loss, nan=0.0, posinf=np.inf, neginf=-np.inf), partials


class GradForgetsPosWeight(PlantedControl):
    name = "planted-grad-no-pos-weight"
    bug = "the input gradient is w·(σ(x) − y)-shaped without pos_weight: w·[(1−y)σ(x) − yσ(−x)]"

    def grad_input(self, x, y, wt, p, s_pos, s_neg):
        return super().grad_input(x, y, wt, None, s_pos, s_neg)


class MeanGradIsSumGrad(PlantedControl):
    name = "planted-mean-grad"
    bug = "the gradient of the mean is the gradient of the sum (no division by the count)"

    def grad_scale(self, reduction, shape):
        return 1.0


class WeightOnOneTerm(PlantedControl):
    name = "planted-weight-one-term"
    bug = "weight multiplies the positive term only: (1−y)·softplus(x) + w·p·y·softplus(−x)"

    def terms(self, x, y, w, p):
        one = x.dtype.type(1)
        positive = y if p is None else p * y
        if w is not None:
            positive = w * positive
        return _times(one - y, self.softplus(x)) + _times(positive, self.softplus(-x))


class LogOfOnePlusExp(PlantedControl):
    name = "planted-log-1-plus-exp"
    bug = "softplus as max(z, 0) + log(1 + exp(−|z|)): log instead of log1p"

    def softplus(self, z):
        return np.maximum(z, 0) + np.log(z.dtype.type(1) + np.exp(-np.abs(z)))


class SigmoidByComplement(PlantedControl):
    name = "planted-sigmoid-complement"
    bug = "σ(x) for the gradient computed as 1 − σ(−x), which cancels for x ≪ 0"

    def sigmoids(self, x):
        s_neg = super().sigmoids(x)[1]
        return x.dtype.type(1) - s_neg, s_neg


class ClampAt100(PlantedControl):
    name = "planted-clamp-100"
    bug = ("BCELoss's clamp of log(p) at −100 carried over to the logits form: each softplus "
           "term is capped at 100")

    def softplus(self, z):
        return np.minimum(super().softplus(z), z.dtype.type(100))


class TargetGradNoPosWeight(PlantedControl):
    name = "planted-target-grad"
    bug = "the target gradient is softplus(−x) − softplus(x), missing the pos_weight factor"

    def grad_target(self, x, p, sp_pos, sp_neg):
        return super().grad_target(x, None, sp_pos, sp_neg)


class Bfloat16Truncation(PlantedControl):
    name = "planted-bfloat16-truncation"
    bug = ("bfloat16 results made by truncating float32 (dropping the low 16 bits) instead of "
           "rounding, including the running sum, which is kept in bfloat16")

    @staticmethod
    def truncate(values: np.ndarray) -> np.ndarray:
        bits = np.asarray(values, dtype=np.float32).view(np.uint32) & np.uint32(0xFFFF0000)
        return bits.view(np.float32)

    def to_dtype(self, values, dt):
        if dt == BF16:
            return self.truncate(values).astype(BF16)
        return super().to_dtype(values, dt)

    def reduce(self, loss, reduction, dt):
        if reduction != "none" and dt == BF16:
            acc = np.float32(0)
            for v in self.truncate(loss.reshape(-1)):
                acc = self.truncate(np.float32(acc + v))[()]
            if reduction == "mean":
                acc = acc / np.float32(loss.size) if loss.size else np.float32(np.nan)
            return self.to_dtype(np.asarray(acc, dtype=np.float32), dt)
        return super().reduce(loss, reduction, dt)


class MeanOverBatch(PlantedControl):
    name = "planted-mean-over-batch"
    bug = "mean divides by the batch size (the first dimension), not by the element count"

    def reduce(self, loss, reduction, dt):
        if reduction == "mean" and loss.ndim >= 1 and loss.size:
            total = np.sum(loss, dtype=loss.dtype) / loss.dtype.type(loss.shape[0])
            return self.to_dtype(np.asarray(total), dt)
        return super().reduce(loss, reduction, dt)

    def grad_scale(self, reduction, shape):
        if reduction == "mean" and shape and math.prod(shape):
            return 1.0 / shape[0]
        return super().grad_scale(reduction, shape)


class _TinyHardLabelGradient(PlantedControl):
    """Base of the bugs that only touch ∂L/∂x where it is below ε/4 and y = 1.

    There the old yardstick (the target perturbed as y alone) allowed any answer:
    σ(x) − y's condition number in y is 1/|σ(x) − 1|. Counting the target as its
    coefficients 1 − y and p·y makes an exact hard label exact, so each of these
    must be flagged on the shipped sweeps.
    """

    eps = 2.0**-52  # of the call's format, set by run

    def wrong(self, g: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def run(self, call: Call) -> Result:
        self.eps = 2.0 ** (1 - FORMATS[call.dtype].precision)
        return super().run(call)

    def grad_input(self, x, y, wt, p, s_pos, s_neg):
        g = super().grad_input(x, y, wt, p, s_pos, s_neg)
        tiny = (np.abs(g) < self.eps / 4) & (y == 1)
        return np.where(tiny, self.wrong(g), g)


class TinyGradientZero(_TinyHardLabelGradient):
    name = "planted-tiny-grad-zero"
    bug = "∂L/∂x is 0 wherever |∂L/∂x| < ε/4 and y = 1 (σ(x) − y after σ rounds to 1)"

    def wrong(self, g):
        return np.zeros_like(g)


class TinyGradientSign(_TinyHardLabelGradient):
    name = "planted-tiny-grad-sign"
    bug = "∂L/∂x has the wrong sign wherever |∂L/∂x| < ε/4 and y = 1"

    def wrong(self, g):
        return -g


class TinyGradientFiveTimes(_TinyHardLabelGradient):
    name = "planted-tiny-grad-5x"
    bug = "∂L/∂x is 5× too large wherever |∂L/∂x| < ε/4 and y = 1"

    def wrong(self, g):
        return 5 * g


#: The bugs the input-gradient yardstick let through before it counted the target's
#: coefficients (README, "The error model").
TINY_GRADIENT = [TinyGradientZero, TinyGradientSign, TinyGradientFiveTimes]

#: Every planted bug, for `--plugin tests.plugins.planted:PLANTED`.
PLANTED = [PosWeightWrongAxis, LosesElementPastThousand, Float16Accumulator, NanToZero,
           GradForgetsPosWeight, MeanGradIsSumGrad, WeightOnOneTerm, LogOfOnePlusExp,
           SigmoidByComplement, ClampAt100, TargetGradNoPosWeight, Bfloat16Truncation,
           MeanOverBatch, *TINY_GRADIENT]
#: The planted bugs and the control, for a run that shows the control staying clean.
ALL = [PlantedControl, *PLANTED]
