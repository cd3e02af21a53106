"""Loading case files: YAML in, validated `Case` objects out.

Loading runs in three steps, each catching what the previous one cannot:

1. YAML is parsed with a loader that reads numbers the YAML 1.2 way and records
   every node's position (harness/cases/syntax.py);
2. the document is validated against the shipped JSON Schema,
   harness/schema/case.schema.json (harness/cases/schema_errors.py);
3. each case is built and its semantics checked: rectangular lists, generator
   parameters, shapes that agree or `raises:` saying they are not meant to,
   integer dtypes that hold their values (harness/cases/builder.py); names are
   checked to be unique across everything loaded.

The first problem found raises a `CaseFileError` naming the file, the line and
the fix; nothing is returned half-validated. The case format is docs/cases.md.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import yaml
from yaml.nodes import Node

from harness.cases.builder import CaseBuilder
from harness.cases.errors import CaseFileError
from harness.cases.model import Case
from harness.cases.schema_errors import check_schema
from harness.cases.syntax import YamlLoader, duplicate_keys, locate

__all__ = ["SHIPPED_CASES", "SKIPPED_FILES", "CaseFile", "load_cases"]

#: The cases that ship with the harness, loaded when no path is given: the
#: repository's cases/, which the package carries as harness/shipped_cases (a link
#: to it in a checkout, a copy in an installed wheel), so a harness-only install
#: has them too.
SHIPPED_CASES: Path = (Path(__file__).parents[1] / "shipped_cases").resolve()
#: Files a folder scan passes over: the expectations live beside the cases
#: (known.yaml is their former name, still refused as a case file).
SKIPPED_FILES: frozenset[str] = frozenset({"expectations.yaml", "known.yaml"})


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
        for case, line, column in CaseFile.read(file).cases():
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


class CaseFile:
    """One parsed case file: its data, its node tree (for line numbers), its errors."""

    def __init__(self, path: Path, display: str, root: Node | None, data: Any) -> None:
        self.path = path
        self.display = display
        self.root = root
        self.data = data

    @classmethod
    def read(cls, path: Path) -> CaseFile:
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
    def parse(cls, text: str, display: str, path: Path | None = None) -> CaseFile:
        loader = YamlLoader(text)
        try:
            root = loader.get_single_node()
            # Before constructing: the constructor flattens merge keys (<<) into the
            # node tree, which would look like duplicates.
            dup = duplicate_keys(root)
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
        check_schema(self.data, self, self._position)
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
        node, key_node = locate(self.root, where)
        return self._error_at(key_node if at_key and key_node is not None else node,
                              problem, fix)

    def _position(self, where: Sequence[Any]) -> tuple[int, int]:
        node, _ = locate(self.root, where)
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

    # -- cases

    def cases(self) -> Iterator[tuple[Case, int, int]]:
        """Build every case of the file: (case, line, column), semantics checked."""
        defaults = self.data.get("defaults") or {}
        stem = self.path.stem
        for index, raw in enumerate(self.data.get("cases") or []):
            builder = CaseBuilder(self, index, raw, defaults, stem)
            case = builder.build()
            node, _ = locate(self.root, ("cases", index))
            mark = node.start_mark if node is not None else None
            yield case, (mark.line + 1 if mark else 1), (mark.column + 1 if mark else 1)
