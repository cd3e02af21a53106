"""pytest plugin (registered through `pytest11`): the conformance suite as tests.

Any test that takes the `conformance` fixture is parametrized over backend ×
implementation × device × dtype × case; each test runs the case's reductions and
fails with the discrepancy and a reproduction snippet. A failure every element of
which an expectation covers (docs/expectations.md) is xfailed with the
expectation's reason; whether an expectation is `fixed` or `unused` is a verdict
over a whole run, which `python -m harness report` gives.

Options: --backend, --device, --dtype, --plugin, --cases, --known.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pytest

_STATE: dict[str, Any] = {}


def pytest_configure(config: pytest.Config) -> None:
    # pytest-xdist runs one process per core; one framework thread each (runner.py)
    from harness.runner import single_threaded

    single_threaded()


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("bce-harness", "bce-harness conformance suite")
    group.addoption("--backend", action="append", default=[], metavar="NAME",
                    help="run the conformance suite for this backend only (repeatable)")
    group.addoption("--device", action="append", default=[], metavar="NAME",
                    help="only this device, e.g. cpu or cuda:0 (repeatable)")
    group.addoption("--dtype", action="append", default=[], metavar="NAME",
                    help="only this dtype (repeatable)")
    group.addoption("--plugin", action="append", default=[], metavar="MODULE:ATTR",
                    help="also load this backend plugin (repeatable)")
    group.addoption("--cases", action="append", default=[], metavar="PATH",
                    help="case files or folders (default: the shipped cases/)")
    group.addoption("--known", action="append", default=[], metavar="FILE",
                    help="an expectations file on top of the shipped one and plugins' "
                         "(repeatable)")


@dataclass(frozen=True)
class Conformance:
    """One parametrized conformance test: a backend's implementation on a device and case."""

    backend: str
    implementation: str
    device: str
    dtype: str
    case_index: int

    def __str__(self) -> str:
        return f"{self.backend}-{self.implementation}-{self.device}-{self.dtype}"


def _setup(config: pytest.Config) -> dict[str, Any]:
    if "backends" in _STATE:
        return _STATE
    from harness.cases import load_cases
    from harness.registry import UsageError, discover, select

    try:
        loaded = select(discover(config.getoption("--plugin")), config.getoption("--backend"))
        cases = load_cases(config.getoption("--cases") or None)
        from harness.verdict import expectations as expect

        entries = expect.load(config.getoption("--known"))
    except UsageError as exc:
        raise pytest.UsageError(str(exc)) from None
    _STATE.update(backends=loaded, cases=cases, entries=entries, infos={})
    from harness.runner import ReferenceCache

    _STATE["refs"] = ReferenceCache()
    return _STATE


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "conformance" not in metafunc.fixturenames:
        return
    from harness.cases import CaseFileError

    try:
        state = _setup(metafunc.config)
    except CaseFileError as exc:
        raise pytest.UsageError(str(exc)) from None
    devices = set(metafunc.config.getoption("--device"))
    dtypes = set(metafunc.config.getoption("--dtype"))
    params, ids = [], []
    for loaded in state["backends"]:
        info = state["infos"].setdefault(loaded.name, loaded.info())
        reason = info["availability"]
        if reason is not None:
            params.append(pytest.param(None, marks=pytest.mark.skip(
                reason=f"{loaded.name}: {reason}")))
            ids.append(f"{loaded.name}-unavailable")
            continue
        for impl in info["implementations"]:
            for dev in info["devices"]:
                if devices and dev not in devices:
                    continue
                for i, case in enumerate(state["cases"]):
                    for dt in case.dtypes:
                        if dt not in info["dtypes"] or (dtypes and dt not in dtypes):
                            continue
                        params.append(Conformance(loaded.name, impl, dev, dt, i))
                        ids.append(f"{loaded.name}-{impl}-{dev}-{dt}-{case.name}")
    if not params:
        wanted = ", ".join(f"{k} {' '.join(v)}" for k, v in (
            ("--device", sorted(devices)), ("--dtype", sorted(dtypes))) if v)
        params = [pytest.param(None, marks=pytest.mark.skip(
            reason=f"no installed backend offers {wanted or 'anything to run'}"))]
        ids = ["nothing-selected"]
    metafunc.parametrize("conformance", params, ids=ids)


def run_conformance(c: Conformance, config: pytest.Config) -> None:
    """Run one parametrized conformance test (called by tests/test_conformance.py)."""
    from harness.records import UNEXPECTED
    from harness.repro import snippet
    from harness.runner import Trial, run_inprocess

    state = _setup(config)
    loaded = next(b for b in state["backends"] if b.name == c.backend)
    case = state["cases"][c.case_index]
    bad, known_reasons = [], []
    for reduction in case.reductions:
        trial = Trial(case, c.dtype, reduction)
        records = run_inprocess(loaded.backend, trial, c.implementation, c.device,
                                state["refs"], state["entries"])
        for r in records:
            if r["status"] in UNEXPECTED:
                bad.append((r, trial))
            elif r["status"] == "known":
                known_reasons.append(f"[{reduction}] {r['check']}: "
                                     f"{r['expected_by'][0]['reason']}")
    if bad:
        lines = [f"{len(bad)} unexpected discrepancies for {c} on case {case.name} "
                 f"({case.source}):"]
        for r, _ in bad[:8]:
            lines.append(f"  {r['status'].upper()} [{r['reduction']}] {r['check']}: "
                         f"{r['message']}")
        r, trial = bad[0]
        lines.append("reproduce the first one with:")
        lines.append(snippet(loaded.backend, loaded.spec, trial.call(c.implementation, c.device),
                             case.name, case.source))
        pytest.fail("\n".join(lines), pytrace=False)
    if known_reasons:
        pytest.xfail("known: " + " | ".join(sorted(set(known_reasons))[:3]))
