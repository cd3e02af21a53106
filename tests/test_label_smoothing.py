"""Label smoothing: the reference's exact smoothed target, the frameworks that offer it
(Keras on TensorFlow, optax), and the bug users make with optax (smoothing toward
1/N instead of 1/2), which the harness must catch."""

from __future__ import annotations

from fractions import Fraction

import numpy as np
import pytest

from harness import reference
from harness.cases import Case, load_cases
from harness.protocol import Call, Result
from tests import oracle
from tests.modes_helpers import ExactBackend, bad, framework, judged

SMOOTHING = [c for c in load_cases() if c.label_smoothing]


def test_the_shipped_cases_smooth() -> None:
    assert len(SMOOTHING) >= 5
    assert {c.label_smoothing for c in SMOOTHING} >= {0.1, 0.2, 1.0}


def test_the_smoothed_loss_is_the_oracle_at_the_exact_smoothed_target() -> None:
    x = np.array([-12.0, -0.5, 0.0, 3.0, 40.0])
    y = np.array([0.0, 1.0, 0.25, 1.0, 0.0])
    a = float(np.float32(0.1))  # as a float32 case sends it
    got = reference.loss(x, y, reduction="none", label_smoothing=a)
    for i in range(x.size):
        exact_y = Fraction(y[i]) * (1 - Fraction(a)) + Fraction(a) / 2
        assert float(exact_y) == exact_y  # representable: the reference used it unrounded
        want = oracle.elementwise(float(x[i]), float(exact_y), None, None)["loss"]
        assert got[i] == oracle.nearest(want)


def test_the_label_gradient_carries_the_factor_one_minus_a() -> None:
    x, y, w = np.array([-3.0, 2.0]), np.array([0.0, 0.75]), np.array([2.0, 0.5])
    g = reference.grads(x, y, w, reduction="none", label_smoothing=0.25)["target"]
    for i in range(2):
        ys = float(Fraction(y[i]) * Fraction(3, 4) + Fraction(1, 8))
        d = oracle.elementwise(float(x[i]), ys, float(w[i]), None)["target"]
        assert g[i] == oracle.nearest(d * Fraction(3, 4))


def test_a_smoothed_target_that_is_not_a_float64_is_refused_with_the_fix() -> None:
    with pytest.raises(ValueError, match=r"not a float64 number.*float32 or narrower"):
        reference.loss(np.array([1.0]), np.array([0.3]), label_smoothing=0.1)


def test_the_exact_control_passes_every_smoothing_case() -> None:
    records = judged(ExactBackend(), SMOOTHING, "exact")
    assert records and not bad(records)
    skipped = [r for r in records if r["status"] == "skipped"]
    # only float64 trials whose smoothed targets are not float64 numbers are left out
    assert all(r["dtype"] == "float64" and "label_smoothing" in r["message"] for r in skipped)


class TowardOneOverN(ExactBackend):
    """optax.smooth_labels on binary labels of shape (N,): alpha / num_categories is alpha / N."""

    name = "toward-1-over-n"

    def smoothed(self, call: Call) -> float:
        return 0.0

    def run(self, call: Call) -> Result:
        n = np.shape(call.target)[-1] if np.ndim(call.target) else 1
        a = call.label_smoothing
        target = np.asarray(call.target) * (1 - a) + a / n
        return super().run(Call(call.implementation, call.device, call.dtype, call.input, target,
                                call.weight, call.pos_weight, call.reduction, call.grads,
                                forward=call.forward))


def test_smoothing_toward_one_over_n_is_caught() -> None:
    records = judged(TowardOneOverN(), SMOOTHING, "exact", dtypes=("float32",))
    failed = {r["case"] for r in bad(records) if r["check"] == "value"}
    assert "keras/smoothing-0.1-hard-labels" in failed  # N = 25: toward 0.004, not 0.5


class Forgets(ExactBackend):
    name = "forgets"

    def smoothed(self, call: Call) -> float:
        return 0.0  # lists the hook, never applies it


def test_a_backend_that_ignores_the_smoothing_fails_the_value() -> None:
    records = judged(Forgets(), SMOOTHING, "exact", dtypes=("float32",))
    assert {r["case"] for r in bad(records) if r["check"] == "value"} >= {
        "keras/smoothing-huge-logits", "keras/smoothing-1-everything-one-half"}


def test_a_backend_without_the_hook_is_never_sent_a_smoothing() -> None:
    class NoHook(ExactBackend):
        label_smoothing = None  # type: ignore[assignment]

        def run(self, call: Call) -> Result:
            raise AssertionError("a smoothing call reached a backend without the hook")

    records = judged(NoHook(), SMOOTHING[:1], "exact", dtypes=("float32",))
    assert records and all(r["status"] == "unsupported" for r in records)
    assert "label_smoothing()" in records[0]["message"]


@pytest.mark.parametrize(("backend", "implementation"),
                         [("tensorflow", "keras"), ("jax", "optax")])
def test_framework_smoothing_matches_the_reference(backend: str, implementation: str) -> None:
    b = framework(backend)
    cases = [c for c in SMOOTHING if c.name in ("keras/smoothing-0.1-hard-labels",
                                                "keras/smoothing-0.2-soft-labels-weighted")]
    records = judged(b, cases, implementation, dtypes=("float32",))
    values = [r for r in records if r["check"] == "value"]
    assert values and all(r["status"] == "pass" for r in values), bad(records)[:3]


def test_a_case_file_takes_label_smoothing(tmp_path) -> None:
    path = tmp_path / "s.yaml"
    path.write_text("cases:\n  - name: s\n    input: [1.0]\n    target: [1.0]\n"
                    "    label_smoothing: 0.3\n")
    (case,) = load_cases([path])
    assert isinstance(case, Case) and case.label_smoothing == 0.3
    assert case.smoothing("float16") == float(np.float16(0.3))
    path.write_text("cases:\n  - name: s\n    input: [1.0]\n    target: [1.0]\n"
                    "    label_smoothing: 1.5\n")
    with pytest.raises(Exception, match="label_smoothing"):
        load_cases([path])
