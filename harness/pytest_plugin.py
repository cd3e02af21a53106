"""pytest plugin (registered through `pytest11`): the conformance suite as tests.

Any test that takes the `conformance` fixture is parametrized over backend × dtype.
Each item runs that backend's every implementation and device over the cases in
that dtype, once, in this process, judges the calls with the expectations exactly
as `python -m harness report` does, and fails listing the unexpected discrepancies
with a reproduction snippet of the first. One run per item, not one per case; the
worker process of an isolated backend (Keras) is started once per pytest process and
reused for its dtypes, and its items form one xdist group (the project's own run keeps
them in one worker: `--dist loadgroup` and the scheduler of tests/conftest.py).

Collection imports no framework (the parameters are the backend names and the
dtypes; whether a backend is available is decided when its item runs, which then
skips with the backend's own reason), and the plugin changes nothing in a session
that collects no conformance item: the single-threaded framework settings are made
by the first conformance item, before it imports its framework.

Whether an expectation is `fixed` or `unused` is a verdict over a whole run, which
`python -m harness report` gives; an item only says what is unexpected.

Options: --backend, --device, --dtype, --plugin, --cases, --known, --compiled.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pytest

from harness.protocol import DTYPES

_STATE: dict[str, Any] = {}
SHOW = 8  # unexpected records listed in a failing item


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
    group.addoption("--compiled", action="store_true", default=False,
                    help="also run the backends' compiled implementations (torch.compile, "
                         "jax.jit, tf.function), each also checked against its eager twin")
    group.addoption("--known", action="append", default=[], metavar="FILE",
                    help="an expectations file on top of the shipped one and plugins' "
                         "(repeatable)")


def pytest_configure(config: pytest.Config) -> None:
    # only the markers' descriptions: no framework setting changes here
    config.addinivalue_line("markers", "conformance: a backend's conformance item "
                            "(backend × dtype) against the reference")
    if not config.pluginmanager.hasplugin("xdist"):  # pytest-xdist registers its own
        config.addinivalue_line("markers", "xdist_group(name): run in one pytest-xdist "
                                "worker under --dist loadgroup")


@dataclass(frozen=True)
class Conformance:
    """One conformance item: a backend's implementations and devices in one dtype."""

    backend: str
    dtype: str

    def __str__(self) -> str:
        return f"{self.backend}-{self.dtype}"


def _backends(config: pytest.Config) -> list[Any]:
    """The selected backends, found without importing any framework."""
    if "backends" not in _STATE:
        from harness.run.registry import UsageError, discover, select

        try:
            _STATE["backends"] = select(discover(config.getoption("--plugin")),
                                        config.getoption("--backend"))
        except UsageError as exc:
            raise pytest.UsageError(str(exc)) from None
    return _STATE["backends"]


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "conformance" not in metafunc.fixturenames:
        return
    wanted = metafunc.config.getoption("--dtype")
    unknown = [d for d in wanted if d not in DTYPES]
    if unknown:
        raise pytest.UsageError(f"--dtype {unknown[0]} is not a dtype; use one of "
                                f"{', '.join(DTYPES)}.")
    dtypes = [d for d in DTYPES if not wanted or d in wanted]
    # An isolated backend's items form one xdist group, so that one pytest process
    # starts its worker (and imports its framework) once for all of them: the project's
    # own run schedules by it (tests/conftest.py, `--dist loadgroup`); elsewhere the
    # marker is inert. Other backends' items spread freely: importing a framework in
    # this process costs little beside a run.
    # dtype-major: neighbouring items share the trials whose reference a process keeps
    params = [pytest.param(Conformance(b.name, d), id=f"{b.name}-{d}", marks=_group(b))
              for d in dtypes for b in _backends(metafunc.config)]
    metafunc.parametrize("conformance", params)


def _group(loaded: Any) -> list[pytest.MarkDecorator]:
    """The xdist group of an isolated backend's items (see pytest_generate_tests)."""
    if getattr(loaded.backend, "isolated", False):
        return [pytest.mark.xdist_group(f"conformance-{loaded.name}")]
    return []


def _setup(config: pytest.Config) -> dict[str, Any]:
    """Cases and expectations, loaded once per process (the first item pays), by the
    same planning `python -m harness report` uses (harness/run/job.py)."""
    if "cases" not in _STATE:
        from harness.cases import CaseFileError
        from harness.run.job import ReportRequest, plan_report
        from harness.run.pool import single_threaded
        from harness.run.registry import UsageError
        from harness.run.trials import ReferenceCache

        single_threaded()  # before any framework is imported in this process
        request = ReportRequest(cases=tuple(config.getoption("--cases")), examples=0,
                                known=tuple(config.getoption("--known")),
                                plugins=tuple(config.getoption("--plugin")),
                                backends=tuple(config.getoption("--backend")))
        try:
            plan = plan_report(request)
        except (CaseFileError, UsageError) as exc:
            raise pytest.UsageError(str(exc)) from None
        _STATE["cases"], _STATE["expectations"] = plan.cases, plan.entries
        _STATE["refs"] = ReferenceCache()  # shared by every backend's items here
    return _STATE


def conformance_records(c: Conformance, config: pytest.Config) -> tuple[Any, list[Any], Any]:
    """Run one backend in one dtype over the cases; its records, judged with the
    expectations. Skips (with the backend's reason) what cannot run here.

    A backend with `isolated = True` (Keras on JAX or PyTorch: Keras holds one engine
    per process, and this process may hold it already) runs in a worker process of
    its own, as `python -m harness report` runs every backend; the records are
    judged the same way."""
    from harness.run.calls import iter_inprocess
    from harness.run.trials import expand

    state = _setup(config)
    loaded = next(b for b in _backends(config) if b.name == c.backend)
    trials = expand(state["cases"], (c.dtype,))
    devices = tuple(config.getoption("--device"))
    compiled = config.getoption("--compiled")
    if getattr(loaded.backend, "isolated", False):
        info, records = _run_in_worker(loaded, trials, devices, state, compiled)
    else:
        info, records = loaded.info(), None
    if info["availability"] is not None:
        pytest.skip(f"{c.backend}: {info['availability']}")
    if c.dtype not in info["dtypes"]:
        pytest.skip(f"{c.backend} does not offer {c.dtype} (it offers "
                    f"{', '.join(info['dtypes'])})")
    if devices and not set(devices) & set(info["devices"]):
        pytest.skip(f"{c.backend} has no device {', '.join(devices)} here (it has "
                    f"{', '.join(info['devices'])})")
    if records is None:
        records = list(iter_inprocess(loaded, trials, devices, state["expectations"],
                                      refs=state["refs"], compiled=compiled))
    return loaded, trials, records


def _run_in_worker(loaded: Any, trials: list[Any], devices: tuple[str, ...],
                   state: dict[str, Any], compiled: bool) -> tuple[dict[str, Any], list[Any]]:
    """The backend's info and records from one worker process (harness/run/pool.py).

    The pool lives for the session (ended by `pytest_sessionfinish`): its worker stays
    loaded between the items of one backend, so the framework is imported once per
    backend and process, not once per dtype."""
    from harness.run.pool import Pool
    from harness.run.runner import RunOptions, run_isolated

    if "pool" not in state:
        state["pool"] = Pool(1)
    infos: list[dict[str, Any]] = []
    records: list[Any] = []
    opts = RunOptions(devices=devices, jobs=1, compiled=compiled)
    run_isolated([loaded], trials, opts, state["expectations"],
                 on_records=lambda name, recs: records.extend(recs),
                 on_info=infos.append, pool=state["pool"])
    return (infos[0] if infos else loaded.info()), records


def pytest_sessionfinish(session: pytest.Session) -> None:
    """End the isolated backends' worker process, if a conformance item started one."""
    pool = _STATE.pop("pool", None)
    if pool is not None:
        pool.close()


def run_conformance(c: Conformance, config: pytest.Config) -> None:
    """Run one conformance item (called by tests/test_conformance.py)."""
    from harness.records import UNEXPECTED
    from harness.report.snippets import snippet
    from harness.run.trials import Trial

    loaded, trials, records = conformance_records(c, config)
    bad = [r for r in records if r["status"] in UNEXPECTED]
    if not bad:
        return
    by_case = {t.case.name: t.case for t in trials}
    lines = [f"{len(bad)} unexpected discrepancies for {c.backend} in {c.dtype} "
             f"({len(records)} records over {len(trials)} trials):"]
    for r in bad[:SHOW]:
        lines.append(f"  {r['status'].upper()} {r['implementation']}@{r['device']} "
                     f"{r['case']} [{r['reduction']}] {r['check']}: {r['message'][:300]}")
    if len(bad) > SHOW:
        lines.append(f"  … and {len(bad) - SHOW} more")
    first = bad[0]
    case = by_case[first["case"]]
    call = Trial(case, c.dtype, first["reduction"]).call(first["implementation"],
                                                        first["device"])
    lines.append("reproduce the first one with:")
    lines.append(snippet(loaded.backend, loaded.spec, call, case.name, case.source))
    pytest.fail("\n".join(lines), pytrace=False)
