"""Keras 3 on its JAX and PyTorch engines: `keras-jax` and `keras-torch`.

The same two implementations as the TensorFlow backend's, called the same way
(harness/backends/tensorflow_backend.py), so the three engines can be compared on
one case:

- `keras`: `keras.losses.BinaryCrossentropy(from_logits=True)`; weight is Keras's
  `sample_weight`, and pos_weight is `Unsupported` (Keras has none). Keras averages
  over the last axis before reducing, so the adapter appends an axis of length 1
  to input and target, which makes that mean exact and keeps `"none"` elementwise;
  `"mean"` is Keras's default `"sum_over_batch_size"`. Keras 3 computes in
  `keras.config.floatx()` (float32 by default) whatever the input dtype.
- `keras-probs`: the engine's own sigmoid (`jax.nn.sigmoid`, `torch.sigmoid`), then
  `BinaryCrossentropy(from_logits=False)`, which clips probabilities to
  [epsilon, 1 − epsilon]. Not `keras.ops.sigmoid` / `keras.activations.sigmoid`:
  those tag their output with `_keras_logits` where the tensor type allows it, and
  Keras may then use the logits instead.
- `keras-last-axis`: `BinaryCrossentropy(from_logits=True)` called without the
  extra axis, as users call it: `"none"` is the mean over the last axis (the
  reference's row means, hook `last_axis_mean()`), `"sum"` the sum of the row means.

Every implementation applies a case's label smoothing with Keras's own
`label_smoothing=` (hook `label_smoothing()`).

What differs between engines is `keras.ops.binary_crossentropy`: Keras forwards it
to each engine's own formula (keras/src/backend/{jax,torch}/nn.py), and that is
what this backend measures.

The engine is chosen by `KERAS_BACKEND`, which Keras reads once, when it is first
imported; a process holds one Keras engine. So keras is imported only by `run`,
with `KERAS_BACKEND` set for the import and restored after it (a framework
imported later, or a worker started later, is not switched), and never by
`availability`, `versions` or `devices`: `python -m harness backends` lists every
backend in one process, and importing keras there for `keras-jax` would take
Keras away from `keras-torch` and from TensorFlow's Keras. Where keras is already
loaded with another engine (`import tensorflow` loads it with the TensorFlow
engine), `availability()` says so and `run` raises `Unsupported`; `python -m
harness report` runs each backend in a worker process of its own, where this never
happens. The class attribute `isolated = True` asks in-process runners (the
pytest conformance suite) to do the same.

Gradients come from the engine's autodiff through the Keras call: `jax.vjp` with
respect to every argument given, seeded with ones, on the JAX engine (float64
under a call-scoped `jax.enable_x64`, as the jax backend does); `torch.autograd.grad`
on leaf tensors, seeded with ones, on the PyTorch engine.
"""

from __future__ import annotations

import importlib.util
import os
import sys
from collections.abc import Callable
from contextlib import suppress
from importlib import metadata
from typing import Any

import numpy as np

from harness.backends._common import (
    SNIPPET_NAMES,
    arguments,
    import_problem,
    literals,
    prepare,
    too_large,
    uses_numpy,
)
from harness.protocol import DTYPES, Call, Result, Unsupported

IMPLEMENTATIONS: tuple[str, ...] = ("keras", "keras-probs", "keras-last-axis")
#: the implementation whose "none" is Keras's own mean over the last axis (hook
#: `last_axis_mean()`): the reference's matching quantity is the row means
LAST_AXIS: tuple[str, ...] = ("keras-last-axis",)
NO_ROW_WEIGHT = ("Keras applies sample_weight to the row means (the loss without its last "
                 "axis), so a weight that varies along the last axis has no Keras counterpart")

# Keras's default reduction divides the sum by the number of loss elements, which
# after the adapter's trailing axis is the input's element count: torch's mean.
KERAS_REDUCTION = {"mean": "sum_over_batch_size"}

NO_POS_WEIGHT = "keras.losses.BinaryCrossentropy has no pos_weight argument"

# The engine's own sigmoid for keras-probs, as source (for descriptions and snippets).
_SIGMOID = {"jax": "jax.nn.sigmoid", "torch": "torch.sigmoid", "tensorflow": "tf.math.sigmoid"}
_EXPAND = {"jax": "jnp.expand_dims({}, -1)", "torch": "torch.unsqueeze({}, -1)",
           "tensorflow": "tf.expand_dims({}, -1)"}


def keras_loss(keras: Any, impl: str, call: Call, expand_dims: Callable[[Any], Any],
               sigmoid: Callable[[Any], Any]) -> Callable[[dict[str, Any]], Any]:
    """The Keras user's call for `impl` (keras, keras-probs, keras-last-axis), over a
    dict of engine tensors; every engine's adapter, TensorFlow's included, uses it.

    `expand_dims(t)` appends the length-1 axis and `sigmoid` is the engine's own
    (see the module docstring); keras-probs applies it after the expansion, so the
    Sigmoid op is the last before the loss, as a model's output layer is (what Keras
    inspects in a TensorFlow graph). keras-last-axis calls Keras without the extra
    axis, as users do: its "none" is the mean over the last axis, and the weight,
    which must be constant along that axis, becomes the rows' sample_weight. The
    smoothing is Keras's own `label_smoothing`. The loss object is built here, before
    any tensor exists, so an invalid reduction name is Keras's to reject;
    pos_weight is `Unsupported` before any work.
    """
    if call.pos_weight is not None:
        raise Unsupported(NO_POS_WEIGHT)
    rows = impl in LAST_AXIS
    if rows and call.weight is not None and _varies_along_last_axis(call):
        raise Unsupported(NO_ROW_WEIGHT)
    loss_obj = keras.losses.BinaryCrossentropy(
        from_logits=impl != "keras-probs", label_smoothing=call.label_smoothing,
        reduction=KERAS_REDUCTION.get(call.reduction, call.reduction))

    def loss(t: dict[str, Any]) -> Any:
        if rows:
            return loss_obj(t["target"], t["input"], sample_weight=_row_weight(keras, t))
        x = expand_dims(t["input"])
        if impl == "keras-probs":
            x = sigmoid(x)
        return loss_obj(expand_dims(t["target"]), x, sample_weight=t.get("weight"))

    return loss


def _varies_along_last_axis(call: Call) -> bool:
    """Whether the weight, aligned with the input as broadcasting aligns it, has a last
    axis longer than 1 (so it is not one weight per row)."""
    shape, wshape = np.shape(call.input), np.shape(call.weight)
    if not shape:
        return False
    padded = (1,) * (len(shape) - len(wshape)) + tuple(wshape)
    return padded[-1] != 1


def _row_weight(keras: Any, t: dict[str, Any]) -> Any:
    """The weight as one sample_weight per row: broadcast against ones of shape (..., 1)
    (made from the tensors, so a traced graph serves every size, rows of length 0
    included), then the last axis dropped by a sum over it (one term)."""
    if "weight" not in t:
        return None
    ops = keras.ops
    x = t["input"]
    if len(x.shape) == 0:
        return t["weight"]
    rows = ops.zeros_like(ops.sum(x, axis=-1, keepdims=True)) + 1
    # a sum over the last axis (of length 1) drops it where squeeze would need it known
    return ops.sum(t["weight"] * rows, axis=-1)


def describe_keras(implementation: str, engine: str, autodiff: str) -> str:
    """What the adapter does around Keras, for one engine (the report shows it)."""
    smoothing = (" Label smoothing (a case's label_smoothing) is Keras's own "
                 "BinaryCrossentropy(label_smoothing=).")
    if implementation == "keras-last-axis":
        return ("keras.losses.BinaryCrossentropy(from_logits=True, reduction=) called on input "
                f"and target as they are, as users call it, on Keras's {engine} engine: Keras "
                "averages over the last axis, so 'none' gives the row means (the reference's "
                "matching quantity), 'sum' their sum and 'mean' the mean. A weight constant "
                "along the last axis becomes the rows' sample_weight; one that varies along it "
                f"is Unsupported, as is pos_weight. Gradients: {autodiff}.{smoothing}")
    return _describe_keras(implementation, engine, autodiff) + smoothing


def _describe_keras(implementation: str, engine: str, autodiff: str) -> str:
    common = ("the adapter appends a length-1 axis to input and target so Keras's mean over "
              "the last axis is exact and 'none' stays elementwise, and maps 'mean' to Keras's "
              "default 'sum_over_batch_size' (sum / element count). Keras computes in "
              f"keras.config.floatx() (float32), whatever the input dtype. Gradients: {autodiff}.")
    if implementation == "keras":
        return (f"keras.losses.BinaryCrossentropy(from_logits=True, reduction=) on Keras's "
                f"{engine} engine (KERAS_BACKEND={engine}), weight as sample_weight, no "
                f"pos_weight (Unsupported); {common}")
    if implementation == "keras-probs":
        return (f"{_SIGMOID[engine]}(input), then keras.losses.BinaryCrossentropy("
                f"from_logits=False) on Keras's {engine} engine, which clips probabilities to "
                "[1e-7, 1 - 1e-7]; the same reshape, reduction mapping, float32 computation "
                "and gradients as 'keras'.")
    return ""


# --- which Keras engine this process holds ---

def loaded_engine() -> str | None:
    """The engine of the keras already imported in this process; None if none is.

    Read from sys.modules, so asking never imports keras (which would fix the engine).
    """
    config = sys.modules.get("keras.src.backend.config")
    if config is not None:
        with suppress(Exception):
            return str(config.backend())
    if "keras" in sys.modules:  # imported, but not Keras 3's layout (or still importing)
        return "unknown"
    return None


def already_loaded(current: str) -> str:
    """The one line `availability()` and `run` give when another engine holds Keras."""
    return (f"keras is already loaded with the {current} engine in this process; "
            "python -m harness report runs each backend in its own worker")


def keras_problem() -> str | None:
    """None when Keras 3 is installed, else why not, without importing keras."""
    if importlib.util.find_spec("keras") is None:
        return "keras is not installed (pip install keras)"
    try:
        version = metadata.version("keras")
    except metadata.PackageNotFoundError:
        return None  # a source checkout: let the import decide
    if int(version.split(".")[0]) < 3:
        return (f"keras {version} is Keras 2, which runs only on TensorFlow; the JAX and "
                "PyTorch engines need Keras 3 (pip install 'keras>=3')")
    return None


def import_keras(engine: str) -> Any:
    """keras on `engine`, imported now if no keras is loaded; Unsupported if another is.

    KERAS_BACKEND is set for the import only and restored after it: Keras has read
    it by then, and a later `import tensorflow` (which imports keras) or a worker
    process started later must not inherit this engine.
    """
    current = loaded_engine()
    if current is not None and current != engine:
        raise Unsupported(already_loaded(current))
    if current is None:
        previous = os.environ.get("KERAS_BACKEND")
        os.environ["KERAS_BACKEND"] = engine
        try:
            import keras
        finally:
            if previous is None:
                os.environ.pop("KERAS_BACKEND", None)
            else:
                os.environ["KERAS_BACKEND"] = previous
    import keras

    if keras.config.backend() != engine:  # a Keras that did not read KERAS_BACKEND
        raise Unsupported(f"keras was imported with KERAS_BACKEND={engine} but runs on its "
                          f"{keras.config.backend()} engine")
    return keras


def keras_versions(engine: str) -> dict[str, str]:
    """keras's version and engine, and floatx/epsilon once keras runs on this engine here."""
    out = {"keras": metadata.version("keras"), "keras_backend": engine}
    if loaded_engine() == engine:
        import keras

        out.update({"keras_floatx": keras.config.floatx(),
                    "keras_epsilon": repr(keras.config.epsilon())})
    return out


class _KerasEngineBackend:
    """What both engines share: the checks that must not import keras."""

    name = ""
    engine = ""
    isolated = True  # in-process runners: run me in a worker (keras holds one engine)

    def availability(self) -> str | None:
        current = loaded_engine()
        if current is not None and current != self.engine:
            return already_loaded(current)
        return keras_problem() or import_problem(self.engine, self.engine)

    def dtypes(self) -> list[str]:
        return list(DTYPES)

    def implementations(self) -> list[str]:
        return list(IMPLEMENTATIONS)

    def label_smoothing(self) -> list[str]:
        return list(IMPLEMENTATIONS)

    def last_axis_mean(self) -> list[str]:
        return list(LAST_AXIS)


class KerasJaxBackend(_KerasEngineBackend):
    """Keras 3's BinaryCrossentropy on its JAX engine; CPU and every CUDA GPU JAX sees."""

    name = "keras-jax"
    engine = "jax"
    # Eager Keras on JAX loads about 25 small XLA programs per shape: about 0.2 s a call,
    # 275 s for one pair of dtypes of the default run here (keras-torch: 20 s). So it runs
    # when named (`--backend keras-jax`), not in every default report.
    run_by_default = False

    def versions(self) -> dict[str, str]:
        from harness.backends.jax_backend import JaxBackend

        engine = {k: v for k, v in JaxBackend().versions().items() if k != "optax"}
        return {**keras_versions(self.engine), **engine}

    def devices(self) -> list[str]:
        from harness.backends.jax_backend import _cuda_devices

        return ["cpu"] + [f"cuda:{i}" for i in range(len(_cuda_devices()))]

    def describe(self, implementation: str) -> str:
        return describe_keras(implementation, "jax",
                              "jax.vjp through the Keras call, seeded with ones; float64 under "
                              "a call-scoped jax.enable_x64")

    def run(self, call: Call) -> Result:
        import jax
        import jax.numpy as jnp

        from harness.backends.jax_backend import (
            _cuda_devices,
            _missing_kernel_is_unsupported,
            _persistent_cache,
            _x64,
            value_and_grads,
        )

        index = prepare(call, IMPLEMENTATIONS, self.name, self.devices())
        keras = import_keras(self.engine)
        loss = keras_loss(keras, call.implementation, call,
                          lambda t: jnp.expand_dims(t, -1), jax.nn.sigmoid)
        _persistent_cache(jax)
        device = jax.devices("cpu")[0] if index is None else _cuda_devices()[index]
        host = arguments(call)
        names = list(host)
        x64 = any(a.dtype.itemsize == 8 for a in host.values())

        def f(*values: Any) -> Any:
            return loss(dict(zip(names, values, strict=True)))

        with _x64(jax, x64), _missing_kernel_is_unsupported(jax), keras.device(device):
            values = [jax.device_put(host[n], device) for n in names]
            if not call.grads:
                return Result(value=np.array(f(*values)))
            value, grads = value_and_grads(jax, f, call, names, values, host)
        return Result(value=value, grads=grads)

    def snippet(self, call: Call) -> str:
        """A program making the call `run` makes on Keras's JAX engine, printing the results."""
        import jax

        index = prepare(call, IMPLEMENTATIONS, self.name, self.devices())
        if call.pos_weight is not None:
            raise Unsupported(NO_POS_WEIGHT)
        device = "jax.devices('cpu')[0]" if index is None else f"jax.devices('cuda')[{index}]"
        return _jax_snippet(call, device, hasattr(jax, "enable_x64"))


class KerasTorchBackend(_KerasEngineBackend):
    """Keras 3's BinaryCrossentropy on its PyTorch engine; CPU and every CUDA GPU."""

    name = "keras-torch"
    engine = "torch"

    def versions(self) -> dict[str, str]:
        from harness.backends.torch_backend import TorchBackend

        return {**keras_versions(self.engine), **TorchBackend().versions()}

    def devices(self) -> list[str]:
        from harness.backends.torch_backend import TorchBackend

        return TorchBackend().devices()

    def describe(self, implementation: str) -> str:
        return describe_keras(implementation, "torch",
                              "torch.autograd.grad through the Keras call, seeded with ones")

    def run(self, call: Call) -> Result:
        import torch

        from harness.backends.torch_backend import (
            _missing_kernel_is_unsupported,
            _to_numpy,
            _to_tensor,
        )

        index = prepare(call, IMPLEMENTATIONS, self.name, self.devices())
        keras = import_keras(self.engine)
        loss_fn = keras_loss(keras, call.implementation, call,
                             lambda t: torch.unsqueeze(t, -1), torch.sigmoid)
        device = torch.device("cpu" if index is None else f"cuda:{index}")
        tensors = {n: _to_tensor(a, device) for n, a in arguments(call).items()}
        grads: dict[str, np.ndarray | Unsupported] = {}
        for name in call.grads:
            try:
                tensors[name].requires_grad_(True)
            except RuntimeError as exc:  # integer/bool tensors cannot require gradients
                grads[name] = Unsupported(str(exc))
        # Keras's torch engine moves every tensor to its own device (CUDA when present)
        # unless a keras.device scope names one.
        with _missing_kernel_is_unsupported(), keras.device(str(device)):
            loss = loss_fn(tensors)
        if loss.device != device:
            raise RuntimeError(f"Keras computed on {loss.device} instead of {device}")
        value = _to_numpy(loss)
        wanted = [n for n in call.grads if n not in grads]
        if wanted:
            try:
                with _missing_kernel_is_unsupported():
                    computed = torch.autograd.grad(loss, [tensors[n] for n in wanted],
                                                   grad_outputs=torch.ones_like(loss),
                                                   allow_unused=True)
            except Unsupported as exc:  # no backward kernel: the value still stands
                computed = [exc] * len(wanted)
            for name, g in zip(wanted, computed, strict=True):
                if g is None:
                    g = Unsupported(f"torch.autograd.grad returned None for {name}: the loss "
                                    "does not depend on it differentiably")
                grads[name] = g if isinstance(g, Unsupported) else _to_numpy(g)
        return Result(value=value, grads={name: grads[name] for name in call.grads})

    def snippet(self, call: Call) -> str:
        """A program making the call `run` makes on Keras's PyTorch engine, printing the results."""
        index = prepare(call, IMPLEMENTATIONS, self.name, self.devices())
        if call.pos_weight is not None:
            raise Unsupported(NO_POS_WEIGHT)
        return _torch_snippet(call, "cpu" if index is None else f"cuda:{index}")


# --- reproduction snippets ---

def _header(call: Call, engine: str, imports: list[str]) -> tuple[list[str], dict | None]:
    values = literals(call)
    lines = ["import os", "",
             f"os.environ['KERAS_BACKEND'] = {engine!r}  # read once, when keras is imported",
             *imports, "import keras"]
    if values is not None and uses_numpy([s for s, _ in values.values()]) \
            and "import numpy as np" not in lines:
        lines.append("import numpy as np")
    if values is None:
        return [*lines, "", *too_large()], None
    lines += ["", keras_constructor(call.implementation, call)]
    return lines, values


def keras_constructor(impl: str, call: Call) -> str:
    """The snippet's `loss_fn = keras.losses.BinaryCrossentropy(...)` line for `impl`."""
    smoothing = (f"label_smoothing={call.label_smoothing!r}, " if call.label_smoothing
                 else "")
    return (f"loss_fn = keras.losses.BinaryCrossentropy(from_logits={impl != 'keras-probs'}, "
            f"{smoothing}reduction={KERAS_REDUCTION.get(call.reduction, call.reduction)!r})")


def keras_line(impl: str, call: Call, engine: str, values: dict) -> str:
    """The snippet's Keras call for `impl`, as `keras_loss` makes it on `engine`."""
    if impl in LAST_AXIS:  # as users call it: Keras averages the last axis
        rows = "keras.ops.zeros_like(keras.ops.sum(x, axis=-1, keepdims=True)) + 1"
        sample = (f", sample_weight=keras.ops.sum(weight * ({rows}), axis=-1)"
                  if "weight" in values and np.ndim(call.input) else
                  ", sample_weight=weight" if "weight" in values else "")
        return f"loss_fn(y, x{sample})"
    expand = _EXPAND[engine]
    x = expand.format("x")
    if impl == "keras-probs":
        x = f"{_SIGMOID[engine]}({x})"
    sample = ", sample_weight=weight" if "weight" in values else ""
    return f"loss_fn({expand.format('y')}, {x}{sample})"


def axis_comment(impl: str) -> str:
    if impl in LAST_AXIS:
        return "# no extra axis: Keras averages over the last axis, as users get it"
    return "# a trailing axis of length 1: Keras's mean over the last axis is exact"


def _jax_snippet(call: Call, device: str, scoped_x64: bool) -> str:
    from harness.backends.jax_backend import grad_prints

    x64 = any(a.dtype.itemsize == 8 for a in arguments(call).values())
    imports = ["import jax", "import jax.numpy as jnp", "import numpy as np"]
    if not scoped_x64:  # JAX before jax.enable_x64, as jax_backend._x64 does
        imports.append(f"from jax.experimental import {'enable_x64' if x64 else 'disable_x64'}")
    lines, values = _header(call, "jax", imports)
    if values is None:
        return "\n".join(lines)
    variables = [SNIPPET_NAMES[n] for n in values]
    lines += ["", "", f"def loss({', '.join(variables)}):",
              f"    {axis_comment(call.implementation)}",
              f"    return {keras_line(call.implementation, call, 'jax', values)}", "", ""]
    lines.append(f"with jax.enable_x64({x64}):" if scoped_x64 else
                 f"with {'enable_x64' if x64 else 'disable_x64'}():")
    body = [f"device = {device}"]
    for name, (source, dtype) in values.items():
        np_dtype = "jnp.bfloat16" if dtype == "bfloat16" else f"np.{dtype}"
        body.append(f"{SNIPPET_NAMES[name]} = jax.device_put(np.array({source}, "
                    f"dtype={np_dtype}), device)")
    args = ", ".join(variables)
    body.append("with keras.device(device):")
    inner = []
    if not call.grads:
        inner += [f"out = loss({args})"]
    else:
        inner += [f"out, vjp = jax.vjp(loss, {args})",
                  f"{', '.join('g_' + v for v in variables)}{',' * (len(variables) == 1)} = "
                  "vjp(jnp.ones_like(out))"]
    inner += ["print('value', np.array(out).astype('float64').tolist())",
              "print('dtype', out.dtype.name)"]
    inner += grad_prints(call)
    body += ["    " + line for line in inner]
    lines += ["    " + line for line in body]
    return "\n".join(lines) + "\n"


def _torch_snippet(call: Call, device: str) -> str:
    lines, values = _header(call, "torch", ["import torch"])
    if values is None:
        return "\n".join(lines)
    lines.append(f"device = torch.device({device!r})")
    for name, (source, dtype) in values.items():
        lines.append(f"{SNIPPET_NAMES[name]} = torch.tensor({source}, dtype=torch.{dtype}, "
                     "device=device)")
    wanted = []
    for name in call.grads:
        var = SNIPPET_NAMES[name]
        if call.dtype_of(name) in DTYPES:
            lines.append(f"{var}.requires_grad_(True)")
            wanted.append(name)
        else:
            lines.append(f"# {var} is {call.dtype_of(name)}: torch cannot make it require "
                         "gradients, so its gradient is not asked for")
    lines += ["# keras.device: Keras's torch engine otherwise moves tensors to its own device",
              "with keras.device(str(device)):",
              f"    {axis_comment(call.implementation)}",
              f"    loss = {keras_line(call.implementation, call, 'torch', values)}",
              "print('value', loss.detach().cpu().double().tolist())",
              "print('dtype', str(loss.dtype).split('.')[-1])"]
    if wanted:
        variables = ", ".join(SNIPPET_NAMES[n] for n in wanted)
        lines += [f"grads = torch.autograd.grad(loss, [{variables}], "
                  "grad_outputs=torch.ones_like(loss), allow_unused=True)",
                  f"for name, g in zip({wanted!r}, grads):",
                  "    print('grad ' + name, None if g is None else "
                  "g.detach().cpu().double().tolist())"]
    return "\n".join(lines) + "\n"
