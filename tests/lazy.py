"""A framework module imported when a test first uses it, never at collection.

`torch = lazy("torch")` at the top of a test module keeps collection free of
framework imports (tests/test_cli.py checks the conformance suite's own collection;
this keeps the whole suite's collection cheap too): the first attribute a test
reads imports the framework, or skips that test when it is not installed. Pair it
with `pytestmark = needs("torch")` to skip the module's tests up front.
"""

from __future__ import annotations

import importlib
import importlib.util
from typing import Any

import pytest


class LazyModule:
    """Stands for module `name`; the first attribute read imports it (or skips)."""

    def __init__(self, name: str) -> None:
        self._name = name
        self._module: Any = None

    def __getattr__(self, attr: str) -> Any:
        if attr.startswith("_") and self._module is None and attr != "__version__":
            # what pytest's collection (and pickling, pretty printing) probe for:
            # private names import nothing until a test has imported the module
            raise AttributeError(attr)
        if self._module is None:
            self._module = pytest.importorskip(self._name, reason=f"{self._name} is not installed")
        return getattr(self._module, attr)

    def __repr__(self) -> str:
        return f"<lazy module {self._name!r}>"


def lazy(name: str) -> Any:
    """`name`, imported on first use."""
    return LazyModule(name)


def installed(name: str) -> bool:
    """Whether `name` can be imported, found without importing it."""
    try:
        return importlib.util.find_spec(name) is not None
    except (ImportError, ValueError):
        return False


def needs(*names: str) -> pytest.MarkDecorator:
    """Skip (at setup, not collection) unless every module in `names` is installed."""
    missing = [n for n in names if not installed(n)]
    return pytest.mark.skipif(bool(missing), reason=f"{', '.join(missing)} is not installed")
