"""Finding backends: the `bce_harness.backends` entry-point group and `--plugin`.

Third parties add a backend by declaring an entry point; nobody edits the harness.
A backend that cannot even be loaded is listed with the reason, never a crash, so
`python -m harness backends` is always the first thing to run when something is
missing. A `--plugin` the user named explicitly is different: failing to import it
is bad usage (exit 2), because the run they asked for cannot happen.

Every backend is described by a *spec* string that a fresh worker process can load
again on its own: `entrypoint:EP#NAME` or `plugin:MODULE:ATTR#NAME`.
"""

from __future__ import annotations

import importlib
import os
from dataclasses import dataclass
from importlib import metadata
from typing import Any

from harness.protocol import OPTIONAL_LISTS, Backend, describe

GROUP = "bce_harness.backends"
DISABLE_ENV = "BCE_HARNESS_NO_ENTRY_POINTS"

# The shipped backends register through the entry-point group like anyone else's;
# this table only stands in when the package runs from a source tree that was never
# installed (no metadata, so no entry points).
_SHIPPED = {
    "numpy": "harness.backends.numpy_backend:NumpyBackend",
    "torch": "harness.backends.torch_backend:TorchBackend",
    "tensorflow": "harness.backends.tensorflow_backend:TensorFlowBackend",
    "jax": "harness.backends.jax_backend:JaxBackend",
    "keras-jax": "harness.backends.keras_backend:KerasJaxBackend",
    "keras-torch": "harness.backends.keras_backend:KerasTorchBackend",
}


class UsageError(Exception):
    """Bad usage or bad input: one paragraph saying what is wrong and how to fix it (exit 2)."""


@dataclass
class Loaded:
    """A backend found, or the reason it could not be."""

    name: str
    spec: str
    origin: str
    backend: Backend | None
    load_error: str | None = None

    def availability(self) -> str | None:
        if self.backend is None:
            return self.load_error
        try:
            return self.backend.availability()
        except Exception as exc:  # a plugin's bug must not take the listing down
            return f"availability() raised {type(exc).__name__}: {exc}"

    def info(self) -> dict[str, Any]:
        """The report's `backends` entry (docs/report.md)."""
        reason = self.availability()
        entry: dict[str, Any] = {"name": self.name, "availability": reason, "origin": self.origin,
                                 "versions": {}, "devices": [], "dtypes": [],
                                 "implementations": [], "descriptions": {}}
        if reason is not None or self.backend is None:
            return entry
        b = self.backend
        for key, method in (("versions", b.versions), ("devices", b.devices),
                            ("dtypes", b.dtypes), ("implementations", b.implementations)):
            try:
                entry[key] = method()
            except Exception as exc:
                entry["availability"] = f"{key}() raised {type(exc).__name__}: {exc}"
                return entry
        entry["descriptions"] = {i: describe(b, i) for i in entry["implementations"]}
        twins = getattr(b, "eager_twins", None)  # optional: compiled implementation -> eager
        if twins is not None:
            try:
                entry["eager_twins"] = {c: e for c, e in dict(twins()).items()
                                        if c in entry["implementations"]}
            except Exception as exc:
                entry["availability"] = f"eager_twins() raised {type(exc).__name__}: {exc}"
        for hook in OPTIONAL_LISTS:  # optional: the implementations with a feature
            method = getattr(b, hook, None)
            if method is None:
                continue
            try:
                entry[hook] = [i for i in method() if i in entry["implementations"]]
            except Exception as exc:
                entry["availability"] = f"{hook}() raised {type(exc).__name__}: {exc}"
        return entry


def _instantiate(obj: Any) -> list[Backend]:
    items = obj if isinstance(obj, (list, tuple)) else [obj]
    out = []
    for item in items:
        inst = item() if isinstance(item, type) else item
        if not isinstance(inst, Backend):
            missing = [m for m in ("name", "availability", "versions", "devices", "dtypes",
                                   "implementations", "run") if not hasattr(inst, m)]
            raise TypeError(f"{inst!r} is not a Backend (missing: {', '.join(missing)})")
        out.append(inst)
    return out


def _entry_points() -> dict[str, str]:
    found = {ep.name: ep.value for ep in metadata.entry_points(group=GROUP)}
    if os.environ.get(DISABLE_ENV):
        found = {k: v for k, v in found.items() if k in _SHIPPED}
    for name, value in _SHIPPED.items():
        found.setdefault(name, value)
    return found


def _import_attr(target: str) -> Any:
    module_name, _, attr = target.partition(":")
    module = importlib.import_module(module_name)
    obj = module
    for part in attr.split("."):
        obj = getattr(obj, part)
    return obj


def load_plugin(target: str) -> list[Loaded]:
    """Load `MODULE:ATTR` (a Backend class, an instance, or a list of them)."""
    if ":" not in target:
        raise UsageError(f"--plugin {target!r} is not of the form MODULE:ATTR. Give the module "
                         "to import and the Backend class, instance or list in it, e.g. "
                         "--plugin my_backends:MyBackend.")
    try:
        obj = _import_attr(target)
    except ModuleNotFoundError as exc:
        raise UsageError(f"--plugin {target!r}: module {exc.name!r} cannot be imported. Check the "
                         "spelling, and that the module is on sys.path (run from its folder or "
                         "pip install it).") from None
    except AttributeError as exc:
        raise UsageError(f"--plugin {target!r}: {exc}. Name an attribute the module defines.") \
            from None
    except Exception as exc:
        raise UsageError(f"--plugin {target!r}: importing it raised {type(exc).__name__}: {exc}. "
                         "Fix the plugin module so it imports cleanly.") from None
    try:
        backends = _instantiate(obj)
    except Exception as exc:
        raise UsageError(f"--plugin {target!r}: {exc}. ATTR must be a Backend class, instance "
                         "or list of them (see harness.protocol.Backend).") from None
    return [Loaded(b.name, f"plugin:{target}#{b.name}", f"--plugin {target}", b)
            for b in backends]


def discover(plugins: tuple[str, ...] | list[str] = (), entry_points: bool = True) -> list[Loaded]:
    """All backends: entry points (each loaded lazily and safely), then plugins."""
    found: list[Loaded] = []
    if entry_points:
        for name, value in sorted(_entry_points().items()):
            try:
                backends = _instantiate(_import_attr(value))
            except Exception as exc:
                found.append(Loaded(name, f"entrypoint:{name}#{name}",
                                    f"entry point {name} = {value}", None,
                                    f"could not load {value}: {type(exc).__name__}: {exc}"))
                continue
            for b in backends:
                found.append(Loaded(b.name, f"entrypoint:{name}#{b.name}",
                                    f"entry point {name} = {value}", b))
    for target in plugins:
        found.extend(load_plugin(target))
    names = [f.name for f in found]
    dupes = sorted({n for n in names if names.count(n) > 1})
    if dupes:
        raise UsageError(f"two backends are named {', '.join(dupes)}. Backend names must be "
                         "unique: rename the plugin's `name`.")
    return found


def opt_in(loaded: Loaded) -> bool:
    """Whether a backend runs only when named (`--backend NAME`): one that declares
    `run_by_default = False` because a full run of it costs minutes (eager Keras on
    JAX: about 0.2 s a call, measured)."""
    return getattr(loaded.backend, "run_by_default", True) is False


def select(found: list[Loaded], names: list[str] | tuple[str, ...]) -> list[Loaded]:
    """Narrow to the named backends; an unknown name is bad usage. Without names:
    every backend found except the opt-in ones (`opt_in`)."""
    if not names:
        return [f for f in found if not opt_in(f)]
    known = {f.name: f for f in found}
    unknown = [n for n in names if n not in known]
    if unknown:
        raise UsageError(f"unknown backend {', '.join(map(repr, unknown))}. Known backends: "
                         f"{', '.join(sorted(known))}. Use `python -m harness backends` to list "
                         "them, or load a third-party one with --plugin MODULE:ATTR.")
    return [known[n] for n in names]


def load_spec(spec: str) -> Backend:
    """Load one backend again from its spec (used inside worker processes)."""
    kind, _, rest = spec.partition(":")
    target, _, name = rest.rpartition("#")
    if kind == "entrypoint":
        target = _entry_points()[target]
    if kind in ("entrypoint", "plugin"):
        for b in _instantiate(_import_attr(target)):
            if b.name == name:
                return b
        raise LookupError(f"{target} no longer provides a backend named {name!r}")
    raise ValueError(f"bad backend spec {spec!r}")
