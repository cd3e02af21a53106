"""The PyTorch backend against real torch: what it reports, computes and refuses.

These tests pin the adapter's promises (dtype kept, gradients shaped like their
arguments, torch's own refusals surfaced as Unsupported, invalid input passed
through to torch) rather than torch's accuracy, which the conformance suite
measures against the reference.
"""

from __future__ import annotations

import os
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest

from harness.backends import torch_backend
from harness.backends.torch_backend import (
    COMPILED,
    IMPLEMENTATIONS,
    LEGACY,
    TorchBackend,
    _disagreement,
)
from harness.dtypes import numpy_dtype
from harness.protocol import DTYPES, REDUCTIONS, Backend, Call, Result, Unsupported
from tests.backend_expect import assert_close, expected
from tests.lazy import lazy, needs

torch = lazy("torch")  # imported by the first test that uses it, not at collection
pytestmark = needs("torch")

ROOT = Path(__file__).resolve().parents[1]
BACKEND = TorchBackend()
ALL = ("input", "target", "weight", "pos_weight")

# Small values exactly representable in every dtype; |x| <= 2 keeps the two-step
# sigmoid+bce within a few bfloat16 ulps of the truth, so one tolerance serves all.
X = np.array([[-2.0, -0.5, 0.0], [0.75, 1.5, 2.0]])
Y = np.array([[0.0, 0.25, 0.5], [1.0, 1.0, 0.0]])
W = np.array([0.5, 1.0, 2.0])
P = np.array([1.0, 2.0, 3.0])


def test_protocol_surface():
    assert isinstance(BACKEND, Backend)
    assert BACKEND.name == "torch"
    assert BACKEND.availability() is None
    assert BACKEND.versions()["torch"] == str(torch.__version__)
    devices = BACKEND.devices()
    assert devices[0] == "cpu"
    assert devices[1:] == [f"cuda:{i}" for i in range(torch.cuda.device_count())]
    assert BACKEND.dtypes() == list(DTYPES)
    assert BACKEND.implementations()[:4] == ["functional", "module", "sigmoid+bce", "legacy"]
    assert all(BACKEND.describe(i) for i in BACKEND.implementations())


def test_importing_the_module_does_not_import_torch():
    code = "import sys, harness.backends.torch_backend; assert 'torch' not in sys.modules"
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, check=True)


@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("impl", IMPLEMENTATIONS)
def test_value_and_gradients_match_the_reference(impl, dtype, reduction):
    p = None if impl == "sigmoid+bce" else P
    grads = ALL if p is not None else ALL[:3]
    result = BACKEND.run(Call(impl, "cpu", dtype, X, Y, W, p, reduction, grads))
    want, want_grads = expected(X, Y, W, p, reduction)
    assert result.value.dtype == numpy_dtype(dtype)
    assert result.value.shape == (X.shape if reduction == "none" else ())
    assert_close(result.value, want, dtype)
    assert list(result.grads) == list(grads)
    for name in ("input", "target"):
        g = result.grads[name]
        assert g.dtype == numpy_dtype(dtype) and g.shape == X.shape
        assert_close(g, want_grads[name], dtype)
    for name in grads[2:]:  # torch refuses these at the forward; the value still stands
        assert isinstance(result.grads[name], Unsupported)
        assert "is not differentiable with respect to argument" in result.grads[name].reason


@pytest.mark.parametrize("impl", ["functional", "module", "legacy"])
def test_weight_and_pos_weight_gradients_carry_torch_own_message(impl):
    result = BACKEND.run(Call(impl, "cpu", "float64", X, Y, W, P, "sum", ALL))
    assert result.grads["weight"].reason == (
        "The function 'binary_cross_entropy_with_logits' is not differentiable with respect "
        "to argument 'weight'. This input cannot have requires_grad True.")
    assert "argument 'pos_weight'" in result.grads["pos_weight"].reason
    assert np.all(np.isfinite(result.grads["input"]))


def test_sigmoid_bce_weight_gradient_carries_torch_own_message():
    result = BACKEND.run(Call("sigmoid+bce", "cpu", "float32", X, Y, W, None, "mean", ALL[:3]))
    assert result.grads["weight"].reason.startswith(
        "The function 'binary_cross_entropy' is not differentiable with respect to argument "
        "'weight'")


@pytest.mark.parametrize(("w", "p"), [
    (np.array(2.0), np.array(3.0)),
    (np.array([[0.5, 1.0, 2.0]]), np.array([1.0, 2.0, 3.0])),
    (np.array([[0.5], [2.0]]), np.array([[2.0], [1.0]])),
])
@pytest.mark.parametrize("impl", ["functional", "module"])
def test_weight_and_pos_weight_broadcast_like_the_reference(impl, w, p):
    result = BACKEND.run(Call(impl, "cpu", "float64", X, Y, w, p, "none", ("input",)))
    want, want_grads = expected(X, Y, w, p, "none")
    assert_close(result.value, want, "float64")
    assert_close(result.grads["input"], want_grads["input"], "float64")


def test_sigmoid_bce_has_no_pos_weight():
    with pytest.raises(Unsupported, match="has no pos_weight argument"):
        BACKEND.run(Call("sigmoid+bce", "cpu", "float32", X, Y, None, P))


def test_sigmoid_bce_clamps_the_log_at_minus_100():
    # sigmoid(-200) is 0 in float32, log(0) = -inf, and BCE clamps it to -100
    result = BACKEND.run(Call("sigmoid+bce", "cpu", "float32", np.array([-200.0]),
                              np.array([1.0]), reduction="none"))
    assert result.value.tolist() == [100.0]
    exact = BACKEND.run(Call("functional", "cpu", "float32", np.array([-200.0]),
                             np.array([1.0]), reduction="none"))
    assert exact.value.tolist() == [200.0]


@pytest.mark.parametrize("impl", IMPLEMENTATIONS)
def test_invalid_input_reaches_torch(impl):
    with pytest.raises(ValueError, match="bogus is not a valid value for reduction"):
        BACKEND.run(Call(impl, "cpu", "float32", X, Y, reduction="bogus"))
    with pytest.raises(ValueError, match="size"):
        BACKEND.run(Call(impl, "cpu", "float32", X, Y[0]))
    # a weight that would enlarge the input's shape is refused by torch, not the adapter
    with pytest.raises(RuntimeError, match=r"doesn't match the broadcast shape \[2, 2, 3\]"):
        BACKEND.run(Call(impl, "cpu", "float32", X, Y, np.ones((2, 2, 3)), reduction="none"))


def test_integer_target_goes_to_torch_as_is():
    call = Call("functional", "cpu", "float32", X, np.round(Y), arg_dtypes={"target": "int64"})
    with pytest.raises(RuntimeError, match="can't be cast to the desired output type Long"):
        BACKEND.run(call)


def test_legacy_table_is_torch_own_mapping():
    from torch.nn._reduction import legacy_get_string

    pairs = [(s, r) for s in (True, False, None) for r in (True, False, None)]
    for size_average, reduce in pairs:
        if size_average is None and reduce is None:
            continue  # neither passed: torch uses `reduction`, not the legacy path
        meaning = legacy_get_string(size_average, reduce, emit_warning=False)
        assert (size_average, reduce) in LEGACY[meaning]
    assert sum(len(v) for v in LEGACY.values()) == len(pairs) - 1


@pytest.mark.parametrize("reduction", REDUCTIONS)
def test_legacy_agrees_bitwise_with_functional_and_stays_quiet(reduction):
    call = Call("legacy", "cpu", "float32", X, Y, W, P, reduction, ("input", "target"))
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # any warning escaping the adapter fails the test
        legacy = BACKEND.run(call)
    functional = BACKEND.run(Call("functional", *_rest(call)))
    assert _disagreement(legacy, functional) == ""


def _rest(call: Call) -> tuple:
    return (call.device, call.dtype, call.input, call.target, call.weight, call.pos_weight,
            call.reduction, call.grads)


def test_legacy_disagreement_names_what_differs():
    a = Result(np.array(1.0, np.float32), {"input": np.zeros(3, np.float32)})
    b = Result(np.array(1.0, np.float32), {"input": np.array([0, -0.0, 0], np.float32)})
    assert _disagreement(a, a) == ""
    assert _disagreement(a, b).startswith("gradients of input")
    c = Result(np.array(1.0, np.float64), {"input": np.zeros(3, np.float32)})
    assert _disagreement(a, c).startswith("values")


def test_same_call_gives_the_same_bits_with_or_without_gradients():
    call = Call("module", "cpu", "bfloat16", X, Y, W, P, "mean", ("input",))
    first, second = BACKEND.run(call), BACKEND.run(call)
    bare = BACKEND.run(Call("module", *_rest(call)[:-1], ()))
    assert first.value.tobytes() == second.value.tobytes() == bare.value.tobytes()
    assert first.grads["input"].tobytes() == second.grads["input"].tobytes()


def test_zero_dim_input_stays_zero_dim():
    result = BACKEND.run(Call("functional", "cpu", "float32", np.array(1.0), np.array(1.0),
                              reduction="none", grads=("input",)))
    assert result.value.shape == () and result.grads["input"].shape == ()


def test_absent_device_is_unsupported():
    if "cuda:7" in BACKEND.devices():
        pytest.skip("this machine has a cuda:7")
    with pytest.raises(Unsupported, match="'cuda:7' is not present"):
        BACKEND.run(Call("functional", "cuda:7", "float32", X, Y))


def test_gradient_of_an_absent_argument_is_a_caller_error():
    with pytest.raises(ValueError, match=r"call\.weight is None"):
        BACKEND.run(Call("functional", "cpu", "float32", X, Y, grads=("weight",)))


# --- compiled: torch.compile (Dynamo + Inductor, C++ on the CPU) ---

# a string condition: evaluated when the test is set up, so collection imports no torch
needs_compiler = pytest.mark.skipif("torch_backend._compiler_problem() is not None",
                                    reason="Inductor finds no C++ compiler here")


def test_compiled_implementations_pair_with_their_eager_twins():
    assert BACKEND.implementations() == [*IMPLEMENTATIONS, "functional+compile",
                                         "module+compile"]
    assert BACKEND.eager_twins() == {"functional+compile": "functional",
                                     "module+compile": "module"}
    assert all("torch.compile" in BACKEND.describe(c) for c in COMPILED)


@needs_compiler
@pytest.mark.parametrize("impl", list(COMPILED))
def test_compiled_agrees_with_eager_on_ordinary_inputs(impl):
    call = Call(impl, "cpu", "float32", X, Y, W, P, "mean", ALL)
    compiled, eager = BACKEND.run(call), BACKEND.run(Call(COMPILED[impl], *_rest(call)))
    assert compiled.value.dtype == eager.value.dtype == np.float32
    np.testing.assert_allclose(compiled.value, eager.value, rtol=2e-6)
    for name in ("input", "target"):
        assert compiled.grads[name].dtype == np.float32
        np.testing.assert_allclose(compiled.grads[name], eager.grads[name], rtol=2e-6,
                                   atol=1e-7, err_msg=name)
    # torch refuses these at the forward; under compile Dynamo wraps the refusal, and
    # the reason keeps torch's own sentence
    for name in ("weight", "pos_weight"):
        reason = compiled.grads[name].reason
        assert reason.startswith("The function 'binary_cross_entropy_with_logits' is not "
                                 f"differentiable with respect to argument '{name}'")
        assert "torch.compile" in reason
    # a new size reuses the compiled function (dynamic=True)
    bigger = np.linspace(-3.0, 3.0, 30).reshape(10, 3)
    again = BACKEND.run(Call(impl, "cpu", "float32", bigger, np.full_like(bigger, 0.5), W, P,
                             "mean", ("input",)))
    want, _ = expected(bigger, np.full_like(bigger, 0.5), W, P, "mean")
    assert_close(again.value, want, "float32")
    keys = [k for k in torch_backend._COMPILED if k[0] == impl]
    assert len(keys) == 1


def test_a_missing_compiler_is_unsupported_with_the_way_to_get_one(monkeypatch):
    from torch._inductor import cpp_builder, exc

    def no_compiler() -> str:
        raise exc.InvalidCxxCompiler()

    monkeypatch.setattr(cpp_builder, "get_cpp_compiler", no_compiler)
    monkeypatch.setattr(torch_backend, "_COMPILER", [])
    call = Call("functional+compile", "cpu", "float32", X, Y)
    with pytest.raises(Unsupported, match=r"no working C\+\+ compiler.*apt-get install g\+\+"):
        BACKEND.run(call)
    with pytest.raises(Unsupported, match="apt-get install g"):
        BACKEND.snippet(call)
    assert BACKEND.run(Call("functional", *_rest(call))).value.dtype == np.float32


def test_compiled_snippet_compiles_the_same_call():
    call = Call("module+compile", "cpu", "float32", X, Y, W, None, "sum", ("input",))
    source = BACKEND.snippet(call)
    compile(source, "snippet", "exec")
    assert "@torch.compile(dynamic=True)\ndef loss_fn(x, y, weight):" in source
    assert "torch.nn.BCEWithLogitsLoss(weight=weight, reduction='sum')(x, y)" in source
