"""Case semantics: what a case file means beyond its schema, checked case by case.

The schema says which keys exist; it cannot say that an input of shape (3, 4)
and a weight of shape (5,) do not broadcast, that an int8 argument holds 300, or
that a case expecting `ValueError` has nothing that could raise it. `CaseBuilder`
merges `defaults:` into one case, reads its values (harness/cases/values.py),
checks these rules and returns the `Case`, or raises the `CaseFileError` that
names the line and the fix. Shape mismatches are allowed only with `raises:`, so
a case never tests a refusal by accident.
"""

from __future__ import annotations

import difflib
import math
from typing import TYPE_CHECKING, Any

import numpy as np

from harness.cases.model import ARG_NAMES, INT_DTYPES, Case, shape_text
from harness.cases.syntax import locate
from harness.cases.values import ValueReader
from harness.protocol import DTYPES, REDUCTIONS

if TYPE_CHECKING:
    from harness.cases.loading import CaseFile

__all__ = ["CaseBuilder"]


class CaseBuilder(ValueReader):
    """Turns one raw case mapping (defaults merged in) into a `Case`, or raises."""

    def __init__(self, file: CaseFile, index: int, raw: dict[str, Any],
                 defaults: dict[str, Any], stem: str) -> None:
        super().__init__(file, raw["name"])
        self.index = index
        self.stem = stem
        self.merged: dict[str, Any] = {}
        self.origin: dict[str, tuple[Any, ...]] = {}
        for key, value in defaults.items():
            self.merged[key], self.origin[key] = value, ("defaults", key)
        for key, value in raw.items():
            self.merged[key], self.origin[key] = value, ("cases", index, key)
        self.here = ("cases", index)

    def at(self, key: str, *rest: Any) -> tuple[Any, ...]:
        return (*self.origin.get(key, self.here), *rest)

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
            tags=tuple(m.get("tags", ())), label_smoothing=float(m.get("label_smoothing", 0.0)))

    def line(self) -> int:
        node, _ = locate(self.file.root, self.here)
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
                    f"{shape_text(target.shape)} but input has shape {shape_text(inp.shape)}",
                    "Give both the same shape, or add `raises: ValueError` if the mismatch is "
                    "the point", at_key=True)
        for key in ("weight", "pos_weight"):
            value = arrays[key]
            if value is not None and not broadcasts_into(value.shape, inp.shape):
                refusals.append(key)
                if not raises:
                    raise self.fail(
                        self.at(key), f"in case '{self.name}', {key} of shape "
                        f"{shape_text(value.shape)} does not broadcast to the input's shape "
                        f"{shape_text(inp.shape)} without enlarging it",
                        f"Give {key} a shape such as () or {shape_text(inp.shape[-1:])}, or "
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
                                f"{shape_text(none.shape)}, but the unreduced loss has the "
                                f"input's shape {shape_text(inp.shape)}",
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


def broadcasts_into(shape: tuple[int, ...], into: tuple[int, ...]) -> bool:
    """Whether an array of `shape` broadcasts to `into` without enlarging it (PyTorch's rule)."""
    if len(shape) > len(into):
        return False
    return all(s in (1, t) for s, t in zip(reversed(shape), reversed(into), strict=False))

