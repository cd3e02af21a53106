"""Predicates over elements: where an expectation's mechanism applies.

An expectation declares *why* a framework differs from the reference
("input < -16 and target == 0", "expected subnormal"), not merely which calls fail.
For every element of a checked quantity the harness knows the arguments there, the
exact result and what the framework returned; a failing element is covered when the
predicate is true there, so an entry cannot silently swallow unrelated failures.

The language is deliberately tiny (comparisons, classes, and/or/not) and is parsed,
never eval'd: expectation files are data. It is parsed once, at load time, because a
typo in an expectation file must be a usage error with file and line, not an entry
that silently never matches. Evaluation is vectorised: a check can have millions of
elements.
"""

from __future__ import annotations

import difflib
import math
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from functools import reduce
from typing import NoReturn

import numpy as np

from harness.dtypes import FORMATS, Format, dtype_name, numpy_dtype

VARIABLES = ("input", "target", "weight", "pos_weight", "expected", "got", "size", "smoothing")
ARGUMENTS = ("input", "target", "weight", "pos_weight")
CLASSES: dict[str, str] = {
    "nan": "is NaN",
    "inf": "is +inf or -inf",
    "infinite": "same as inf",
    "finite": "is neither NaN nor infinite",
    "zero": "equals 0 (either sign)",
    "negative": "is < 0",
    "positive": "is > 0",
    "subnormal": "0 < |v| < the smallest normal of its format (for expected: also underflow)",
    "huge": "finite and |v| >= 2**(emax-3): within a factor 16 of the largest finite",
    "tiny": "0 < |v| < 2**(emin+10): subnormal or within a factor 1024 of the smallest "
            "normal, so its product with a factor below 1 (a mean's 1/n, σ) can be subnormal",
    "saturated": "finite and |v| > precision·ln 2: the logistic sigmoid rounds to 1",
    "exp-subnormal": "finite and |v| > −emin·ln 2: e^−|v| (so σ(−|v|) and softplus(−|v|)) "
                     "is below the smallest normal of the format",
    "soft": "0 < v < 1 (a soft label)",
    "hard": "v == 0 or v == 1 (a hard label)",
    "outside-01": "finite and outside [0, 1]",
    "integer-dtype": "the argument is declared with an integer dtype (signed or unsigned)",
    "bool-dtype": "the argument is declared with dtype bool",
    "unsigned-dtype": "the argument is declared with an unsigned integer dtype",
    "absent": "the argument was not passed",
    "present": "the argument was passed",
}

_VALUE_CLASSES: dict[str, Callable[[np.ndarray, Format], np.ndarray]] = {
    "nan": lambda v, f: np.isnan(v),
    "inf": lambda v, f: np.isinf(v),
    "infinite": lambda v, f: np.isinf(v),
    "finite": lambda v, f: np.isfinite(v),
    "zero": lambda v, f: v == 0,
    "negative": lambda v, f: v < 0,
    "positive": lambda v, f: v > 0,
    "subnormal": lambda v, f: (np.abs(v) > 0) & (np.abs(v) < math.ldexp(1.0, f.emin)),
    "huge": lambda v, f: np.isfinite(v) & (np.abs(v) >= math.ldexp(1.0, f.emax - 3)),
    "tiny": lambda v, f: (np.abs(v) > 0) & (np.abs(v) < math.ldexp(1.0, f.emin + 10)),
    "saturated": lambda v, f: np.isfinite(v) & (np.abs(v) > f.precision * math.log(2.0)),
    "exp-subnormal": lambda v, f: np.isfinite(v) & (np.abs(v) > -f.emin * math.log(2.0)),
    "soft": lambda v, f: (v > 0) & (v < 1),
    "hard": lambda v, f: (v == 0) | (v == 1),
    "outside-01": lambda v, f: np.isfinite(v) & ((v < 0) | (v > 1)),
}
_DTYPE_CLASSES = {"integer-dtype": "iu", "bool-dtype": "b", "unsigned-dtype": "u"}  # dtype.kind
_CMP = {"<": np.less, "<=": np.less_equal, ">": np.greater, ">=": np.greater_equal,
        "==": np.equal, "!=": np.not_equal}
_JOINERS = ("and", "or", "not")
_START = ("a variable (" + ", ".join(VARIABLES) + "), a number, abs(variable), 'not', '(', "
          "'any argument <class>', 'mixed dtypes' or 'input empty'")
_CHAR_HINTS = {"&": "write 'and'", "|": "write 'or'", "!": "write 'not' (or '!=')",
               "=": "write '==' to compare", "*": "write powers of two without spaces: 2**-53",
               "^": "write powers of two without spaces: 2^-53"}


class PredicateError(ValueError):
    """A predicate that cannot be parsed; .column is the 0-based offset in the text."""

    def __init__(self, message: str, column: int) -> None:
        super().__init__(message)
        self.column = column


@dataclass(frozen=True)
class Elements:
    """What a predicate sees: one row per element (1-D arrays of equal length n).

    A missing key is the same as None: the argument was not passed. Arguments are
    judged in `dtype` (the format under test); `expected` and `got` in `measured`,
    the format the result is compared in, so 'expected subnormal' means what it says
    for that comparison. `arg_dtypes` holds declared dtypes (e.g. int64 targets).
    """

    values: Mapping[str, np.ndarray | None]
    dtype: str
    measured: str
    arg_dtypes: Mapping[str, str]
    n: int
    empty: bool = False

    def __post_init__(self) -> None:
        for fmt in (self.dtype, self.measured):
            if fmt not in FORMATS:
                raise ValueError(f"unknown format {fmt!r}; use one of {', '.join(FORMATS)}")
        if self.n < 0:
            raise ValueError(f"n must be >= 0, not {self.n}")
        for name, v in self.values.items():
            if name not in VARIABLES:
                raise ValueError(f"unknown variable {name!r}; use one of {', '.join(VARIABLES)}")
            if v is not None and np.shape(v) != (self.n,):
                raise ValueError(f"{name} has shape {np.shape(v)}, expected ({self.n},)")


_Values = dict[str, "np.ndarray | None"]
_Node = Callable[[Elements, _Values], np.ndarray]


class Predicate:
    """A parsed predicate: build with parse(); evaluate on as many Elements as needed."""

    def __init__(self, text: str, node: _Node, variables: frozenset[str]) -> None:
        self.text = text
        self.variables = variables
        self._node = node

    def evaluate(self, el: Elements) -> np.ndarray:
        """Bool array of shape (el.n,): where the predicate holds."""
        with np.errstate(all="ignore"):
            vals = {k: None if el.values.get(k) is None
                    else np.asarray(el.values[k], dtype=np.float64) for k in self.variables}
            out = np.asarray(self._node(el, vals), dtype=bool)
        if out.shape == (el.n,):
            return out
        return np.broadcast_to(out, (el.n,)).copy()

    def __repr__(self) -> str:
        return f"Predicate({self.text!r})"


def parse(text: str) -> Predicate:
    """Parse predicate text; PredicateError (with .column) says what is wrong and where."""
    p = _Parser(text)
    if p.peek().kind == "end":
        p.fail(0, "the predicate is empty; write a test such as 'input < -16 and target == 0' "
                  "or 'expected subnormal'")
    node = p.expr()
    if p.peek().kind != "end":
        p.unexpected(p.peek(), inside=False)
    return Predicate(text, node, frozenset(p.variables))


@dataclass(frozen=True)
class _Tok:
    kind: str  # num | cmp | ( | ) | word | end
    text: str
    col: int


_TOKEN = re.compile(r"""\s*(?:
    (?P<num>[+-](?:inf|nan)(?![\w-])
           |[+-]?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?(?:(?:\*\*|\^)[+-]?\d+)?)
  | (?P<cmp><=|>=|==|!=|<|>)
  | (?P<paren>[()])
  | (?P<word>[A-Za-z_]\w*(?:-\w+)*))""", re.X)


@dataclass(frozen=True)
class _Operand:
    text: str  # as written, for messages
    col: int
    name: str | None = None  # a variable, or None for a number
    const: float = 0.0
    absolute: bool = False

    def get(self, vals: _Values) -> np.ndarray | float | None:
        if self.name is None:
            return self.const
        v = vals[self.name]
        return np.abs(v) if self.absolute and v is not None else v


def _suggest(word: str, options: tuple[str, ...] | list[str]) -> str:
    close = difflib.get_close_matches(word, options, n=1, cutoff=0.6)
    return f"; did you mean '{close[0]}'?" if close else "."


def _const(n: int, value: bool) -> np.ndarray:
    return np.full(n, value, dtype=bool)


class _Parser:
    """Recursive descent; 'or' binds loosest, then 'and', then 'not' (as in Python):

    expr := conj ('or' conj)*;  conj := neg ('and' neg)*;  neg := 'not' neg | '(' expr ')' | test
    test := operand CMP operand (CMP operand)* | SUBJECT CLASS | 'mixed dtypes' | 'input empty'
    """

    def __init__(self, text: str) -> None:
        self.text, self.toks, self.i = text, [], 0
        self.variables: set[str] = set()
        pos = 0
        while pos < len(text):
            m = _TOKEN.match(text, pos)
            if m is None or m.lastgroup is None:
                col = len(text) - len(text[pos:].lstrip())
                if col == len(text):
                    break
                ch = text[col]
                hint = _CHAR_HINTS.get(ch, "use comparisons (< <= > >= == !=), classes, "
                                           "'and', 'or', 'not' and parentheses")
                self.fail(col, f"unexpected character {ch!r}; {hint}.")
            kind, tok_text = m.lastgroup, m.group(m.lastgroup)
            kind = tok_text if kind == "paren" else kind  # '(' and ')' are their own kinds
            self.toks.append(_Tok(kind, tok_text, m.start(m.lastgroup)))
            pos = m.end()
        self.toks.append(_Tok("end", "", len(text)))

    def fail(self, col: int, message: str) -> NoReturn:
        raise PredicateError(message, col)

    def peek(self, k: int = 0) -> _Tok:
        return self.toks[min(self.i + k, len(self.toks) - 1)]

    def take(self) -> _Tok:
        tok = self.peek()
        self.i += 1
        return tok

    def is_word(self, word: str, k: int = 0) -> bool:
        return self.peek(k).kind == "word" and self.peek(k).text == word

    def unexpected(self, tok: _Tok, inside: bool) -> NoReturn:
        if tok.kind == ")":
            self.fail(tok.col, "unbalanced parentheses: this ')' has no matching '('; "
                               "remove it or add '('.")
        close = " or close the parenthesis with ')'" if inside else ""
        near = _suggest(tok.text, ["and", "or"]) if tok.kind == "word" else "."
        self.fail(tok.col, f"unexpected '{tok.text}' after a complete test{near} "
                           f"Join tests with 'and' or 'or'{close}.")

    def expr(self) -> _Node:
        return self.chain("or", self.conj, np.logical_or)

    def conj(self) -> _Node:
        return self.chain("and", self.neg, np.logical_and)

    def chain(self, word: str, sub: Callable[[], _Node], combine: np.ufunc) -> _Node:
        parts = [sub()]
        while self.is_word(word):
            self.i += 1
            parts.append(sub())
        return parts[0] if len(parts) == 1 else (
            lambda el, v: reduce(combine, (p(el, v) for p in parts)))

    def neg(self) -> _Node:
        if self.is_word("not"):
            self.i += 1
            inner = self.neg()
            return lambda el, v: np.logical_not(inner(el, v))
        if self.peek().kind == "(":
            opening = self.take()
            inner = self.expr()
            if self.peek().kind == "end":
                self.fail(opening.col, "unbalanced parentheses: this '(' is never closed; "
                                       "add ')'.")
            if self.peek().kind != ")":
                self.unexpected(self.peek(), inside=True)
            self.i += 1
            return inner
        return self.test()

    def test(self) -> _Node:
        tok = self.peek()
        if self.is_word("mixed") and self.is_word("dtypes", 1):
            self.i += 2
            self.variables.update(ARGUMENTS)
            return lambda el, v: _const(el.n, len({
                dtype_name(numpy_dtype(el.arg_dtypes.get(a, el.dtype)))
                for a in ARGUMENTS if el.values.get(a) is not None}) > 1)
        if self.is_word("input") and self.is_word("empty", 1):
            self.i += 2
            self.variables.add("input")
            return lambda el, v: _const(el.n, el.empty)
        for first, second, example in (("any", "argument", "any argument infinite"),
                                       ("mixed", "dtypes", "mixed dtypes")):
            if self.is_word(first) and not self.is_word(second, 1):
                self.fail(self.peek(1).col, f"'{first}' must be followed by '{second}', "
                                            f"as in '{example}'.")
        if self.is_word("any"):
            self.i += 2
            self.variables.update(ARGUMENTS)
            cls = self.class_word("any argument")
            return lambda el, v: reduce(np.logical_or,
                                        (_classify(el, v, a, cls) for a in ARGUMENTS))
        if tok.kind == "word" and tok.text in CLASSES and tok.text not in ("inf", "nan"):
            self.fail(tok.col, f"the class '{tok.text}' must follow its subject, as in "
                               f"'input {tok.text}' or 'any argument {tok.text}'.")
        left = self.operand(start=True)
        nxt = self.peek()
        if nxt.kind == "cmp":
            return self.comparison(left)
        if left.name is not None and not left.absolute:
            if nxt.kind == "word" and nxt.text not in _JOINERS:
                cls = self.class_word(left.name)
                return lambda el, v: _classify(el, v, left.name, cls)
            self.fail(nxt.col, f"'{left.name}' needs a comparison or a class after it, "
                               f"as in '{left.name} < 0' or '{left.name} nan' (negate a whole "
                               f"test with 'not {left.name} nan').")
        if nxt.kind == "word" and nxt.text in CLASSES:
            self.fail(nxt.col, f"a class applies to a variable or 'any argument', not to "
                               f"'{left.text}'; write e.g. 'input {nxt.text}'.")
        self.fail(nxt.col, f"expected a comparison (< <= > >= == !=) after '{left.text}'.")

    def class_word(self, subject: str) -> str:
        tok = self.take()
        if tok.kind == "word" and tok.text in CLASSES:
            return tok.text
        what = f"unknown class '{tok.text}'" if tok.text else "a class is missing"
        options = [*CLASSES, "empty"] if subject == "input" else list(CLASSES)
        near = _suggest(tok.text, options) if tok.kind == "word" else "."
        self.fail(tok.col, f"'{(subject + ' ' + tok.text).strip()}': {what}{near} "
                           f"Classes: {', '.join(CLASSES)}.")

    def operand(self, start: bool = False) -> _Operand:
        tok = self.take()
        if tok.kind == "num":
            return _Operand(tok.text, tok.col, const=self.number(tok))
        if tok.kind == "word" and tok.text in VARIABLES:
            self.variables.add(tok.text)
            return _Operand(tok.text, tok.col, name=tok.text)
        if tok.kind == "word" and tok.text == "inf":
            return _Operand(tok.text, tok.col, const=math.inf)
        if tok.kind == "word" and tok.text == "nan":
            self.number(tok)
        if tok.kind == "word" and tok.text == "abs":
            lp, var, rp = (self.take() for _ in range(3))
            checks = ((lp, lp.kind == "("), (var, var.text in VARIABLES), (rp, rp.kind == ")"))
            for bad, ok in checks:
                if not ok:
                    near = _suggest(bad.text, VARIABLES) if bad is var else "."
                    self.fail(bad.col, f"abs takes one variable in parentheses, as in "
                                       f"'abs(input) > 16'{near}")
            self.variables.add(var.text)
            return _Operand(f"abs({var.text})", tok.col, name=var.text, absolute=True)
        expected = _START if start else "a number, a variable or abs(variable)"
        if tok.kind == "word" and tok.text not in _JOINERS:
            options = [*VARIABLES, "abs", "not", "any", "mixed"] if start else [*VARIABLES, "abs"]
            self.fail(tok.col, f"unknown word '{tok.text}'{_suggest(tok.text, options)} "
                               f"Expected {expected}.")
        after = f" after '{self.toks[self.i - 2].text}'" if self.i >= 2 else ""
        self.fail(tok.col, f"missing {'test' if start else 'operand'}{after}; expected {expected}.")

    def number(self, tok: _Tok) -> float:
        sign = -1.0 if tok.text.startswith("-") else 1.0
        body = tok.text.lstrip("+-")
        if body == "nan":
            self.fail(tok.col, "a 'nan' literal is not allowed: NaN compares false with "
                               "everything; write a class test such as 'input nan'.")
        if body == "inf":
            return sign * math.inf
        power = re.search(r"\*\*|\^", body)
        if power:
            base, k = body[:power.start()], int(body[power.end():])
            if base != "2":
                self.fail(tok.col, f"only powers of two can be written with a power "
                                   f"('{tok.text}'); write 2**K, e.g. 2**-53.")
            if not -1074 <= k <= 1023:
                self.fail(tok.col, f"2**{k} is not a finite nonzero float64; "
                                   f"K must be between -1074 and 1023.")
            return sign * math.ldexp(1.0, k)
        value = float(body)
        if math.isinf(value):
            self.fail(tok.col, f"{tok.text} overflows float64; write inf or 2**1023.")
        if value == 0 and re.search("[1-9]", re.split("[eE]", body)[0]):
            self.fail(tok.col, f"{tok.text} underflows to 0 in float64; write 0 or 2**-1074.")
        return sign * value

    def comparison(self, left: _Operand) -> _Node:
        operands, ops = [left], []
        while self.peek().kind == "cmp":
            op = self.take()
            right = self.operand()
            if operands[-1].name is None and right.name is None:
                self.fail(right.col, f"'{operands[-1].text} {op.text} {right.text}' "
                                         f"compares two numbers; one side must be a variable.")
            operands.append(right)
            ops.append(op.text)
        pairs = list(zip(operands, ops, operands[1:], strict=False))

        def node(el: Elements, vals: _Values) -> np.ndarray:
            out = _const(el.n, True)
            for a, op, b in pairs:
                x, y = a.get(vals), b.get(vals)
                if x is None or y is None:
                    return _const(el.n, False)
                out &= _CMP[op](x, y)
            return out

        return node


def _classify(el: Elements, vals: _Values, name: str, cls: str) -> np.ndarray:
    """Class `cls` of variable `name` at every row (absent: False except for 'absent')."""
    v = vals[name]
    if cls in ("absent", "present"):
        return _const(el.n, (v is None) == (cls == "absent"))
    if v is None:
        return _const(el.n, False)
    if cls in _DTYPE_CLASSES:
        declared = numpy_dtype(el.arg_dtypes.get(name, el.dtype))
        return _const(el.n, name in ARGUMENTS and declared.kind in _DTYPE_CLASSES[cls])
    fmt = FORMATS[el.dtype if name in ARGUMENTS else el.measured]  # expected, got: measured
    return np.asarray(_VALUE_CLASSES[cls](v, fmt), dtype=bool)
