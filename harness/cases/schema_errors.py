"""Turning a JSON-schema violation into one sentence a case author can act on.

jsonschema's own messages describe the schema ("is not valid under any of the
given schemas"); an author needs the value, its line and what to type instead.
`check_schema` validates a parsed case file against harness/schema/case.schema.json
(which editors can use too), picks the violation that comes first in the file, and
`translate` rewrites it: unknown keys get a "did you mean", a missing key its
expected form, a typo deep inside an anyOf the message of the branch that was
meant. Each message is a `CaseFileError` located at the offending YAML node.
"""

from __future__ import annotations

import difflib
import json
import re
from collections.abc import Callable, Sequence
from functools import cache
from pathlib import Path
from typing import Any, Protocol

import jsonschema

from harness.cases.errors import SPECIAL_HINT, CaseFileError, describe
from harness.cases.syntax import FLOAT_RE
from harness.cases.values import GENERATORS

__all__ = ["SCHEMA_PATH", "SchemaSite", "case_schema", "check_schema", "translate"]

SCHEMA_PATH: Path = Path(__file__).resolve().parents[1] / "schema" / "case.schema.json"


class SchemaSite(Protocol):
    """What `translate` needs of a case file: messages located at a path into it."""

    def error(self, where: Sequence[Any], problem: str, fix: str, *,
              at_key: bool = False) -> CaseFileError: ...

    def label(self, where: Sequence[Any]) -> str: ...


@cache
def case_schema() -> dict[str, Any]:
    """The case schema, read once."""
    return json.loads(SCHEMA_PATH.read_text(encoding="utf-8"))


@cache
def _validator() -> jsonschema.protocols.Validator:
    return jsonschema.Draft202012Validator(case_schema())


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


def check_schema(data: Any, file: SchemaSite,
                 position: Callable[[Sequence[Any]], tuple[int, int]]) -> None:
    """Raise the `CaseFileError` for the violation of the case schema that comes first.

    "First" is by `position` (line, column) of the offending node in the file, so
    an author fixing errors top to bottom is never sent back up the file.
    """
    errors = [_deepest(e) for e in _validator().iter_errors(data)]
    if errors:
        first = min(errors, key=lambda e: (position(e.absolute_path), -len(e.absolute_path)))
        raise translate(first, file)


def translate(err: jsonschema.ValidationError, file: SchemaSite) -> CaseFileError:
    """`err` as one located sentence: the problem in the author's terms, then the fix."""
    where = tuple(err.absolute_path)
    label = file.label(where)
    inst, kind, schema = err.instance, err.validator, err.schema
    desc = schema.get("description") if isinstance(schema, dict) else None
    if not where and kind == "type":
        return file.error(where, f"the file holds {describe(inst)}, not a mapping",
                          "Start it with `cases:` followed by a list of cases")
    if kind == "additionalProperties":
        allowed = list(schema.get("properties", {}))
        key = next(k for k in inst if k not in allowed)
        guess = difflib.get_close_matches(str(key), allowed, n=1, cutoff=0.6)
        hint = f"Did you mean '{guess[0]}'? " if guess else ""
        return file.error((*where, key), f"unknown key '{key}' in {label}",
                          f"{hint}Valid keys here: {', '.join(allowed)}", at_key=True)
    if kind == "required":
        missing = next(k for k in err.validator_value if k not in inst)
        return file.error(where, f"{label} has no `{missing}`",
                          f"Add `{missing}:` {_REQUIRED_HINTS.get(missing, '')}".strip())
    if kind in ("anyOf", "oneOf") and err.context and all(
            e.validator == "required" for e in err.context):
        keys = [b["required"][0] for b in err.validator_value]
        present = [k for k in keys if isinstance(inst, dict) and k in inst]
        if present:
            return file.error(where, f"{label} has {' and '.join(present)}, but only one of "
                              f"{', '.join(keys)} is allowed",
                              "Keep one of them (write two generators as two cases)")
        example = {"linspace": "e.g. {fill: 0.5, shape: [3]} or {linspace: [-60, 60, 241]}",
                   "mean": "e.g. `mean: 0.7205` with `abs: 5.0e-5`"}.get(keys[0], "")
        return file.error(where, f"{label} needs one of {', '.join(keys)}",
                          f"Add one of them, {example}" if example else "Add one of them")
    if kind == "oneOf":  # valid under more than one branch: two generator keys
        present = [k for k in GENERATORS if isinstance(inst, dict) and k in inst]
        return file.error(where, f"{label} has {' and '.join(present)}, but a generator "
                          "takes exactly one of " + ", ".join(GENERATORS),
                          "Keep one of them")
    if isinstance(inst, bool) and kind in ("type", "anyOf", "oneOf", "enum"):
        return file.error(where, f"{label} is {describe(inst)}, not a number",
                          "Write 1 or 0 (a bool argument is asked for with "
                          "`arg_dtypes: {weight: bool}`)" if _is_value_path(where) else
                          f"It should be {desc or 'something else'}")
    if kind == "enum":
        options = [str(o) for o in err.validator_value]
        guess = difflib.get_close_matches(str(inst), options, n=1, cutoff=0.5)
        hint = f"Did you mean '{guess[0]}'? " if guess else ""
        return file.error(where, f"{label} is {describe(inst)}, which is not one of "
                          f"{', '.join(options)}", f"{hint}Use one of {', '.join(options)}")
    if kind == "pattern":
        if schema == case_schema()["$defs"]["special"]:
            problem = f"{label} is {describe(inst)}, which is not a number"
            plain = FLOAT_RE.match(inst.strip()) or re.fullmatch(r"[-+]?[0-9]+", inst.strip())
            fix = "Remove the quotes" if plain else f"Write {SPECIAL_HINT}"
            return file.error(where, problem, fix)
        if schema == case_schema()["$defs"]["name"]:
            suggestion = re.sub(r"[^A-Za-z0-9._+-]+", "_", inst).strip("_") or "case1"
            return file.error(where, f"the case name {inst!r} has characters other than "
                              "letters, digits and . _ + -", f"Rename it, e.g. '{suggestion}'")
        return file.error(where, f"{label} is {describe(inst)}, which is not {desc}",
                          f"Write {desc}" if desc else "Correct it")
    if kind in ("type", "anyOf", "oneOf"):
        expected = desc or _TYPE_WORDS.get(str(err.validator_value), "something else")
        if _is_value_path(where) and isinstance(inst, str):
            return file.error(where, f"{label} is {describe(inst)}, which is not a number",
                              f"Write {SPECIAL_HINT}")
        return file.error(where, f"{label} is {describe(inst)}",
                          f"It should be {expected}")
    if kind in ("minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum"):
        word = {"minimum": "at least", "maximum": "at most",
                "exclusiveMinimum": "more than", "exclusiveMaximum": "less than"}[kind]
        return file.error(where, f"{label} is {describe(inst)}",
                          f"It must be {word} {err.validator_value}")
    if kind in ("minItems", "maxItems"):
        return file.error(where, f"{label} has {len(inst)} item{'s' * (len(inst) != 1)}",
                          f"It should be {desc}" if desc else
                          f"It needs {'at least' if kind == 'minItems' else 'at most'} "
                          f"{err.validator_value}")
    if kind == "uniqueItems":
        return file.error(where, f"{label} lists the same item twice",
                          "Remove the repetition")
    if kind == "dependentRequired":
        key = next(k for k in err.validator_value if isinstance(inst, dict) and k in inst)
        return file.error((*where, key), f"`{key}` in {label} only goes with "
                          f"{', '.join(err.validator_value[key])}",
                          f"Remove `{key}` or use {err.validator_value[key][0]}",
                          at_key=True)
    message = err.message if len(err.message) < 200 else err.message[:197] + "..."
    return file.error(where, f"{label}: {message}", f"It should be {desc}" if desc else
                      "See docs/cases.md for the case format")


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
