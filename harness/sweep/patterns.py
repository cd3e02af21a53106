"""Which logits a sweep visits, how they are cut into shards, and the binade of each.

A sweep enumerates bit patterns, not values, so nothing is missed: ±0, every
subnormal, every normal, ±inf and every NaN payload. Patterns are visited by
*magnitude* (the pattern without its sign bit), each magnitude with both signs, so a
shard holds x and −x together: the reference for target 1 − y at x is the one for y
at −x (`harness.sweep.reference`), computed once for both.

`--stride K` visits every K-th magnitude (0, K, 2K, ...; an odd K reaches every
mantissa bit, a power of two only patterns whose low bits are 0), `--limit N` stops
after N logits. A shard is a range of sampled magnitudes; its logits are the positive
patterns in ascending order, then the negative ones, so each binade of the logit is a
contiguous run in both halves (what `Bins.runs` relies on).

Bins are the binades of the logit, ordered by value from −inf to +inf, with NaN
first: for a format with p significand bits, exponents from emin − p + 1 (the
smallest subnormal) to emax, ±0 and ±inf on their own. Each binade is split into
`PROFILE` equal parts by its leading mantissa bits for the error profile.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import cached_property

import numpy as np

from harness.dtypes import FORMATS, Format, numpy_dtype

#: bits per pattern for the formats a sweep can enumerate
BITS: dict[str, int] = {"float16": 16, "bfloat16": 16, "float32": 32, "float64": 64}
_UINT = {16: np.uint16, 32: np.uint32, 64: np.uint64}
#: sub-bins per binade in the error profile (the leading 3 bits of the mantissa)
PROFILE = 8


@dataclass(frozen=True)
class Space:
    """The sampled logits of one dtype: magnitudes 0, stride, 2·stride, ... each with
    both signs, at most `limit` logits in all."""

    dtype: str
    stride: int = 1
    limit: int | None = None

    def __post_init__(self) -> None:
        if self.dtype not in BITS:
            raise ValueError(f"no bit patterns for {self.dtype!r}; use one of {', '.join(BITS)}")
        if self.stride < 1:
            raise ValueError("stride must be 1 or more")
        if self.limit is not None and self.limit < 2:
            raise ValueError("limit must be 2 or more (one magnitude, both signs)")

    @property
    def bits(self) -> int:
        return BITS[self.dtype]

    @property
    def all_magnitudes(self) -> int:
        """2**(bits − 1): every pattern without its sign bit."""
        return 1 << (self.bits - 1)

    @cached_property
    def magnitudes(self) -> int:
        """How many magnitudes are sampled (each gives two logits)."""
        n = -(-self.all_magnitudes // self.stride)
        if self.limit is not None:
            n = min(n, -(-self.limit // 2))
        return n

    @property
    def logits(self) -> int:
        return 2 * self.magnitudes

    def patterns(self, lo: int, hi: int) -> np.ndarray:
        """Bit patterns of sampled magnitudes lo..hi−1: positives ascending, then negatives."""
        u = _UINT[self.bits]
        mags = np.arange(lo, hi, dtype=np.uint64) * np.uint64(self.stride)
        mags = mags.astype(u)
        sign = u(1 << (self.bits - 1))
        return np.concatenate([mags, mags | sign])

    def logits_of(self, lo: int, hi: int) -> np.ndarray:
        """The logits (float64, exact) of sampled magnitudes lo..hi−1 (see `patterns`)."""
        return to_float64(self.patterns(lo, hi), self.dtype)


def to_float64(patterns: np.ndarray, dtype: str) -> np.ndarray:
    """Bit patterns of `dtype` as float64 values (exact; NaN payloads kept where they fit)."""
    view = patterns.view(numpy_dtype(dtype))
    with np.errstate(invalid="ignore"):
        return view.astype(np.float64)


@dataclass(frozen=True)
class Shard:
    """Sampled magnitudes [lo, hi) of a space: 2·(hi − lo) logits."""

    index: int
    lo: int
    hi: int

    @property
    def id(self) -> str:
        return f"{self.index:06d}"

    @property
    def logits(self) -> int:
        return 2 * (self.hi - self.lo)


def shards(space: Space, logits_per_shard: int) -> list[Shard]:
    """The space cut into shards of `logits_per_shard` logits (the last may be smaller)."""
    per = max(1, logits_per_shard // 2)
    return [Shard(i, lo, min(lo + per, space.magnitudes))
            for i, lo in enumerate(range(0, space.magnitudes, per))]


# ----------------------------------------------------------------------- bins ----

@dataclass(frozen=True)
class Bins:
    """The binades of one format, in value order, with NaN first (module docstring)."""

    dtype: str

    @property
    def fmt(self) -> Format:
        return FORMATS[self.dtype]

    @property
    def lowest(self) -> int:
        """Exponent of the smallest subnormal's binade."""
        return self.fmt.emin - self.fmt.precision + 1

    @property
    def per_sign(self) -> int:
        return self.fmt.emax - self.lowest + 1

    def __len__(self) -> int:
        return 2 * self.per_sign + 5

    # index layout: 0 nan | 1 -inf | 2 .. K+1 negative binades, emax down | K+2 -0 |
    #               K+3 +0 | K+4 .. 2K+3 positive binades, lowest up | 2K+4 +inf
    @property
    def nan(self) -> int:
        return 0

    @property
    def neg_zero(self) -> int:
        return self.per_sign + 2

    @property
    def pos_zero(self) -> int:
        return self.per_sign + 3

    @property
    def pos_inf(self) -> int:
        return 2 * self.per_sign + 4

    def index(self, x: np.ndarray) -> np.ndarray:
        """The bin of each float64 logit (int64)."""
        x = np.asarray(x, dtype=np.float64)
        neg = np.signbit(x)
        mag = np.abs(x)
        finite = np.isfinite(mag) & (mag > 0)
        _, e = np.frexp(np.where(finite, mag, 1.0))
        e = e.astype(np.int64) - 1  # mag in [2**e, 2**(e+1))
        k = np.clip(e - self.lowest, 0, self.per_sign - 1)
        out = np.where(neg, self.per_sign + 1 - k, self.per_sign + 4 + k)
        out = np.where(mag == 0, np.where(neg, self.neg_zero, self.pos_zero), out)
        out = np.where(np.isinf(x), np.where(neg, 1, self.pos_inf), out)
        return np.where(np.isnan(x), self.nan, out).astype(np.int64)

    def cell(self, x: np.ndarray) -> np.ndarray:
        """The profile cell of each logit: bin·PROFILE + the binade part it lies in.

        Parts go in value order too: on the negative side the part of larger
        magnitude comes first."""
        x = np.asarray(x, dtype=np.float64)
        mag = np.abs(x)
        finite = np.isfinite(mag) & (mag > 0)
        m, _ = np.frexp(np.where(finite, mag, 1.0))  # m in [0.5, 1)
        part = np.clip(np.floor((2.0 * m - 1.0) * PROFILE), 0, PROFILE - 1).astype(np.int64)
        part = np.where(np.signbit(x), PROFILE - 1 - part, part)
        return self.index(x) * PROFILE + np.where(finite, part, 0)

    def describe(self) -> list[dict]:
        """One JSON object per bin: label, sign, class, exponent, [lo, hi) of |x|."""
        fmt = self.fmt
        out: list[dict] = [{"label": "NaN", "sign": None, "class": "nan", "exponent": None,
                            "lo": None, "hi": None},
                           {"label": "-inf", "sign": "-", "class": "inf", "exponent": None,
                            "lo": None, "hi": None}]
        binades = [(e, "subnormal" if e < fmt.emin else "normal")
                   for e in range(self.lowest, fmt.emax + 1)]
        for e, cls in reversed(binades):
            out.append(_binade("-", e, cls))
        out.append({"label": "-0", "sign": "-", "class": "zero", "exponent": None,
                    "lo": 0.0, "hi": 0.0})
        out.append({"label": "+0", "sign": "+", "class": "zero", "exponent": None,
                    "lo": 0.0, "hi": 0.0})
        for e, cls in binades:
            out.append(_binade("+", e, cls))
        out.append({"label": "+inf", "sign": "+", "class": "inf", "exponent": None,
                    "lo": None, "hi": None})
        return out


def _binade(sign: str, e: int, cls: str) -> dict:
    return {"label": f"{sign}[2^{e}, 2^{e + 1})", "sign": sign, "class": cls, "exponent": e,
            "lo": math.ldexp(1.0, e), "hi": math.ldexp(1.0, e + 1)}


def runs(keys: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Start offsets and keys of the runs of equal consecutive keys (for reduceat)."""
    keys = np.asarray(keys)
    if keys.size == 0:
        return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64)
    starts = np.concatenate([[0], np.flatnonzero(keys[1:] != keys[:-1]) + 1]).astype(np.int64)
    return starts, keys[starts]
