"""Value specs: the numbers, nested lists and generators a case file writes for an argument.

An argument is written as a number, a nested list, or a generator mapping
(`fill`, `values`, `linspace`, `logspace`, `random`; see docs/cases.md). `ValueReader`
turns one spec into a float64 array holding exactly the numbers meant: literals
are checked to be float64 values as written (an integer above 2**53 or a hex float
with too many digits is refused, not rounded), `logspace` uses a correctly rounded
power of ten so it gives the same values on every platform, and `random` draws
from a seeded NumPy generator so a case is the same on every run. Anything that
does not fit is a `CaseFileError` at the offending node.
"""

from __future__ import annotations

import difflib
import math
import re
from collections.abc import Iterator, Sequence
from decimal import Decimal, localcontext
from fractions import Fraction
from typing import TYPE_CHECKING, Any

import numpy as np

from harness.cases.errors import SPECIAL_HINT, CaseFileError, describe
from harness.cases.model import shape_text

if TYPE_CHECKING:
    from harness.cases.loading import CaseFile

__all__ = ["DISTRIBUTIONS", "GENERATORS", "MAX_ELEMENTS", "ValueReader", "pow10", "special_value"]

#: The generator keys of a value spec; a spec mapping holds exactly one of them.
GENERATORS: tuple[str, ...] = ("linspace", "logspace", "values", "random", "fill")
#: The distributions of `random:`, with the parameters each takes.
DISTRIBUTIONS: dict[str, tuple[str, ...]] = {
    "normal": ("loc", "scale"),
    "uniform": ("low", "high"),
    "integers": ("low", "high"),
    "bernoulli": ("p",),
    "loguniform": ("low", "high", "signs"),
}
#: A guard against a typo such as `shape: [100000, 100000]` eating the machine.
MAX_ELEMENTS = 10_000_000

_SPECIALS = {"inf": math.inf, "-inf": -math.inf, "nan": math.nan, "-0.0": -0.0}
_HEX_RE = re.compile(
    r"([-+]?)0[xX]([0-9a-fA-F]*)(?:\.([0-9a-fA-F]*))?(?:[pP]([-+]?[0-9]+))?")


class ValueReader:
    """Reads the value specs of one case into arrays; every problem is located in the file.

    `name` is the case's own name: a spec inherited from `defaults:` is reported
    there, but for the case it was applied to.
    """

    def __init__(self, file: CaseFile, name: str) -> None:
        self.file = file
        self.name = name

    def fail(self, where: Sequence[Any], problem: str, fix: str, *,
             at_key: bool = False) -> CaseFileError:
        """A `CaseFileError` at the node `where` (its key with `at_key`), to be raised."""
        return self.file.error(where, problem, fix, at_key=at_key)

    def label(self, where: Sequence[Any]) -> str:
        """Like CaseFile.label, but always naming this case (defaults apply to all)."""
        label = self.file.label(where)
        if where and where[0] == "defaults":
            label += f" (applied to case '{self.name}')"
        return label

    def value(self, where: tuple[Any, ...], spec: Any,
              like: tuple[int, ...] | None) -> np.ndarray:
        """A value spec (number, nested list or generator) as a float64 array."""
        if isinstance(spec, dict):
            return self.generate(where, spec, like)
        if isinstance(spec, list):
            shape = self.nested_shape(where, spec)
            self.check_size(where, shape)
            flat = [self.number((*where, *idx), v) for idx, v in _flatten(spec)]
            return np.array(flat, dtype=np.float64).reshape(shape)
        return np.array(self.number(where, spec), dtype=np.float64)

    def nested_shape(self, where: tuple[Any, ...], spec: Any) -> tuple[int, ...]:
        if not isinstance(spec, list):
            return ()
        if not spec:
            return (0,)
        shapes = [self.nested_shape((*where, i), item) for i, item in enumerate(spec)]
        for i, shape in enumerate(shapes):
            if shape != shapes[0]:
                raise self.fail(
                    (*where, i), f"{self.label(where)} is not rectangular: item {i + 1} is "
                    f"{_item_text(shape)} but item 1 is {_item_text(shapes[0])}",
                    "Give every row the same length (a nested list describes an n-d array)")
        return (len(spec), *shapes[0])

    def number(self, where: Sequence[Any], value: Any) -> float:
        """A scalar as written, checked to be exactly a float64."""
        label = self.label(where)
        if isinstance(value, bool):
            raise self.fail(where, f"{label} is {describe(value)}, not a number",
                            "Write 1 or 0 (a bool argument is asked for with "
                            "`arg_dtypes: {weight: bool}`)")
        if isinstance(value, int):
            try:
                as_float = float(value)
            except OverflowError:
                as_float = math.inf
            if as_float != value:
                raise self.fail(where, f"{label} is the integer {value}, which float64 cannot "
                                "hold exactly", "Use an integer below 2**53 in magnitude (or "
                                "one float64 can represent), or write it as a float")
            return as_float
        if isinstance(value, float):
            return value
        if isinstance(value, str):
            special = special_value(value)
            if special is not None:
                return special
            if _HEX_RE.fullmatch(value.strip()):
                raise self.fail(where, f"{label} is the hex float {value}, which float64 cannot "
                                "hold exactly (too many digits, or out of range)",
                                "Use at most 13 hex digits after the point and an exponent "
                                "within float64's range")
        raise self.fail(where, f"{label} is {describe(value)}, which is not a number",
                        f"Write {SPECIAL_HINT}")

    def check_size(self, where: Sequence[Any], shape: Sequence[int]) -> None:
        size = math.prod(shape)
        if size > MAX_ELEMENTS:
            raise self.fail(where, f"{self.label(where)} would have {size:,} elements",
                            f"Keep arrays below {MAX_ELEMENTS:,} elements")

    def generate(self, where: tuple[Any, ...], spec: dict[str, Any],
                 like: tuple[int, ...] | None) -> np.ndarray:
        kind = next(k for k in GENERATORS if k in spec)
        shape = tuple(spec["shape"]) if "shape" in spec else None
        if shape is not None:
            self.check_size((*where, "shape"), shape)
        target = shape if shape is not None else like
        label = self.label((*where, kind))
        if kind == "fill":
            value = self.number((*where, "fill"), spec["fill"])
            if target is None:
                raise self.fail(where, f"{label} has no shape to fill",
                                "Add `shape:`, e.g. {fill: 0.5, shape: [3, 4]}")
            return np.full(target, value, dtype=np.float64)
        if kind == "values":
            items = [self.number((*where, "values", i), v) for i, v in enumerate(spec["values"])]
            arr = np.array(items, dtype=np.float64)
            if target is None:
                return arr
            if math.prod(target) and not items:
                raise self.fail((*where, "values"), f"{label} is empty but must fill "
                                f"shape {shape_text(target)}", "List at least one value")
            return np.resize(arr, target) if items else np.zeros(target)
        if kind == "random":
            return self.random((*where, "random"), spec["random"], target)
        if kind == "linspace":
            start, stop, num = spec["linspace"]
            lo = self.number((*where, "linspace", 0), start)
            hi = self.number((*where, "linspace", 1), stop)
            if not (math.isfinite(lo) and math.isfinite(hi)):
                raise self.fail((*where, "linspace"), f"{label} has a non-finite end",
                                "Give finite start and stop (list infinities with `values:`)")
            self.check_size((*where, "linspace", 2), (num,))
            with np.errstate(over="ignore", invalid="ignore"):
                arr = np.linspace(lo, hi, num)
            if not np.isfinite(arr).all():
                raise self.fail((*where, "linspace"), f"{label} overflows float64 between "
                                "its ends", "Use ends whose difference fits in float64")
        else:  # logspace
            start, stop, num = spec["logspace"]
            if not (math.isfinite(start) and math.isfinite(stop)):
                raise self.fail((*where, "logspace"), f"{label} has a non-finite exponent",
                                "Give finite exponents (list infinities with `values:`)")
            self.check_size((*where, "logspace", 2), (num,))
            exponents = np.linspace(float(start), float(stop), num)
            mags = np.array([pow10(float(e)) for e in exponents], dtype=np.float64)
            if not np.isfinite(mags).all():
                raise self.fail((*where, "logspace"), f"{label} reaches beyond float64's "
                                "range (10**308.25)", "Keep the exponents at most 308")
            signs = spec.get("signs", "positive")
            arr = (-mags if signs == "negative" else
                   np.concatenate([-mags[::-1], mags]) if signs == "both" else mags)
        if target is None:
            return arr
        if arr.size != math.prod(target):
            origin = "the shape" if shape is not None else "the input's shape"
            raise self.fail(where, f"{label} gives {arr.size} values but {origin} "
                            f"{shape_text(target)} holds {math.prod(target)}",
                            "Make num match the shape" + (
                                "" if shape is not None else
                                ", or give this argument a `shape:` of its own"))
        return arr.reshape(target)

    def random(self, where: tuple[Any, ...], spec: dict[str, Any],
               shape: tuple[int, ...] | None) -> np.ndarray:
        dist = spec["distribution"]
        allowed = DISTRIBUTIONS[dist]
        for key in spec:
            if key not in ("distribution", "seed", *allowed):
                guess = difflib.get_close_matches(key, allowed, n=1, cutoff=0.5)
                hint = f"Did you mean '{guess[0]}'? " if guess else ""
                raise self.fail((*where, key), f"`{key}` in {self.label(where)} is not a "
                                f"parameter of the {dist} distribution",
                                f"{hint}The {dist} distribution takes "
                                f"{', '.join(allowed)} (and seed)", at_key=True)
        if shape is None:
            raise self.fail(where, f"{self.label(where)} has no shape",
                            "Add `shape:` beside `random:`, e.g. {random: {distribution: "
                            "normal, seed: 0}, shape: [400, 300]}")
        params = {k: float(v) for k, v in spec.items() if k in ("loc", "scale", "low", "high",
                                                                 "p")}
        for key, v in params.items():
            if not math.isfinite(v):
                raise self.fail((*where, key), f"{self.label((*where, key))} is not finite",
                                "Give a finite number")
        rng = np.random.default_rng(spec["seed"])
        low, high = params.get("low"), params.get("high")
        if dist == "normal":
            return rng.normal(params.get("loc", 0.0), params.get("scale", 1.0), shape)
        if dist == "bernoulli":
            return (rng.random(shape) < params.get("p", 0.5)).astype(np.float64)
        if dist == "uniform":
            low, high = (0.0 if low is None else low), (1.0 if high is None else high)
            if not low <= high:
                raise self.fail(where, f"{self.label(where)} has low {low} above high {high}",
                                "Swap them")
            return rng.uniform(low, high, shape)
        if dist == "integers":
            low = 0.0 if low is None else low
            assert high is not None
            for key, v in (("low", low), ("high", high)):
                if v != int(v) or abs(v) > 2**53:
                    raise self.fail((*where, key), f"{self.label((*where, key))} is {v}, not an "
                                    "integer of at most 2**53", "Give an integer")
            if not low < high:
                raise self.fail(where, f"{self.label(where)} draws from the empty range "
                                f"[{low:g}, {high:g})", "Make high greater than low (high "
                                "is excluded)")
            return rng.integers(int(low), int(high), shape).astype(np.float64)
        # loguniform
        assert low is not None and high is not None
        if not 0 < low <= high:
            raise self.fail(where, f"{self.label(where)} needs 0 < low <= high, got low "
                            f"{low:g}, high {high:g}", "Give positive bounds; use `signs: "
                            "negative` or `signs: both` for negative values")
        with np.errstate(over="ignore", under="ignore"):
            arr = np.exp(rng.uniform(math.log(low), math.log(high), shape))
        signs = spec.get("signs", "positive")
        if signs == "negative":
            arr = -arr
        elif signs == "both":
            arr = arr * (2.0 * rng.integers(0, 2, shape) - 1.0)
        return arr


def _item_text(shape: tuple[int, ...]) -> str:
    return "a number" if not shape else f"shape {shape_text(shape)}"


def _flatten(spec: list[Any], prefix: tuple[int, ...] = ()) -> Iterator[tuple[tuple[int, ...],
                                                                             Any]]:
    for i, item in enumerate(spec):
        if isinstance(item, list):
            yield from _flatten(item, (*prefix, i))
        else:
            yield (*prefix, i), item


def special_value(text: str) -> float | None:
    """The value of a special string ('inf', '-0.0', '0x1p-1074', ...), or None."""
    text = text.strip()
    if text in _SPECIALS:
        return _SPECIALS[text]
    m = _HEX_RE.fullmatch(text)
    if not m or not (m.group(2) or m.group(3)):
        return None
    sign, whole, frac, exp = m.group(1), m.group(2), m.group(3) or "", int(m.group(4) or 0)
    mantissa = int((whole + frac) or "0", 16)
    exp2 = exp - 4 * len(frac)
    try:
        value = float.fromhex(text)
    except OverflowError:
        return None
    if mantissa == 0:
        return value
    if exp2 > 1100 or exp2 < -1200 - 4 * len(whole + frac):
        return None  # beyond any float64: fromhex gave inf or 0
    exact = Fraction(mantissa) * Fraction(2) ** exp2 * (-1 if sign == "-" else 1)
    return value if math.isfinite(value) and Fraction(value) == exact else None


def pow10(exponent: float) -> float:
    """10**exponent correctly rounded, so logspace does not depend on the platform's pow."""
    if exponent == int(exponent) and abs(exponent) < 400:
        k = int(exponent)
        try:
            return float(10**k) if k >= 0 else float(Fraction(1, 10**-k))
        except OverflowError:
            return math.inf
    with localcontext() as ctx:
        ctx.prec = 40
        try:
            return float(Decimal(10) ** Decimal(exponent))
        except OverflowError:
            return math.inf
