"""Keras's own mean over the last axis (`keras-last-axis`), as users call it, against the
reference's row means; and a planted row-mean bug the harness must catch."""

from __future__ import annotations

from fractions import Fraction

import numpy as np
import pytest

from harness import reference
from harness.cases import load_cases
from harness.protocol import Call, Result
from tests import oracle
from tests.modes_helpers import ExactBackend, bad, judged

ROWS = [c for c in load_cases() if c.name.startswith("keras/last-axis-")]


def test_row_means_are_the_oracle_sums_divided_once() -> None:
    x = np.array([[0.1, -20.0, 7.5], [-0.25, 30.0, 1e-3]])
    y = np.array([[1.0, 0.0, 0.5], [0.0, 1.0, 0.75]])
    got = reference.loss(x, y, reduction="none", last_axis_mean=True)
    total = Fraction(0)
    for i in range(2):
        row = oracle.elementwise_many(list(x[i]), list(y[i]))["loss"]
        assert got[i] == oracle.nearest(sum(row, Fraction(0)) / 3)
        total += sum(row, Fraction(0))
    assert reference.loss(x, y, reduction="sum", last_axis_mean=True) == oracle.nearest(total / 3)
    assert reference.loss(x, y, reduction="mean", last_axis_mean=True) == reference.loss(x, y)
    g = reference.grads(x, y, reduction="none", last_axis_mean=True)["input"]
    for i, j in np.ndindex(2, 3):
        d = oracle.elementwise(float(x[i, j]), float(y[i, j]), None, None)["input"]
        assert g[i, j] == oracle.nearest(d / 3)


def test_rows_of_nothing_are_nan_and_a_0d_input_has_no_last_axis() -> None:
    e = np.zeros((3, 0))
    assert np.isnan(reference.loss(e, e, reduction="none", last_axis_mean=True)).all()
    assert np.isnan(reference.loss(e, e, reduction="sum", last_axis_mean=True))
    assert reference.loss(np.zeros((0, 3)), np.zeros((0, 3)), reduction="sum",
                          last_axis_mean=True) == 0
    # each row mean is 0/0, and a row's weight multiplies it: its derivative is NaN
    g = reference.grads(np.zeros((2, 0)), np.zeros((2, 0)), np.array([[1.0], [2.0]]),
                        reduction="mean", last_axis_mean=True)["weight"]
    assert g.shape == (2, 1) and np.isnan(g).all()
    with pytest.raises(ValueError, match="no last axis"):
        reference.loss(np.array(1.0), np.array(1.0), last_axis_mean=True)


class Rows(ExactBackend):
    name = "rows"
    rows = True


class SumOverBatch(Rows):
    """Keras's 'sum' taken as the sum of the elementwise losses (no division by the row
    length): what a port that forgets Keras's last-axis mean computes."""

    name = "sum-not-mean"

    def run(self, call: Call) -> Result:
        out = super().run(call)
        if call.reduction == "sum" and np.ndim(call.input):
            out.value = out.value * np.shape(call.input)[-1]
        return out


def test_the_row_mean_control_passes_and_a_missing_division_is_caught() -> None:
    records = judged(Rows(), ROWS, "exact", dtypes=("float32", "float64"))
    assert records and not bad(records), bad(records)[:3]
    caught = judged(SumOverBatch(), ROWS, "exact", dtypes=("float32",))
    assert {r["case"] for r in bad(caught) if r["check"] == "value" and r["reduction"] == "sum"} \
        >= {"keras/last-axis-rows-of-3", "keras/last-axis-large-rows"}


def test_elementwise_where_row_means_are_due_is_a_shape_failure() -> None:
    class Elementwise(Rows):
        name = "elementwise"

        def run(self, call: Call) -> Result:
            self.rows = False
            try:
                return super().run(call)
            finally:
                self.rows = True

    records = judged(Elementwise(), ROWS, "exact", dtypes=("float32",))
    shapes = {r["case"] for r in bad(records) if r["check"] == "shape"}
    assert "keras/last-axis-1x1x1x4" in shapes


def test_keras_on_tensorflow_gives_shape_1x1x1_for_a_1x1x1x4_input() -> None:
    from harness.run.registry import discover

    (tf,) = [b for b in discover() if b.name == "tensorflow"]
    if tf.availability() is not None:
        pytest.skip(tf.availability())
    case = [c for c in ROWS if c.name == "keras/last-axis-1x1x1x4"]
    records = judged(tf.backend, case, "keras-last-axis", dtypes=("float32",))
    value = [r for r in records if r["check"] == "value" and r["reduction"] == "none"]
    shape = [r for r in records if r["check"] == "shape" and r["reduction"] == "none"]
    assert value[0]["status"] == "pass" and shape[0]["status"] == "pass"
    assert value[0]["elements"] == 1  # tensorflow/tensorflow#35004: (1, 1, 1), one row mean


def test_a_weight_that_varies_along_the_last_axis_is_unsupported_not_wrong() -> None:
    from harness.backends.keras_backend import NO_ROW_WEIGHT, keras_loss

    call = Call("keras-last-axis", "cpu", "float32", np.zeros((2, 3)), np.zeros((2, 3)),
                weight=np.array([1.0, 2.0, 3.0]))
    with pytest.raises(Exception, match="sample_weight") as info:
        keras_loss(None, "keras-last-axis", call, lambda t: t, lambda t: t)
    assert str(info.value) == NO_ROW_WEIGHT


def test_a_square_input_maps_weight_gradients_to_columns_and_row_means_to_rows() -> None:
    """Both a (3,) weight's gradient and the row means of a (3, 3) input have shape (3,):
    expectations must map an input element to the weight it was broadcast from for the
    first, and to its row for the second (a generated 7x7 case once mixed them up)."""
    from harness.verdict.expectations import _groups

    call = Call("keras", "cpu", "float32", np.zeros((3, 3)), np.zeros((3, 3)),
                weight=np.ones(3))
    assert _groups(call, "grad.weight", (3,), 9).tolist() == [0, 1, 2] * 3
    assert _groups(call, "value", (3,), 9).tolist() == [0, 0, 0, 1, 1, 1, 2, 2, 2]
