"""Hypothesis strategies for BCE-with-logits cases: the one home for generation.

Every strategy the project uses lives here; tests and the runner only compose them
(as array-api-tests does with its hypothesis_helpers). Composite draws are labelled
(`data.draw(..., label="input")`), so a falsifying example reads like a story:
dtype, reduction, shape, input, target, weight, pos_weight, grads.

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

`generate_cases(n, seed)` turns the strategy into `n` deterministic `Case` objects
for `python -m harness report --examples N --seed S`; `case_yaml` writes a case
back as a case file with every float exact.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import math
from collections.abc import Callable, Iterator, Sequence
from typing import Any, Protocol

import ml_dtypes
import numpy as np
from hypothesis import HealthCheck, Phase, Verbosity, given, settings
from hypothesis import seed as hypothesis_seed
from hypothesis import strategies as st

from harness.cases import Case
from harness.dtypes import FORMATS, round_to
from harness.generate.coverage import classify
from harness.protocol import DTYPES, GRAD_NAMES, REDUCTIONS

#: Generated cases `report` adds when --examples is not given (see docs/generation.md:
#: about 80 trials per backend implementation keeps the default report of every
#: backend within two minutes on two cores, and reaches every coverage cell).
DEFAULT_EXAMPLES = 80

#: Arrays up to this many elements are drawn element by element (each value shrinks
#: on its own); larger ones from a seeded background plus a drawn palette of
#: values, which keeps a 4,000-element case a few dozen choices long.
ELEMENTWISE_LIMIT = 64

LARGE = 1000  # elements past which a case counts as large

_WIDTH = {"float16": 16, "float32": 32, "float64": 64}
_UINT = {2: np.uint16, 4: np.uint32, 8: np.uint64}
_NP = {"float16": np.dtype(np.float16), "bfloat16": np.dtype(ml_dtypes.bfloat16),
       "float32": np.dtype(np.float32), "float64": np.dtype(np.float64)}


# ------------------------------------------------------------------ profiles ----

#: Hypothesis profiles for the project's own property tests (tests/conftest.py picks
#: one: --hypothesis-profile, else $BCE_HYPOTHESIS_PROFILE, else `ci` when $CI is
#: set, else `dev`). Frameworks are slow to warm up, so no deadline anywhere.
PROFILES: dict[str, dict[str, Any]] = {
    "dev": {"max_examples": 10, "deadline": None,
            "suppress_health_check": [HealthCheck.too_slow, HealthCheck.data_too_large]},
    "ci": {"max_examples": 25, "deadline": None, "derandomize": True, "database": None,
           "print_blob": True,
           "suppress_health_check": [HealthCheck.too_slow, HealthCheck.data_too_large]},
    "thorough": {"max_examples": 500, "deadline": None,
                 "suppress_health_check": [HealthCheck.too_slow, HealthCheck.data_too_large]},
}


def register_profiles() -> None:
    """Register `PROFILES` with Hypothesis (idempotent)."""
    for name, values in PROFILES.items():
        settings.register_profile(name, **values)


register_profiles()


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


def _to_dtype(value: float, dtype: str) -> float:
    """`value` rounded to `dtype`; finite values that would overflow saturate at the max."""
    with np.errstate(over="ignore", invalid="ignore"):
        out = float(round_to(np.array(value, dtype=np.float64), dtype))
    if math.isinf(out) and math.isfinite(value):
        return math.copysign(FORMATS[dtype].max, value)
    return out


def step_ulps(value: float, k: int, dtype: str) -> float:
    """The value `k` representable numbers away from finite `value` in `dtype`, clamped
    to the finite range; steps cross zero and binade boundaries correctly."""
    dt = _NP[dtype]
    uint = _UINT[dt.itemsize]
    top = int(np.array(FORMATS[dtype].max, dtype=dt).view(uint))

    def key(v: float) -> int:  # monotone integer ordering of the finite values
        b = int(np.array(v, dtype=dt).view(uint))
        sign = 1 << (8 * dt.itemsize - 1)
        return -(b & ~sign) if b & sign else b

    n = max(-top, min(top, key(value) + k))
    bits = n if n >= 0 else (-n) | (1 << (8 * dt.itemsize - 1))
    return float(np.array(bits, dtype=uint).view(dt).astype(np.float64))


# ------------------------------------------------------------- elements ----

def finite_floats(dtype: str, min_value: float | None = None,
                  max_value: float | None = None) -> st.SearchStrategy[float]:
    """Finite values of `dtype` in [min_value, max_value], by Hypothesis's own float
    generation (biased toward boundary and simple values; shrinks toward 0)."""
    if dtype == "bfloat16":
        return st.floats(min_value, max_value, width=32, allow_nan=False,
                         allow_infinity=False).map(lambda v: _to_dtype(v, "bfloat16"))
    return st.floats(min_value, max_value, width=_WIDTH[dtype], allow_nan=False,
                     allow_infinity=False)  # type: ignore[arg-type]


def specials() -> st.SearchStrategy[float]:
    """±0, ±inf and NaN: the values every format has and most ports mishandle."""
    return st.sampled_from((0.0, -0.0, math.inf, -math.inf, math.nan))


def subnormals(dtype: str) -> st.SearchStrategy[float]:
    """Subnormal values of `dtype`, both signs (flush-to-zero kernels differ here)."""
    fmt = FORMATS[dtype]
    k_max = 2 ** (fmt.precision - 1) - 1
    lowest = fmt.emin - fmt.precision + 1
    return st.tuples(st.booleans(), st.integers(1, k_max)).map(
        lambda t: math.copysign(math.ldexp(t[1], lowest), -1.0 if t[0] else 1.0))


def near_overflow(dtype: str) -> st.SearchStrategy[float]:
    """Finite values within a factor 16 of the largest of `dtype`, both signs."""
    fmt = FORMATS[dtype]
    mant = 2 ** (fmt.precision - 1)

    def build(t: tuple[bool, int, int]) -> float:
        negative, below, m = t
        v = math.ldexp(mant + m, fmt.emax - below - (fmt.precision - 1))
        return -v if negative else v

    return st.tuples(st.booleans(), st.integers(0, 3), st.integers(0, mant - 1)).map(build)


def near_regimes(dtype: str) -> st.SearchStrategy[float]:
    """Logits at, a few ulps from, or within 5 % of a `regime_points` value, either sign."""
    points = regime_points(dtype)

    def build(t: tuple[bool, float, str, int, float]) -> float:
        negative, point, how, k, rel = t
        if how == "ulps":
            v = step_ulps(point, k, dtype)
        elif how == "relative":
            v = _to_dtype(point * (1.0 + rel), dtype)
        else:
            v = point
        return -v if negative else v

    return st.tuples(st.booleans(), st.sampled_from(points),
                     st.sampled_from(("exact", "ulps", "relative")), st.integers(-3, 3),
                     st.floats(-0.05, 0.05)).map(build)


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


def weights(dtype: str, wild: bool) -> st.SearchStrategy[float]:
    """weight / pos_weight values: positive and 1 when tame; wild adds 0, negative,
    subnormal, near-overflow and special values."""
    tame = [finite_floats(dtype, 0.0, 4.0), st.just(1.0), finite_floats(dtype, 0.0, 100.0)]
    if not wild:
        return st.one_of(tame)
    return st.one_of(*tame, finite_floats(dtype, -4.0, 0.0), subnormals(dtype),
                     near_overflow(dtype), specials(), finite_floats(dtype))


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
        return (draw(st.integers(LARGE + 1, 4096)),)
    if sub == "square":
        k = draw(st.integers(32, 64))
        return (k, k)
    return (draw(st.integers(2, 8)), draw(st.integers(128, 512)))


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
    drawn palette of values sprinkled over a drawn fraction of the elements, so a
    large case keeps its special values and stays cheap to draw and to shrink.
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
    rng_seed = draw(st.integers(0, 2**32 - 1))
    scale = draw(st.sampled_from(_SCALES[role]))
    palette = draw(st.lists(values, max_size=4))
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
    dtype = data.draw(st.sampled_from(tuple(dtypes)), label="dtype")
    reduction = data.draw(st.sampled_from(tuple(reductions)), label="reduction")
    shape = data.draw(shapes(empty), label="shape")
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


# -------------------------------------------------------------- generation ----

@contextlib.contextmanager
def pinned_generation() -> Iterator[None]:
    """Make Hypothesis's choices depend only on the seed while inside.

    Hypothesis (6.13x+) mixes constants found in the *local* modules loaded into
    sys.modules into its draws. The report's main process and a backend's worker
    load different modules, and every edit to harness/ changes the constants, so
    without this the same seed would give different cases from one process to the
    next (and a failing example could not be replayed to shrink it). This swaps in
    an empty local pool and clears the cache of permitted constants, on the way in
    and out. If a Hypothesis release moves these internals, it does nothing;
    tests/test_strategies.py then catches any lost determinism.
    """
    try:
        from hypothesis.internal.conjecture import providers
        from hypothesis.internal.constants_ast import Constants
    except ImportError:  # pragma: no cover - a Hypothesis without local constants
        yield
        return
    original = getattr(providers, "_get_local_constants", None)
    cache = getattr(providers, "CONSTANTS_CACHE", None)
    if original is None or cache is None:  # pragma: no cover
        yield
        return
    empty = Constants()
    providers._get_local_constants = lambda: empty
    cache.cache.clear()
    try:
        yield
    finally:
        providers._get_local_constants = original
        cache.cache.clear()


def search_settings(max_examples: int, shrink: bool = False) -> settings:
    """Settings for a seeded search, independent of the loaded profile: no database,
    no explicit or stored examples, no deadline, quiet; shrinking only if asked."""
    phases = (Phase.generate, Phase.shrink) if shrink else (Phase.generate,)
    return settings(parent=settings.get_profile("default"), max_examples=max_examples,
                    database=None, derandomize=False, deadline=None, phases=phases,
                    suppress_health_check=list(HealthCheck), verbosity=Verbosity.quiet,
                    report_multiple_bugs=False, print_blob=False)


def case_name(seed: int, index: int) -> str:
    """The name of generated example `index` of `seed`: generated/s{seed}-{index:04d}."""
    return f"generated/s{seed}-{index:04d}"


def case_source(seed: int, index: int) -> str:
    """Where a generated case came from, parseable by `parse_source`."""
    return f"hypothesis:seed={seed}:example={index}"


def parse_source(source: str) -> tuple[int, int] | None:
    """(seed, index) from a generated case's source, or None for other cases."""
    parts = dict(p.split("=", 1) for p in source.split(":")[1:] if "=" in p)
    if not source.startswith("hypothesis:") or not {"seed", "example"} <= parts.keys():
        return None
    try:
        return int(parts["seed"]), int(parts["example"])
    except ValueError:
        return None


def example_seed(seed: int, index: int) -> int:
    """The Hypothesis seed of example `index` of `seed` (a stable hash of both)."""
    digest = hashlib.sha256(f"bce-harness:{seed}:{index}".encode()).digest()
    return int.from_bytes(digest[:8], "big")


def run_example(seed: int, index: int, test: Callable[[Any], None], shrink: bool = False) -> None:
    """Run `test(data)` on example `index` of `seed`, and shrink it if `test` raises.

    Every example is the first random input of its own Hypothesis run, seeded with
    `example_seed(seed, index)`. One long run would not do: after each input
    Hypothesis tries a handful of small mutations of it, which is right for finding
    a bug and wrong for a fixed budget of trials (a third of them would be near
    copies). Hypothesis always tries the simplest input first, so `test` sees that
    one too, before the random one; a caller collecting examples keeps the second
    call. With `shrink`, an exception from `test` makes Hypothesis shrink the input
    and re-raise it from the minimal one.
    """

    @hypothesis_seed(example_seed(seed, index))
    @search_settings(2, shrink=shrink)
    @given(st.data())
    def run(data: st.DataObject) -> None:
        # A throwaway first choice. Hypothesis makes the first random input differ
        # from the simplest one at its first choice; without this, that choice would
        # be the dtype, and float16 (the simplest dtype) would never be drawn.
        data.draw(st.booleans())
        test(data)

    with pinned_generation():
        run()


def generate_cases(n: int, seed: int) -> list[Case]:
    """`n` Hypothesis-generated cases, the same for the same seed (and Hypothesis version).

    Each case has one dtype and one reduction, so n examples are n trials per
    backend implementation. Names are `generated/s{seed}-{i:04d}` and sources
    `hypothesis:seed={seed}:example={i}`; tags name the value classes present.
    Example i is independent of n: `generate_cases(10, s)` is the start of
    `generate_cases(80, s)`.
    """
    return [generate_case(seed, i) for i in range(max(n, 0))]


def generate_case(seed: int, index: int) -> Case:
    """Example `index` of `seed`, as `generate_cases` makes it."""
    drawn: list[Case] = []

    def collect(data: Any) -> None:
        drawn.append(draw_case(data, name=case_name(seed, index),
                               source=case_source(seed, index)))

    run_example(seed, index, collect)
    return drawn[-1]


# ------------------------------------------------------------------ YAML ----

def yaml_float(v: float) -> str:
    """A float as a YAML scalar that the case loader reads back bit for bit.

    repr round-trips every finite float64; the loader needs a dot or an exponent
    to read a float (`1e-05` and `2.0` do); infinities and NaN are YAML's own;
    negative zero is the quoted "-0.0" so no tool can drop its sign.
    """
    v = float(v)
    if math.isnan(v):
        return ".nan"
    if math.isinf(v):
        return ".inf" if v > 0 else "-.inf"
    if v == 0:
        return '"-0.0"' if math.copysign(1.0, v) < 0 else "0.0"
    return repr(v)


def yaml_value(a: np.ndarray, indent: int = 4, width: int = 96) -> str:
    """An array as a case-file value: a scalar, a flow list, or a fill for empty ones.

    Nested lists cannot say (0, 3) (an empty list is (0,)), so arrays without
    elements are written as {fill: 0.0, shape: [...]}.
    """
    a = np.asarray(a, dtype=np.float64)
    if a.ndim == 0:
        return yaml_float(float(a))
    if a.size == 0:
        return f"{{fill: 0.0, shape: [{', '.join(map(str, a.shape))}]}}"
    text = _nested(a)
    if len(text) <= width:
        return text
    return _wrapped(a, indent + 2, width)


def _nested(a: np.ndarray) -> str:
    if a.ndim == 1:
        return "[" + ", ".join(yaml_float(v) for v in a) + "]"
    return "[" + ", ".join(_nested(s) for s in a) + "]"


def _wrapped(a: np.ndarray, indent: int, width: int) -> str:
    """A long flow list over several lines, each indented under its key."""
    pad = " " * indent
    if a.ndim == 1:
        items = [yaml_float(v) for v in a]
        lines, line = [], ""
        for item in items:
            if line and len(pad) + len(line) + len(item) + 2 > width:
                lines.append(line + ",")
                line = ""
            line = f"{line}, {item}" if line else item
        lines.append(line)
        return "[" + ("\n" + pad).join(lines) + "]"
    rows = [_wrapped(s, indent + 1, width) if len(_nested(s)) > width - indent else _nested(s)
            for s in a]
    return "[" + (",\n" + pad).join(rows) + "]"


def case_yaml(case: Case, name: str, description: str | None = None,
              comment: Sequence[str] = ()) -> str:
    """A case file holding `case` alone as case `name`, every float exact.

    The file loads with `harness.cases.load_cases` into a case with the same
    arrays, dtype, reduction, gradients, expected error and tags; `comment` lines
    go on top (how it was found, how to run it).
    """
    lines = [f"# {c}" for c in comment]
    lines.append("cases:")
    lines.append(f"  - name: {name}")
    lines.append(f"    description: {json.dumps(description or case.description)}")
    for key in ("input", "target", "weight", "pos_weight"):
        value = getattr(case, key)
        if value is not None:
            lines.append(f"    {key}: {yaml_value(value)}")
    lines.append(f"    dtypes: [{', '.join(case.dtypes)}]")
    lines.append(f"    reductions: [{', '.join(case.reductions)}]")
    if case.raises:
        lines.append(f"    raises: [{', '.join(case.raises)}]")
    else:
        lines.append(f"    grads: [{', '.join(case.grads)}]")
    if case.arg_dtypes:
        pairs = ", ".join(f"{k}: {v}" for k, v in case.arg_dtypes.items())
        lines.append(f"    arg_dtypes: {{{pairs}}}")
    if case.tags:
        lines.append(f"    tags: [{', '.join(json.dumps(t) for t in dict.fromkeys(case.tags))}]")
    return "\n".join(lines) + "\n"


__all__ = ["DEFAULT_EXAMPLES", "PROFILES", "arrays", "broadcasts_into", "case_name",
           "case_source", "case_tags", "case_yaml", "cases", "draw_case", "elements",
           "example_seed", "finite_floats", "generate_case", "generate_cases", "gradients",
           "logits", "near_overflow", "near_regimes", "parameter_shapes", "parse_source",
           "pinned_generation",
           "regime_points", "register_profiles", "run_example", "search_settings", "shapes",
           "specials", "step_ulps", "subnormals", "targets", "weights", "yaml_float",
           "yaml_value"]
