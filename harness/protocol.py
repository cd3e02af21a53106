"""The backend plugin protocol (README.md, "Writing a backend plugin").

A backend is a thin translation layer: numpy arrays in, the framework's own call,
numpy arrays out. Everything a backend needs to know arrives in one frozen
`Call`; everything it reports leaves in one `Result`. Keeping this surface tiny is
what lets a third party add a backend in one file without reading the harness.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol, runtime_checkable

import numpy as np

DTYPES: tuple[str, ...] = ("float16", "bfloat16", "float32", "float64")
REDUCTIONS: tuple[str, ...] = ("none", "mean", "sum")
GRAD_NAMES: tuple[str, ...] = ("input", "target", "weight", "pos_weight")

#: Optional backend hooks returning the implementations that have a feature:
#: `label_smoothing` (they apply `Call.label_smoothing`), `forward_mode` (they fill
#: `Result.forward`), `last_axis_mean` (their "none" is the mean over the last axis,
#: as Keras's is; the reference's matching quantity is the row means).
OPTIONAL_LISTS: tuple[str, ...] = ("label_smoothing", "forward_mode", "last_axis_mean")


class Unsupported(Exception):
    """Raised by a backend for what its framework cannot do.

    The harness records it as `unsupported` with `reason`, never as a failure:
    a framework that has no float16 kernel, or cannot differentiate `pos_weight`,
    is telling the truth, and emulating the feature would hide that.
    """

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclass(frozen=True)
class Call:
    """One invocation of a backend's loss, fully described.

    Arrays are float64 holding values exactly representable in `dtype`, so the
    backend's cast to `dtype` is exact and every backend sees the same numbers.
    `grads` names the gradients wanted (of the reduced loss; for `"none"`, of
    the sum of the elementwise losses).

    `arg_dtypes` (an extension of the contract) overrides the dtype of single
    arguments, e.g. `{"target": "int64"}`: error-behaviour cases use it to ask
    what a framework does with integer targets or mixed dtypes. A backend casts
    each argument to `call.dtype_of(name)`.

    Two more extensions, sent only to implementations a backend lists in the
    optional hooks of the same names (so a backend that never heard of them never
    sees them):

    - `label_smoothing` (a number representable in `dtype`, 0 for none): train on
      the smoothed target `target * (1 - a) + a / 2`, as Keras's
      `BinaryCrossentropy(label_smoothing=a)` does; `grads["target"]` is still with
      respect to `target`. Hook: `label_smoothing() -> list[str]`.
    - `forward`: argument names whose forward-mode derivative (a Jacobian-vector
      product, tangent of ones on that argument and zeros on the others) is wanted
      in `Result.forward`, computed with the framework's forward mode
      (`torch.func.jvp`, `jax.jvp`, `tf.autodiff.ForwardAccumulator`), never by
      reverse mode. Hook: `forward_mode() -> list[str]`.
    """

    implementation: str
    device: str
    dtype: str
    input: np.ndarray
    target: np.ndarray
    weight: np.ndarray | None = None
    pos_weight: np.ndarray | None = None
    reduction: str = "mean"
    grads: tuple[str, ...] = ()
    arg_dtypes: dict[str, str] = field(default_factory=dict)
    label_smoothing: float = 0.0
    forward: tuple[str, ...] = ()

    def dtype_of(self, name: str) -> str:
        """The dtype argument `name` is to be cast to before the framework sees it."""
        return self.arg_dtypes.get(name, self.dtype)


@dataclass
class Result:
    """What the framework produced, unconverted.

    `value` keeps the framework's dtype (bfloat16 as `ml_dtypes.bfloat16`) so the
    harness can check the result dtype. A gradient the framework cannot compute
    is an `Unsupported` instance in `grads` instead of an array, so the value and
    the other gradients are still compared. `forward` holds the forward-mode
    derivatives `Call.forward` asked for, shaped like the value, the same way.
    """

    value: np.ndarray
    grads: dict[str, np.ndarray | Unsupported] = field(default_factory=dict)
    forward: dict[str, np.ndarray | Unsupported] = field(default_factory=dict)


@runtime_checkable
class Backend(Protocol):
    """What a backend plugin implements; see the README for a complete example."""

    name: str

    def availability(self) -> str | None:
        """None when usable, else a one-line reason (e.g. 'torch is not installed')."""
        ...

    def versions(self) -> dict[str, str]:
        """Versions of the framework and anything else that shapes the numbers."""
        ...

    def devices(self) -> list[str]:
        """Devices present on this machine, e.g. ['cpu', 'cuda:0']."""
        ...

    def dtypes(self) -> list[str]:
        """Subset of DTYPES the backend can be asked for."""
        ...

    def implementations(self) -> list[str]:
        """Names of the ways this backend computes the loss, e.g. ['functional', 'module']."""
        ...

    def run(self, call: Call) -> Result:
        """Compute the loss (and the gradients in `call.grads`) for one call."""
        ...


def describe(backend: object, implementation: str) -> str:
    """The backend's own description of one implementation, or ''.

    Optional hook: a backend may define `describe(implementation) -> str` to state
    what it adds around the framework call (a mean taken by the adapter, a weight
    multiplied in), so the report can show it.
    """
    hook = getattr(backend, "describe", None)
    if callable(hook):
        try:
            return str(hook(implementation))
        except Exception:  # a description must never break a run
            return ""
    return ""
