"""Property tests: every available backend implementation against the reference.

For each backend × implementation × device, Hypothesis draws cases (one dtype, one
reduction; see harness/generate/strategies.py) and the harness judges the backend's answer
exactly as a report would, expectations included. A failure is shrunk by
Hypothesis, saved as a case file (under pytest's temporary folder, or cases/found/
with BCE_SAVE_FOUND=1) and reported with that path and a copy-pasteable snippet.

Examples per test come from the Hypothesis profile (tests/conftest.py): `dev` 10,
`ci` 25, `thorough` 500. Narrow with --backend / --device / --dtype.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from harness.cases import load_cases
from harness.generate.shrink import FOUND, save_found, shrink
from harness.generate.strategies import draw_case
from harness.report.snippets import snippet
from harness.run.calls import run_inprocess
from harness.run.registry import Loaded, UsageError, discover, select
from harness.run.trials import ReferenceCache, Trial, features, variant_of
from harness.verdict import expectations as expect

#: Record statuses that are not a discrepancy of the backend: `known` is covered by
#: an expectation (cases/expectations.yaml); `skipped` accompanies a failing `shape`
#: check, which is reported.
OK = {"pass", "unsupported", "known", "skipped"}

#: Genuine framework discrepancies the property tests keep finding that are not (yet)
#: in cases/expectations.yaml. Each (backend, implementation) maps to the discrepancies it
#: shows, each naming what it is (with a minimal reproduction) and the draw_case
#: options that steer around it; the options of one implementation are combined.
#: This narrows only that implementation's strategy, never the judgement. Remove an
#: entry when the framework is fixed or the discrepancy is listed as known.
Discrepancy = tuple[str, dict[str, Any]]

REFUSAL: Discrepancy = (
    "a weight/pos_weight shape that must be refused raises RuntimeError/TypeError/"
    "InvalidArgumentError instead of ValueError, or is silently broadcast so the result "
    "grows (x, y of shape (1,), weight of shape (2, 1) gives a (2, 1) loss)",
    {"invalid": False})
SPECIALS: Discrepancy = (
    "non-finite, subnormal or near-overflow arguments: NaN where the reference takes the "
    "limit (x = 0, y = inf: loss NaN, expected ln 2), NaN not propagated into gradients "
    "(y = NaN: grad.target -0.0), subnormal results flushed to zero, overflow in "
    "intermediate sums", {"wild": False})
TARGET_GRAD_SMALL_X: Discrepancy = (
    "grad.target as p·softplus(−x) − softplus(x) cancels two ≈ ln 2 terms at small |x| "
    "(float32 x = −2.2e-16, y = 0: 0, expected 2.2e-16)", {"logit_range": (0.5, math.inf)})
LOG_OF_ONE_PLUS: Discrepancy = (
    "the loss via log(1 + exp(−|x|))-style terms loses relative accuracy once exp(−|x|) is "
    "small: float64 x = −14.33021666551785, y = 0 gives 5.976760419912353e-07, expected "
    "5.976760427277865e-07 (7e6 ulp); bfloat16 x = −5, y = 0 gives 0",
    {"logit_range": (0.0, 1.0)})
SIGMOID_FIRST: Discrepancy = (
    "sigmoid first, then log(p) / log(1 − p): saturates (float16 x = 9.7: grad.input 0, "
    "expected 0.99994), clamps at −100, refuses targets outside [0, 1], and its target "
    "gradient log(1 − p) − log(p) is 10 ulp off in float32 even for |x| ≤ 1",
    {"logit_range": (0.5, 1.0), "targets": ("binary", "soft"),
     "grads": ("input", "weight", "pos_weight")})
FLOAT32_ONLY: Discrepancy = (
    "Keras computes in float32 whatever the inputs: float64 x = 1, y = 0 gives grad.input "
    "0.7310585975646973 (float32's), expected 0.7310585786300049; results are float32 for "
    "float16/bfloat16/float64 inputs", {"dtypes": ("float32",)})
TF_WEIGHTED_AT_ZERO: Discrepancy = (
    "tf.nn.weighted_cross_entropy_with_logits differentiates max(−x, 0) and |x| at x = 0 "
    "through their kinks: x = 0, y = 0, pos_weight = 1 gives grad.input 1.0, expected 0.5 "
    "(every dtype)", {"logit_range": (0.5, math.inf)})
JAX_SIGMOID_LARGE_X: Discrepancy = (
    "σ(x) for large x is a few ulp off: float64 x = 30.026460702936802, y = 0 gives "
    "grad.input 0.9999999999999076, expected 0.9999999999999089 (11 ulp); float32 x = 8, "
    "soft y: 6 ulp", {"logit_range": (0.0, 4.0)})
TF_FLUSH_TO_ZERO: Discrepancy = (
    "TensorFlow flushes subnormal results to zero on the CPU: float32 "
    "sigmoid_cross_entropy_with_logits(labels=1, logits=88) is 0, expected 6.05e-39; "
    "float64 1e-300 * loss(x=-24, y=0) is 0, expected 3.8e-311",
    {"wild": False, "logit_range": (0.0, 64.0)})
KERAS_SAMPLE_WEIGHT: Discrepancy = (
    "Keras drops the trailing size-1 axis of the loss before applying sample_weight: input "
    "(2, 3, 1) with weight (3, 1) raises InvalidArgumentError (Incompatible shapes: [2,3] "
    "vs. [3,1])", {"params": ("pos_weight",)})
POS_WEIGHT_CANCELS: Discrepancy = (
    "the log weight l = 1 + (pos_weight − 1)·y cancels for a small pos_weight and y near 1: "
    "float16 x = 0, y = 1, pos_weight = 0.00273895263671875 gives 0.0020313262939453125, "
    "expected 0.0018984972978288296 (139 ulp)", {"weight_range": (0.5, math.inf)})
SIGMOID_CE_CANCELS: Discrepancy = (
    "max(x, 0) − x·y + log1p(exp(−|x|)) cancels x against x·y for a soft y near 1: float32 "
    "x = 3.7402000427246094, y = 0.9950965046882629 gives 0.041811831295490265, expected "
    "0.041811776368726385 (14.7 ulp, 14.5 allowed); float16 22.5 ulp",
    {"targets": ("binary",)})
KERAS_EMPTY_MEAN: Discrepancy = (
    "Keras's mean of an empty input is 0 (expected NaN), and of shape (0,) for bfloat16",
    {"empty": False})

TORCH_FORMULA = [REFUSAL, SPECIALS, LOG_OF_ONE_PLUS, POS_WEIGHT_CANCELS]
EXCLUSIONS: dict[tuple[str, str], list[Discrepancy]] = {
    ("numpy", "formula"): [SPECIALS, TARGET_GRAD_SMALL_X],
    ("numpy", "naive"): [SPECIALS, SIGMOID_FIRST],
    ("torch", "functional"): TORCH_FORMULA,
    ("torch", "module"): TORCH_FORMULA,
    ("torch", "legacy"): TORCH_FORMULA,
    ("torch", "sigmoid+bce"): [REFUSAL, SPECIALS, SIGMOID_FIRST],
    ("jax", "jax.nn"): [REFUSAL, SPECIALS, TARGET_GRAD_SMALL_X, JAX_SIGMOID_LARGE_X],
    ("jax", "optax"): [REFUSAL, SPECIALS, TARGET_GRAD_SMALL_X, JAX_SIGMOID_LARGE_X],
    ("tensorflow", "sigmoid"): [REFUSAL, SPECIALS, TF_FLUSH_TO_ZERO, TARGET_GRAD_SMALL_X,
                                SIGMOID_CE_CANCELS],
    ("tensorflow", "weighted"): [REFUSAL, SPECIALS, TF_FLUSH_TO_ZERO, TF_WEIGHTED_AT_ZERO,
                                 LOG_OF_ONE_PLUS, POS_WEIGHT_CANCELS],
    ("tensorflow", "keras"): [REFUSAL, SPECIALS, TF_FLUSH_TO_ZERO, TARGET_GRAD_SMALL_X,
                              SIGMOID_CE_CANCELS, FLOAT32_ONLY, KERAS_SAMPLE_WEIGHT,
                              KERAS_EMPTY_MEAN],
    ("tensorflow", "keras-probs"): [REFUSAL, SPECIALS, TF_FLUSH_TO_ZERO, SIGMOID_FIRST,
                                    FLOAT32_ONLY, KERAS_SAMPLE_WEIGHT, KERAS_EMPTY_MEAN],
}


def narrowing(backend: str, implementation: str) -> tuple[str, dict[str, Any]]:
    """The combined draw_case options of an implementation's exclusions, and why."""
    options: dict[str, Any] = {}
    for _, opts in EXCLUSIONS.get((backend, implementation), []):
        for key, value in opts.items():
            if key == "logit_range" and key in options:
                lo, hi = options[key]
                value = (max(lo, value[0]), min(hi, value[1]))
            options[key] = value
    why = "; ".join(name.split(":")[0].split(" (")[0]
                    for name, _ in EXCLUSIONS.get((backend, implementation), []))
    return why, options


@dataclass(frozen=True)
class Target:
    """One backend implementation on one device: what a property test is run against."""

    loaded: Loaded
    implementation: str
    device: str
    dtypes: tuple[str, ...]

    def __str__(self) -> str:
        return f"{self.loaded.name}-{self.implementation}-{self.device}"

    def _repr_pretty_(self, printer: Any, cycle: bool) -> None:  # the falsifying example
        printer.text(str(self))


#: Set once per session (see `_session`): the expectations and where
#: found cases go. Kept out of the test's signature so a falsifying example prints
#: the drawn case, not the expectations.
SESSION: dict[str, Any] = {}


@pytest.fixture(scope="session", autouse=True)
def _session(pytestconfig: pytest.Config, tmp_path_factory: pytest.TempPathFactory) -> None:
    SESSION["entries"] = expect.load(pytestconfig.getoption("--known"))
    SESSION["found"] = (FOUND if os.environ.get("BCE_SAVE_FOUND") == "1"
                        else tmp_path_factory.getbasetemp() / "found")


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    """One item per backend, found without importing any framework: the backend's
    implementations and devices are asked for when its item runs."""
    if "loaded" not in metafunc.fixturenames:
        return
    config = metafunc.config
    try:
        found = select(discover(config.getoption("--plugin")), config.getoption("--backend"))
    except UsageError as exc:
        raise pytest.UsageError(str(exc)) from None
    metafunc.parametrize("loaded", [pytest.param(b, id=b.name) for b in found])


def targets(loaded: Loaded, config: pytest.Config) -> list[Target]:
    """The backend's implementations × devices to search, or a skip with the reason."""
    if getattr(loaded.backend, "isolated", False) and loaded.name not in \
            config.getoption("--backend"):
        # Keras holds one engine per process: loading it here would change what every
        # later test in this process gets (tests/test_backend_keras.py runs it apart)
        pytest.skip(f"{loaded.name} runs in a process of its own; search it with "
                    f"--backend {loaded.name}")
    info = loaded.info()
    if info["availability"] is not None:
        pytest.skip(f"{loaded.name}: {info['availability']}")
    devices = set(config.getoption("--device"))
    dtypes = set(config.getoption("--dtype"))
    usable = tuple(d for d in info["dtypes"] if not dtypes or d in dtypes)
    # the compiled implementations only with --compiled, as in the conformance suite:
    # each drawn shape compiles anew (torch.compile: seconds an example, 18 s of this
    # item for torch); each backend's own tests compare them with their eager twins
    # on fixed inputs in every run (tests/test_backend_*.py: "agrees_with_eager")
    compiled = set(info.get("eager_twins", {})) if not config.getoption("--compiled") else set()
    found = [Target(loaded, impl, dev, usable) for impl in info["implementations"]
             if impl not in compiled
             for dev in info["devices"] if usable and (not devices or dev in devices)]
    if not found:
        pytest.skip(f"{loaded.name}: nothing left by --device / --dtype")
    return found


def examples(target: Target) -> int:
    """The profile's examples; a fifth of them (at least 3) for a compiled implementation,
    which compiles anew for each drawn shape (its eager twin gets the full count)."""
    n = settings.default.max_examples
    compiled = target.implementation in target.loaded.info().get("eager_twins", {})
    return max(3, n // 5) if compiled else n


def test_backend_agrees_with_reference(loaded: Loaded, pytestconfig: pytest.Config) -> None:
    """Every implementation × device of the backend, each its own Hypothesis search."""
    for target in targets(loaded, pytestconfig):
        search(target)()


def search(target: Target) -> Any:
    """The Hypothesis search of one target, under the loaded profile."""

    @settings(parent=settings.default, max_examples=examples(target))
    @given(data=st.data())
    def run(data: st.DataObject) -> None:
        agrees_with_reference(target, data)

    return run


def agrees_with_reference(target: Target, data: st.DataObject) -> None:
    backend, entries = target.loaded.backend, SESSION["entries"]
    why, options = narrowing(target.loaded.name, target.implementation)
    allowed = options.pop("dtypes", target.dtypes)
    dtypes = tuple(d for d in target.dtypes if d in allowed)
    case = draw_case(data, name="property/example", source="hypothesis:property",
                     dtypes=dtypes, **options)
    trial = Trial(case, case.dtypes[0], case.reductions[0])
    offered = features(backend)  # the plan's variant, as a report makes the call
    records = run_inprocess(backend, trial, target.implementation, target.device,
                            ReferenceCache(), entries,
                            variant_of(offered, trial, target.implementation))
    bad = [r for r in records if r["status"] not in OK]
    if not bad:
        return
    if _final_replay():
        # Hypothesis has shrunk the choices; the case-level steps of harness.generate.shrink
        # take out what choice shrinking cannot (elements of fixed-length arrays)
        smaller = shrink(backend, target.implementation, target.device, case, seed=-1,
                         entries=entries, time_budget=30.0)
        if smaller is not None:
            case = smaller
            trial = Trial(case, case.dtypes[0], case.reductions[0])
            records = run_inprocess(backend, trial, target.implementation, target.device,
                                    ReferenceCache(), entries,
                                    variant_of(offered, trial, target.implementation))
            bad = [r for r in records if r["status"] not in OK] or bad
    reason = "; ".join(f"{r['check']} {r['status']}: {r['message']}" for r in bad)
    path = save_found(case, target.loaded.name, target.implementation, reason[:500],
                      SESSION["found"], plugin=_plugin(target.loaded))
    saved = load_cases([path])[0]
    lines = [f"{target} disagrees with the reference on a drawn case "
             f"({case.dtypes[0]}, {case.reductions[0]}, shape {case.shape}):"]
    lines += [f"  {r['status'].upper()} {r['check']}: {r['message']}" for r in bad[:6]]
    lines.append(f"saved as {path}; re-run it with: python -m harness report --cases {path} "
                 f"--backend {target.loaded.name}")
    if why:
        lines.append(f"(this implementation's strategy is narrowed: {why})")
    lines.append("reproduce with:")
    lines.append(snippet(backend, target.loaded.spec, trial.call(target.implementation,
                                                                 target.device),
                         saved.name, f"{path}:1"))
    raise AssertionError("\n".join(lines))


def _final_replay() -> bool:
    """Whether Hypothesis is replaying the minimal failing example to report it."""
    try:
        from hypothesis.control import current_build_context

        return bool(current_build_context().is_final)
    except Exception:  # not inside a test, or Hypothesis moved it: skip the extra step
        return False


def _plugin(loaded: Loaded) -> str | None:
    """The --plugin spec of a backend loaded that way (for the saved file's command)."""
    if loaded.spec.startswith("plugin:"):
        return loaded.spec[len("plugin:"):].rsplit("#", 1)[0]
    return None
