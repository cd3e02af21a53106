"""Backend `snippet(call)` hooks: each snippet runs on its own and prints what `run` returns.

A snippet is what a framework maintainer pastes into their bug tracker, so it
must stand alone: every snippet of a backend is executed in one fresh Python
process (the venv's) in which `harness` and `backends` cannot be imported, each
in a namespace of its own, and the value, result dtype and gradients it prints
must be exactly (bit for bit, NaN and the sign of zero included) what
`backend.run(call)` returns in this process.
"""

from __future__ import annotations

import contextlib
import functools
import importlib
import json
import math
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import ml_dtypes
import numpy as np
import pytest
import yaml

from harness.backends._common import TOO_LARGE
from harness.cases.syntax import YamlLoader
from harness.cases.values import special_value
from harness.dtypes import dtype_name, numpy_dtype
from harness.literals import python_float, python_literal, yaml_float
from harness.protocol import Call, Result, Unsupported

# name → (module, class, framework module to importorskip or None)
BACKENDS: dict[str, tuple[str, str, str | None]] = {
    "numpy": ("harness.backends.numpy_backend", "NumpyBackend", None),
    "torch": ("harness.backends.torch_backend", "TorchBackend", "torch"),
    "tensorflow": ("harness.backends.tensorflow_backend", "TensorFlowBackend", "tensorflow"),
    "jax": ("harness.backends.jax_backend", "JaxBackend", "jax"),
}
IMPLEMENTATIONS: dict[str, tuple[str, ...]] = {
    "numpy": ("formula", "naive"),
    "torch": ("functional", "module", "sigmoid+bce", "legacy"),
    "tensorflow": ("sigmoid", "weighted", "keras", "keras-probs"),
    "jax": ("jax.nn", "optax"),
}

# Values exactly representable in bfloat16, so every dtype gets the same numbers.
X = np.array([[-2.0, -0.5, 0.0], [0.75, 1.5, 2.0]])
Y = np.array([[0.0, 0.25, 0.5], [1.0, 1.0, 0.0]])
W = np.array([0.5, 1.0, 2.0])
P = np.array([1.0, 2.0, 3.0])
ALL = ("input", "target", "weight", "pos_weight")

CASES: dict[str, dict[str, Any]] = {
    "f32-weight-mean": dict(dtype="float32", input=X, target=Y, weight=W, reduction="mean",
                            grads=("input", "target", "weight")),
    "f64-both-sum": dict(dtype="float64", input=X, target=Y, weight=W, pos_weight=P,
                         reduction="sum", grads=ALL),
    "f32-pos_weight-none": dict(dtype="float32", input=X, target=Y, pos_weight=P,
                                reduction="none", grads=("input", "pos_weight")),
    "f64-0d-none": dict(dtype="float64", input=np.array(-1.5), target=np.array(0.25),
                        reduction="none", grads=("input", "target")),
    "bf16-weight-mean": dict(dtype="bfloat16", input=X, target=Y, weight=W, reduction="mean",
                             grads=("input",)),
    "f64-special-none": dict(dtype="float64",
                             input=np.array([np.nan, np.inf, -np.inf, -0.0, 0.0, 40.0]),
                             target=np.array([0.5, 1.0, 0.0, 1.0, 0.0, 0.0]),
                             reduction="none", grads=("input",)),
    "f32-int-weight-sum": dict(dtype="float32", input=X, target=Y, weight=np.array([1.0, 0.0, 2.0]),
                               reduction="sum", grads=("input", "weight"),
                               arg_dtypes={"weight": "int64"}),
    "f64-bool-weight-int-target-sum": dict(
        dtype="float64", input=X, target=np.array([[0.0, 1.0, 1.0], [1.0, 0.0, 0.0]]),
        weight=np.array([1.0, 0.0, 1.0]), reduction="sum", grads=ALL[:3],
        arg_dtypes={"target": "int64", "weight": "bool"}),
    # over the literal limit but constant: built with np.full, exactly
    "f32-large-mean": dict(dtype="float32", input=np.full((10, 10), 0.5),
                           target=np.full((10, 10), 1.0), reduction="mean", grads=("input",)),
}

# A backend's snippets run in one subprocess per pytest process (`_executed`); its items
# form one xdist group so that, under --dist loadgroup, it runs once, not once per worker.
PARAMS = [pytest.param(b, i, c, marks=pytest.mark.xdist_group(f"snippets-{b}"))
          for b in BACKENDS for i in IMPLEMENTATIONS[b] for c in CASES]

DRIVER = """
import contextlib, io, json, sys
sys.modules["harness"] = None  # a snippet importing the harness fails here
sys.modules["backends"] = None
out = {}
for key, source in json.load(open(sys.argv[1])):
    buffer, error = io.StringIO(), None
    try:
        with contextlib.redirect_stdout(buffer):
            exec(compile(source, key, "exec"), {"__name__": "__main__"})
    except BaseException as exc:
        error = [type(exc).__name__, str(exc)]
    out[key] = [buffer.getvalue(), error]
json.dump(out, open(sys.argv[2], "w"))
"""


def _backend(name: str) -> Any:
    module, cls, framework = BACKENDS[name]
    if framework is not None:
        pytest.importorskip(framework, reason=f"{framework} is not installed")
    return getattr(importlib.import_module(module), cls)()


def _call(implementation: str, case: str) -> Call:
    return Call(implementation=implementation, device="cpu", **CASES[case])


def _outcome(fn: Any, *args: Any) -> Any:
    """fn(*args), or the exception it raised."""
    try:
        return fn(*args)
    except Exception as exc:
        return exc


@functools.cache
def _snippets(name: str) -> dict[tuple[str, str], Any]:
    """(implementation, case) → the snippet's source, or the exception snippet() raised."""
    backend = _backend(name)
    return {(i, c): _outcome(backend.snippet, _call(i, c))
            for i in IMPLEMENTATIONS[name] for c in CASES}


@functools.cache
def _executed(name: str) -> dict[str, tuple[str, list[str] | None]]:
    """Every snippet of one backend run in one fresh process: key → (stdout, error)."""
    sources = [[f"{i}|{c}", s] for (i, c), s in _snippets(name).items() if isinstance(s, str)]
    with tempfile.TemporaryDirectory() as tmp:
        inp, out = Path(tmp, "in.json"), Path(tmp, "out.json")
        inp.write_text(json.dumps(sources))
        done = subprocess.run([sys.executable, "-c", DRIVER, str(inp), str(out)], cwd=tmp,
                              capture_output=True, text=True, timeout=300)
        assert done.returncode == 0, done.stderr[-3000:]
        return {k: (v[0], v[1]) for k, v in json.loads(out.read_text()).items()}


def _printed(stdout: str) -> dict[str, Any]:
    """'value', 'dtype' and 'grad NAME' lines of a snippet's output, parsed."""
    out: dict[str, Any] = {}
    names = {"nan": math.nan, "inf": math.inf, "None": None}
    for line in stdout.splitlines():
        head, _, rest = line.partition(" ")
        if head == "grad":
            head, _, rest = rest.partition(" ")
            head = "grad " + head
        elif head == "dtype":
            out[head] = rest.strip()
            continue
        elif head != "value":
            continue
        out[head] = eval(rest, {"__builtins__": {}}, names)
    return out


def _same(printed: Any, array: np.ndarray) -> bool:
    """Bit for bit in float64: shape, NaN positions, values and signs of zero."""
    a = np.asarray(printed, dtype=np.float64)
    b = np.asarray(array).astype(np.float64)
    if a.shape != b.shape or not np.array_equal(np.isnan(a), np.isnan(b)):
        return False
    keep = ~np.isnan(a)
    return bool(np.array_equal(a[keep], b[keep])
                and np.array_equal(np.signbit(a[keep]), np.signbit(b[keep])))


@pytest.mark.parametrize(("name", "implementation", "case"), PARAMS)
def test_snippet_prints_what_run_returns(name: str, implementation: str, case: str) -> None:
    backend = _backend(name)
    call = _call(implementation, case)
    result = _outcome(backend.run, call)
    source = _snippets(name)[implementation, case]
    if isinstance(source, Exception):
        # snippet() refuses exactly what run() refuses before computing anything
        assert isinstance(result, Exception), f"snippet raised {source!r}, run returned"
        assert type(source) is type(result)
        if isinstance(result, Unsupported):
            assert source.reason == result.reason
        return
    for word in ("harness", "backends", "Call("):
        assert word not in source, f"the snippet is not self-contained ({word}):\n{source}"
    stdout, error = _executed(name)[f"{implementation}|{case}"]
    if isinstance(result, Exception):  # the framework's own error, reproduced
        assert error is not None, f"run raised {result!r}; the snippet printed:\n{stdout}"
        if not isinstance(result, Unsupported):
            assert error[0] == type(result).__name__, (error, result)
        return
    assert error is None, f"snippet failed: {error}\n{source}"
    assert isinstance(result, Result)
    printed = _printed(stdout)
    assert _same(printed["value"], result.value), (printed["value"], result.value, source)
    assert printed["dtype"] == dtype_name(np.asarray(result.value).dtype)
    for grad, expected in result.grads.items():
        got = printed.get(f"grad {grad}")
        if isinstance(expected, Unsupported):
            assert got is None, f"run: {expected.reason}; snippet printed {got}"
        else:
            assert got is not None, f"gradient of {grad} not printed:\n{stdout}"
            assert _same(got, expected), (grad, got, expected)
    assert "same bits: False" not in stdout  # torch legacy: every pair agrees


@pytest.mark.parametrize("name", list(BACKENDS))
def test_arguments_too_large_get_the_placeholder(name: str) -> None:
    backend = _backend(name)
    x = np.linspace(-4.0, 4.0, 65)  # 65 distinct values: no short exact expression
    call = Call(implementation=IMPLEMENTATIONS[name][0], device="cpu", dtype="float32",
                input=x, target=np.zeros_like(x), reduction="mean")
    source = backend.snippet(call)
    assert f"# {TOO_LARGE}" in source
    with pytest.raises(SystemExit, match="too large to inline"), \
            contextlib.redirect_stdout(None):
        exec(compile(source, "snippet", "exec"), {"__name__": "__main__"})


def test_repro_prefers_the_backend_snippet() -> None:
    from harness.report.snippets import snippet

    backend = _backend("numpy")
    call = _call("formula", "f32-weight-mean")
    assert snippet(backend, "numpy", call, "case", "cases/x.yaml:1") == backend.snippet(call)


def test_literals_are_exact_and_readable() -> None:
    special = np.array([np.nan, np.inf, -np.inf, -0.0, 0.1, 1e-300])
    assert python_literal(special, "float64") == \
        "[float('nan'), float('inf'), -float('inf'), -0.0, 0.1, 1e-300]"
    assert python_literal(np.array(2.5), "float32") == "2.5"
    assert python_literal(np.array([1.0, 0.0]), "bool") == "[True, False]"
    assert python_literal(np.array([[3.0], [-1.0]]), "int64") == "[[3], [-1]]"
    assert python_literal(np.zeros((0, 3)), "float32") == "np.zeros((0, 3))"
    assert python_literal(np.full((5, 20), -0.0), "float16") == "np.full((5, 20), -0.0)"
    mixed_zero = np.zeros(65)
    mixed_zero[3] = -0.0
    assert python_literal(mixed_zero, "float32") is None
    assert python_literal(np.arange(65.0), "float32") is None



@pytest.mark.parametrize("dtype", ["float16", "bfloat16", "float32", "float64"])
def test_python_and_yaml_spellings_read_back_bit_for_bit(dtype: str) -> None:
    """Snippets and saved case files share one float spelling; both must give back the
    bits written, in every dtype: ±0, subnormals, the extremes and ±inf too (NaN
    comes back as NaN; its payload is not part of any dtype's contract)."""
    np_dtype = numpy_dtype(dtype)
    info = ml_dtypes.finfo(np_dtype)
    width = np_dtype.itemsize * 8
    raw = np.random.default_rng(0).integers(0, 2**width - 1, 2000, dtype=np.uint64,
                                            endpoint=True)
    with np.errstate(invalid="ignore"):  # NaN bit patterns
        drawn = raw.astype(f"uint{width}").view(np_dtype).astype(np.float64)
    values = [*drawn,
              0.0, -0.0, float(info.max), -float(info.max), float(info.smallest_subnormal),
              -float(info.smallest_subnormal), float(info.tiny), math.inf, -math.inf, math.nan]
    written = np.array(values, dtype=np.float64)
    as_python = np.array([eval(python_float(v), {"__builtins__": {"float": float}})
                          for v in written])
    loaded = yaml.load("[" + ", ".join(yaml_float(v) for v in written) + "]",
                       Loader=YamlLoader)
    as_yaml = np.array([special_value(v) if isinstance(v, str) else v for v in loaded])
    nan = np.isnan(written)
    for back in (as_python, as_yaml):
        assert np.array_equal(np.isnan(back), nan)
        assert back[~nan].tobytes() == written[~nan].tobytes()
        with np.errstate(invalid="ignore"):
            assert back.astype(np_dtype)[~nan].tobytes() == \
                written.astype(np_dtype)[~nan].tobytes()
    assert python_literal(written[:5], dtype) == \
        "[" + ", ".join(python_float(v) for v in written[:5]) + "]"
