"""The conformance suite in this checkout's own test run (plain `pytest`).

The suite itself lives in the package (harness/conformance/test_conformance.py), so
a plugin author runs the same items from anywhere with
`python -m pytest --pyargs harness.conformance --backend NAME`.
"""

from harness.conformance.test_conformance import pytestmark, test_conformance

__all__ = ["pytestmark", "test_conformance"]
