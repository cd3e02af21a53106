"""The keras-jax and keras-torch backends against real Keras 3 on its JAX and PyTorch engines.

A process holds one Keras engine (Keras reads KERAS_BACKEND once, at import), and the
pytest process may already hold Keras on TensorFlow (tests/test_backend_tensorflow.py),
so everything that imports keras runs in a fresh interpreter per engine: one
subprocess runs DRIVER and reports facts as JSON, and the tests below judge them.
What needs no keras (the registry, the one-line reasons) is tested here directly.
"""

from __future__ import annotations

import functools
import importlib.util
import json
import subprocess
import sys
import types
from pathlib import Path
from typing import Any

import pytest

from harness.backends import keras_backend
from harness.backends.keras_backend import KerasJaxBackend, KerasTorchBackend
from harness.protocol import DTYPES, Backend
from harness.run import registry

ROOT = Path(__file__).resolve().parents[1]
ENGINES = {"jax": KerasJaxBackend, "torch": KerasTorchBackend}
# An engine's tests read one DRIVER run (`_facts`, cached per pytest process): one xdist
# group per engine, so that under --dist loadgroup the subprocess runs once per engine.
ENGINE_PARAMS = [pytest.param(e, marks=pytest.mark.xdist_group(f"keras-{e}-driver"))
                 for e in ENGINES]

DRIVER = r"""
import contextlib, io, json, os, sys
import numpy as np
from harness.backends.keras_backend import KerasJaxBackend, KerasTorchBackend
from harness.protocol import Call, Unsupported
from tests.backend_expect import assert_close, expected

engine = sys.argv[1]
mine, other = ((KerasJaxBackend(), KerasTorchBackend()) if engine == "jax"
               else (KerasTorchBackend(), KerasJaxBackend()))
facts = {}
facts["availability"] = mine.availability()
facts["versions_before"] = mine.versions()
facts["devices"] = mine.devices()
facts["keras_imported_by_listing"] = "keras" in sys.modules
facts["env_before"] = os.environ.get("KERAS_BACKEND")

# |x| <= 2 keeps keras-probs off its clip; no 0 logit; values exact in bfloat16
X = np.array([[-2.0, -0.5, 0.25], [0.75, 1.5, 2.0]])
Y = np.array([[0.0, 0.25, 0.5], [1.0, 1.0, 0.0]])
W = np.array([0.5, 1.0, 2.0])
GRADS = ("input", "target", "weight")
checked = []
for impl, dtype in (("keras", "float32"), ("keras", "float64"), ("keras", "bfloat16"),
                    ("keras-probs", "float32")):
    for reduction in ("none", "mean", "sum"):
        call = Call(impl, "cpu", dtype, X, Y, W, None, reduction, GRADS)
        result = mine.run(call)
        value, grads = expected(X, Y, W, None, reduction)
        # Keras computes in float32: float32's tolerance, or the input format's if wider
        tol = "bfloat16" if dtype == "bfloat16" else "float32"
        assert_close(result.value, value, tol)
        for name in GRADS:
            assert_close(result.grads[name], grads[name], tol)
        checked.append([impl, dtype, reduction, str(result.value.dtype), result.value.shape,
                        {n: str(g.dtype) for n, g in result.grads.items()}])
facts["checked"] = checked
try:
    mine.run(Call("keras", "cpu", "float32", X, Y, pos_weight=W))
    facts["pos_weight"] = None
except Unsupported as exc:
    facts["pos_weight"] = exc.reason
facts["env_after"] = os.environ.get("KERAS_BACKEND")
facts["versions_after"] = mine.versions()
import keras
facts["keras_engine"] = keras.config.backend()
facts["other_availability"] = other.availability()
try:
    other.run(Call("keras", "cpu", "float32", X, Y))
    facts["other_run"] = None
except Unsupported as exc:
    facts["other_run"] = exc.reason

# the reproduction snippet prints what run returns, bit for bit
call = Call("keras", "cpu", "float32", X, Y, W, None, "mean", ("input", "weight"))
result = mine.run(call)
out = io.StringIO()
with contextlib.redirect_stdout(out):
    exec(compile(mine.snippet(call), "snippet", "exec"), {"__name__": "__main__"})
printed = {}
for line in out.getvalue().splitlines():
    head, _, rest = line.partition(" ")
    if head == "grad":
        head, _, rest = rest.partition(" ")
        head = "grad " + head
    printed[head] = rest
facts["snippet_value_same"] = float(eval(printed["value"])) == float(result.value)
facts["snippet_grad_same"] = np.array_equal(np.array(eval(printed["grad input"])),
                                            result.grads["input"].astype(np.float64))
print(json.dumps(facts))
"""


def _installed(*modules: str) -> bool:
    return all(importlib.util.find_spec(m) is not None for m in modules)


@functools.cache
def _facts(engine: str) -> dict[str, Any]:
    """DRIVER's facts for one engine, from a fresh interpreter (one run per engine)."""
    if not _installed("keras", engine):
        pytest.skip(f"keras and {engine} are needed for keras-{engine}")
    done = subprocess.run([sys.executable, "-c", DRIVER, engine], cwd=ROOT,
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-4000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_registered_and_isolated():
    found = {b.name: b for b in registry.discover()}
    for engine, cls in ENGINES.items():
        loaded = found[f"keras-{engine}"]
        assert type(loaded.backend) is cls
        assert isinstance(loaded.backend, Backend)
        assert loaded.backend.isolated is True  # keras holds one engine per process
        assert loaded.backend.implementations() == ["keras", "keras-probs", "keras-last-axis"]
        assert loaded.backend.last_axis_mean() == ["keras-last-axis"]
        assert loaded.backend.label_smoothing() == loaded.backend.implementations()
        assert loaded.backend.dtypes() == list(DTYPES)
        assert all(loaded.backend.describe(i) for i in loaded.backend.implementations())


@pytest.mark.parametrize("engine", ENGINE_PARAMS)
def test_listing_does_not_import_keras(engine):
    facts = _facts(engine)
    assert facts["availability"] is None
    assert not facts["keras_imported_by_listing"]  # else `backends` would fix the engine
    versions = facts["versions_before"]
    assert versions["keras_backend"] == engine and versions["keras"].startswith("3.")
    assert engine in versions  # the engine's own version
    assert facts["devices"][0] == "cpu"


@pytest.mark.parametrize("engine", ENGINE_PARAMS)
def test_runs_on_its_engine_and_restores_the_environment(engine):
    facts = _facts(engine)
    assert facts["keras_engine"] == engine
    assert facts["env_after"] == facts["env_before"]  # KERAS_BACKEND set for the import only
    assert facts["versions_after"]["keras_floatx"] == "float32"


@pytest.mark.parametrize("engine", ENGINE_PARAMS)
def test_agrees_with_the_reference_and_returns_float32(engine):
    facts = _facts(engine)
    assert len(facts["checked"]) == 12  # every call DRIVER made was within tolerance
    for impl, dtype, reduction, value_dtype, shape, grad_dtypes in facts["checked"]:
        assert value_dtype == "float32", (impl, dtype)  # Keras computes in floatx()
        assert shape == ([2, 3] if reduction == "none" else [])
        # gradients come back in the arguments' own dtype
        assert set(grad_dtypes.values()) == {dtype}, (impl, dtype, grad_dtypes)


@pytest.mark.parametrize("engine", ENGINE_PARAMS)
def test_pos_weight_is_unsupported(engine):
    assert _facts(engine)["pos_weight"] == keras_backend.NO_POS_WEIGHT


@pytest.mark.parametrize("engine", ENGINE_PARAMS)
def test_the_other_engine_says_keras_is_taken(engine):
    facts = _facts(engine)
    reason = keras_backend.already_loaded(engine)
    assert facts["other_availability"] == reason
    assert facts["other_run"] == reason


@pytest.mark.parametrize("engine", ENGINE_PARAMS)
def test_snippet_prints_what_run_returns(engine):
    facts = _facts(engine)
    assert facts["snippet_value_same"] and facts["snippet_grad_same"]


def test_keras_on_tensorflow_already_loaded_is_one_clear_line(monkeypatch):
    config = types.SimpleNamespace(backend=lambda: "tensorflow")
    monkeypatch.setitem(sys.modules, "keras.src.backend.config", config)
    line = KerasJaxBackend().availability()
    assert line == ("keras is already loaded with the tensorflow engine in this process; "
                    "python -m harness report runs each backend in its own worker")
    assert "\n" not in line
