"""Facts about the floating-point formats under test, in one place.

Comparison measures errors in units in the last place of the format under test,
so it needs each format's precision and exponent range; bfloat16 has no numpy
dtype of its own and comes from ml_dtypes. Nothing here knows about backends.
"""

from __future__ import annotations

from dataclasses import dataclass

import ml_dtypes
import numpy as np


@dataclass(frozen=True)
class Format:
    """An IEEE-style binary format: p significand bits (with the hidden one)."""

    name: str
    precision: int  # p
    emin: int  # exponent of the smallest normal: 2**emin
    emax: int  # exponent of the largest finite binade: max < 2**(emax+1)

    @property
    def numpy(self) -> np.dtype:
        return numpy_dtype(self.name)

    @property
    def max(self) -> float:
        return float(np.ldexp(2.0 - 2.0 ** (1 - self.precision), self.emax))

    @property
    def tiny_ulp(self) -> float:
        """Spacing of the subnormals: the ulp of every value below 2**emin."""
        return float(np.ldexp(1.0, self.emin - self.precision + 1))


FORMATS: dict[str, Format] = {
    "float16": Format("float16", 11, -14, 15),
    "bfloat16": Format("bfloat16", 8, -126, 127),
    "float32": Format("float32", 24, -126, 127),
    "float64": Format("float64", 53, -1022, 1023),
}

_EXTRA_NUMPY = {"bfloat16": np.dtype(ml_dtypes.bfloat16)}


def numpy_dtype(name: str) -> np.dtype:
    """The numpy dtype for a name, bfloat16 included (ValueError if unknown)."""
    if name in _EXTRA_NUMPY:
        return _EXTRA_NUMPY[name]
    try:
        return np.dtype(name)
    except TypeError as exc:
        raise ValueError(f"unknown dtype {name!r}") from exc


def dtype_name(dtype: np.dtype | type) -> str:
    """The harness's name for a numpy dtype ('bfloat16' for ml_dtypes.bfloat16)."""
    dt = np.dtype(dtype)
    if dt == _EXTRA_NUMPY["bfloat16"]:
        return "bfloat16"
    return dt.name


def round_to(values: np.ndarray, name: str) -> np.ndarray:
    """Round float64 values to the nearest value of format `name`, returned as float64.

    float64 → float16 and → float32 are correctly rounded by numpy. ml_dtypes
    converts float64 → bfloat16 through float32, which can double-round on exact
    halfway cases; we round to odd at float32 first (Boldo–Melquiond) so the
    second rounding is correct.
    """
    x = np.asarray(values, dtype=np.float64)
    if name == "float64":
        return x.copy()
    if name == "bfloat16":
        x32 = _round_to_odd_float32(x)
        return x32.astype(ml_dtypes.bfloat16).astype(np.float64)
    return x.astype(numpy_dtype(name)).astype(np.float64)


def _round_to_odd_float32(x: np.ndarray) -> np.ndarray:
    """float64 → float32 with round-to-odd, so a later rounding to bfloat16 is exact."""
    with np.errstate(over="ignore", invalid="ignore"):
        truncated = x.astype(np.float32)
        back = truncated.astype(np.float64)
        inexact = np.isfinite(x) & (back != x)
        # step towards zero where nearest rounding went away from zero
        away = inexact & (np.abs(back) > np.abs(x))
        truncated = np.where(away, np.nextafter(truncated, np.float32(0)), truncated)
        bits = truncated.view(np.uint32)
        odd = inexact & ((bits & 1) == 0) & np.isfinite(truncated)
        bits = np.where(odd, bits | 1, bits).astype(np.uint32)
    return bits.view(np.float32)


def promote(names: list[str]) -> str:
    """The floating dtype a framework following type promotion would return.

    Integer and bool arguments do not widen the result; mixing float16 with
    bfloat16 gives float32 (as in PyTorch and JAX).
    """
    floats = [n for n in names if n in FORMATS]
    if not floats:
        return "float32"
    if "float16" in floats and "bfloat16" in floats:
        floats.append("float32")
    return max(floats, key=lambda n: FORMATS[n].precision)
