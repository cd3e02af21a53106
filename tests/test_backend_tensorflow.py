"""The TensorFlow backend against real TensorFlow and Keras.

Pins the adapter's promises: tf.nn results keep the input dtype, Keras's result
is whatever Keras computes in (float32 by default) and is not cast back, Keras's
probability clipping shows, refusals are Unsupported with a reason, and invalid
input reaches TensorFlow as it is.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from harness import reference
from harness.backends import tensorflow_backend
from harness.backends.keras_backend import LAST_AXIS
from harness.backends.tensorflow_backend import COMPILED, IMPLEMENTATIONS, TensorFlowBackend
from harness.dtypes import numpy_dtype
from harness.protocol import DTYPES, REDUCTIONS, Backend, Call, Unsupported
from tests.backend_expect import assert_close, expected
from tests.lazy import lazy, needs

tf = lazy("tensorflow")  # imported by the first test that uses it, not at collection
keras = lazy("keras")
pytestmark = needs("tensorflow", "keras")

ROOT = Path(__file__).resolve().parents[1]
BACKEND = TensorFlowBackend()
ALL = ("input", "target", "weight", "pos_weight")

# Small values exactly representable in every dtype; |x| <= 2 keeps keras-probs
# away from its clipping and within a few bfloat16 ulps of the truth. No logit is 0:
# there weighted_cross_entropy_with_logits differentiates abs() and relu() as 0 and
# gets the input gradient wrong, a TensorFlow finding for the conformance suite.
X = np.array([[-2.0, -0.5, 0.25], [0.75, 1.5, 2.0]])
Y = np.array([[0.0, 0.25, 0.5], [1.0, 1.0, 0.0]])
W = np.array([0.5, 1.0, 2.0])
ROW_W = np.array([[0.5], [2.0]])  # one weight per row: what Keras's row means can take
P = np.array([1.0, 2.0, 3.0])
# called with pos_weight? (weighted requires it; the others refuse it)
POS_WEIGHT = {"sigmoid": False, "weighted": True, "keras": False, "keras-probs": False,
              "keras-last-axis": False}
# the implementations whose "none" is elementwise (keras-last-axis gives row means)
ELEMENTWISE = [i for i in IMPLEMENTATIONS if i not in LAST_AXIS]


def weight_for(impl: str) -> np.ndarray:
    """W, or for keras-last-axis a weight constant along the last axis (Keras weighs rows)."""
    return ROW_W if COMPILED.get(impl, impl) in LAST_AXIS else W


def test_protocol_surface():
    assert isinstance(BACKEND, Backend)
    assert BACKEND.name == "tensorflow"
    assert BACKEND.availability() is None
    versions = BACKEND.versions()
    assert versions["tensorflow"] == tf.__version__
    assert versions["keras"] == keras.__version__
    assert versions["keras_floatx"] == keras.config.floatx()
    devices = BACKEND.devices()
    assert devices[0] == "cpu"
    gpus = tf.config.list_physical_devices("GPU")
    assert devices[1:] == [f"cuda:{i}" for i in range(len(gpus))]
    assert BACKEND.dtypes() == list(DTYPES)
    assert BACKEND.implementations()[:4] == ["sigmoid", "weighted", "keras", "keras-probs"]
    assert all(BACKEND.describe(i) for i in BACKEND.implementations())


def test_importing_the_module_does_not_import_tensorflow():
    code = ("import sys, harness.backends.tensorflow_backend; "
            "assert 'tensorflow' not in sys.modules and 'keras' not in sys.modules")
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, check=True)


@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("dtype", DTYPES)
def test_keras_last_axis_matches_the_row_means(dtype, reduction):
    result = BACKEND.run(Call("keras-last-axis", "cpu", dtype, X, Y, ROW_W, None, reduction,
                              ALL[:3]))
    want = reference.loss(X, Y, ROW_W, reduction=reduction, last_axis_mean=True)
    grads = reference.grads(X, Y, ROW_W, reduction=reduction, last_axis_mean=True)
    floatx = keras.config.floatx()
    assert result.value.shape == (X.shape[:-1] if reduction == "none" else ())
    assert_close(result.value, want, dtype, floatx)
    shapes = {"input": X.shape, "target": Y.shape, "weight": ROW_W.shape}
    for name in ALL[:3]:
        assert result.grads[name].shape == shapes[name]
        assert_close(result.grads[name], grads[name], dtype, floatx)


def test_keras_last_axis_refuses_a_weight_that_varies_along_the_rows():
    with pytest.raises(Unsupported, match="sample_weight to the row means"):
        BACKEND.run(Call("keras-last-axis", "cpu", "float32", X, Y, W, None, "none"))


@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("impl", ELEMENTWISE)
def test_value_and_gradients_match_the_reference(impl, dtype, reduction):
    p = P if POS_WEIGHT[impl] else None
    grads = ALL if p is not None else ALL[:3]
    result = BACKEND.run(Call(impl, "cpu", dtype, X, Y, W, p, reduction, grads))
    want, want_grads = expected(X, Y, W, p, reduction)
    # Keras computes in floatx whatever it is given; the adapter must not hide that
    result_dtype = keras.config.floatx() if impl.startswith("keras") else dtype
    assert result.value.dtype == numpy_dtype(result_dtype)
    assert result.value.shape == (X.shape if reduction == "none" else ())
    assert_close(result.value, want, dtype, result_dtype)
    assert list(result.grads) == list(grads)
    for name in grads:
        g = result.grads[name]
        assert g.dtype == numpy_dtype(dtype), name  # the gradient comes back in the input's dtype
        assert g.shape == np.shape({"input": X, "target": Y, "weight": W, "pos_weight": P}[name])
        assert_close(g, want_grads[name], dtype, result_dtype)


@pytest.mark.parametrize(("w", "p"), [
    (np.array(2.0), np.array(3.0)),
    (np.array([[0.5, 1.0, 2.0]]), np.array([1.0, 2.0, 3.0])),
    (np.array([[0.5], [2.0]]), np.array([[2.0], [1.0]])),
])
@pytest.mark.parametrize("impl", ["weighted", "keras"])
def test_weight_and_pos_weight_broadcast_like_the_reference(impl, w, p):
    p = p if POS_WEIGHT[impl] else None
    grads = ("input", "weight") + (("pos_weight",) if p is not None else ())
    result = BACKEND.run(Call(impl, "cpu", "float64", X, Y, w, p, "mean", grads))
    want, want_grads = expected(X, Y, w, p, "mean")
    dtype = "float64" if impl == "weighted" else keras.config.floatx()
    assert_close(result.value, want, dtype)
    for name in grads:
        assert result.grads[name].shape == np.shape(w if name == "weight" else p if
                                                    name == "pos_weight" else X)
        assert_close(result.grads[name], want_grads[name], dtype)


@pytest.mark.parametrize(("impl", "p", "match"), [
    ("sigmoid", P, "has no pos_weight argument"),
    ("weighted", None, "requires pos_weight"),
    ("keras", P, "BinaryCrossentropy has no pos_weight argument"),
    ("keras-probs", P, "BinaryCrossentropy has no pos_weight argument"),
])
def test_pos_weight_refusals_are_unsupported(impl, p, match):
    with pytest.raises(Unsupported, match=match):
        BACKEND.run(Call(impl, "cpu", "float32", X, Y, None, p))


def test_keras_probs_clipping_shows_in_value_and_gradient():
    # sigmoid(40) is 1 in float32; Keras clips it to 1 - 1e-7, so the loss tops out
    # near -log(1e-7) ≈ 16 instead of 40, and the clip zeroes the input gradient.
    call = Call("keras-probs", "cpu", "float32", np.array([40.0]), np.array([0.0]),
                reduction="none", grads=("input",))
    probs = BACKEND.run(call)
    logits = BACKEND.run(Call("keras", *_rest(call)))
    assert 15.0 < float(probs.value[0]) < 17.0
    assert float(logits.value[0]) == 40.0
    assert float(probs.grads["input"][0]) == 0.0
    assert float(logits.grads["input"][0]) == 1.0


def _rest(call: Call) -> tuple:
    return (call.device, call.dtype, call.input, call.target, call.weight, call.pos_weight,
            call.reduction, call.grads)


def test_keras_computes_float64_input_in_float32():
    wide = BACKEND.run(Call("keras", "cpu", "float64", X, Y, W, None, "mean", ("input",)))
    narrow = BACKEND.run(Call("keras", "cpu", "float32", X, Y, W, None, "mean", ("input",)))
    assert wide.value.dtype == np.float32
    assert wide.value.tobytes() == narrow.value.tobytes()  # same float32 computation
    assert wide.grads["input"].dtype == np.float64  # cast back by the cast's gradient


@pytest.mark.parametrize("impl", ["sigmoid", "weighted"])
def test_elementwise_functions_refuse_invalid_reduction_names(impl):
    with pytest.raises(Unsupported, match="has no reduction argument"):
        BACKEND.run(Call(impl, "cpu", "float32", X, Y, None, P if impl == "weighted" else None,
                         reduction="bogus"))


@pytest.mark.parametrize("impl", ["keras", "keras-probs"])
def test_invalid_reduction_reaches_keras(impl):
    with pytest.raises(ValueError, match="Invalid value for argument `reduction`"):
        BACKEND.run(Call(impl, "cpu", "float32", X, Y, reduction="bogus"))


@pytest.mark.parametrize("impl", ELEMENTWISE)
def test_mismatched_shapes_reach_tensorflow(impl):
    p = P if POS_WEIGHT[impl] else None
    with pytest.raises(ValueError, match="must have the same shape"):
        BACKEND.run(Call(impl, "cpu", "float32", X, Y[0], None, p))


@pytest.mark.parametrize("impl", ELEMENTWISE)
def test_a_weight_that_enlarges_the_shape_is_broadcast_silently(impl):
    # torch refuses this; TensorFlow's multiply broadcasts, and the harness should see it
    p = P if POS_WEIGHT[impl] else None
    result = BACKEND.run(Call(impl, "cpu", "float32", X, Y, np.ones((2, 2, 3)), p, "none"))
    assert result.value.shape == (2, 2, 3)


def test_integer_target_is_tensorflows_to_judge():
    call = Call("sigmoid", "cpu", "float32", X, np.round(Y), arg_dtypes={"target": "int64"})
    with pytest.raises(tf.errors.InvalidArgumentError, match="int64"):
        BACKEND.run(call)
    # Keras converts the target to floatx itself; its gradient is not defined
    keras_call = Call("keras", "cpu", "float32", X, np.round(Y), grads=("input", "target"),
                      arg_dtypes={"target": "int64"})
    result = BACKEND.run(keras_call)
    assert result.grads["input"].shape == X.shape
    assert "must be floating" in result.grads["target"].reason


@pytest.mark.parametrize("impl", IMPLEMENTATIONS)
def test_same_call_gives_the_same_bits_with_or_without_gradients(impl):
    p = P if POS_WEIGHT[impl] else None
    call = Call(impl, "cpu", "float16", X, Y, weight_for(impl), p, "mean", ("input",))
    first, second = BACKEND.run(call), BACKEND.run(call)
    bare = BACKEND.run(Call(impl, *_rest(call)[:-1], ()))
    assert first.value.tobytes() == second.value.tobytes() == bare.value.tobytes()
    assert first.grads["input"].tobytes() == second.grads["input"].tobytes()


def test_bfloat16_result_is_ml_dtypes_bfloat16():
    result = BACKEND.run(Call("sigmoid", "cpu", "bfloat16", X, Y, grads=("input",)))
    assert result.value.dtype == numpy_dtype("bfloat16")
    assert result.grads["input"].dtype == numpy_dtype("bfloat16")


def test_absent_device_is_unsupported():
    if "cuda:7" in BACKEND.devices():
        pytest.skip("this machine has a cuda:7")
    with pytest.raises(Unsupported, match="'cuda:7' is not present"):
        BACKEND.run(Call("sigmoid", "cuda:7", "float32", X, Y))


# --- compiled: tf.function (graph mode, Grappler) and tf.function(jit_compile=True) (XLA) ---

def test_compiled_implementations_pair_with_their_eager_twins():
    assert BACKEND.implementations() == [*IMPLEMENTATIONS, *COMPILED]
    assert BACKEND.eager_twins() == {f"{i}+{mode}": i for mode in ("function", "xla")
                                     for i in IMPLEMENTATIONS}
    assert all("tf.function" in BACKEND.describe(c) for c in COMPILED)
    assert "jit_compile=True" in BACKEND.describe("keras+xla")


@pytest.mark.parametrize("impl", list(COMPILED))
def test_compiled_agrees_with_eager_on_ordinary_inputs(impl):
    eager = COMPILED[impl]
    p = P if POS_WEIGHT[eager] else None
    grads = ALL if p is not None else ALL[:3]
    call = Call(impl, "cpu", "float32", X, Y, weight_for(impl), p, "mean", grads)
    compiled, reference = BACKEND.run(call), BACKEND.run(Call(eager, *_rest(call)))
    assert compiled.value.dtype == reference.value.dtype
    # |x| <= 2: sigmoid-then-log is accurate here, so even keras-probs+function,
    # which Keras turns into the logits form in a graph, stays within float32 rounding
    np.testing.assert_allclose(compiled.value, reference.value, rtol=2e-6)
    for name in grads:
        assert compiled.grads[name].dtype == reference.grads[name].dtype, name
        np.testing.assert_allclose(compiled.grads[name], reference.grads[name], rtol=2e-6,
                                   atol=1e-7, err_msg=name)


def test_one_trace_serves_every_size():
    call = Call("sigmoid+function", "cpu", "float64", X, Y, W, None, "sum", ("input",))
    BACKEND.run(call)
    bigger = np.linspace(-3.0, 3.0, 21).reshape(7, 3)
    BACKEND.run(Call("sigmoid+function", "cpu", "float64", bigger, np.ones_like(bigger), W,
                     None, "sum", ("input",)))
    key = next(k for k in tensorflow_backend._FUNCTIONS if k[0] == "sigmoid+function"
               and k[1] == "sum" and k[3][0][1] == "float64")
    assert tensorflow_backend._FUNCTIONS[key].experimental_get_tracing_count() == 1


def test_keras_in_a_graph_takes_the_logits_of_a_sigmoid_output():
    # tensorflow/tensorflow#118313: in graph mode Keras sees the Sigmoid op producing
    # its probabilities and computes from its input, so the clip never happens
    x, y = np.array([-40.0, 200.0]), np.array([1.0, 0.0])
    eager = BACKEND.run(Call("keras-probs", "cpu", "float32", x, y, reduction="none"))
    for impl in ("keras-probs+function", "keras-probs+xla"):
        graph = BACKEND.run(Call(impl, "cpu", "float32", x, y, reduction="none"))
        assert graph.value.tolist() == [40.0, 200.0], impl
    np.testing.assert_allclose(eager.value, [16.118095, 15.942385], rtol=1e-6)


def test_tensorflow_118313_is_found_by_the_shipped_case():
    from harness.cases import load_cases
    from harness.run.calls import iter_inprocess
    from harness.run.registry import Loaded
    from harness.run.trials import expand
    from harness.verdict import expectations as expect

    class KerasProbs(TensorFlowBackend):
        def implementations(self) -> list[str]:
            return ["keras-probs", "keras-probs+function"]

    trials = [t for t in expand(load_cases([ROOT / "cases" / "compiled.yaml"]), ["float32"])
              if t.case.name == "compiled/keras-sigmoid-output-in-a-graph"]
    assert trials
    loaded = Loaded("tensorflow", "test", "test", KerasProbs())

    def vs_eager(entries):
        recs = list(iter_inprocess(loaded, trials, ("cpu",), entries, compiled=True))
        return [r for r in recs if r["check"] == "vs-eager"]

    bare = vs_eager(expect.load([], shipped=False))
    assert bare and all(r["status"] == "fail" for r in bare), bare
    shipped = vs_eager(expect.load([]))
    assert all(r["status"] == "known" for r in shipped), shipped
    links = {e["upstream"] for r in shipped for e in r["expected_by"]}
    assert "https://github.com/tensorflow/tensorflow/issues/118313" in links


@pytest.mark.parametrize("impl", ["keras-probs+function", "sigmoid+xla"])
def test_compiled_snippet_is_the_same_function(impl):
    call = Call(impl, "cpu", "float32", X, Y, W, None, "mean", ("input", "target"))
    source = BACKEND.snippet(call)
    compile(source, impl, "exec")
    assert "@tf.function(input_signature=" in source
    assert ("jit_compile=True" in source) == impl.endswith("+xla")
    assert impl.startswith("sigmoid") or "tf.math.sigmoid(tf.expand_dims(x, -1))" in source


def test_compiled_snippet_prints_what_run_returns():
    x, y = np.array([-40.0, 200.0, 1.0]), np.array([1.0, 0.0, 1.0])
    call = Call("keras-probs+function", "cpu", "float32", x, y, reduction="none",
                grads=("input",))
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
    done = subprocess.run([sys.executable, "-c", BACKEND.snippet(call)], capture_output=True,
                          text=True, env=env, timeout=120, check=True)
    printed = dict(re.match(r"(grad \w+|\w+) (.*)", line).groups()
                   for line in done.stdout.splitlines())
    result = BACKEND.run(call)
    assert eval(printed["value"]) == result.value.astype(np.float64).tolist()
    assert eval(printed["grad input"]) == result.grads["input"].astype(np.float64).tolist()
