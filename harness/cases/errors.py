"""`CaseFileError`: the one way a broken case file is reported.

A case is data, so the person who wrote it may never have read the harness. Every
problem found while loading (YAML syntax, schema, semantics) therefore becomes
one paragraph that names the file, the line and the fix, shown as is with exit
code 2 and no traceback (see docs/cases.md). The helpers here keep those
paragraphs uniform, whichever module finds the problem.
"""

from __future__ import annotations

import os
from typing import Any

__all__ = ["SPECIAL_HINT", "CaseFileError", "describe"]

#: What may be written where a number is expected; the fix of every "not a number".
SPECIAL_HINT = ('a number, YAML\'s .inf / -.inf / .nan, or one of the quoted strings '
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


def describe(value: Any) -> str:
    """A short, human description of a YAML value, for "`x` is <this>" messages."""
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
