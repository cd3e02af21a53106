"""The conformance suite: every selected backend against the reference.

Parametrized by the harness's pytest plugin (harness/pytest_plugin.py) over backend ×
dtype: each item runs that backend's implementations and devices over every case in
that dtype, once; narrow it with --backend / --device / --dtype / --cases, add the
compiled implementations with --compiled. Run it from anywhere with
`python -m pytest --pyargs harness.conformance --backend NAME`.
"""

import pytest

from harness.pytest_plugin import run_conformance

pytestmark = pytest.mark.conformance


def test_conformance(conformance, request):
    run_conformance(conformance, request.config)
