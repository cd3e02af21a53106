"""Test configuration: which Hypothesis profile the property tests run under.

The profiles (`dev`, `ci`, `thorough`) live with the seeded generation in
harness/generate/seeding.py. `--hypothesis-profile NAME` (Hypothesis's own option) wins;
otherwise $BCE_HYPOTHESIS_PROFILE, otherwise `ci` when $CI is set (as CI services
set it) and `dev` on a workstation. Under pytest-xdist each worker runs its
frameworks single-threaded (see `pytest_configure`). The harness's own options (--backend,
--device, --dtype, --plugin, --cases) come from harness/pytest_plugin.py.
"""

from __future__ import annotations

import functools
import os
from typing import Any

import pytest
from hypothesis import settings

from harness.generate.seeding import PROFILES, register_profiles

register_profiles()


def pytest_configure(config: pytest.Config) -> None:
    if hasattr(config, "workerinput"):
        # a pytest-xdist worker (`-n auto`: one per core): a framework that also spins a
        # thread per core in each worker oversubscribes the machine, as it would a
        # report's workers (harness/run/pool.py), so every framework gets one thread.
        # Only in workers: a plain session keeps the user's environment as it is.
        from harness.run.pool import single_threaded

        single_threaded()
    try:
        chosen = config.getoption("--hypothesis-profile")
    except ValueError:  # Hypothesis's pytest plugin disabled (-p no:hypothesispytest)
        chosen = None
    if chosen:
        return
    name = os.environ.get("BCE_HYPOTHESIS_PROFILE") or ("ci" if os.environ.get("CI") else "dev")
    if name not in PROFILES:
        raise pytest.UsageError(f"BCE_HYPOTHESIS_PROFILE={name!r} is not a profile. Use one of "
                                f"{', '.join(PROFILES)}.")
    settings.load_profile(name)


# ------------------------------------------------------------ xdist grouping ----
#
# Some tests share something expensive that a process makes once (a module fixture, a
# functools.cache, a worker process): the conformance items of an isolated backend, the
# default run of tests/test_planted.py, the exact reference points of
# tests/test_reference.py, one subprocess per backend in tests/test_snippets.py and per
# engine in tests/test_backend_keras.py, the browser of tests/test_browser.py. They are
# marked `xdist_group`, but pytest-xdist 3.8 cannot read that mark under pytest 9 (it
# sets `item._nodeid`, which pytest 9 no longer reads), so `--dist loadgroup` would
# spread them. The scheduler below groups the same tests from their node ids.

def xdist_group(nodeid: str) -> str | None:
    """The group of the test `nodeid` (None: scheduled on its own)."""
    path, _, rest = nodeid.partition("::")
    name, _, param = rest.partition("[")
    param = param.removesuffix("]")
    if name == "test_conformance" and param:  # [backend-dtype]: isolated backends only
        backend = param.rsplit("-", 1)[0]
        return f"conformance-{backend}" if backend in _isolated() else None
    if path == "tests/test_planted.py" and name in (
            "test_the_default_run_catches_the_planted_bug",
            "test_the_numpy_formula_backend_is_not_flagged"):
        return "planted-default-run"
    if path == "tests/test_reference.py" and name.startswith("test_accuracy_") and \
            name != "test_accuracy_exact_slow_path_alone":
        return "reference-accuracy"
    if path == "tests/test_snippets.py" and name == "test_snippet_prints_what_run_returns":
        return "snippets-" + param.split("-", 1)[0]  # [backend-implementation-case]
    if path == "tests/test_backend_keras.py" and param:  # [engine]
        return f"keras-{param}-driver"
    if path == "tests/test_browser.py":
        return "browser"
    return None


@functools.cache
def _isolated() -> frozenset[str]:
    """The backends that run in a worker process of their own (found without importing
    any framework), whose conformance items harness/pytest_plugin.py groups."""
    from harness.run.registry import discover

    return frozenset(b.name for b in discover() if getattr(b.backend, "isolated", False))


@pytest.hookimpl(tryfirst=True, optionalhook=True)
def pytest_xdist_make_scheduler(config: pytest.Config, log: Any) -> Any:
    """`--dist loadgroup` (pyproject.toml) with the groups of `xdist_group`."""
    if config.getvalue("dist") != "loadgroup":
        return None
    from xdist.scheduler import LoadGroupScheduling

    class GroupScheduling(LoadGroupScheduling):
        def _split_scope(self, nodeid: str) -> str:
            return xdist_group(nodeid) or super()._split_scope(nodeid)

    return GroupScheduling(config, log)
