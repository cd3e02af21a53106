"""TensorFlow: the tf.nn functions and Keras's BinaryCrossentropy, as TF users call them.

- `sigmoid`: `tf.nn.sigmoid_cross_entropy_with_logits`, elementwise; the adapter
  multiplies in weight and takes the mean or sum. It has no pos_weight.
- `weighted`: `tf.nn.weighted_cross_entropy_with_logits`, TF's function for
  pos_weight, which it requires; a call without pos_weight is `Unsupported`
  here because a TF user without one calls `sigmoid` (it is covered there).
- `keras`: `keras.losses.BinaryCrossentropy(from_logits=True)`; weight is Keras's
  `sample_weight`. Keras averages over the last axis before reducing, so the
  adapter appends an axis of length 1 to input and target, which makes that mean
  exact and keeps `"none"` elementwise. Keras 3 computes in
  `keras.config.floatx()` (float32 by default), so the result is float32 for
  every input dtype: a user gets that too, and the harness reports it.
- `keras-probs`: `tf.math.sigmoid`, then `BinaryCrossentropy(from_logits=False)`,
  which clips probabilities to [epsilon, 1 - epsilon] (1e-7). `tf.math.sigmoid`
  is used because `keras.ops.sigmoid` / `keras.activations.sigmoid` tag their
  output with `_keras_logits`, and Keras then silently uses the logits. The sigmoid
  is the last op before the loss (after the adapter's trailing axis), as a model's
  output layer is: that is what Keras inspects in graph mode (below).
- `keras-last-axis`: `BinaryCrossentropy(from_logits=True)` on input and target as
  they are, as users call it: Keras averages over the last axis, so `"none"` is the
  row means (tensorflow/tensorflow#35004: a (1,1,1,4) input gives shape (1,1,1)),
  compared with the reference's row means (hook `last_axis_mean()`).

The Keras implementations are harness/backends/keras_backend.py's `keras_loss`, the
same on every engine; they apply a case's label smoothing with Keras's own
`label_smoothing` (hook `label_smoothing()`). Forward mode (`forward_mode()`):
`sigmoid` and `weighted` also give `tf.autodiff.ForwardAccumulator` derivatives.

Compiled (run only with `--compiled`; `eager_twins()` pairs each with its eager one):
`X+function` is implementation X inside `tf.function` (graph mode), `X+xla` inside
`tf.function(jit_compile=True)` (XLA), for every X; the value and the gradients
(a GradientTape inside the function) are one traced function, as a training step
has them. Each is traced for an input_signature with every dimension unknown, as
a model's batch dimension is in training, so sizes never retrace and the graph does
not depend on which shapes came first (XLA still compiles once per concrete shape).
One tf.function per (implementation, reduction, device, argument dtypes and ranks,
gradients wanted, label smoothing), kept in `_FUNCTIONS`.
In graph mode Keras's `binary_crossentropy` looks at the op that produced the
probabilities: a `Sigmoid` op makes it take that op's input as logits and compute
`from_logits=True` (keras/src/backend/tensorflow/nn.py, `_get_logits`), so
`keras-probs+function` is not the clipped loss `keras-probs` is
(tensorflow/tensorflow#118313).

tensorflow is imported only when a method needs it (about 5 s).
"""

from __future__ import annotations

import os
import re
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager
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
    uses_numpy,
)
from harness.backends.keras_backend import (
    LAST_AXIS,
    axis_comment,
    describe_keras,
    keras_constructor,
    keras_line,
    keras_loss,
)
from harness.protocol import DTYPES, Call, Result, Unsupported

KERAS_IMPLEMENTATIONS: tuple[str, ...] = ("keras", "keras-probs", "keras-last-axis")
IMPLEMENTATIONS: tuple[str, ...] = ("sigmoid", "weighted", *KERAS_IMPLEMENTATIONS)
#: compiled implementation -> its eager twin (the `eager_twins()` hook)
COMPILED: dict[str, str] = {f"{i}+{mode}": i for mode in ("function", "xla")
                            for i in IMPLEMENTATIONS}
_ALL: tuple[str, ...] = IMPLEMENTATIONS + tuple(COMPILED)
#: implementations whose forward-mode derivatives are measured (the `forward_mode()` hook)
FORWARD_MODE: tuple[str, ...] = ("sigmoid", "weighted")

# A dtype with no kernel on a device: NotFoundError "Could not find device for
# node: ..." in eager mode, or "No OpKernel was registered ..." / "No registered ...".
_NO_KERNEL = re.compile(r"Could not find device for node|No OpKernel was registered"
                        r"|No registered '")

_DESCRIPTIONS = {
    "sigmoid": "tf.nn.sigmoid_cross_entropy_with_logits(labels=target, logits=input) is "
               "elementwise: the adapter multiplies by weight (broadcasting) and reduces with "
               "tf.reduce_mean / tf.reduce_sum over all axes. No pos_weight (Unsupported).",
    "weighted": "tf.nn.weighted_cross_entropy_with_logits(labels=target, logits=input, "
                "pos_weight=) is elementwise: the adapter multiplies by weight and reduces with "
                "tf.reduce_mean / tf.reduce_sum. It requires pos_weight; calls without one are "
                "Unsupported here and covered by 'sigmoid'.",
}
for _name in KERAS_IMPLEMENTATIONS:
    _DESCRIPTIONS[_name] = describe_keras(_name, "tensorflow",
                                          "tf.GradientTape through the Keras call, seeded with "
                                          "ones")
_COMPILED_HOW = {
    "function": "inside tf.function (graph mode, Grappler's optimizations)",
    "xla": "inside tf.function(jit_compile=True) (XLA, one compilation per shape)",
}
for _name, _eager in COMPILED.items():
    _DESCRIPTIONS[_name] = (f"'{_eager}' {_COMPILED_HOW[_name.rsplit('+', 1)[1]]}: the value and "
                            "the gradients (a GradientTape inside the function) are one traced "
                            "function, as in a training step; traced for an input_signature with "
                            "every dimension unknown, as a model's batch dimension.")


class TensorFlowBackend:
    """tf.nn and Keras 3 (on its TensorFlow backend); CPU and every CUDA GPU."""

    name = "tensorflow"

    def availability(self) -> str | None:
        return import_problem("tensorflow", "tensorflow")

    def versions(self) -> dict[str, str]:
        import tensorflow as tf

        out = {"tensorflow": tf.__version__,
               # oneDNN kernels change the order of floating-point operations on x86 CPUs
               "TF_ENABLE_ONEDNN_OPTS": os.environ.get("TF_ENABLE_ONEDNN_OPTS", "unset")}
        build = tf.sysconfig.get_build_info()
        for key in ("cuda_version", "cudnn_version"):
            if build.get(key):
                out[key.replace("_version", "")] = str(build[key])
        keras, _ = _keras()
        if keras is not None:
            out.update({"keras": keras.__version__, "keras_backend": keras.backend.backend(),
                        "keras_floatx": keras.config.floatx(),
                        "keras_epsilon": repr(keras.config.epsilon())})
        return out

    def devices(self) -> list[str]:
        import tensorflow as tf

        if not tf.sysconfig.get_build_info().get("is_cuda_build"):
            return ["cpu"]  # a ROCm build's GPUs are not "cuda:N"
        gpus = tf.config.list_physical_devices("GPU")
        return ["cpu"] + [f"cuda:{i}" for i in range(len(gpus))]

    def dtypes(self) -> list[str]:
        return list(DTYPES)

    def implementations(self) -> list[str]:
        return list(_ALL)

    def eager_twins(self) -> dict[str, str]:
        return dict(COMPILED)

    def describe(self, implementation: str) -> str:
        return _DESCRIPTIONS.get(implementation, "")

    def label_smoothing(self) -> list[str]:
        """Keras's implementations, eager and compiled: BinaryCrossentropy(label_smoothing=)."""
        return [i for i in _ALL if COMPILED.get(i, i) in KERAS_IMPLEMENTATIONS]

    def last_axis_mean(self) -> list[str]:
        return [i for i in _ALL if COMPILED.get(i, i) in LAST_AXIS]

    def forward_mode(self) -> list[str]:
        """The tf.nn implementations: tf.autodiff.ForwardAccumulator (eager)."""
        return list(FORWARD_MODE)

    def run(self, call: Call) -> Result:
        import tensorflow as tf

        index = prepare(call, _ALL, self.name, self.devices())
        loss_fn = _loss_function(call)
        device = "/CPU:0" if index is None else f"/GPU:{index}"
        if call.implementation in COMPILED:
            return _run_compiled(call, device, index, loss_fn)
        with tf.device(device):
            # tf.identity inside the device scope puts each argument on that device.
            tensors = {n: tf.identity(tf.constant(a)) for n, a in arguments(call).items()}
            grads: dict[str, np.ndarray | Unsupported] = {}
            with _missing_kernel_is_unsupported(), tf.GradientTape() as tape:
                for name, tensor in tensors.items():
                    if tensor.dtype.is_floating:
                        tape.watch(tensor)
                    elif name in call.grads:
                        # TF's own words, from the warning tape.watch logs for these
                        grads[name] = Unsupported(
                            "The dtype of the watched tensor must be floating (e.g. "
                            f"tf.float32), got {tensor.dtype!r}")
                loss = loss_fn(tensors)
            _check_placement(loss, index)
            value = loss.numpy()
            wanted = [n for n in call.grads if n not in grads]
            if wanted:
                try:
                    with _missing_kernel_is_unsupported(), _mean_count_cast_is_known():
                        computed = tape.gradient(loss, [tensors[n] for n in wanted],
                                                 output_gradients=tf.ones_like(loss))
                except Unsupported as exc:  # no backward kernel: the value still stands
                    computed = [exc] * len(wanted)
                for name, g in zip(wanted, computed, strict=True):
                    if g is None:
                        g = Unsupported(f"tf.GradientTape.gradient returned None for {name}: "
                                        "the loss does not depend on it differentiably")
                    grads[name] = g if isinstance(g, Unsupported) else g.numpy()
            forward = (_forward_mode(call, tensors, loss_fn)
                       if call.implementation in FORWARD_MODE else {})
        return Result(value=value, grads={name: grads[name] for name in call.grads},
                      forward=forward)

    def snippet(self, call: Call) -> str:
        """A TensorFlow-only program making the call `run` makes, printing value and gradients."""
        index = prepare(call, _ALL, self.name, self.devices())
        _loss_function(call)  # raises the same Unsupported as `run`, before anything is written
        return _snippet(call, "/CPU:0" if index is None else f"/GPU:{index}")


def _snippet(call: Call, device: str) -> str:
    impl, reduction = COMPILED.get(call.implementation, call.implementation), call.reduction
    mode = call.implementation.rsplit("+", 1)[1] if call.implementation in COMPILED else None
    keras = impl in KERAS_IMPLEMENTATIONS
    values = literals(call)
    lines = ["import tensorflow as tf"] + (["import keras"] if keras else [])
    if values is None:
        return "\n".join([*lines, "", *too_large()])
    if uses_numpy([source for source, _ in values.values()]):
        lines.insert(0, "import numpy as np")
    lines.append("")
    if keras:
        lines.append(keras_constructor(impl, call))
    setup: list[str] = []
    for name, (source, dtype) in values.items():
        setup.append(f"{SNIPPET_NAMES[name]} = tf.identity(tf.constant({source}, "
                     f"dtype=tf.{dtype}))")
    watched, wanted = [], []
    for name in values:
        floating = call.dtype_of(name) in DTYPES
        if floating:
            watched.append(SNIPPET_NAMES[name])
        if name in call.grads:
            if floating:
                wanted.append(name)
            else:
                setup.append(f"# {SNIPPET_NAMES[name]} is {call.dtype_of(name)}: "
                             "tf.GradientTape cannot watch it, so its gradient is not asked for")
    # the forward under a tape, then the gradients: inline (eager) or as one tf.function
    compute = ["with tf.GradientTape() as tape:"]
    compute += [f"    tape.watch({var})" for var in watched]
    if keras:
        compute.append("    " + axis_comment(impl))
        if impl == "keras-probs":
            compute.append("    # the sigmoid is the last op before the loss, as a model's "
                           "output layer")
        compute.append(f"    loss = {keras_line(impl, call, 'tensorflow', values)}")
    else:
        if impl == "sigmoid":
            compute.append("    loss = tf.nn.sigmoid_cross_entropy_with_logits(labels=y, "
                           "logits=x)")
        else:
            compute.append("    loss = tf.nn.weighted_cross_entropy_with_logits(labels=y, "
                           "logits=x, pos_weight=pos_weight)")
        if "weight" in values:
            compute.append("    loss = loss * weight")
        if reduction in ("mean", "sum"):
            compute.append(f"    loss = tf.reduce_{reduction}(loss)")
    variables = ", ".join(SNIPPET_NAMES[n] for n in wanted)
    gradients = (f"tape.gradient(loss, [{variables}], output_gradients=tf.ones_like(loss))"
                 if wanted else "[]")
    if mode is not None:
        params = ", ".join(SNIPPET_NAMES[n] for n in values)
        specs = ", ".join(f"tf.TensorSpec({[None] * np.ndim(getattr(call, n))!r}, tf.{dtype})"
                          for n, (_, dtype) in values.items())
        lines += ["", "", "# every dimension unknown, as a model's batch dimension in training",
                  f"@tf.function(input_signature=[{specs}]"
                  + (", jit_compile=True)" if mode == "xla" else ")"),
                  f"def step({params}):"]
        lines += ["    " + line for line in compute]
        lines += [f"    return loss, {gradients}", "", ""]
        compute = [f"loss, grads = step({params})"]
    elif wanted:
        compute.append(f"grads = {gradients}")
    body = [*setup, *compute,
            "print('device', loss.device)",
            "print('value', loss.numpy().astype('float64').tolist())",
            "print('dtype', loss.dtype.name)"]
    if wanted:
        body += [f"for name, g in zip({wanted!r}, grads):",
                 "    print('grad ' + name, None if g is None else "
                 "g.numpy().astype('float64').tolist())"]
    lines.append(f"with tf.device({device!r}):")
    lines += ["    " + line for line in body]
    return "\n".join(lines) + "\n"


def _forward_mode(call: Call, tensors: dict[str, Any],
                  loss_fn: Callable[[dict[str, Any]], Any]) -> dict[str, Any]:
    """tf.autodiff.ForwardAccumulator along a tangent of ones on each argument in turn:
    TensorFlow's forward mode, which runs each op's JVP (by default a double
    transposition of its gradient function), on the device the tensors are on."""
    import tensorflow as tf

    out: dict[str, Any] = {}
    for name in call.forward:
        primal = tensors[name]
        if not primal.dtype.is_floating:
            out[name] = Unsupported(f"{name} is {primal.dtype.name}: ForwardAccumulator watches "
                                    "floating-point tensors only")
            continue
        try:
            with _missing_kernel_is_unsupported(), tf.autodiff.ForwardAccumulator(
                    primals=primal, tangents=tf.ones_like(primal)) as acc:
                loss = loss_fn(tensors)
            tangent = acc.jvp(loss)
        except Unsupported as exc:
            out[name] = exc
            continue
        out[name] = (tangent.numpy() if tangent is not None else Unsupported(
            f"ForwardAccumulator.jvp returned None for {name}: the loss does not depend on it "
            "differentiably"))
    return out


def _loss_function(call: Call) -> Callable[[dict[str, Any]], Any]:
    """The user's call for `call.implementation`; raises Unsupported before any work."""
    import tensorflow as tf

    impl, reduction = COMPILED.get(call.implementation, call.implementation), call.reduction
    if impl in KERAS_IMPLEMENTATIONS:
        keras, problem = _keras()
        if keras is None:
            raise Unsupported(problem or "keras is not available")
        if keras.backend.backend() != "tensorflow":
            raise Unsupported(f"keras is configured for the {keras.backend.backend()!r} backend "
                              "(KERAS_BACKEND); its losses take TensorFlow tensors only on the "
                              "'tensorflow' backend")
        return keras_loss(keras, impl, call, lambda t: tf.expand_dims(t, -1), tf.math.sigmoid)

    if impl == "sigmoid":
        if call.pos_weight is not None:
            raise Unsupported("tf.nn.sigmoid_cross_entropy_with_logits(labels, logits) has no "
                              "pos_weight argument; 'weighted' covers pos_weight")
        adapter_reduction(reduction, "tf.nn.sigmoid_cross_entropy_with_logits")
    else:
        if call.pos_weight is None:
            raise Unsupported("tf.nn.weighted_cross_entropy_with_logits(labels, logits, "
                              "pos_weight) requires pos_weight; without one a TensorFlow user "
                              "calls sigmoid_cross_entropy_with_logits ('sigmoid')")
        adapter_reduction(reduction, "tf.nn.weighted_cross_entropy_with_logits")

    def nn_loss(t: dict[str, Any]) -> Any:
        if impl == "sigmoid":
            loss = tf.nn.sigmoid_cross_entropy_with_logits(labels=t["target"], logits=t["input"])
        else:
            loss = tf.nn.weighted_cross_entropy_with_logits(
                labels=t["target"], logits=t["input"], pos_weight=t["pos_weight"])
        if "weight" in t:
            loss = loss * t["weight"]
        if reduction == "mean":
            return tf.reduce_mean(loss)
        if reduction == "sum":
            return tf.reduce_sum(loss)
        return loss

    return nn_loss


#: (implementation, reduction, device, ((argument, dtype, rank), ...), gradients, smoothing)
#: -> tf.function
#: traced for an input_signature with every dimension unknown (`_signature`)
_FUNCTIONS: dict[tuple[Any, ...], Any] = {}


def _run_compiled(call: Call, device: str, index: int | None,
                  loss_fn: Callable[[dict[str, Any]], Any]) -> Result:
    """Value and gradients from one tf.function (graph mode, or XLA for `+xla`)."""
    import tensorflow as tf

    host = arguments(call)
    grads: dict[str, np.ndarray | Unsupported] = {}
    for name in call.grads:
        if not tf.as_dtype(host[name].dtype).is_floating:
            grads[name] = Unsupported("The dtype of the watched tensor must be floating (e.g. "
                                      f"tf.float32), got {tf.as_dtype(host[name].dtype)!r}")
    wanted = tuple(n for n in call.grads if n not in grads)
    names = list(host)
    key = (call.implementation, call.reduction, device,
           tuple((n, call.dtype_of(n), a.ndim) for n, a in host.items()), wanted,
           call.label_smoothing)  # the loss closes over the smoothing
    step = _FUNCTIONS.get(key)
    if step is None:
        watched = [n for n in names if tf.as_dtype(host[n].dtype).is_floating]

        def value_and_gradients(*args: Any) -> Any:
            tensors = dict(zip(names, args, strict=True))
            with tf.GradientTape() as tape:
                for name in watched:
                    tape.watch(tensors[name])
                loss = loss_fn(tensors)
            if not wanted:
                return loss, []
            return loss, tape.gradient(loss, [tensors[n] for n in wanted],
                                       output_gradients=tf.ones_like(loss))

        step = _FUNCTIONS[key] = tf.function(
            value_and_gradients, input_signature=_signature(host),
            jit_compile=call.implementation.endswith("+xla"))
    with tf.device(device), _missing_kernel_is_unsupported(), _mean_count_cast_is_known():
        tensors = [tf.identity(tf.constant(host[n])) for n in names]
        loss, computed = step(*tensors)
    _check_placement(loss, index)
    for name, g in zip(wanted, computed, strict=True):
        grads[name] = (g.numpy() if g is not None else Unsupported(
            f"tf.GradientTape.gradient returned None for {name}: the loss does not depend on "
            "it differentiably"))
    return Result(value=loss.numpy(), grads={name: grads[name] for name in call.grads})


def _signature(host: dict[str, np.ndarray]) -> list[Any]:
    """Every dimension unknown, as a model's batch dimension is in training: one trace
    per rank and dtype, whatever the sizes, and the same graph whatever was traced
    before (XLA still compiles once per concrete shape)."""
    import tensorflow as tf

    return [tf.TensorSpec([None] * a.ndim, tf.as_dtype(a.dtype)) for a in host.values()]


def _keras() -> tuple[Any, str | None]:
    """(keras, None), or (None, why not): tf.nn still works without a usable Keras."""
    problem = import_problem("keras", "tensorflow")
    if problem is not None:
        return None, problem
    import keras

    return keras, None


def _check_placement(loss: Any, index: int | None) -> None:
    """Refuse a GPU result that TensorFlow's soft placement computed elsewhere.

    With no GPU kernel for a dtype, eager TF may quietly run the op on the CPU;
    reporting those numbers as cuda:N would misstate what was measured.
    """
    if index is None:
        return
    import tensorflow as tf

    spec = tf.DeviceSpec.from_string(loss.device)
    if spec.device_type != "GPU" or spec.device_index != index:
        raise Unsupported(f"TensorFlow placed the result on {loss.device} instead of GPU:{index} "
                          "(soft device placement: no GPU kernel for this dtype)")


@contextmanager
def _mean_count_cast_is_known() -> Iterator[None]:
    """Silence numpy's "overflow encountered in cast" from math_grad._MeanGrad.

    The gradient of a float16 mean casts the element count to float16 with numpy,
    which warns once the count is 65,520 or more (it becomes inf and every gradient 0).
    That is tensorflow#115732, which the shipped expectations record with its mechanism;
    the warning itself says nothing more and read as the harness's own in pytest's summary.
    """
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="overflow encountered in cast",
                                category=RuntimeWarning, module="tensorflow")
        yield


@contextmanager
def _missing_kernel_is_unsupported() -> Iterator[None]:
    """A dtype with no kernel on a device is Unsupported, in TensorFlow's words."""
    import tensorflow as tf

    try:
        yield
    except (tf.errors.NotFoundError, tf.errors.InvalidArgumentError) as exc:
        if _NO_KERNEL.search(exc.message or ""):
            raise Unsupported(exc.message.strip().splitlines()[0]) from exc
        raise
