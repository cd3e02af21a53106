"""Hypothesis strategies for BCE-with-logits cases: the one home for generation.

Every strategy the project uses lives here; tests and the runner only compose them
(as array-api-tests does with its hypothesis_helpers). Composite draws are labelled
(`data.draw(..., label="input")`), so a falsifying example reads like a story:
shape, dtype, reduction, input, target, weight, pos_weight, grads. Turning the
strategies into a fixed, seeded list of cases is harness/generate/seeding.py.

What is drawn, and why:

* values in the dtype under test, never rounded behind the test's back: each
  strategy yields numbers exactly representable in that dtype, across its whole
  range: ±0, subnormals, values near overflow, ±inf, NaN, and the logits where
  softplus and sigmoid change regime *in that dtype* (`regime_points`);
* targets binary, soft and outside [0, 1]; weights positive, zero, negative and
  special;
* shapes empty, 0-d, size-1, square (where a broadcast along the wrong axis still
  has the right shape) and, rarely, large (past a thousand elements, where blocked
  reductions change code path);
* weight / pos_weight shapes that broadcast (trailing dimensions, size-1
  dimensions, 0-d) and, rarely, shapes that must be refused (they would enlarge
  the result, or have the wrong length): those cases expect `ValueError`.

Every choice is a boolean or an integer between -99 and 99, so that what a seeded
run draws depends on its seed alone; numbers wider than that, floats included,
come from harness/generate/numbers.py, which explains why.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from functools import cache
from typing import Any, Protocol

import numpy as np
from hypothesis import strategies as st

from harness.cases import Case
from harness.dtypes import FORMATS, round_to
from harness.generate.coverage import classify
from harness.generate.numbers import (
    SMALL,
    bits,
    finite_floats,
    integers,
    near_overflow,
    specials,
    step_ulps,
    subnormals,
    to_dtype,
)
from harness.protocol import DTYPES, GRAD_NAMES, REDUCTIONS

#: Arrays up to this many elements are drawn element by element (each value shrinks
#: on its own); larger ones from a seeded background plus a drawn palette of
#: values, which keeps a 4,000-element case a few dozen choices long.
ELEMENTWISE_LIMIT = 64

LARGE = 1000  # elements past which a case counts as large


# ------------------------------------------------------------ dtype facts ----

def regime_points(dtype: str) -> tuple[float, ...]:
    """Positive logits where softplus or sigmoid change regime in `dtype`, rounded to it.

    Kernels branch, and their error moves, at these points; generic random floats
    almost never land near them. With p the precision and ln 2 ≈ 0.693:

    - 2⁻ᵖ and 2^(−p/2): below them σ(x) is ½ and softplus(x) is ln 2 + x/2 to
      working precision (first-order expansions take over);
    - ½, 1, 2: where the textbook formulas and the log1p forms agree, the control;
    - (p/2)·ln 2 and p·ln 2 (about 18 and 37 in float64, 8 and 17 in float32, 4 and
      8 in float16): 1 − σ(x) computed as a difference loses half, then all, of its
      digits; past p·ln 2 softplus(x) rounds to x;
    - 20 (torch's softplus threshold) and 100 (BCELoss's log clamp at −100);
    - ln(max): exp(x) overflows past it (709.78 in float64, 88.72 in float32);
    - −emin·ln 2 and (p − emin)·ln 2: exp(−x) turns subnormal, then underflows to 0
      (708.40 and 745.13 in float64).
    """
    fmt = FORMATS[dtype]
    p, ln2 = fmt.precision, math.log(2.0)
    raw = [2.0 ** -p, 2.0 ** -(p // 2), 0.5, 1.0, 2.0, (p / 2) * ln2, p * ln2, 20.0, 100.0,
           math.log(fmt.max), -fmt.emin * ln2, (p - fmt.emin) * ln2]
    rounded = round_to(np.array(raw), dtype)
    return tuple(sorted({float(v) for v in rounded if 0 < v <= fmt.max}))


# ------------------------------------------------------------- elements ----

@cache
def near_regimes(dtype: str) -> st.SearchStrategy[float]:
    """Logits at, a few ulps from, or within 5 % of a `regime_points` value, either sign."""
    points = regime_points(dtype)

    def build(t: tuple[bool, float, str, int, float]) -> float:
        negative, point, how, k, rel = t
        if how == "ulps":
            v = step_ulps(point, k, dtype)
        elif how == "relative":
            v = to_dtype(point * (1.0 + rel), dtype)
        else:
            v = point
        return -v if negative else v

    return st.tuples(st.booleans(), st.sampled_from(points),
                     st.sampled_from(("exact", "ulps", "relative")), st.integers(-3, 3),
                     st.integers(-50, 50).map(lambda k: k / 1000)).map(build)


@cache
def logits(dtype: str, wild: bool) -> st.SearchStrategy[float]:
    """Input values. Tame: moderate values and the regime points; wild adds the whole
    finite range, subnormals, near-overflow values and the specials."""
    tame = [finite_floats(dtype, -8.0, 8.0), near_regimes(dtype), finite_floats(dtype, -64.0,
                                                                                  64.0)]
    if not wild:
        return st.one_of(tame)
    return st.one_of(*tame, finite_floats(dtype), subnormals(dtype), near_overflow(dtype),
                     specials())


#: Target profiles: what one target array holds.
TARGET_PROFILES: tuple[str, ...] = ("binary", "binary", "soft", "soft", "outside", "wild")


@cache
def targets(dtype: str, profile: str) -> st.SearchStrategy[float]:
    """Target values for a profile: binary {0, 1}; soft adds (0, 1); outside adds
    values below 0 and above 1 (the formula extends linearly, frameworks differ);
    wild adds specials, subnormals and near-overflow values."""
    binary = st.sampled_from((0.0, 1.0))
    if profile == "binary":
        return binary
    soft = finite_floats(dtype, 0.0, 1.0)
    if profile == "soft":
        return st.one_of(binary, soft)
    outside = st.one_of(finite_floats(dtype, -4.0, 0.0), finite_floats(dtype, 1.0, 5.0))
    if profile == "outside":
        return st.one_of(binary, soft, outside)
    return st.one_of(binary, soft, outside, specials(), subnormals(dtype), near_overflow(dtype))


@cache
def weights(dtype: str, wild: bool) -> st.SearchStrategy[float]:
    """weight / pos_weight values: positive and 1 when tame; wild adds 0, negative,
    subnormal, near-overflow and special values."""
    tame = [finite_floats(dtype, 0.0, 4.0), st.just(1.0), finite_floats(dtype, 0.0, 100.0)]
    if not wild:
        return st.one_of(tame)
    return st.one_of(*tame, finite_floats(dtype, -4.0, 0.0), subnormals(dtype),
                     near_overflow(dtype), specials(), finite_floats(dtype))


@cache
def elements(dtype: str, role: str, profile: str) -> st.SearchStrategy[float]:
    """One value for argument `role` ('input', 'target', 'weight') under `profile`."""
    if role == "input":
        return logits(dtype, profile == "wild")
    if role == "target":
        return targets(dtype, profile)
    return weights(dtype, profile == "wild")


# ------------------------------------------------------------------ shapes ----

#: Shape kinds with their odds (repetition weights the draw; the first is the one
#: Hypothesis shrinks toward).
SHAPE_KINDS: tuple[str, ...] = ("vector", "vector", "vector", "matrix", "matrix", "square",
                                "square", "0-d", "size-1", "3-d", "empty", "empty", "large")


@st.composite
def shapes(draw: st.DrawFn, empty: bool = True) -> tuple[int, ...]:
    """Input shapes: mostly small vectors and matrices, with square, 0-d, size-1, 3-d,
    empty (two in thirteen: cheap, and broadcasting into them is its own edge; none
    with `empty=False`) and (one in thirteen) large ones of 1,001 to 4,096 elements."""
    kind = draw(st.sampled_from(SHAPE_KINDS if empty else
                                tuple(k for k in SHAPE_KINDS if k != "empty")))
    if kind == "vector":
        return (draw(st.integers(1, 48)),)
    if kind == "matrix":
        return (draw(st.integers(1, 16)), draw(st.integers(1, 16)))
    if kind == "square":
        k = draw(st.integers(2, 12))
        return (k, k)
    if kind == "0-d":
        return ()
    if kind == "size-1":
        return (1,) * draw(st.integers(1, 3))
    if kind == "3-d":
        return tuple(draw(st.integers(1, 5)) for _ in range(3))
    if kind == "empty":
        dims = [draw(st.integers(0, 4)) for _ in range(draw(st.integers(1, 3)))]
        dims[draw(st.integers(0, len(dims) - 1))] = 0
        return tuple(dims)
    sub = draw(st.sampled_from(("vector", "square", "matrix")))
    if sub == "vector":
        return (draw(integers(LARGE + 1, 4096)),)
    if sub == "square":
        k = draw(st.integers(32, 64))
        return (k, k)
    return (draw(st.integers(2, 8)), draw(integers(128, 512)))


def broadcasts_into(shape: tuple[int, ...], into: tuple[int, ...]) -> bool:
    """Whether `shape` broadcasts to `into` without enlarging it (PyTorch's rule)."""
    if len(shape) > len(into):
        return False
    return all(s in (1, t) for s, t in zip(reversed(shape), reversed(into), strict=False))


#: weight / pos_weight shape kinds; "invalid" is about one in twelve.
PARAM_KINDS: tuple[str, ...] = ("trailing",) * 6 + ("0-d",) * 2 + ("full",) * 3 + ("invalid",)


@st.composite
def parameter_shapes(draw: st.DrawFn, shape: tuple[int, ...],
                     invalid: bool = True) -> tuple[int, ...]:
    """A weight / pos_weight shape for an input of `shape`: trailing dimensions kept or
    set to 1, 0-d, the full shape, or (when `invalid`) one that must be refused."""
    kinds = PARAM_KINDS if invalid else PARAM_KINDS[:-1]
    kind = draw(st.sampled_from(kinds))
    d = len(shape)
    if kind == "invalid":
        how = draw(st.sampled_from(("wrong-length", "enlarge")))
        if how == "wrong-length" and d:
            last = shape[-1]
            ones = (1,) * draw(st.integers(0, d - 1))
            return (*ones, last + 1 if last else 2)
        ones = [i for i, n in enumerate(shape) if n == 1]
        if ones and draw(st.booleans()):
            grown = list(shape)
            grown[ones[0]] = 3
            return tuple(grown)
        return (2, *shape)
    if kind == "0-d" or d == 0:
        return ()
    if kind == "full":
        return shape
    k = draw(st.integers(1, d))
    return tuple(1 if draw(st.booleans()) else n for n in shape[d - k:])


# ------------------------------------------------------------------ arrays ----

def _background(rng: np.random.Generator, role: str, profile: str, scale: float,
                size: int) -> np.ndarray:
    if role == "input":
        return rng.normal(0.0, scale, size)
    if role == "target":
        if profile == "binary":
            return rng.integers(0, 2, size).astype(np.float64)
        if profile == "soft":
            return rng.uniform(0.0, 1.0, size)
        return rng.uniform(-1.0, 2.0, size)
    return rng.uniform(0.0, scale, size)


_PROFILES = {"input": ("tame", "tame", "wild"), "target": TARGET_PROFILES,
             "weight": ("tame", "tame", "wild")}
_SCALES = {"input": (1.0, 4.0, 16.0, 64.0), "target": (1.0,), "weight": (1.0, 2.0, 10.0)}


@st.composite
def arrays(draw: st.DrawFn, dtype: str, shape: tuple[int, ...], role: str,
           wild: bool = True, profiles: Sequence[str] | None = None) -> np.ndarray:
    """A float64 array of `shape` holding values of `dtype` for argument `role`.

    Small arrays are drawn element by element. Larger ones are a seeded background
    (normal logits of a drawn scale, targets of the profile, uniform weights) with a
    drawn palette of values (with `wild`, often a special or extreme one among them)
    sprinkled over a drawn fraction of the elements, so a large case keeps its
    special values and stays cheap to draw and to shrink.
    """
    allowed = _PROFILES[role] if wild else tuple(p for p in _PROFILES[role] if p != "wild")
    if profiles is not None:
        allowed = tuple(p for p in allowed if p in profiles)
    profile = draw(st.sampled_from(allowed))
    size = math.prod(shape)
    values = elements(dtype, role, profile)
    if size <= ELEMENTWISE_LIMIT:
        flat = draw(st.lists(values, min_size=size, max_size=size))
        return _tame(np.array(flat, dtype=np.float64).reshape(shape), dtype, role, wild)
    rng_seed = draw(bits(32))
    scale = draw(st.sampled_from(_SCALES[role]))
    palette = draw(st.lists(values, max_size=4))
    # Blocked and vectorised reductions take another path past a thousand elements,
    # and what they get wrong there is one NaN or infinity in one block, or a partial
    # sum that overflows or flushes to zero; so, whatever its profile, half the large
    # arrays carry a special value and half an extreme finite one (independently).
    if wild and draw(st.booleans()):
        palette.append(draw(specials()))
    if wild and draw(st.booleans()):
        palette.append(draw(st.one_of(near_overflow(dtype), subnormals(dtype))))
    rate = draw(st.sampled_from((0.0, 0.01, 0.1, 0.5)))
    rng = np.random.default_rng(rng_seed)
    out = _background(rng, role, profile, scale, size)
    if palette and rate:
        where = rng.random(size) < rate
        out[where] = rng.choice(np.array(palette, dtype=np.float64), int(where.sum()))
    with np.errstate(over="ignore", invalid="ignore"):
        return _tame(round_to(out, dtype).reshape(shape), dtype, role, wild)


def _tame(a: np.ndarray, dtype: str, role: str, wild: bool) -> np.ndarray:
    """Without `wild`, values that tame draws and backgrounds can still produce but that
    lead to subnormal results become zeros of their sign: subnormal logits, and
    targets and weights below 2⁻²⁴ in magnitude (a product of two of those is
    subnormal in float32)."""
    if wild:
        return a
    tiny = np.ldexp(1.0, FORMATS[dtype].emin)
    if role != "input":
        tiny = max(tiny, 2.0 ** -24)
    return np.where(np.abs(a) < tiny, np.copysign(0.0, a), a)


@st.composite
def gradients(draw: st.DrawFn, available: Sequence[str]) -> tuple[str, ...]:
    """Which of the `available` arguments' gradients to check (each a coin flip; none
    is the simplest, so shrinking drops gradients the failure does not need)."""
    return tuple(name for name in available if draw(st.booleans()))


# ------------------------------------------------------------------- cases ----

class _Draws(Protocol):
    def draw(self, strategy: st.SearchStrategy[Any], label: Any = None) -> Any: ...


class _Composite:
    """Gives a composite's `draw` the `data.draw(strategy, label=...)` shape."""

    def __init__(self, draw: st.DrawFn) -> None:
        self._draw = draw

    def draw(self, strategy: st.SearchStrategy[Any], label: Any = None) -> Any:
        return self._draw(strategy)


def draw_case(data: _Draws, *, name: str = "hypothesis/case", source: str = "hypothesis",
              dtypes: Sequence[str] = DTYPES, reductions: Sequence[str] = REDUCTIONS,
              invalid: bool = True, wild: bool = True, empty: bool = True,
              targets: Sequence[str] | None = None, grads: Sequence[str] = GRAD_NAMES,
              params: Sequence[str] = ("weight", "pos_weight"),
              logit_range: tuple[float, float] | None = None,
              weight_range: tuple[float, float] | None = None) -> Case:
    """One case with ONE dtype and ONE reduction, drawn with labelled draws.

    `data` is `st.data()`'s object (labels show in a falsifying example) or anything
    with `draw(strategy, label=)`. The other options narrow what is drawn, for a
    backend's dtypes or, in the property tests' exclusion list, to steer around a
    named, reported discrepancy: `invalid=False` never draws refused shapes;
    `wild=False` keeps every value finite, normal and far from overflow;
    `empty=False` never draws an input without elements; `targets`
    limits the target profiles (TARGET_PROFILES); `grads` the gradients that may
    be checked; `params` the optional arguments that may be given;
    `logit_range=(lo, hi)` puts every finite logit's magnitude in [lo, hi], zeros
    included (clamped after drawing, so the draws do not change); `weight_range`
    does the same for weight and pos_weight.
    The defaults are what `generate_cases` draws.
    """
    # The shape first: of the first choice, a seeded run's first random input takes
    # anything but the simplest value (harness/generate/seeding.py), and the shape
    # kinds list "vector" three times, so that costs vectors a third of their share,
    # where drawing the dtype first would cost float16 all of its.
    shape = data.draw(shapes(empty), label="shape")
    dtype = data.draw(st.sampled_from(tuple(dtypes)), label="dtype")
    reduction = data.draw(st.sampled_from(tuple(reductions)), label="reduction")
    x = data.draw(arrays(dtype, shape, "input", wild), label="input")
    if logit_range is not None:
        x = _clamp_magnitude(x, logit_range, dtype)
    y = data.draw(arrays(dtype, shape, "target", wild, targets), label="target")
    optional: dict[str, np.ndarray | None] = {}
    for pname in ("weight", "pos_weight"):
        present = pname in params and data.draw(st.booleans(), label=f"{pname} given")
        if not present:
            optional[pname] = None
            continue
        pshape = data.draw(parameter_shapes(shape, invalid), label=f"{pname} shape")
        values = data.draw(arrays(dtype, pshape, "weight", wild), label=pname)
        if weight_range is not None:
            values = _clamp_magnitude(values, weight_range, dtype)
        optional[pname] = values
    refused = tuple(n for n, a in optional.items()
                    if a is not None and not broadcasts_into(a.shape, shape))
    if refused:
        checked: tuple[str, ...] = ()
    else:
        available = tuple(n for n in ("input", "target", *optional)
                          if n in grads and (n in ("input", "target") or optional[n] is not None))
        checked = data.draw(gradients(available), label="grads")
    arrays_ = {"input": x, "target": y, **optional}
    tags = case_tags(arrays_, dtype, refused)
    what = f"refuses {' and '.join(refused)}" if refused else "values"
    return Case(name=name, source=source,
                description=f"Hypothesis-generated: {dtype}, {reduction}, shape {shape}, "
                            f"{what}.",
                input=x, target=y, weight=optional["weight"], pos_weight=optional["pos_weight"],
                reductions=(reduction,), dtypes=(dtype,), grads=checked,
                raises=("ValueError",) if refused else (), tags=tags)


def _clamp_magnitude(x: np.ndarray, bounds: tuple[float, float], dtype: str) -> np.ndarray:
    """Finite magnitudes moved into [lo, hi] (bounds rounded inward to `dtype`); a zero
    becomes ±lo by its sign."""
    lo = float(round_to(np.array(bounds[0]), dtype))
    if lo < bounds[0]:
        lo = step_ulps(lo, 1, dtype)
    hi = float(round_to(np.array(bounds[1]), dtype))
    if hi > bounds[1]:
        hi = step_ulps(hi, -1, dtype)
    with np.errstate(invalid="ignore"):
        mag = np.abs(x)
        clamped = np.minimum(np.maximum(mag, lo), hi)
        return np.where(np.isfinite(x), np.copysign(clamped, x), x)


@st.composite
def cases(draw: st.DrawFn, **options: Any) -> Case:
    """`draw_case` as a strategy (unlabelled draws); options as for `draw_case`."""
    return draw_case(_Composite(draw), **options)


#: Tags for value classes (harness.generate.coverage) on generated cases.
CLASS_TAGS = {"normal": "normal", "zero": "zero", "subnormal": "subnormal",
              "saturated": "saturated", "huge": "huge", "inf": "inf", "nan": "nan",
              "target-outside-01": "outside-01", "soft-target": "soft", "empty": "empty"}


def case_tags(arrays_: dict[str, np.ndarray | None], dtype: str,
              refused: Sequence[str] = ()) -> tuple[str, ...]:
    """Tags naming what a case holds, so `--tag`-style selection and the report's case
    index can tell a NaN case from a broadcast one at a glance."""
    x = arrays_["input"]
    assert x is not None
    tags = ["generated"]
    with np.errstate(all="ignore"):
        tags += sorted(CLASS_TAGS[c] for c in classify(arrays_, dtype))
        y = np.asarray(arrays_["target"])
        if y.size and np.all((y == 0) | (y == 1)):
            tags.append("binary")
    if x.ndim == 0:
        tags.append("0-d")
    if x.size > LARGE:
        tags.append("large")
    if x.ndim >= 2 and len(set(x.shape)) == 1:
        tags.append("square")
    for pname in ("weight", "pos_weight"):
        a = arrays_.get(pname)
        if a is not None:
            tags.append(pname)
            if a.shape != x.shape and pname not in refused:
                tags.append("broadcast")
    if refused:
        tags.append("raises")
    return tuple(dict.fromkeys(tags))


__all__ = ["CLASS_TAGS", "ELEMENTWISE_LIMIT", "LARGE", "PARAM_KINDS", "SHAPE_KINDS", "SMALL",
           "TARGET_PROFILES", "arrays", "bits", "broadcasts_into", "case_tags", "cases",
           "draw_case", "elements", "finite_floats", "gradients", "integers", "logits",
           "near_overflow", "near_regimes", "parameter_shapes", "regime_points", "shapes",
           "specials", "step_ulps", "subnormals", "targets", "weights"]
