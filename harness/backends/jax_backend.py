"""JAX: the loss as JAX users write it, and optax's, eager and under `jax.jit`.

- `jax.nn`: JAX has no BCE-with-logits of its own, so users write
  `-(y·log_sigmoid(x)·pos_weight + (1 − y)·log_sigmoid(−x))·weight` with
  `jax.nn.log_sigmoid` (factors left out when not given) and reduce with
  `jnp.mean` / `jnp.sum`. That expression is the implementation under test.
- `optax`: `optax.sigmoid_binary_cross_entropy(logits, labels)`, elementwise; the
  adapter multiplies in weight and reduces. It has no pos_weight (checked against
  its signature at run time) and casts labels to the logits' dtype itself.

float64 needs JAX's x64 mode. It is switched per call with the `jax.enable_x64`
context manager, which is scoped to the calling thread and restored on exit, so
`jax.config.jax_enable_x64` as other code sees it never changes. x64 is on
exactly when the call involves a 64-bit dtype, and explicitly off otherwise, so
results do not depend on how the surrounding process configured JAX.

Gradients come from `jax.vjp` with respect to every argument given, seeded with
ones (the gradient of the sum for "none"); forward-mode derivatives (`Call.forward`,
eager implementations) from `jax.jvp` along a tangent of ones on one argument.
Label smoothing (`optax`, `optax+jit`) is `optax.smooth_labels` over the two classes
`(y, 1 - y)`: optax divides alpha by the last axis's length (num_categories), so a
user who passes binary labels of shape (N,) straight in smooths toward 1/N instead
of 1/2. jax is imported only when needed.

Compiled (run only with `--compiled`; `eager_twins()` pairs each with its eager one):
`jax.nn+jit` and `optax+jit` are the same functions with the value and the vjp
inside one `jax.jit` function, as a training step computes them: XLA compiles and
fuses the whole forward and backward. One jitted function per (implementation,
reduction, arguments given, gradients wanted), kept in `_JITTED`; jit itself caches
an executable per shape, dtype and x64 mode.
"""

from __future__ import annotations

import inspect
import os
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager, suppress
from importlib import metadata
from typing import Any

import numpy as np

from harness.backends._common import (
    SNIPPET_NAMES,
    adapter_reduction,
    arguments,
    import_problem,
    literals,
    prepare,
    too_large,
)
from harness.protocol import DTYPES, Call, Result, Unsupported

IMPLEMENTATIONS: tuple[str, ...] = ("jax.nn", "optax")
#: compiled implementation -> its eager twin (the `eager_twins()` hook)
COMPILED: dict[str, str] = {"jax.nn+jit": "jax.nn", "optax+jit": "optax"}
_ALL: tuple[str, ...] = IMPLEMENTATIONS + tuple(COMPILED)
#: implementations whose forward-mode derivatives are measured (the `forward_mode()` hook)
FORWARD_MODE: tuple[str, ...] = IMPLEMENTATIONS

# Distributions whose versions shape the numbers on a GPU, when installed.
_CUDA_PLUGINS = ("jax-cuda12-plugin", "jax-cuda13-plugin")

_DESCRIPTIONS = {
    "jax.nn": "The loss as users write it: -(y·jax.nn.log_sigmoid(x)·pos_weight + "
              "(1−y)·jax.nn.log_sigmoid(−x))·weight (absent factors omitted), reduced with "
              "jnp.mean / jnp.sum; run eagerly, float64 under a call-scoped jax.enable_x64.",
    "optax": "optax.sigmoid_binary_cross_entropy(logits=input, labels=target) is elementwise: "
             "the adapter multiplies by weight and reduces with jnp.mean / jnp.sum. No "
             "pos_weight (Unsupported); optax casts labels to the logits' dtype.",
    "jax.nn+jit": "The 'jax.nn' expression and its reduction with the value and jax.vjp (seeded "
                  "with ones) inside one jax.jit function: XLA compiles and fuses forward and "
                  "backward together; float64 under a call-scoped jax.enable_x64.",
    "optax+jit": "The 'optax' call (times weight, reduced) with the value and jax.vjp (seeded "
                 "with ones) inside one jax.jit function: XLA compiles and fuses forward and "
                 "backward together. No pos_weight (Unsupported).",
}


class JaxBackend:
    """jax.numpy and optax; CPU and every CUDA GPU JAX sees."""

    name = "jax"

    def availability(self) -> str | None:
        return import_problem("jax", "jax")

    def versions(self) -> dict[str, str]:
        import jax
        import jaxlib

        out = {"jax": jax.__version__, "jaxlib": jaxlib.__version__}
        for dist in ("optax", *_CUDA_PLUGINS):
            with suppress(metadata.PackageNotFoundError):
                out[dist] = metadata.version(dist)
        for device, gpu in zip(self.devices()[1:], _cuda_devices(), strict=True):
            out[device] = gpu.device_kind
        return out

    def devices(self) -> list[str]:
        return ["cpu"] + [f"cuda:{i}" for i in range(len(_cuda_devices()))]

    def dtypes(self) -> list[str]:
        return list(DTYPES)

    def implementations(self) -> list[str]:
        return list(_ALL)

    def eager_twins(self) -> dict[str, str]:
        return dict(COMPILED)

    def describe(self, implementation: str) -> str:
        return _DESCRIPTIONS.get(implementation, "")

    def run(self, call: Call) -> Result:
        import jax
        import jax.numpy as jnp

        _persistent_cache(jax)
        index = prepare(call, _ALL, self.name, self.devices())
        device = jax.devices("cpu")[0] if index is None else _cuda_devices()[index]
        elementwise = _elementwise(call)
        adapter_reduction(call.reduction, _function_name(call.implementation))
        host = arguments(call)
        names = list(host)
        x64 = any(a.dtype.itemsize == 8 for a in host.values())

        def loss(*values: Any) -> Any:
            out = elementwise(dict(zip(names, values, strict=True)))
            if call.reduction == "mean":
                return jnp.mean(out)
            if call.reduction == "sum":
                return jnp.sum(out)
            return out

        with _x64(jax, x64), _missing_kernel_is_unsupported(jax):
            values = [jax.device_put(host[n], device) for n in names]
            if call.implementation in COMPILED:
                return _run_jitted(jax, call, names, host, values, loss)
            if not call.grads:
                return Result(value=np.array(loss(*values)))
            value, grads = value_and_grads(jax, loss, call, names, values, host)
            forward = (_forward_mode(jax, call, names, values, loss)
                       if call.implementation in FORWARD_MODE else {})
        return Result(value=value, grads=grads, forward=forward)

    def forward_mode(self) -> list[str]:
        """Implementations whose forward-mode derivatives `run` computes (jax.jvp)."""
        return list(FORWARD_MODE)

    def label_smoothing(self) -> list[str]:
        """Implementations that apply `Call.label_smoothing` (optax.smooth_labels)."""
        return ["optax", "optax+jit"]

    def snippet(self, call: Call) -> str:
        """A JAX-only program making the call `run` makes, printing value and gradients."""
        import jax

        index = prepare(call, _ALL, self.name, self.devices())
        _elementwise(call)  # raises the same Unsupported as `run`, before anything is written
        adapter_reduction(call.reduction, _function_name(call.implementation))
        device = "jax.devices('cpu')[0]" if index is None else f"jax.devices('cuda')[{index}]"
        return _snippet(call, device, hasattr(jax, "enable_x64"))


def _snippet(call: Call, device: str, scoped_x64: bool) -> str:
    optax = COMPILED.get(call.implementation, call.implementation) == "optax"
    jit = call.implementation in COMPILED
    lines = ["import jax", "import jax.numpy as jnp", "import numpy as np"]
    if optax:
        lines.append("import optax")
    values = literals(call)
    if values is None:
        return "\n".join([*lines, "", *too_large()])
    host = arguments(call)
    x64 = any(a.dtype.itemsize == 8 for a in host.values())
    if not scoped_x64:  # JAX before jax.enable_x64, as `_x64` does
        lines.append(f"from jax.experimental import {'enable_x64' if x64 else 'disable_x64'}")
    variables = [SNIPPET_NAMES[n] for n in values]
    lines += ["", "", f"def loss({', '.join(variables)}):"]
    if optax:
        lines.append("    out = optax.sigmoid_binary_cross_entropy(x, y)")
    else:
        lines.append("    positive = y * jax.nn.log_sigmoid(x)")
        if "pos_weight" in values:
            lines.append("    positive = positive * pos_weight")
        lines.append("    out = -(positive + (1 - y) * jax.nn.log_sigmoid(-x))")
    if "weight" in values:
        lines.append("    out = out * weight")
    lines.append("    return jnp.mean(out)" if call.reduction == "mean" else
                 "    return jnp.sum(out)" if call.reduction == "sum" else "    return out")
    lines += ["", ""]
    args = ", ".join(variables)
    if jit:  # the value and the vjp in one compiled function, as a training step has them
        lines += ["@jax.jit", f"def step({args}):"]
        lines += ([f"    out, vjp = jax.vjp(loss, {args})",
                   "    return out, vjp(jnp.ones_like(out))"] if call.grads else
                  [f"    return loss({args})"])
        lines += ["", ""]
    if scoped_x64:
        lines.append(f"with jax.enable_x64({x64}):")
    else:
        lines.append(f"with {'enable_x64' if x64 else 'disable_x64'}():")
    body = [f"device = {device}"]
    for name, (source, dtype) in values.items():
        np_dtype = "jnp.bfloat16" if dtype == "bfloat16" else f"np.{dtype}"
        body.append(f"{SNIPPET_NAMES[name]} = jax.device_put(np.array({source}, "
                    f"dtype={np_dtype}), device)")
    if not call.grads:
        body += [f"out = {'step' if jit else 'loss'}({args})",
                 "print('value', np.array(out).astype('float64').tolist())",
                 "print('dtype', out.dtype.name)"]
    else:
        body += ([f"out, cotangents = step({args})"] if jit else
                 [f"out, vjp = jax.vjp(loss, {args})", "cotangents = vjp(jnp.ones_like(out))"])
        body += ["print('value', np.array(out).astype('float64').tolist())",
                 "print('dtype', out.dtype.name)",
                 f"{', '.join('g_' + v for v in variables)}{',' * (len(variables) == 1)} = "
                 "cotangents"]
        body += grad_prints(call)
    lines += ["    " + line for line in body]
    return "\n".join(lines) + "\n"


def grad_prints(call: Call) -> list[str]:
    """A snippet's lines printing each cotangent `g_<variable>` (the JAX and Keras-on-JAX
    snippets share them); an integer argument's float0 cotangent is said, not printed."""
    out = []
    for name in call.grads:
        var = SNIPPET_NAMES[name]
        if call.dtype_of(name) in DTYPES:
            out.append(f"print('grad {name}', np.array(g_{var}).astype('float64').tolist())")
        else:
            out.append(f"# g_{var} is a float0 (symbolic zero) cotangent: JAX does not "
                       f"differentiate with respect to {call.dtype_of(name)} inputs")
    return out


def _elementwise(call: Call) -> Callable[[dict[str, Any]], Any]:
    """The elementwise loss of `call.implementation`; raises Unsupported before any work."""
    import jax

    if COMPILED.get(call.implementation, call.implementation) == "jax.nn":

        def written_by_hand(t: dict[str, Any]) -> Any:
            x, y = t["input"], t["target"]
            positive = y * jax.nn.log_sigmoid(x)
            if "pos_weight" in t:
                positive = positive * t["pos_weight"]
            out = -(positive + (1 - y) * jax.nn.log_sigmoid(-x))
            return out * t["weight"] if "weight" in t else out

        return written_by_hand

    problem = import_problem("optax", "jax")
    if problem is not None:
        raise Unsupported(problem)
    import optax

    if call.pos_weight is not None:
        signature = inspect.signature(optax.sigmoid_binary_cross_entropy)
        raise Unsupported(f"optax.sigmoid_binary_cross_entropy{signature} has no pos_weight "
                          f"argument (optax {optax.__version__})")

    alpha = call.label_smoothing

    def from_optax(t: dict[str, Any]) -> Any:
        y = t["target"]
        if alpha:  # two classes (y, 1 - y): smooth_labels' alpha / num_categories is alpha / 2
            y = optax.smooth_labels(jax.numpy.stack([y, 1 - y], -1), alpha)[..., 0]
        out = optax.sigmoid_binary_cross_entropy(t["input"], y)
        return out * t["weight"] if "weight" in t else out

    return from_optax


def value_and_grads(jax: Any, loss: Callable[..., Any], call: Call, names: list[str],
                    values: list[Any], host: dict[str, np.ndarray]) -> tuple[np.ndarray, dict]:
    """The loss and, by jax.vjp seeded with ones, the gradients `call.grads` names (the
    JAX and Keras-on-JAX adapters share it); a missing backward kernel leaves the value
    standing and makes each gradient `Unsupported`."""
    import jax.numpy as jnp

    out, vjp = jax.vjp(loss, *values)
    value = np.array(out)
    try:
        with _missing_kernel_is_unsupported(jax):
            cotangents = vjp(jnp.ones_like(out))
    except Unsupported as exc:
        cotangents = (exc,) * len(names)
    by_name = dict(zip(names, cotangents, strict=True))
    return value, {name: _gradient(jax, name, by_name[name], host[name]) for name in call.grads}


def _forward_mode(jax: Any, call: Call, names: list[str], values: list[Any],
                  loss: Callable[..., Any]) -> dict[str, Any]:
    """jax.jvp of the loss along a tangent of ones on each argument in turn (the
    others held fixed): JAX's forward-mode rules (each primitive's JVP), which reverse
    mode transposes, evaluated as such."""
    import jax.numpy as jnp

    out: dict[str, Any] = {}
    for name in call.forward:
        i = names.index(name)
        if not jnp.issubdtype(values[i].dtype, jnp.floating):
            out[name] = Unsupported(f"{name} is {values[i].dtype}: JAX's forward mode takes "
                                    "float0 tangents for integer inputs (no derivative)")
            continue

        def along(a: Any, i: int = i) -> Any:
            return loss(*values[:i], a, *values[i + 1:])

        try:
            with _missing_kernel_is_unsupported(jax):
                _, tangent = jax.jvp(along, (values[i],), (jnp.ones_like(values[i]),))
            out[name] = np.array(tangent)
        except Unsupported as exc:
            out[name] = exc
    return out


def _function_name(implementation: str) -> str:
    if COMPILED.get(implementation, implementation) == "optax":
        return "optax.sigmoid_binary_cross_entropy"
    return "the jax.nn.log_sigmoid expression"


#: (implementation, reduction, arguments given, gradients wanted?) -> jitted function
_JITTED: dict[tuple[Any, ...], Callable[..., Any]] = {}


def _run_jitted(jax: Any, call: Call, names: list[str], host: dict[str, np.ndarray],
                values: list[Any], loss: Callable[..., Any]) -> Result:
    """Value and vjp in one jax.jit function (jit caches an executable per shape)."""
    import jax.numpy as jnp

    key = (call.implementation, call.reduction, tuple(names), bool(call.grads),
           call.label_smoothing)  # the loss closes over the smoothing
    step = _JITTED.get(key)
    if step is None:
        if call.grads:
            def value_and_cotangents(*args: Any) -> Any:
                out, vjp = jax.vjp(loss, *args)
                return out, vjp(jnp.ones_like(out))

            step = jax.jit(value_and_cotangents)
        else:
            step = jax.jit(loss)
        _JITTED[key] = step
    if not call.grads:
        return Result(value=np.array(step(*values)))
    out, cotangents = step(*values)
    by_name = dict(zip(names, cotangents, strict=True))
    return Result(value=np.array(out),
                  grads={name: _gradient(jax, name, by_name[name], host[name])
                         for name in call.grads})


def _gradient(jax: Any, name: str, cotangent: Any, primal: np.ndarray) -> Any:
    """A cotangent as numpy, or Unsupported where JAX has no gradient to give."""
    if isinstance(cotangent, Unsupported):
        return cotangent
    if cotangent.dtype == jax.dtypes.float0:
        return Unsupported(f"jax.vjp gives a float0 (symbolic zero) cotangent for {name} of "
                           f"dtype {primal.dtype}: JAX does not differentiate with respect to "
                           "integer or boolean inputs")
    return np.array(cotangent)


def _x64(jax: Any, enabled: bool) -> AbstractContextManager[Any]:
    """x64 on or off for the duration of one call, without touching global config."""
    scope = getattr(jax, "enable_x64", None)
    if scope is not None:
        return scope(enabled)
    from jax.experimental import disable_x64, enable_x64  # JAX before jax.enable_x64

    return enable_x64() if enabled else disable_x64()


#: Where compiled XLA executables are kept between runs (JAX's persistent compilation
#: cache); $BCE_HARNESS_JAX_CACHE overrides it, and an empty value turns it off.
CACHE_ENV = "BCE_HARNESS_JAX_CACHE"
_CACHE_SET: list[str] = []


def _persistent_cache(jax: Any) -> None:
    """Keep what eager JAX compiles (every primitive per shape and dtype) between runs.

    Eager JAX compiles each operation for each new shape and dtype, which is most of
    the JAX backend's time in a report: measured on the seeds and shapes cases in
    float32 (308 calls, one core), 16.8 s without the cache, 6.7 s with a warm one
    (16.1 s the run that fills it). The executables are the ones JAX would compile
    anyway, so the numbers are the same. A cache the user configured (JAX_COMPILATION_CACHE_DIR or
    jax.config) is left as it is.
    """
    if _CACHE_SET:
        return
    _CACHE_SET.append("done")
    if os.environ.get("JAX_COMPILATION_CACHE_DIR") or jax.config.jax_compilation_cache_dir:
        return
    folder = os.environ.get(CACHE_ENV)
    if folder is None:
        base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"),
                                                                 ".cache")
        folder = os.path.join(base, "bce-harness", "jax")
    if not folder:
        return
    with suppress(Exception):  # an unwritable cache must never fail a call
        jax.config.update("jax_compilation_cache_dir", folder)
        jax.config.update("jax_persistent_cache_min_compile_time_secs", 0)
        jax.config.update("jax_persistent_cache_min_entry_size_bytes", -1)


def _cuda_devices() -> list[Any]:
    """JAX's CUDA devices in order ([] without a CUDA plugin or with JAX_PLATFORMS=cpu)."""
    import jax

    try:
        return list(jax.devices("cuda"))
    except RuntimeError:  # "Unknown backend cuda. Available backends are ['cpu']"
        return []


@contextmanager
def _missing_kernel_is_unsupported(jax: Any) -> Iterator[None]:
    """XLA's UNIMPLEMENTED (no kernel for a dtype on a platform) is Unsupported, in its words."""
    try:
        yield
    except jax.errors.JaxRuntimeError as exc:
        message = str(exc).strip()
        if message.startswith("UNIMPLEMENTED"):
            raise Unsupported(message.splitlines()[0]) from exc
        raise

