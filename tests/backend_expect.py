"""What the framework backend tests compare against: the reference, within a tolerance.

These tests check the adapters (shapes, dtypes, gradients present, Unsupported where
promised), not accuracy, which the conformance suite judges in ulps; hence plain
relative tolerances per dtype.
"""

from __future__ import annotations

import numpy as np

from harness import reference

RTOL = {"float16": 1e-2, "bfloat16": 4e-2, "float32": 1e-5, "float64": 1e-12}


def expected(x, y, w=None, p=None, reduction="mean"):
    """float64 loss and gradients of the reference (README.md, "The reference")."""
    return reference.loss(x, y, w, p, reduction), reference.grads(x, y, w, p, reduction)


def assert_close(actual: np.ndarray, want: np.ndarray, *dtypes: str) -> None:
    """Within the tolerance of the least precise dtype the numbers went through."""
    rtol = max(RTOL[d] for d in dtypes)
    atol = rtol * max(1.0, float(np.max(np.abs(want), initial=0.0)))
    np.testing.assert_allclose(np.asarray(actual, dtype=np.float64), want, rtol=rtol, atol=atol)
