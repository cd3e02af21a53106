"""The conformance suite: every installed backend against the reference.

Parametrized by the harness's pytest plugin (harness/pytest_plugin.py) over backend ×
dtype: each item runs that backend's implementations and devices over every case in
that dtype, once; narrow it with --backend / --device / --dtype / --cases.
"""

import pytest

from harness.pytest_plugin import run_conformance

pytestmark = pytest.mark.conformance


def test_conformance(conformance, request):
    run_conformance(conformance, request.config)
