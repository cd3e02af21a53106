"""What a sweep computes, in one picklable value every Dask task receives.

A `Plan` fixes the dtype, the sampled logits (stride, limit), the targets, the
optional weight and pos_weight, how logits are cut into shards and calls, and which
expectations judge the results. Two runs with equal `Plan.identity()` produce the
same shard files, which is what lets `--resume` reuse the ones already written.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field

import numpy as np

from harness.dtypes import FORMATS, round_to
from harness.sweep.patterns import BITS, Space

#: the targets swept when --targets is not given: both hard labels, the middle, two
#: soft labels, and one value just inside each end of [0, 1] in the format
DEFAULT_TARGETS: dict[str, str] = {
    "float16": "0,1,0.5,0.1,0.9,0+,1-",
    "bfloat16": "0,1,0.5,0.1,0.9,0+,1-",
    "float32": "0,1",
    "float64": "0,1",
}
#: logits per shard at most by default (`default_shard`): 2048 shards for all of float32
MAX_SHARD = 1 << 21
#: and at least, so a shard's calls are not all overhead
MIN_SHARD = 4096
DEFAULT_CHUNK = 65536


def default_shard(logits: int) -> int:
    """Logits per shard when --shard is not given: about 64 shards (16 for a 16-bit
    format), from MIN_SHARD to MAX_SHARD logits each, an even number. It depends on the
    sweep alone, never on the cluster, so `--resume` finds the same shards anywhere."""
    per = -(-logits // 64)
    per = max(MIN_SHARD, min(MAX_SHARD, per))
    return per + (per % 2)


class TargetError(ValueError):
    """A --targets entry that is not a number or a named end."""


def parse_targets(text: str, dtype: str) -> tuple[tuple[float, ...], tuple[str, ...]]:
    """Targets from 'A,B,...' rounded to `dtype`, duplicates (after rounding) dropped.

    Each entry is a number (1e-3, 0x1p-24 as hex), `0+` (the smallest positive value of
    the format, a subnormal) or `1-` (the largest value below 1).
    """
    fmt = FORMATS[dtype]
    values: list[float] = []
    labels: list[str] = []
    for raw in text.split(","):
        tok = raw.strip()
        if not tok:
            continue
        if tok == "0+":
            v = fmt.tiny_ulp
        elif tok == "1-":
            v = 1.0 - math.ldexp(1.0, -fmt.precision)
        else:
            try:
                v = float.fromhex(tok) if tok.lower().lstrip("+-").startswith("0x") else float(tok)
            except ValueError:
                raise TargetError(f"target {tok!r} is not a number") from None
        r = float(round_to(np.array([v]), dtype)[0])
        if any(r == u and math.copysign(1, r) == math.copysign(1, u) for u in values) \
                or any(math.isnan(r) and math.isnan(u) for u in values):
            continue
        values.append(r)
        labels.append(tok if r == v or math.isnan(r) else f"{tok} (≈{r:.6g})")
    if not values:
        raise TargetError("no targets given")
    return tuple(values), tuple(labels)


@dataclass(frozen=True)
class Plan:
    """Everything a shard's computation depends on (module docstring)."""

    dtype: str
    targets: tuple[float, ...]
    target_labels: tuple[str, ...]
    weight: float | None = None
    pos_weight: float | None = None
    stride: int = 1
    limit: int | None = None
    shard_logits: int = 4096
    chunk: int = DEFAULT_CHUNK
    devices: tuple[str, ...] = ()  # only these devices; () every device a backend has
    known: tuple[str, ...] = ()  # expectation files on top of the shipped list
    shipped: bool = True
    compiled: bool = False  # the backends' compiled implementations (eager_twins) too
    worker_log: str | None = field(default=None, compare=False)  # our LocalCluster's stderr
    timeout: float | None = field(default=None, compare=False)  # seconds per backend shard

    def __post_init__(self) -> None:
        if self.dtype not in BITS:
            raise ValueError(f"cannot sweep {self.dtype!r}")

    @property
    def space(self) -> Space:
        return Space(self.dtype, self.stride, self.limit)

    def identity(self) -> dict:
        """What must match for a shard file to be reused (JSON-ready)."""
        d = asdict(self)
        d.pop("worker_log")
        d.pop("timeout")
        d["targets"] = [float(t).hex() for t in self.targets]
        d["weight"] = None if self.weight is None else float(self.weight).hex()
        d["pos_weight"] = None if self.pos_weight is None else float(self.pos_weight).hex()
        d["target_labels"] = list(self.target_labels)
        d["devices"] = list(self.devices)
        d["known"] = list(self.known)
        return d
