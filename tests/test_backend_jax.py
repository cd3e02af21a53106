"""The JAX backend against real JAX and optax.

Pins the adapter's promises: dtypes kept (float64 really float64, through an x64
scope that leaves the process's JAX configuration alone), gradients for every
argument from jax.vjp, refusals as Unsupported with a reason, and JAX's silent
broadcasting of mismatched shapes left visible.
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading
from pathlib import Path

import numpy as np
import pytest

from harness.backends import jax_backend
from harness.backends.jax_backend import COMPILED, IMPLEMENTATIONS, JaxBackend
from harness.dtypes import numpy_dtype
from harness.protocol import DTYPES, REDUCTIONS, Backend, Call, Unsupported
from tests.backend_expect import assert_close, expected
from tests.lazy import lazy, needs

jax = lazy("jax")  # imported by the first test that uses it, not at collection
pytestmark = needs("jax")

ROOT = Path(__file__).resolve().parents[1]
BACKEND = JaxBackend()
ALL = ("input", "target", "weight", "pos_weight")

# Small values exactly representable in every dtype.
X = np.array([[-2.0, -0.5, 0.0], [0.75, 1.5, 2.0]])
Y = np.array([[0.0, 0.25, 0.5], [1.0, 1.0, 0.0]])
W = np.array([0.5, 1.0, 2.0])
P = np.array([1.0, 2.0, 3.0])
TAKES_POS_WEIGHT = {"jax.nn": True, "optax": False}


def test_protocol_surface():
    assert isinstance(BACKEND, Backend)
    assert BACKEND.name == "jax"
    assert BACKEND.availability() is None
    versions = BACKEND.versions()
    assert versions["jax"] == jax.__version__
    assert "jaxlib" in versions
    devices = BACKEND.devices()
    assert devices[0] == "cpu"
    try:
        cuda = jax.devices("cuda")
    except RuntimeError:  # no CUDA backend in this install
        cuda = []
    assert devices[1:] == [f"cuda:{i}" for i in range(len(cuda))]
    assert BACKEND.dtypes() == list(DTYPES)
    assert BACKEND.implementations() == ["jax.nn", "optax", "jax.nn+jit", "optax+jit"]
    assert all(BACKEND.describe(i) for i in BACKEND.implementations())


def test_importing_the_module_does_not_import_jax():
    code = "import sys, harness.backends.jax_backend; assert 'jax' not in sys.modules"
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, check=True)


@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("impl", IMPLEMENTATIONS)
def test_value_and_gradients_match_the_reference(impl, dtype, reduction):
    p = P if TAKES_POS_WEIGHT[impl] else None
    grads = ALL if p is not None else ALL[:3]
    result = BACKEND.run(Call(impl, "cpu", dtype, X, Y, W, p, reduction, grads))
    want, want_grads = expected(X, Y, W, p, reduction)
    assert result.value.dtype == numpy_dtype(dtype)
    assert result.value.shape == (X.shape if reduction == "none" else ())
    assert_close(result.value, want, dtype)
    assert list(result.grads) == list(grads)
    for name in grads:
        g = result.grads[name]
        assert g.dtype == numpy_dtype(dtype), name
        assert g.shape == np.shape({"input": X, "target": Y, "weight": W, "pos_weight": P}[name])
        assert_close(g, want_grads[name], dtype)


@pytest.mark.parametrize(("w", "p"), [
    (np.array(2.0), np.array(3.0)),
    (np.array([[0.5, 1.0, 2.0]]), np.array([1.0, 2.0, 3.0])),
    (np.array([[0.5], [2.0]]), np.array([[2.0], [1.0]])),
])
def test_weight_and_pos_weight_broadcast_like_the_reference(w, p):
    result = BACKEND.run(Call("jax.nn", "cpu", "float64", X, Y, w, p, "sum", ALL))
    want, want_grads = expected(X, Y, w, p, "sum")
    assert_close(result.value, want, "float64")
    for name, arg in zip(ALL, (X, Y, w, p), strict=True):
        assert result.grads[name].shape == np.shape(arg)
        assert_close(result.grads[name], want_grads[name], "float64")


def test_float64_uses_a_scoped_x64_that_leaves_global_config_alone():
    before = jax.config.jax_enable_x64
    result = BACKEND.run(Call("jax.nn", "cpu", "float64", X, Y, grads=("input",)))
    assert result.value.dtype == np.float64 and result.grads["input"].dtype == np.float64
    assert jax.config.jax_enable_x64 == before
    assert jax.numpy.asarray(np.float64(1.0)).dtype == (np.float64 if before else np.float32)


def test_x64_is_off_for_32_bit_calls_even_inside_a_process_with_x64_on():
    with jax.enable_x64(True):
        result = BACKEND.run(Call("optax", "cpu", "float32", X, Y, grads=("input",)))
        assert jax.config.jax_enable_x64 is True
    assert result.value.dtype == np.float32 and result.grads["input"].dtype == np.float32


def test_x64_scope_does_not_leak_into_other_threads():
    seen: list[bool] = []
    started, release = threading.Event(), threading.Event()

    def other_code() -> None:
        started.set()
        release.wait(5)
        seen.append(bool(jax.config.x64_enabled))

    thread = threading.Thread(target=other_code)
    thread.start()
    started.wait(5)
    before = bool(jax.config.x64_enabled)
    BACKEND.run(Call("jax.nn", "cpu", "float64", X, Y))
    release.set()
    thread.join(5)
    assert seen == [before]


def test_optax_has_no_pos_weight():
    with pytest.raises(Unsupported, match=r"optax.sigmoid_binary_cross_entropy\(logits, labels\) "
                                          r"has no pos_weight argument"):
        BACKEND.run(Call("optax", "cpu", "float32", X, Y, None, P))


@pytest.mark.parametrize("impl", IMPLEMENTATIONS)
def test_invalid_reduction_has_no_framework_argument_to_reach(impl):
    with pytest.raises(Unsupported, match="has no reduction argument"):
        BACKEND.run(Call(impl, "cpu", "float32", X, Y, reduction="bogus"))


@pytest.mark.parametrize("impl", IMPLEMENTATIONS)
def test_mismatched_shapes_broadcast_silently_or_fail_as_jax_does(impl):
    # JAX broadcasts input (2,3) against target (3,) where torch would refuse...
    result = BACKEND.run(Call(impl, "cpu", "float32", X, Y[0], reduction="none"))
    assert result.value.shape == (2, 3)
    # ...and raises its own error where the shapes do not broadcast at all
    with pytest.raises((TypeError, ValueError), match="broadcast"):
        BACKEND.run(Call(impl, "cpu", "float32", X[0], Y[0, :2]))


def test_integer_target_is_cast_and_has_no_gradient():
    call = Call("optax", "cpu", "float32", X, np.round(Y), grads=("input", "target"),
                arg_dtypes={"target": "int32"})
    result = BACKEND.run(call)
    assert result.value.dtype == np.float32
    assert result.grads["input"].shape == X.shape
    assert "float0" in result.grads["target"].reason


@pytest.mark.parametrize("impl", IMPLEMENTATIONS)
def test_same_call_gives_the_same_bits_with_or_without_gradients(impl):
    call = Call(impl, "cpu", "bfloat16", X, Y, W, None, "mean", ("input",))
    first, second = BACKEND.run(call), BACKEND.run(call)
    bare = BACKEND.run(Call(impl, "cpu", "bfloat16", X, Y, W, None, "mean"))
    assert first.value.tobytes() == second.value.tobytes() == bare.value.tobytes()
    assert first.grads["input"].tobytes() == second.grads["input"].tobytes()


def test_absent_device_is_unsupported():
    if "cuda:7" in BACKEND.devices():
        pytest.skip("this machine has a cuda:7")
    with pytest.raises(Unsupported, match="'cuda:7' is not present"):
        BACKEND.run(Call("jax.nn", "cuda:7", "float32", X, Y))


# --- compiled: the same functions under jax.jit, value and vjp in one function ---

def test_compiled_implementations_pair_with_their_eager_twins():
    assert BACKEND.eager_twins() == {"jax.nn+jit": "jax.nn", "optax+jit": "optax"}
    assert all("jax.jit" in BACKEND.describe(c) for c in COMPILED)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("impl", list(COMPILED))
def test_jit_agrees_with_eager_on_ordinary_inputs(impl, dtype):
    eager = COMPILED[impl]
    p = P if TAKES_POS_WEIGHT[eager] else None
    grads = ALL if p is not None else ALL[:3]
    jitted = BACKEND.run(Call(impl, "cpu", dtype, X, Y, W, p, "mean", grads))
    reference = BACKEND.run(Call(eager, "cpu", dtype, X, Y, W, p, "mean", grads))
    assert jitted.value.dtype == reference.value.dtype == numpy_dtype(dtype)
    # a few ulps apart at most: XLA may fuse and reorder, never change the formula
    assert_close(jitted.value, reference.value, dtype)
    for name in grads:
        assert jitted.grads[name].dtype == reference.grads[name].dtype, name
        assert_close(jitted.grads[name], reference.grads[name], dtype)


def test_one_jitted_function_per_key_and_no_global_x64():
    before = jax.config.jax_enable_x64
    for n in (3, 5, 11):
        x = np.linspace(-2.0, 2.0, n)
        result = BACKEND.run(Call("optax+jit", "cpu", "float64", x, np.zeros(n),
                                  reduction="sum", grads=("input",)))
        assert result.value.dtype == np.float64
    keys = [k for k in jax_backend._JITTED if k[:2] == ("optax+jit", "sum")
            and k[2] == ("input", "target") and k[3]]
    assert len(keys) == 1  # jit itself keeps one executable per shape
    assert jax.config.jax_enable_x64 == before


def test_jit_snippet_jits_value_and_vjp_together():
    call = Call("jax.nn+jit", "cpu", "float32", X, Y, W, P, "mean", ALL)
    source = BACKEND.snippet(call)
    compile(source, "snippet", "exec")
    assert "@jax.jit\ndef step(x, y, weight, pos_weight):" in source
    assert "out, cotangents = step(x, y, weight, pos_weight)" in source
