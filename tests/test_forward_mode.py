"""Forward-mode derivatives (`report --forward-mode`): the reference's gradient · tangent,
the frameworks' own forward mode, and planted forward-mode bugs the checks must catch."""

from __future__ import annotations

from fractions import Fraction

import numpy as np
import pytest

from harness import reference
from harness.cases import Case, load_cases
from harness.protocol import Call
from tests import oracle
from tests.modes_helpers import ExactBackend, bad, framework, judged

X = np.array([-30.0, -2.5, -0.25, 0.0, 1.5, 9.0])
Y = np.array([0.0, 1.0, 0.3, 0.5, 0.9, 1.0])
W = np.array([[2.0], [0.5]])  # broadcast over a (2, 3) input
P = np.array([0.5, 3.0, 1.0])


def test_elementwise_forward_derivatives_are_the_gradients_of_broadcast_arguments() -> None:
    x, y = X.reshape(2, 3), Y.reshape(2, 3)
    q = reference.evaluate(x, y, W, P, reduction="none", jvps=("input", "target", "weight",
                                                               "pos_weight"))
    full = reference.grads(x, y, np.broadcast_to(W, (2, 3)), np.broadcast_to(P, (2, 3)),
                           reduction="none")
    for name in ("input", "target", "weight", "pos_weight"):
        assert np.array_equal(q[f"jvp.{name}"].value, full[name]), name


@pytest.mark.parametrize("reduction", ["mean", "sum"])
def test_reduced_forward_derivatives_are_the_exact_sums_of_the_oracle(reduction: str) -> None:
    q = reference.evaluate(X, Y, None, P.repeat(2), reduction=reduction,
                           jvps=("input", "target", "pos_weight"))
    exact = oracle.elementwise_many(list(X), list(Y), None, list(P.repeat(2)))
    for name in ("input", "target", "pos_weight"):
        total = sum(exact[name], Fraction(0))
        if reduction == "mean":
            total /= X.size
        assert q[f"jvp.{name}"].value == oracle.nearest(total), name


def test_the_forward_derivative_of_an_empty_mean_is_nan_and_of_an_empty_sum_zero() -> None:
    e = np.zeros((0,))
    assert np.isnan(reference.evaluate(e, e, reduction="mean", jvps=("input",))["jvp.input"].value)
    assert reference.evaluate(e, e, reduction="sum", jvps=("input",))["jvp.input"].value == 0


CASES = [c for c in load_cases() if c.name in (
    "extremes/logit-50", "reductions/random-400x300", "shapes/weight-row-pos-weight-class",
    "keras/smoothing-0.2-soft-labels-weighted")]


def test_the_exact_control_passes_forward_mode() -> None:
    assert len(CASES) == 4
    records = judged(ExactBackend(), CASES, "exact", forward_mode=True)
    jvps = [r for r in records if r["check"].startswith("jvp.")]
    assert {r["check"] for r in jvps} >= {"jvp.input", "jvp.target", "jvp.weight",
                                          "jvp.pos_weight"}
    assert not bad(records), bad(records)[:3]


def test_forward_mode_is_asked_for_only_with_the_option() -> None:
    records = judged(ExactBackend(), CASES[:1], "exact")
    assert not any(r["check"].startswith("jvp.") for r in records)


class ReverseInstead(ExactBackend):
    """Returns the reverse-mode gradient where the forward-mode derivative was asked for:
    right elementwise, wrong (a vector, not the sum) for a mean or a sum."""

    name = "reverse-instead"

    def tangent(self, call: Call, name: str, exact: np.ndarray) -> np.ndarray:
        g = reference.grads(call.input, call.target, call.weight, call.pos_weight,
                            reduction=call.reduction)[name]
        return np.asarray(g, dtype=np.float64).astype(exact.dtype if exact.dtype.kind == "f"
                                                       else np.float64)


class DroppedTangent(ExactBackend):
    """Forward mode that drops the pos_weight tangent (zero), as a framework that marks
    an argument non-differentiable does."""

    name = "dropped-tangent"

    def tangent(self, call: Call, name: str, exact: np.ndarray) -> np.ndarray:
        out = super().tangent(call, name, exact)
        return out * 0 if name == "pos_weight" else out


class HalfAnUlpOff(ExactBackend):
    """A forward formula 2**-8 off in relative terms (a lost term in float32)."""

    name = "ulp-off"

    def tangent(self, call: Call, name: str, exact: np.ndarray) -> np.ndarray:
        return super().tangent(call, name, exact * (1 + 2.0 ** -8))


@pytest.mark.parametrize(("planted", "check"), [(ReverseInstead, "shape"),
                                                (DroppedTangent, "jvp.pos_weight"),
                                                (HalfAnUlpOff, "jvp.input")])
def test_planted_forward_mode_bugs_are_caught(planted: type, check: str) -> None:
    records = judged(planted(), CASES, "exact", forward_mode=True)
    assert check in {r["check"] for r in bad(records)}
    # and the value and reverse-mode gradients are untouched
    assert not [r for r in bad(records) if r["check"] == "value" or
                r["check"].startswith("grad.")]


@pytest.mark.parametrize(("backend", "implementation"),
                         [("torch", "functional"), ("jax", "jax.nn"), ("tensorflow", "sigmoid")])
def test_framework_forward_mode_on_ordinary_arguments(backend: str, implementation: str) -> None:
    case = Case(name="t/ordinary", source="test", description="", input=X, target=Y,
                reductions=("none", "mean"), dtypes=("float32", "float64"))
    records = judged(framework(backend), [case], implementation, forward_mode=True)
    jvps = [r for r in records if r["check"].startswith("jvp.")]
    assert {r["check"] for r in jvps} == {"jvp.input", "jvp.target"}
    assert not bad(records), bad(records)[:3]


def test_torch_sigmoid_bce_weight_tangent_is_a_known_silent_zero() -> None:
    case = Case(name="t/weighted", source="test", description="", input=X, target=Y,
                weight=np.full(6, 2.0), reductions=("none",), dtypes=("float32",),
                grads=("input", "weight"))
    records = judged(framework("torch"), [case], "sigmoid+bce", forward_mode=True)
    (rec,) = [r for r in records if r["check"] == "jvp.weight"]
    assert rec["status"] == "known"
    assert [e["kind"] for e in rec["expected_by"]] == ["missing-derivative"]
    assert rec["worst"]["got"] == 0.0 and rec["worst"]["expected"] != 0.0


def test_report_takes_the_option(tmp_path) -> None:
    from harness.__main__ import main

    case = tmp_path / "c.yaml"
    case.write_text("cases:\n  - name: c\n    input: [-2.0, 0.5, 3.0]\n    target: [0.0, 1.0, "
                    "0.25]\n    dtypes: [float32]\n")
    rc = main(["report", "--backend", "numpy", "--cases", str(case), "--examples", "0",
               "--forward-mode", "--out", str(tmp_path / "out"), "--quiet"])
    assert rc == 0  # numpy has no forward mode: nothing asked, nothing failing


def test_backends_says_which_implementations_have_forward_mode(capsys) -> None:
    from harness.__main__ import main

    framework("torch")  # skips with torch's reason when it is missing
    assert main(["backends"]) == 0
    out = capsys.readouterr().out
    assert "  forward mode (--forward-mode): functional, module, sigmoid+bce" in out
