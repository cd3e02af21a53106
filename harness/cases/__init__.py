"""The case model: YAML case files in, validated `Case` objects out.

A case is data, not code, so that a backend author can add the example that broke
their kernel without reading the harness. That only works if a broken case file
is answered with one readable paragraph naming the file, the line and the fix, so
every problem found here (YAML syntax, schema, semantics) becomes a
`CaseFileError` pointing at the offending YAML node.

Loading runs in three steps, each catching what the previous one cannot:

1. YAML is parsed with a loader that reads numbers the YAML 1.2 way (`1e-5` is a
   float, not the string PyYAML 1.1 makes of it), refuses literals that overflow or
   underflow float64, and records every node's position.
2. The document is validated against the shipped JSON Schema
   (`harness/schema/case.schema.json`), which editors can use too.
3. Semantic checks the schema cannot express: rectangular nested lists, generator
   parameters, shapes that agree (or `raises:` saying they are not meant to),
   integral values where an integer dtype is asked for, unique names.

Values are kept as float64 exactly as written; rounding to the dtype under test
happens in `Case.materialize`, so one case serves every dtype.
"""

from __future__ import annotations

import difflib
import json
import math
import os
import re
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from decimal import Decimal, localcontext
from fractions import Fraction
from functools import cache
from pathlib import Path
from typing import Any

import jsonschema
import numpy as np
import yaml
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

from harness.dtypes import round_to
from harness.protocol import DTYPES, GRAD_NAMES, REDUCTIONS

__all__ = [
    "ARG_DTYPES",
    "ARG_NAMES",
    "GENERATORS",
    "INT_DTYPES",
    "SCHEMA_PATH",
    "SHIPPED_CASES",
    "Case",
    "CaseFileError",
    "check_expect",
    "load_cases",
]

SHIPPED_CASES: Path = Path(__file__).resolve().parents[2] / "cases"
SCHEMA_PATH: Path = Path(__file__).resolve().parents[1] / "schema" / "case.schema.json"

ARG_NAMES: tuple[str, ...] = GRAD_NAMES  # the four arguments of the loss, in call order
#: Integer and bool dtypes an argument may be passed in (`arg_dtypes`), with their ranges.
INT_DTYPES: dict[str, tuple[int, int]] = {
    "bool": (0, 1),
    "uint8": (0, 255),
    "int8": (-(2**7), 2**7 - 1),
    "int16": (-(2**15), 2**15 - 1),
    "int32": (-(2**31), 2**31 - 1),
    "int64": (-(2**63), 2**63 - 1),
}
ARG_DTYPES: tuple[str, ...] = (*DTYPES, *INT_DTYPES)
GENERATORS: tuple[str, ...] = ("linspace", "logspace", "values", "random", "fill")
DISTRIBUTIONS: dict[str, tuple[str, ...]] = {
    "normal": ("loc", "scale"),
    "uniform": ("low", "high"),
    "integers": ("low", "high"),
    "bernoulli": ("p",),
    "loguniform": ("low", "high", "signs"),
}
#: Files a folder scan passes over: the expectations live beside the cases
#: (known.yaml is their former name, still refused as a case file).
SKIPPED_FILES: frozenset[str] = frozenset({"expectations.yaml", "known.yaml"})
#: A guard against a typo such as `shape: [100000, 100000]` eating the machine.
MAX_ELEMENTS = 10_000_000

_SPECIALS = {"inf": math.inf, "-inf": -math.inf, "nan": math.nan, "-0.0": -0.0}
_HEX_RE = re.compile(
    r"([-+]?)0[xX]([0-9a-fA-F]*)(?:\.([0-9a-fA-F]*))?(?:[pP]([-+]?[0-9]+))?")
_SPECIAL_HINT = ('a number, YAML\'s .inf / -.inf / .nan, or one of the quoted strings '
                 '"inf", "-inf", "nan", "-0.0" or a hex float such as "0x1p-1074"')


class CaseFileError(Exception):
    """A case file is broken.

    `str(e)` is one paragraph, '<path>:<line>:<col>: <what is wrong>. <how to fix it>.',
    because it is shown to a user as is (exit code 2, no traceback): it must say
    where to look and what to type.
    """

    def __init__(self, path: str | os.PathLike[str], line: int | None, column: int | None,
                 problem: str, fix: str) -> None:
        self.path = str(path)
        self.line = line
        self.column = column
        self.problem = _one_line(problem)
        self.fix = _one_line(fix)
        super().__init__(str(self))

    def __str__(self) -> str:
        where = self.path
        if self.line is not None:
            where += f":{self.line}"
            if self.column is not None:
                where += f":{self.column}"
        return f"{where}: {_sentence(self.problem)} {_sentence(self.fix)}"

    def __reduce__(self) -> tuple[Any, ...]:  # picklable across worker processes
        return (CaseFileError, (self.path, self.line, self.column, self.problem, self.fix))


def _one_line(text: str) -> str:
    return " ".join(str(text).split())


def _sentence(text: str) -> str:
    text = text.strip()
    if not text:
        return ""
    text = text[0].upper() + text[1:]
    return text if text[-1] in ".?!" else text + "."


# --------------------------------------------------------------------------- the model


@dataclass(frozen=True, eq=False)
class Case:
    """One test case: the four arguments as written, and what to run them through.

    `eq=False` keeps identity hashing: cases hold arrays, and the runner uses
    them as dictionary keys. Arrays are float64, read-only, holding the values
    exactly as written (before rounding to a dtype), so one case serves every dtype.
    """

    name: str
    source: str
    description: str
    input: np.ndarray
    target: np.ndarray
    weight: np.ndarray | None = None
    pos_weight: np.ndarray | None = None
    reductions: tuple[str, ...] = REDUCTIONS
    dtypes: tuple[str, ...] = DTYPES
    grads: tuple[str, ...] = ("input", "target")
    raises: tuple[str, ...] = ()
    arg_dtypes: dict[str, str] = field(default_factory=dict)
    expect: dict[str, Any] = field(default_factory=dict)
    tags: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        # Normalise here too, so cases built in code (Hypothesis strategies) obey
        # the same invariants as loaded ones.
        for name in ARG_NAMES:
            value = getattr(self, name)
            if value is None and name in ("weight", "pos_weight"):
                continue
            arr = np.array(value, dtype=np.float64)
            arr.setflags(write=False)
            object.__setattr__(self, name, arr)
        for name in ("reductions", "dtypes", "grads", "raises", "tags"):
            value = getattr(self, name)
            object.__setattr__(self, name, (value,) if isinstance(value, str) else tuple(value))
        object.__setattr__(self, "arg_dtypes", dict(self.arg_dtypes))
        object.__setattr__(self, "expect", dict(self.expect))

    def materialize(self, dtype: str) -> dict[str, np.ndarray | None]:
        """The four arguments as float64 arrays holding values exactly representable in `dtype`.

        Each argument is rounded to nearest-even in `dtype` (float16 overflow gives
        ±inf, bfloat16 is rounded correctly, not through float32) or in its own
        `arg_dtypes` entry. Integer and bool arguments were checked at load time to
        hold integral / 0-1 values, so they pass unchanged. Keys: input, target,
        weight, pos_weight (None when absent). Fresh arrays each call.
        """
        if dtype not in DTYPES:
            raise ValueError(f"unknown dtype {dtype!r}; expected one of {', '.join(DTYPES)}")
        out: dict[str, np.ndarray | None] = {}
        for name in ARG_NAMES:
            value = getattr(self, name)
            if value is None:
                out[name] = None
                continue
            wanted = self.arg_dtypes.get(name, dtype)
            if wanted in INT_DTYPES or wanted == "float64":
                out[name] = np.array(value, dtype=np.float64)
            else:
                with np.errstate(over="ignore", under="ignore", invalid="ignore"):
                    out[name] = np.asarray(round_to(value, wanted), dtype=np.float64)
        return out

    @property
    def shape(self) -> tuple[int, ...]:
        """The input's shape, which is also the shape of the unreduced loss."""
        return tuple(self.input.shape)

    def variants(self) -> list[tuple[str, str]]:
        """The (dtype, reduction) pairs this case expands to, in run order."""
        return [(d, r) for d in self.dtypes for r in self.reductions]

    def summary(self) -> str:
        """One line for `python -m harness cases`: name, shapes, what runs, where it is."""
        parts = [f"input{_shape_text(self.input.shape)}"]
        for name in ("weight", "pos_weight"):
            value = getattr(self, name)
            if value is not None:
                parts.append(f"{name}{_shape_text(value.shape)}")
        if self.arg_dtypes:
            parts.append("arg_dtypes " + ",".join(f"{k}={v}" for k, v in self.arg_dtypes.items()))
        if self.raises:
            parts.append("raises " + "|".join(self.raises))
        n = len(self.variants())
        return (f"{self.name}  {' '.join(parts)}  × {len(self.dtypes)} dtypes × "
                f"{len(self.reductions)} reductions = {n}  ({self.source})")


def _shape_text(shape: tuple[int, ...]) -> str:
    return "(" + ", ".join(map(str, shape)) + ("," if len(shape) == 1 else "") + ")"


# ----------------------------------------------------------------- published values


def check_expect(case: Case, loss: Callable[..., Any]) -> list[str]:
    """Compare a case's published values (`expect`) with `loss`; one message per mismatch.

    `loss` has the signature of `harness.reference.loss`. The arguments are first
    rounded to `expect.dtype` (default float64), the dtype the publisher held them
    in. A value passes when |got − want| ≤ abs + rel·|want|; NaN matches NaN and an
    infinity only itself. An empty list means every published value reproduced.
    """
    if not case.expect:
        return []
    args = case.materialize(case.expect.get("dtype", "float64"))
    rel = float(case.expect.get("rel", 0.0))
    tol_abs = float(case.expect.get("abs", 0.0))
    problems = []
    for reduction in REDUCTIONS:
        if reduction not in case.expect:
            continue
        want = np.asarray(case.expect[reduction], dtype=np.float64)
        got = np.asarray(loss(args["input"], args["target"], weight=args["weight"],
                              pos_weight=args["pos_weight"], reduction=reduction),
                         dtype=np.float64)
        if got.shape != want.shape:
            problems.append(f"{case.name} ({case.source}): {reduction} has shape {got.shape}, "
                            f"published {want.shape}")
            continue
        ok = _close(got, want, rel, tol_abs)
        if not ok.all():
            i = np.unravel_index(int(np.argmin(ok.ravel())), ok.shape) if ok.ndim else ()
            g, w = float(got[i]), float(want[i])
            where = f"[{', '.join(map(str, i))}]" if ok.ndim else ""
            problems.append(
                f"{case.name} ({case.source}): {reduction}{where} is {g!r}, published {w!r}, "
                f"off by {abs(g - w):.3g} (allowed {tol_abs + rel * abs(w):.3g})")
    return problems


def _close(got: np.ndarray, want: np.ndarray, rel: float, tol_abs: float) -> np.ndarray:
    with np.errstate(invalid="ignore", over="ignore"):
        both_nan = np.isnan(got) & np.isnan(want)
        near = np.abs(got - want) <= tol_abs + rel * np.abs(want)
        return both_nan | (got == want) | (np.isfinite(got) & np.isfinite(want) & near)


# ------------------------------------------------------------------------- loading


def load_cases(paths: Sequence[str | os.PathLike[str]] | str | os.PathLike[str] | None = None,
               ) -> list[Case]:
    """Load and validate every case in `paths` (files and folders; None: the shipped cases).

    Folders are searched recursively for *.yaml / *.yml, passing over hidden folders
    and `expectations.yaml` (the expectations). Case names are
    "<file stem>/<case name>" and must be unique across everything loaded. The first
    problem found raises `CaseFileError`; nothing is returned half-validated.
    """
    files = _case_files(paths)
    cases: list[Case] = []
    seen: dict[str, Case] = {}
    for file in files:
        for case, line, column in _CaseFile.read(file).cases():
            if case.name in seen:
                first = seen[case.name]
                raise CaseFileError(
                    case.source.rsplit(":", 1)[0], line, column,
                    f"the case name '{case.name}' is used twice: here and at {first.source}",
                    "Rename one of them (names are '<file stem>/<name>', so two files with the "
                    "same stem must not share case names)")
            seen[case.name] = case
            cases.append(case)
    return cases


def _display(path: Path) -> str:
    """The path relative to the current directory when it lies below it, else as given."""
    try:
        return str(path.resolve().relative_to(Path.cwd().resolve()))
    except (ValueError, OSError):
        return str(path)


def _case_files(paths: Any) -> list[Path]:
    if paths is None:
        paths = [SHIPPED_CASES]
    elif isinstance(paths, (str, os.PathLike)):
        paths = [paths]
    files: list[Path] = []
    seen: set[Path] = set()
    for raw in paths:
        path = Path(raw)
        if path.is_dir():
            found = sorted(
                p for p in path.rglob("*")
                if p.suffix in (".yaml", ".yml") and p.name not in SKIPPED_FILES and p.is_file()
                and not any(part.startswith(".") for part in p.relative_to(path).parts))
            if not found:
                raise CaseFileError(_display(path), None, None,
                                    "this folder holds no .yaml or .yml case files",
                                    "Pass a folder that contains case files, or a case file")
        elif path.is_file():
            if path.name in SKIPPED_FILES:
                raise CaseFileError(
                    _display(path), None, None,
                    f"{path.name} is a list of expectations (known discrepancies), not a "
                    "case file",
                    "Pass the cases folder or a case file; expectations are read "
                    "separately (--known FILE)")
            found = [path]
        else:
            raise CaseFileError(_display(path), None, None, "there is no such file or folder",
                                f"Check the path (relative paths start at {Path.cwd()})")
        for p in found:
            key = p.resolve()
            if key not in seen:
                seen.add(key)
                files.append(p)
    return files


# ------------------------------------------------------------------------ YAML


_FLOAT_TAG = "tag:yaml.org,2002:float"
# YAML 1.2 floats: PyYAML (YAML 1.1) reads 1e-5 and 1.0e5 as strings, a classic trap.
# A dot or an exponent is required so that plain integers stay integers.
_FLOAT_RE = re.compile(r"""^(?:
    [-+]?(?:[0-9]+\.[0-9]*|\.[0-9]+)(?:[eE][-+]?[0-9]+)?
  | [-+]?[0-9]+[eE][-+]?[0-9]+
  | [-+]?\.(?:inf|Inf|INF)
  | \.(?:nan|NaN|NAN)
)$""", re.X)


class _Loader(yaml.SafeLoader):
    """SafeLoader with YAML 1.2 floats and literals checked against float64's range."""


_Loader.yaml_implicit_resolvers = {
    first: [(tag, _FLOAT_RE if tag == _FLOAT_TAG else rx) for tag, rx in resolvers]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}


def _construct_float(loader: yaml.SafeLoader, node: ScalarNode) -> float:
    text = str(loader.construct_scalar(node))
    t = text.replace("_", "").strip().lower()
    sign = -1.0 if t.startswith("-") else 1.0
    body = t.lstrip("+-")
    if body == ".inf":
        return sign * math.inf
    if body == ".nan":
        return math.nan
    try:
        value = float(t)
    except ValueError:
        raise yaml.constructor.ConstructorError(
            None, None, f"'{text}' is not a number YAML can read", node.start_mark) from None
    if math.isinf(value):
        raise yaml.constructor.ConstructorError(
            None, None, f"the number {text} is beyond float64's range (it would silently become "
            "infinity); write .inf or -.inf if infinity is meant", node.start_mark)
    mantissa = re.split(r"e", body)[0]
    if value == 0.0 and re.search(r"[1-9]", mantissa):
        raise yaml.constructor.ConstructorError(
            None, None, f"the number {text} is below float64's smallest subnormal (it would "
            "silently become 0); write 0.0 if zero is meant, or 5e-324 for the smallest "
            "subnormal", node.start_mark)
    return value


_Loader.add_constructor(_FLOAT_TAG, _construct_float)


def _locate(root: Node | None, where: Sequence[Any]) -> tuple[Node | None, Node | None]:
    """The node at `where` (keys and indexes) and the key node that led to it.

    Stops at the deepest node that exists, so an error about a missing key points at
    the mapping that lacks it.
    """
    node, key_node = root, None
    for part in where:
        if isinstance(node, MappingNode):
            found = None
            for k, v in node.value:  # last one wins, as in the constructor
                if isinstance(k, ScalarNode) and k.value == str(part):
                    found = (k, v)
            if found is None:
                break
            key_node, node = found
        elif isinstance(node, SequenceNode) and isinstance(part, int) and \
                0 <= part < len(node.value):
            node, key_node = node.value[part], None
        else:
            break
    return node, key_node


def _duplicate_keys(root: Node | None) -> tuple[ScalarNode, ScalarNode] | None:
    """The first key that appears twice in one mapping (YAML would keep only the last)."""
    stack, visited = [root], set()
    while stack:
        node = stack.pop()
        if node is None or id(node) in visited:
            continue
        visited.add(id(node))
        if isinstance(node, MappingNode):
            keys: dict[str, ScalarNode] = {}
            for k, v in node.value:
                if isinstance(k, ScalarNode) and k.tag != "tag:yaml.org,2002:merge":
                    if k.value in keys:
                        return keys[k.value], k
                    keys[k.value] = k
                stack.append(v)
        elif isinstance(node, SequenceNode):
            stack.extend(reversed(node.value))
    return None


@cache
def _schema() -> dict[str, Any]:
    return json.loads(SCHEMA_PATH.read_text(encoding="utf-8"))


@cache
def _validator() -> jsonschema.protocols.Validator:
    return jsonschema.Draft202012Validator(_schema())


def _describe(value: Any) -> str:
    """A short, human description of a YAML value for error messages."""
    if value is None:
        return "empty (null)"
    if isinstance(value, bool):
        return f"{str(value).lower()} (a boolean)"
    if isinstance(value, str):
        text = value if len(value) <= 40 else value[:37] + "..."
        return f"the string '{text}'"
    if isinstance(value, dict):
        return "a mapping"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, (int, float)):
        return repr(value)
    return type(value).__name__


_TYPE_WORDS = {"object": "a mapping", "array": "a list", "string": "a string",
               "integer": "an integer", "number": "a number", "boolean": "true or false"}


def _type_matches(err: jsonschema.ValidationError) -> bool:
    """False when `err` says the instance itself has the wrong type for its branch."""
    if err.relative_path:
        return True
    if err.validator == "type":
        return False
    if err.validator in ("anyOf", "oneOf") and err.context:
        branches: dict[Any, list[jsonschema.ValidationError]] = {}
        for sub in err.context:
            branches.setdefault(sub.relative_schema_path[0], []).append(sub)
        return any(all(_type_matches(e) for e in errs) for errs in branches.values())
    return True


_PREFERENCE = ("additionalProperties", "required", "enum", "pattern", "type")


def _deepest(err: jsonschema.ValidationError) -> jsonschema.ValidationError:
    """Descend anyOf/oneOf into the branch meant for the instance's type.

    jsonschema reports "not valid under any of the given schemas" for a typo deep
    in a generator mapping; the branch whose type matches says what is really wrong.
    """
    while err.context and err.validator in ("anyOf", "oneOf"):
        if all(e.validator == "required" and not e.relative_path for e in err.context):
            return err  # "one of these keys is needed": reported as such
        branches: dict[Any, list[jsonschema.ValidationError]] = {}
        for sub in err.context:
            branches.setdefault(sub.relative_schema_path[0], []).append(sub)
        matching = [errs for errs in branches.values() if all(_type_matches(e) for e in errs)]
        if not matching:
            return err
        errs = matching[0]
        err = min(errs, key=lambda e: (
            _PREFERENCE.index(e.validator) if e.validator in _PREFERENCE else len(_PREFERENCE),
            -len(e.absolute_path)))
    return err


# ------------------------------------------------------------------- one file


class _CaseFile:
    """One parsed case file: its data, its node tree (for line numbers), its errors."""

    def __init__(self, path: Path, display: str, root: Node | None, data: Any) -> None:
        self.path = path
        self.display = display
        self.root = root
        self.data = data

    @classmethod
    def read(cls, path: Path) -> _CaseFile:
        display = _display(path)
        try:
            text = path.read_text(encoding="utf-8")
        except UnicodeDecodeError as exc:
            raise CaseFileError(display, None, None,
                                f"the file is not UTF-8 text (byte {exc.start} cannot be decoded)",
                                "Save it as UTF-8") from None
        except OSError as exc:
            raise CaseFileError(display, None, None, f"the file cannot be read: {exc.strerror}",
                                "Check that it exists and is readable") from None
        return cls.parse(text, display, path)

    @classmethod
    def parse(cls, text: str, display: str, path: Path | None = None) -> _CaseFile:
        loader = _Loader(text)
        try:
            root = loader.get_single_node()
            # Before constructing: the constructor flattens merge keys (<<) into the
            # node tree, which would look like duplicates.
            dup = _duplicate_keys(root)
            data = loader.construct_document(root) if root is not None and not dup else None
        except yaml.MarkedYAMLError as exc:
            mark = exc.problem_mark or exc.context_mark
            what = " ".join(s for s in (exc.context, exc.problem) if s)
            if isinstance(exc, yaml.constructor.ConstructorError):
                problem, _, fix = what.partition("; ")
                fix = fix or "Correct the value"
            else:
                problem = f"this is not valid YAML: {what}"
                fix = ("Check the indentation and quoting here (a value containing ': ' or "
                       "starting with one of [ ] { } * & ! | > ' \" % @ ` needs quotes)")
            raise CaseFileError(display, mark.line + 1 if mark else None,
                                mark.column + 1 if mark else None, problem, fix) from None
        except yaml.YAMLError as exc:
            raise CaseFileError(display, None, None, f"this is not valid YAML: {exc}",
                                "Remove control characters and check the syntax") from None
        finally:
            loader.dispose()
        self = cls(path or Path(display), display, root, data)
        if dup is not None:
            first, second = dup
            raise self._error_at(
                second, f"the key '{second.value}' appears twice in the same mapping (first on "
                f"line {first.start_mark.line + 1}); YAML would silently keep only the last",
                "Remove one of them")
        if data is None:
            raise CaseFileError(display, 1, 1, "the file is empty",
                                "Start it with `cases:` followed by a list of cases "
                                "(see docs/cases.md)")
        self._check_schema()
        return self

    # -- locations and messages

    def _error_at(self, node: Node | None, problem: str, fix: str) -> CaseFileError:
        if node is None:
            return CaseFileError(self.display, None, None, problem, fix)
        mark = node.start_mark
        return CaseFileError(self.display, mark.line + 1, mark.column + 1, problem, fix)

    def error(self, where: Sequence[Any], problem: str, fix: str, *,
              at_key: bool = False) -> CaseFileError:
        """A CaseFileError located at the YAML node `where` (or its key, with at_key)."""
        node, key_node = _locate(self.root, where)
        return self._error_at(key_node if at_key and key_node is not None else node,
                              problem, fix)

    def _position(self, where: Sequence[Any]) -> tuple[int, int]:
        node, _ = _locate(self.root, where)
        if node is None:
            return (0, 0)
        return (node.start_mark.line, node.start_mark.column)

    def label(self, where: Sequence[Any]) -> str:
        """'`weight.random.seed` of case 'foo'' for a path into the document."""
        where = list(where)
        owner = ""
        if len(where) >= 2 and where[0] == "cases" and isinstance(where[1], int):
            owner = self.case_label(where[1])
            where = where[2:]
        elif where and where[0] == "defaults":
            owner = "`defaults`"
            where = where[1:]
        dotted = ""
        for part in where:
            dotted += f"[{part}]" if isinstance(part, int) else (f".{part}" if dotted else part)
        if not dotted:
            return owner or "the file"
        return f"`{dotted}` of {owner}" if owner else f"`{dotted}`"

    def case_label(self, index: int) -> str:
        cases = self.data.get("cases") if isinstance(self.data, dict) else None
        if isinstance(cases, list) and index < len(cases) and isinstance(cases[index], dict):
            name = cases[index].get("name")
            if isinstance(name, str):
                return f"case '{name}'"
        return f"case #{index + 1}"

    # -- schema

    def _check_schema(self) -> None:
        errors = [_deepest(e) for e in _validator().iter_errors(self.data)]
        if errors:
            first = min(errors, key=lambda e: (self._position(e.absolute_path),
                                               -len(e.absolute_path)))
            raise self._translate(first)

    def _translate(self, err: jsonschema.ValidationError) -> CaseFileError:
        where = tuple(err.absolute_path)
        label = self.label(where)
        inst, kind, schema = err.instance, err.validator, err.schema
        desc = schema.get("description") if isinstance(schema, dict) else None
        if not where and kind == "type":
            return self.error(where, f"the file holds {_describe(inst)}, not a mapping",
                              "Start it with `cases:` followed by a list of cases")
        if kind == "additionalProperties":
            allowed = list(schema.get("properties", {}))
            key = next(k for k in inst if k not in allowed)
            guess = difflib.get_close_matches(str(key), allowed, n=1, cutoff=0.6)
            hint = f"Did you mean '{guess[0]}'? " if guess else ""
            return self.error((*where, key), f"unknown key '{key}' in {label}",
                              f"{hint}Valid keys here: {', '.join(allowed)}", at_key=True)
        if kind == "required":
            missing = next(k for k in err.validator_value if k not in inst)
            return self.error(where, f"{label} has no `{missing}`",
                              f"Add `{missing}:` {_REQUIRED_HINTS.get(missing, '')}".strip())
        if kind in ("anyOf", "oneOf") and err.context and all(
                e.validator == "required" for e in err.context):
            keys = [b["required"][0] for b in err.validator_value]
            present = [k for k in keys if isinstance(inst, dict) and k in inst]
            if present:
                return self.error(where, f"{label} has {' and '.join(present)}, but only one of "
                                  f"{', '.join(keys)} is allowed",
                                  "Keep one of them (write two generators as two cases)")
            example = {"linspace": "e.g. {fill: 0.5, shape: [3]} or {linspace: [-60, 60, 241]}",
                       "mean": "e.g. `mean: 0.7205` with `abs: 5.0e-5`"}.get(keys[0], "")
            return self.error(where, f"{label} needs one of {', '.join(keys)}",
                              f"Add one of them, {example}" if example else "Add one of them")
        if kind == "oneOf":  # valid under more than one branch: two generator keys
            present = [k for k in GENERATORS if isinstance(inst, dict) and k in inst]
            return self.error(where, f"{label} has {' and '.join(present)}, but a generator "
                              "takes exactly one of " + ", ".join(GENERATORS),
                              "Keep one of them")
        if isinstance(inst, bool) and kind in ("type", "anyOf", "oneOf", "enum"):
            return self.error(where, f"{label} is {_describe(inst)}, not a number",
                              "Write 1 or 0 (a bool argument is asked for with "
                              "`arg_dtypes: {weight: bool}`)" if _is_value_path(where) else
                              f"It should be {desc or 'something else'}")
        if kind == "enum":
            options = [str(o) for o in err.validator_value]
            guess = difflib.get_close_matches(str(inst), options, n=1, cutoff=0.5)
            hint = f"Did you mean '{guess[0]}'? " if guess else ""
            return self.error(where, f"{label} is {_describe(inst)}, which is not one of "
                              f"{', '.join(options)}", f"{hint}Use one of {', '.join(options)}")
        if kind == "pattern":
            if schema == _schema()["$defs"]["special"]:
                problem = f"{label} is {_describe(inst)}, which is not a number"
                plain = _FLOAT_RE.match(inst.strip()) or re.fullmatch(r"[-+]?[0-9]+", inst.strip())
                fix = "Remove the quotes" if plain else f"Write {_SPECIAL_HINT}"
                return self.error(where, problem, fix)
            if schema == _schema()["$defs"]["name"]:
                suggestion = re.sub(r"[^A-Za-z0-9._+-]+", "_", inst).strip("_") or "case1"
                return self.error(where, f"the case name {inst!r} has characters other than "
                                  "letters, digits and . _ + -", f"Rename it, e.g. '{suggestion}'")
            return self.error(where, f"{label} is {_describe(inst)}, which is not {desc}",
                              f"Write {desc}" if desc else "Correct it")
        if kind in ("type", "anyOf", "oneOf"):
            expected = desc or _TYPE_WORDS.get(str(err.validator_value), "something else")
            if _is_value_path(where) and isinstance(inst, str):
                return self.error(where, f"{label} is {_describe(inst)}, which is not a number",
                                  f"Write {_SPECIAL_HINT}")
            return self.error(where, f"{label} is {_describe(inst)}",
                              f"It should be {expected}")
        if kind in ("minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum"):
            word = {"minimum": "at least", "maximum": "at most",
                    "exclusiveMinimum": "more than", "exclusiveMaximum": "less than"}[kind]
            return self.error(where, f"{label} is {_describe(inst)}",
                              f"It must be {word} {err.validator_value}")
        if kind in ("minItems", "maxItems"):
            return self.error(where, f"{label} has {len(inst)} item{'s' * (len(inst) != 1)}",
                              f"It should be {desc}" if desc else
                              f"It needs {'at least' if kind == 'minItems' else 'at most'} "
                              f"{err.validator_value}")
        if kind == "uniqueItems":
            return self.error(where, f"{label} lists the same item twice",
                              "Remove the repetition")
        if kind == "dependentRequired":
            key = next(k for k in err.validator_value if isinstance(inst, dict) and k in inst)
            return self.error((*where, key), f"`{key}` in {label} only goes with "
                              f"{', '.join(err.validator_value[key])}",
                              f"Remove `{key}` or use {err.validator_value[key][0]}",
                              at_key=True)
        message = err.message if len(err.message) < 200 else err.message[:197] + "..."
        return self.error(where, f"{label}: {message}", f"It should be {desc}" if desc else
                          "See docs/cases.md for the case format")

    # -- cases

    def cases(self) -> Iterator[tuple[Case, int, int]]:
        """Build every case of the file: (case, line, column), semantics checked."""
        defaults = self.data.get("defaults") or {}
        stem = self.path.stem
        for index, raw in enumerate(self.data.get("cases") or []):
            builder = _CaseBuilder(self, index, raw, defaults, stem)
            case = builder.build()
            node, _ = _locate(self.root, ("cases", index))
            mark = node.start_mark if node is not None else None
            yield case, (mark.line + 1 if mark else 1), (mark.column + 1 if mark else 1)


_REQUIRED_HINTS = {
    "cases": "followed by a list of cases",
    "name": "with a name made of letters, digits and . _ + -",
    "distribution": "with one of normal, uniform, integers, bernoulli, loguniform",
    "seed": "with a non-negative integer, so the values are the same on every run",
    "high": "(the upper bound)",
    "low": "(the lower bound)",
}


def _is_value_path(where: Sequence[Any]) -> bool:
    return any(p in ("input", "target", "weight", "pos_weight", "fill", "values", "linspace",
                     "mean", "sum", "none") for p in where if isinstance(p, str))


class _CaseBuilder:
    """Turns one raw case mapping (defaults merged in) into a `Case`, or raises."""

    def __init__(self, file: _CaseFile, index: int, raw: dict[str, Any],
                 defaults: dict[str, Any], stem: str) -> None:
        self.file = file
        self.index = index
        self.stem = stem
        self.merged: dict[str, Any] = {}
        self.origin: dict[str, tuple[Any, ...]] = {}
        for key, value in defaults.items():
            self.merged[key], self.origin[key] = value, ("defaults", key)
        for key, value in raw.items():
            self.merged[key], self.origin[key] = value, ("cases", index, key)
        self.name = raw["name"]
        self.here = ("cases", index)

    def at(self, key: str, *rest: Any) -> tuple[Any, ...]:
        return (*self.origin.get(key, self.here), *rest)

    def fail(self, where: Sequence[Any], problem: str, fix: str, *,
             at_key: bool = False) -> CaseFileError:
        return self.file.error(where, problem, fix, at_key=at_key)

    def label(self, where: Sequence[Any]) -> str:
        """Like _CaseFile.label, but always naming this case (defaults apply to all)."""
        label = self.file.label(where)
        if where and where[0] == "defaults":
            label += f" (applied to case '{self.name}')"
        return label

    # -- the whole case

    def build(self) -> Case:
        m = self.merged
        for key in ("input", "target"):
            if key not in m:
                raise self.fail(self.here, f"case '{self.name}' has no `{key}`",
                                f"Add `{key}:` with its values: a nested list, a number, or a "
                                "generator such as {fill: 0.5}")
        inp = self.values("input", like=None)
        arrays: dict[str, np.ndarray | None] = {"input": inp}
        for key in ("target", "weight", "pos_weight"):
            arrays[key] = self.values(key, like=inp.shape) if key in m else None

        raises = m.get("raises", ())
        raises = (raises,) if isinstance(raises, str) else tuple(raises)
        reductions = tuple(m.get("reductions", REDUCTIONS))
        dtypes = tuple(m.get("dtypes", DTYPES))
        arg_dtypes = self.arg_dtypes(arrays)
        refusals = self.shape_refusals(arrays, raises)
        self.check_reductions(reductions, raises, refusals)
        grads = self.grads(arrays, arg_dtypes)
        expect = self.expect(arrays, raises)
        return Case(
            name=f"{self.stem}/{self.name}",
            source=f"{self.file.display}:{self.line()}",
            description=str(m.get("description", "")),
            input=inp, target=arrays["target"], weight=arrays["weight"],
            pos_weight=arrays["pos_weight"], reductions=reductions, dtypes=dtypes,
            grads=grads, raises=raises, arg_dtypes=arg_dtypes, expect=expect,
            tags=tuple(m.get("tags", ())))

    def line(self) -> int:
        node, _ = _locate(self.file.root, self.here)
        return node.start_mark.line + 1 if node is not None else 1

    def shape_refusals(self, arrays: dict[str, np.ndarray | None],
                       raises: tuple[str, ...]) -> list[str]:
        """Why the reference must refuse these shapes; an error unless `raises` is set."""
        inp, refusals = arrays["input"], []
        assert inp is not None
        target = arrays["target"]
        assert target is not None
        if target.shape != inp.shape:
            refusals.append("target")
            if not raises:
                raise self.fail(
                    self.at("target"), f"in case '{self.name}', target has shape "
                    f"{_shape_text(target.shape)} but input has shape {_shape_text(inp.shape)}",
                    "Give both the same shape, or add `raises: ValueError` if the mismatch is "
                    "the point", at_key=True)
        for key in ("weight", "pos_weight"):
            value = arrays[key]
            if value is not None and not _broadcasts_into(value.shape, inp.shape):
                refusals.append(key)
                if not raises:
                    raise self.fail(
                        self.at(key), f"in case '{self.name}', {key} of shape "
                        f"{_shape_text(value.shape)} does not broadcast to the input's shape "
                        f"{_shape_text(inp.shape)} without enlarging it",
                        f"Give {key} a shape such as () or {_shape_text(inp.shape[-1:])}, or "
                        "add `raises: ValueError` if the mismatch is the point", at_key=True)
        return refusals

    def check_reductions(self, reductions: tuple[str, ...], raises: tuple[str, ...],
                         refusals: list[str]) -> None:
        unknown = [r for r in reductions if r not in REDUCTIONS]
        if unknown and not raises:
            r = unknown[0]
            guess = difflib.get_close_matches(r, REDUCTIONS, n=1, cutoff=0.5)
            hint = f"Did you mean '{guess[0]}'? " if guess else ""
            raise self.fail(self.at("reductions", reductions.index(r)),
                            f"'{r}' in {self.label(self.at('reductions'))} is not a reduction",
                            f"{hint}Use none, mean or sum, or add `raises: ValueError` to check "
                            "that the name is refused")
        if raises and not refusals and len(unknown) < len(reductions):
            valid = [r for r in reductions if r in REDUCTIONS]
            raise self.fail(
                self.at("raises"), f"case '{self.name}' expects {'/'.join(raises)}, but with "
                f"matching shapes the reduction{'s' * (len(valid) > 1)} {', '.join(valid)} "
                "cannot fail",
                "Make the case one that the reference refuses (mismatched shapes, a weight "
                "that does not broadcast, `reductions:` listing only unknown names), or remove "
                "`raises`", at_key=True)

    # -- values

    def values(self, key: str, like: tuple[int, ...] | None) -> np.ndarray:
        where = self.at(key)
        arr = self.value(where, self.merged[key], like)
        arr = np.array(arr, dtype=np.float64, order="C")  # ascontiguousarray makes 0-d 1-d
        arr.setflags(write=False)
        return arr

    def value(self, where: tuple[Any, ...], spec: Any,
              like: tuple[int, ...] | None) -> np.ndarray:
        """A value spec (number, nested list or generator) as a float64 array."""
        if isinstance(spec, dict):
            return self.generate(where, spec, like)
        if isinstance(spec, list):
            shape = self.nested_shape(where, spec)
            self.check_size(where, shape)
            flat = [self.number((*where, *idx), v) for idx, v in _flatten(spec)]
            return np.array(flat, dtype=np.float64).reshape(shape)
        return np.array(self.number(where, spec), dtype=np.float64)

    def nested_shape(self, where: tuple[Any, ...], spec: Any) -> tuple[int, ...]:
        if not isinstance(spec, list):
            return ()
        if not spec:
            return (0,)
        shapes = [self.nested_shape((*where, i), item) for i, item in enumerate(spec)]
        for i, shape in enumerate(shapes):
            if shape != shapes[0]:
                raise self.fail(
                    (*where, i), f"{self.label(where)} is not rectangular: item {i + 1} is "
                    f"{_item_text(shape)} but item 1 is {_item_text(shapes[0])}",
                    "Give every row the same length (a nested list describes an n-d array)")
        return (len(spec), *shapes[0])

    def number(self, where: Sequence[Any], value: Any) -> float:
        """A scalar as written, checked to be exactly a float64."""
        label = self.label(where)
        if isinstance(value, bool):
            raise self.fail(where, f"{label} is {_describe(value)}, not a number",
                            "Write 1 or 0 (a bool argument is asked for with "
                            "`arg_dtypes: {weight: bool}`)")
        if isinstance(value, int):
            try:
                as_float = float(value)
            except OverflowError:
                as_float = math.inf
            if as_float != value:
                raise self.fail(where, f"{label} is the integer {value}, which float64 cannot "
                                "hold exactly", "Use an integer below 2**53 in magnitude (or "
                                "one float64 can represent), or write it as a float")
            return as_float
        if isinstance(value, float):
            return value
        if isinstance(value, str):
            special = _special(value)
            if special is not None:
                return special
            if _HEX_RE.fullmatch(value.strip()):
                raise self.fail(where, f"{label} is the hex float {value}, which float64 cannot "
                                "hold exactly (too many digits, or out of range)",
                                "Use at most 13 hex digits after the point and an exponent "
                                "within float64's range")
        raise self.fail(where, f"{label} is {_describe(value)}, which is not a number",
                        f"Write {_SPECIAL_HINT}")

    def check_size(self, where: Sequence[Any], shape: Sequence[int]) -> None:
        size = math.prod(shape)
        if size > MAX_ELEMENTS:
            raise self.fail(where, f"{self.label(where)} would have {size:,} elements",
                            f"Keep arrays below {MAX_ELEMENTS:,} elements")

    def generate(self, where: tuple[Any, ...], spec: dict[str, Any],
                 like: tuple[int, ...] | None) -> np.ndarray:
        kind = next(k for k in GENERATORS if k in spec)
        shape = tuple(spec["shape"]) if "shape" in spec else None
        if shape is not None:
            self.check_size((*where, "shape"), shape)
        target = shape if shape is not None else like
        label = self.label((*where, kind))
        if kind == "fill":
            value = self.number((*where, "fill"), spec["fill"])
            if target is None:
                raise self.fail(where, f"{label} has no shape to fill",
                                "Add `shape:`, e.g. {fill: 0.5, shape: [3, 4]}")
            return np.full(target, value, dtype=np.float64)
        if kind == "values":
            items = [self.number((*where, "values", i), v) for i, v in enumerate(spec["values"])]
            arr = np.array(items, dtype=np.float64)
            if target is None:
                return arr
            if math.prod(target) and not items:
                raise self.fail((*where, "values"), f"{label} is empty but must fill "
                                f"shape {_shape_text(target)}", "List at least one value")
            return np.resize(arr, target) if items else np.zeros(target)
        if kind == "random":
            return self.random((*where, "random"), spec["random"], target)
        if kind == "linspace":
            start, stop, num = spec["linspace"]
            lo = self.number((*where, "linspace", 0), start)
            hi = self.number((*where, "linspace", 1), stop)
            if not (math.isfinite(lo) and math.isfinite(hi)):
                raise self.fail((*where, "linspace"), f"{label} has a non-finite end",
                                "Give finite start and stop (list infinities with `values:`)")
            self.check_size((*where, "linspace", 2), (num,))
            with np.errstate(over="ignore", invalid="ignore"):
                arr = np.linspace(lo, hi, num)
            if not np.isfinite(arr).all():
                raise self.fail((*where, "linspace"), f"{label} overflows float64 between "
                                "its ends", "Use ends whose difference fits in float64")
        else:  # logspace
            start, stop, num = spec["logspace"]
            if not (math.isfinite(start) and math.isfinite(stop)):
                raise self.fail((*where, "logspace"), f"{label} has a non-finite exponent",
                                "Give finite exponents (list infinities with `values:`)")
            self.check_size((*where, "logspace", 2), (num,))
            exponents = np.linspace(float(start), float(stop), num)
            mags = np.array([_pow10(float(e)) for e in exponents], dtype=np.float64)
            if not np.isfinite(mags).all():
                raise self.fail((*where, "logspace"), f"{label} reaches beyond float64's "
                                "range (10**308.25)", "Keep the exponents at most 308")
            signs = spec.get("signs", "positive")
            arr = (-mags if signs == "negative" else
                   np.concatenate([-mags[::-1], mags]) if signs == "both" else mags)
        if target is None:
            return arr
        if arr.size != math.prod(target):
            origin = "the shape" if shape is not None else "the input's shape"
            raise self.fail(where, f"{label} gives {arr.size} values but {origin} "
                            f"{_shape_text(target)} holds {math.prod(target)}",
                            "Make num match the shape" + (
                                "" if shape is not None else
                                ", or give this argument a `shape:` of its own"))
        return arr.reshape(target)

    def random(self, where: tuple[Any, ...], spec: dict[str, Any],
               shape: tuple[int, ...] | None) -> np.ndarray:
        dist = spec["distribution"]
        allowed = DISTRIBUTIONS[dist]
        for key in spec:
            if key not in ("distribution", "seed", *allowed):
                guess = difflib.get_close_matches(key, allowed, n=1, cutoff=0.5)
                hint = f"Did you mean '{guess[0]}'? " if guess else ""
                raise self.fail((*where, key), f"`{key}` in {self.label(where)} is not a "
                                f"parameter of the {dist} distribution",
                                f"{hint}The {dist} distribution takes "
                                f"{', '.join(allowed)} (and seed)", at_key=True)
        if shape is None:
            raise self.fail(where, f"{self.label(where)} has no shape",
                            "Add `shape:` beside `random:`, e.g. {random: {distribution: "
                            "normal, seed: 0}, shape: [400, 300]}")
        params = {k: float(v) for k, v in spec.items() if k in ("loc", "scale", "low", "high",
                                                                 "p")}
        for key, v in params.items():
            if not math.isfinite(v):
                raise self.fail((*where, key), f"{self.label((*where, key))} is not finite",
                                "Give a finite number")
        rng = np.random.default_rng(spec["seed"])
        low, high = params.get("low"), params.get("high")
        if dist == "normal":
            return rng.normal(params.get("loc", 0.0), params.get("scale", 1.0), shape)
        if dist == "bernoulli":
            return (rng.random(shape) < params.get("p", 0.5)).astype(np.float64)
        if dist == "uniform":
            low, high = (0.0 if low is None else low), (1.0 if high is None else high)
            if not low <= high:
                raise self.fail(where, f"{self.label(where)} has low {low} above high {high}",
                                "Swap them")
            return rng.uniform(low, high, shape)
        if dist == "integers":
            low = 0.0 if low is None else low
            assert high is not None
            for key, v in (("low", low), ("high", high)):
                if v != int(v) or abs(v) > 2**53:
                    raise self.fail((*where, key), f"{self.label((*where, key))} is {v}, not an "
                                    "integer of at most 2**53", "Give an integer")
            if not low < high:
                raise self.fail(where, f"{self.label(where)} draws from the empty range "
                                f"[{low:g}, {high:g})", "Make high greater than low (high "
                                "is excluded)")
            return rng.integers(int(low), int(high), shape).astype(np.float64)
        # loguniform
        assert low is not None and high is not None
        if not 0 < low <= high:
            raise self.fail(where, f"{self.label(where)} needs 0 < low <= high, got low "
                            f"{low:g}, high {high:g}", "Give positive bounds; use `signs: "
                            "negative` or `signs: both` for negative values")
        with np.errstate(over="ignore", under="ignore"):
            arr = np.exp(rng.uniform(math.log(low), math.log(high), shape))
        signs = spec.get("signs", "positive")
        if signs == "negative":
            arr = -arr
        elif signs == "both":
            arr = arr * (2.0 * rng.integers(0, 2, shape) - 1.0)
        return arr

    # -- names and dtypes

    def arg_dtypes(self, arrays: dict[str, np.ndarray | None]) -> dict[str, str]:
        spec = self.merged.get("arg_dtypes") or {}
        for key, dtype in spec.items():
            value = arrays[key]
            if value is None:
                raise self.fail(self.at("arg_dtypes", key), f"{self.label(self.at('arg_dtypes'))}"
                                f" gives a dtype for {key}, but case '{self.name}' has no {key}",
                                f"Remove it, or give the case a `{key}:`", at_key=True)
            if dtype in INT_DTYPES:
                lo, hi = INT_DTYPES[dtype]
                flat = value.ravel()
                bad = ~(np.isfinite(flat) & (flat == np.round(flat)) & (flat >= lo) & (flat <= hi))
                if bad.any():
                    v = float(flat[int(np.argmax(bad))])
                    why = ("only 0 and 1" if dtype == "bool" else
                           f"integers from {lo} to {hi}")
                    raise self.fail(self.at(key), f"in case '{self.name}', `arg_dtypes` passes "
                                    f"{key} as {dtype}, but {key} holds {v!r}; {dtype} holds "
                                    f"{why}", f"Give {key} values that {dtype} can hold, or "
                                    "pass it as a float dtype", at_key=True)
        return dict(spec)

    def grads(self, arrays: dict[str, np.ndarray | None], arg_dtypes: dict[str, str]
              ) -> tuple[str, ...]:
        if "grads" not in self.merged:
            return tuple(g for g in ARG_NAMES
                         if arrays[g] is not None and arg_dtypes.get(g) not in INT_DTYPES)
        grads = tuple(self.merged["grads"])
        for i, g in enumerate(grads):
            if arrays[g] is None:
                raise self.fail(self.at("grads", i), f"{self.label(self.at('grads'))} asks for "
                                f"the gradient of {g}, but case '{self.name}' has no {g}",
                                f"Remove {g} from `grads`, or give the case a `{g}:`")
            if arg_dtypes.get(g) in INT_DTYPES:
                raise self.fail(self.at("grads", i), f"{self.label(self.at('grads'))} asks for "
                                f"the gradient of {g}, which is passed as {arg_dtypes[g]}",
                                "Remove it: an integer or bool argument has no gradient")
        return grads

    def expect(self, arrays: dict[str, np.ndarray | None], raises: tuple[str, ...]
               ) -> dict[str, Any]:
        spec = self.merged.get("expect")
        if spec is None:
            return {}
        where = self.at("expect")
        if raises:
            raise self.fail(where, f"case '{self.name}' has both `expect` and `raises`",
                            "A case that must raise has no values to publish; remove one",
                            at_key=True)
        inp = arrays["input"]
        assert inp is not None
        out: dict[str, Any] = {}
        for key in ("mean", "sum"):
            if key in spec:
                out[key] = self.number((*where, key), spec[key])
        if "none" in spec:
            none = self.value((*where, "none"), spec["none"], like=inp.shape)
            if none.shape != inp.shape:
                raise self.fail((*where, "none"), f"{self.label((*where, 'none'))} has shape "
                                f"{_shape_text(none.shape)}, but the unreduced loss has the "
                                f"input's shape {_shape_text(inp.shape)}",
                                "Give one value per input element")
            none.setflags(write=False)
            out["none"] = none
        for key in ("rel", "abs"):
            out[key] = float(spec.get(key, 0.0))
            if not math.isfinite(out[key]):
                raise self.fail((*where, key), f"{self.label((*where, key))} is not finite",
                                "Give a finite tolerance")
        out["dtype"] = spec.get("dtype", "float64")
        return out


def _item_text(shape: tuple[int, ...]) -> str:
    return "a number" if not shape else f"shape {_shape_text(shape)}"


def _flatten(spec: list[Any], prefix: tuple[int, ...] = ()) -> Iterator[tuple[tuple[int, ...],
                                                                             Any]]:
    for i, item in enumerate(spec):
        if isinstance(item, list):
            yield from _flatten(item, (*prefix, i))
        else:
            yield (*prefix, i), item


def _broadcasts_into(shape: tuple[int, ...], into: tuple[int, ...]) -> bool:
    """Whether an array of `shape` broadcasts to `into` without enlarging it (PyTorch's rule)."""
    if len(shape) > len(into):
        return False
    return all(s in (1, t) for s, t in zip(reversed(shape), reversed(into), strict=False))


def _special(text: str) -> float | None:
    """The value of a special string ('inf', '-0.0', '0x1p-1074', ...), or None."""
    text = text.strip()
    if text in _SPECIALS:
        return _SPECIALS[text]
    m = _HEX_RE.fullmatch(text)
    if not m or not (m.group(2) or m.group(3)):
        return None
    sign, whole, frac, exp = m.group(1), m.group(2), m.group(3) or "", int(m.group(4) or 0)
    mantissa = int((whole + frac) or "0", 16)
    exp2 = exp - 4 * len(frac)
    try:
        value = float.fromhex(text)
    except OverflowError:
        return None
    if mantissa == 0:
        return value
    if exp2 > 1100 or exp2 < -1200 - 4 * len(whole + frac):
        return None  # beyond any float64: fromhex gave inf or 0
    exact = Fraction(mantissa) * Fraction(2) ** exp2 * (-1 if sign == "-" else 1)
    return value if math.isfinite(value) and Fraction(value) == exact else None


def _pow10(exponent: float) -> float:
    """10**exponent correctly rounded, so logspace does not depend on the platform's pow."""
    if exponent == int(exponent) and abs(exponent) < 400:
        k = int(exponent)
        try:
            return float(10**k) if k >= 0 else float(Fraction(1, 10**-k))
        except OverflowError:
            return math.inf
    with localcontext() as ctx:
        ctx.prec = 40
        try:
            return float(Decimal(10) ** Decimal(exponent))
        except OverflowError:
            return math.inf
