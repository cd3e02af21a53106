"""What the torch, tensorflow and jax backends share, and nothing more.

Each adapter must hand its framework exactly the numbers in the `Call`, name
devices the same way and explain a missing framework the same way; doing those
three things in one place keeps the adapters thin and keeps them from drifting.
No framework is imported here.
"""

from __future__ import annotations

import importlib
import importlib.util

import numpy as np

from harness.dtypes import numpy_dtype
from harness.literals import python_literal
from harness.protocol import GRAD_NAMES, Call, Unsupported

ARG_NAMES: tuple[str, ...] = GRAD_NAMES  # input, target, weight, pos_weight, in call order


def arguments(call: Call) -> dict[str, np.ndarray]:
    """The call's given arguments cast to their dtypes (bfloat16 via ml_dtypes).

    The cast is exact because the harness only sends values representable in the
    dtype, so every framework starts from the same numbers. Absent arguments are
    left out, which is how each adapter knows not to pass them on.
    """
    out: dict[str, np.ndarray] = {}
    for name in ARG_NAMES:
        value = getattr(call, name)
        if value is not None:
            out[name] = np.asarray(value).astype(numpy_dtype(call.dtype_of(name)))
    return out


def check_grads(call: Call) -> None:
    """Reject a call asking for the gradient of an argument it does not give.

    That is a bug in whoever built the call, not something a framework could
    answer, so it is an error rather than `Unsupported`.
    """
    for name in call.grads:
        if name not in ARG_NAMES:
            raise ValueError(f"unknown gradient name {name!r}; expected one of {ARG_NAMES}")
        if getattr(call, name) is None:
            raise ValueError(f"call.grads asks for {name!r} but call.{name} is None")


def check_implementation(call: Call, known: tuple[str, ...], backend: str) -> None:
    """A misspelt implementation is a caller error, named with the valid choices."""
    if call.implementation not in known:
        raise ValueError(f"unknown {backend} implementation {call.implementation!r}; "
                         f"expected one of {list(known)}")


def cuda_index(device: str, present: list[str], backend: str) -> int | None:
    """None for "cpu", N for "cuda:N": the one device naming all backends share.

    A device this machine does not have is `Unsupported` (the framework cannot
    run there), so `--device cuda:0` on a CPU-only machine reads the same for
    every backend.
    """
    if device not in present:
        raise Unsupported(f"device {device!r} is not present for {backend} "
                          f"(present: {', '.join(present)})")
    if device == "cpu":
        return None
    return int(device.split(":", 1)[1])


def prepare(call: Call, known: tuple[str, ...], backend: str, present: list[str]) -> int | None:
    """The checks every adapter makes before touching its framework, in one order:
    the implementation exists, the gradients asked for are of arguments given, the
    device is present. Returns the CUDA index (None for the CPU), as `cuda_index`."""
    check_implementation(call, known, backend)
    check_grads(call)
    return cuda_index(call.device, present, backend)


def import_problem(module: str, extra: str) -> str | None:
    """None when `module` imports, else the one line `availability()` reports.

    The import is attempted (not only looked up) because a framework that is
    installed but broken is as unusable as a missing one; the caller only does
    this when asked, so importing a backend module stays cheap.
    """
    try:
        if importlib.util.find_spec(module) is None:
            return f"{module} is not installed (pip install 'bce-harness[{extra}]')"
        importlib.import_module(module)
    except Exception as exc:  # availability() must never raise, whatever the install did
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
        return f"{module} is installed but failed to import: {type(exc).__name__}: {first}"
    return None


def adapter_reduction(reduction: str, function: str) -> None:
    """Guard for implementations whose framework call is elementwise.

    There the adapter takes the mean or sum itself, so an invalid reduction name
    has no framework argument to reach; saying so is truthful, while inventing
    an error message for the framework would not be.
    """
    if reduction not in ("none", "mean", "sum"):
        raise Unsupported(f"{function} is elementwise and has no reduction argument; the "
                          f"adapter reduces with none/mean/sum only, so reduction="
                          f"{reduction!r} cannot be passed to the framework")



# --- reproduction snippets (the optional `snippet(call)` hook of harness.report.snippets) ---

TOO_LARGE = ("arguments too large to inline: reproduce with "
             "python -m harness report --cases <file>")


def literals(call: Call) -> dict[str, tuple[str, str]] | None:
    """name → (source, dtype) for each given argument, or None if one cannot be inlined."""
    out: dict[str, tuple[str, str]] = {}
    for name in ARG_NAMES:
        value = getattr(call, name)
        if value is None:
            continue
        source = python_literal(value, call.dtype_of(name))
        if source is None:
            return None
        out[name] = (source, call.dtype_of(name))
    return out


def too_large() -> list[str]:
    """The lines a snippet carries instead of arguments it cannot inline."""
    return [f"# {TOO_LARGE}", f"raise SystemExit({TOO_LARGE!r})"]


def uses_numpy(sources: list[str]) -> bool:
    """Whether argument sources need `import numpy as np` (np.full / np.zeros)."""
    return any(s.startswith("np.") for s in sources)


# the variable each argument gets in a snippet
SNIPPET_NAMES: dict[str, str] = {"input": "x", "target": "y", "weight": "weight",
                                 "pos_weight": "pos_weight"}
