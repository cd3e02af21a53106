"""Seeded generation: the strategies of harness/generate/strategies.py as a fixed list of cases.

`python -m harness report --seed S --examples N` must judge the same N cases on
every run and every machine, and a failing case must be found again, in another
process, so that Hypothesis can shrink it (harness/generate/shrink.py). This module
drives Hypothesis through its public API only (`@given`, `@seed`, `settings`) to
get there:

- Example i of seed S is the second input of its own Hypothesis run, seeded with
  a hash of (S, i) (`run_example`): a run begins with the simplest input, and the
  second is the first drawn at random. One long run would not do: after each
  input Hypothesis tries small mutations of it, right for finding a bug and wrong
  for a fixed budget of trials, where they would be near copies. Example i does
  not depend on N.
- That second input differs from the simplest at its first choice, so
  `draw_case` makes its first choice one where that costs little (the shape
  kind; see there) and the dtype and reduction stay evenly drawn
  (tests/test_strategies.py checks the spread).
- Every choice the strategies make is a boolean or a small integer, which
  Hypothesis never replaces by a constant found in the source of the loaded
  modules (see harness/generate/numbers.py), so a worker that imported a backend
  draws what the report's main process drew.

The same seed gives the same cases for the same versions of Hypothesis and numpy;
another Hypothesis version may give other cases (docs/generation.md).
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from typing import Any

from hypothesis import HealthCheck, Phase, Verbosity, given, settings
from hypothesis import seed as hypothesis_seed
from hypothesis import strategies as st

from harness.cases import Case
from harness.generate.strategies import draw_case

__all__ = ["DEFAULT_EXAMPLES", "PROFILES", "RUN_LENGTH", "case_name", "case_source",
           "example_seed", "generate_case", "generate_cases", "parse_source",
           "register_profiles", "run_example", "search_settings"]

#: Generated cases `report` adds when --examples is not given (see docs/generation.md:
#: about 80 trials per backend implementation keeps the default report of every
#: backend within two minutes on two cores, and reaches every coverage cell).
DEFAULT_EXAMPLES = 80

#: Inputs in the Hypothesis run behind one generated example: the simplest one,
#: then the example (see the module docstring).
RUN_LENGTH = 2


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


# ------------------------------------------------------------------- names ----

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


# -------------------------------------------------------------- generation ----

def search_settings(max_examples: int, shrink: bool = False) -> settings:
    """Settings for a seeded search, independent of the loaded profile: no database,
    no explicit or stored examples, no deadline, quiet; shrinking only if asked."""
    phases = (Phase.generate, Phase.shrink) if shrink else (Phase.generate,)
    return settings(parent=settings.get_profile("default"), max_examples=max_examples,
                    database=None, derandomize=False, deadline=None, phases=phases,
                    suppress_health_check=list(HealthCheck), verbosity=Verbosity.quiet,
                    report_multiple_bugs=False, print_blob=False)


def run_example(seed: int, index: int, test: Callable[[Any], None], shrink: bool = False) -> None:
    """Run `test(data)` on each input of the run behind example `index` of `seed`.

    `data` is `st.data()`'s object; the example is what `test` draws from the last
    of the `RUN_LENGTH` inputs (fewer only if an earlier one raises). With
    `shrink`, an exception from `test` makes Hypothesis shrink the input and
    re-raise it from the minimal one: the same run, so a test that raises on the
    example's failure meets the example again and shrinks from it.
    """

    @hypothesis_seed(example_seed(seed, index))
    @search_settings(RUN_LENGTH, shrink=shrink)
    @given(st.data())
    def run(data: st.DataObject) -> None:
        test(data)

    run()


def generate_case(seed: int, index: int) -> Case:
    """Example `index` of `seed`, as `generate_cases` makes it."""
    drawn: list[Case] = []

    def collect(data: Any) -> None:
        drawn.append(draw_case(data, name=case_name(seed, index),
                               source=case_source(seed, index)))

    run_example(seed, index, collect)
    return drawn[-1]


def generate_cases(n: int, seed: int) -> list[Case]:
    """`n` Hypothesis-generated cases, the same for the same seed (and Hypothesis version).

    Each case has one dtype and one reduction, so n examples are n trials per
    backend implementation. Names are `generated/s{seed}-{i:04d}` and sources
    `hypothesis:seed={seed}:example={i}`; tags name the value classes present.
    Example i is independent of n: `generate_cases(10, s)` is the start of
    `generate_cases(80, s)`.
    """
    return [generate_case(seed, i) for i in range(max(n, 0))]
