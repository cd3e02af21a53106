"""Test configuration: which Hypothesis profile the property tests run under.

The profiles (`dev`, `ci`, `thorough`) live with the seeded generation in
harness/generate/seeding.py. `--hypothesis-profile NAME` (Hypothesis's own option) wins;
otherwise $BCE_HYPOTHESIS_PROFILE, otherwise `ci` when $CI is set (as CI services
set it) and `dev` on a workstation. The harness's own options (--backend,
--device, --dtype, --plugin, --cases) come from harness/pytest_plugin.py.
"""

from __future__ import annotations

import os

import pytest
from hypothesis import settings

from harness.generate.seeding import PROFILES, register_profiles

register_profiles()


def pytest_configure(config: pytest.Config) -> None:
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
