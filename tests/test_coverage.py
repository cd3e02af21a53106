"""Coverage: which regions of the input space the cases exercise, and the default run's."""

from __future__ import annotations

import json

import numpy as np
import pytest

from harness.cases import Case, load_cases
from harness.generate.coverage import CHECKS, IMPOSSIBLE, PARAMS, VALUE_CLASSES, classify, coverage
from harness.generate.seeding import DEFAULT_EXAMPLES, generate_cases


@pytest.fixture(scope="module")
def default_run() -> dict:
    return coverage(load_cases() + generate_cases(DEFAULT_EXAMPLES, 0))


def test_the_default_run_reaches_every_reachable_cell(default_run):
    empty = [f"{e['table']}: {e['row']} × {e['column']}" for e in default_run["empty"]]
    assert not empty, ("the shipped cases plus the default generated examples leave these "
                       "cells empty (add a case, or tune harness/generate/strategies.py): "
                       + "; ".join(empty))
    assert all(n > 0 for n in default_run["classes_seen"].values())


def test_impossible_cells_are_the_gradients_of_absent_arguments(default_run):
    assert set(IMPOSSIBLE) == {("params_check", "none", "grad.weight"),
                               ("params_check", "pos_weight", "grad.weight"),
                               ("params_check", "none", "grad.pos_weight"),
                               ("params_check", "weight", "grad.pos_weight")}
    counts = default_run["tables"]["params_check"]["counts"]
    for _, params, check in IMPOSSIBLE:
        assert counts[params][check] == 0
    assert len(default_run["impossible"]) == len(IMPOSSIBLE)


def test_a_narrow_case_list_leaves_cells_empty():
    plain = Case(name="plain", source="test", description="", input=[0.5, -1.0],
                 target=[1.0, 0.0], dtypes=("float32",), reductions=("mean",))
    cov = coverage([plain])
    empty = {(e["table"], e["row"], e["column"]) for e in cov["empty"]}
    assert ("dtype", "nan", "float16") in empty
    assert ("dtype", "normal", "float32") not in empty
    assert ("params_check", "both", "grad.pos_weight") in empty
    assert cov["trials"] == 1 and cov["cases"] == 1 and cov["raises_trials"] == 0
    assert cov["product"]["covered"] == 3  # normal × float32 × mean × none × value/input/target


def test_the_report_shape_is_json_ready(default_run):
    doc = json.loads(json.dumps(default_run))
    assert set(doc) >= {"axes", "classes", "cases", "trials", "raises_trials", "classes_seen",
                        "tables", "empty", "impossible", "product"}
    assert doc["axes"]["value_class"] == list(VALUE_CLASSES)
    assert doc["axes"]["params"] == list(PARAMS) and doc["axes"]["check"] == list(CHECKS)
    for table in doc["tables"].values():
        assert set(table) == {"rows", "columns", "counts"}
    assert doc["raises_trials"] > 0


def test_value_classes_are_judged_in_the_dtype_that_runs():
    x = np.array([1e-310, 3.0e38, 0.5])
    arrays = {"input": x, "target": np.array([0.5, 2.0, 1.0]), "weight": None,
              "pos_weight": np.array([np.nan, 1.0, 1.0])}
    as64 = classify(arrays, "float64")
    assert {"subnormal", "normal", "soft-target", "target-outside-01", "nan"} <= as64
    assert "huge" not in as64 and "zero" not in as64
    as32 = {**arrays, "input": np.array([0.0, 3.0e38, 0.5])}  # 1e-310 rounds to 0 in float32
    got = classify(as32, "float32")
    assert {"zero", "huge"} <= got and "subnormal" not in got
    assert classify({"input": np.zeros((0, 3)), "target": np.zeros((0, 3)), "weight": None,
                     "pos_weight": None}, "float16") == {"empty"}
    assert "saturated" in classify({"input": np.array([20.0]), "target": np.array([1.0]),
                                    "weight": None, "pos_weight": None}, "float32")
    assert "inf" in classify({"input": np.array([1.0]), "target": np.array([1.0]),
                              "weight": np.array([np.inf]), "pos_weight": None}, "float32")
