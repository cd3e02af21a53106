"""What the elementwise kernels compute, by name: brackets, terms and a chunk's results.

Every elementwise quantity the reference returns is the weight ``w`` times a w-free
*bracket* (or, for d/dw, the bracket itself)::

    G = (1-y) sp(x) + p y sp(-x)       loss = w*G,  d/dw = G
    K = (1-y) s(x) - p y s(-x)         d/dx = w*K
    B = p sp(-x) - sp(x)               d/dy = w*B
    Y = y sp(-x)                       d/dp = w*Y

The kernels (``elementwise.py``, ``fastkernel.py``) compute brackets once and multiply
by ``w`` only where a term asks for it, so the loss and d/dw share one ``G``. A ``Term``
names one such product; the five the public API returns have names of their own
(``LOSS`` ... ``GRAD_POS_WEIGHT``), and the exact-sign computation of special values
(``specials.py``) asks for bare brackets.
"""

from __future__ import annotations

import enum
from typing import NamedTuple

import numpy as np

from harness.reference.scaled import Bounded

__all__ = [
    "GRAD_INPUT",
    "GRAD_POS_WEIGHT",
    "GRAD_TARGET",
    "GRAD_WEIGHT",
    "LOSS",
    "Bracket",
    "ChunkResult",
    "Term",
]


class Bracket(str, enum.Enum):
    """A w-free factor of the elementwise quantities (see the module docstring).

    A ``str`` enum for ``str``'s cached hash: terms key the kernels' dicts in every chunk,
    and ``Enum.__hash__`` is a Python call.
    """

    G = "G"  #: (1-y) sp(x) + p y sp(-x): the loss over w, and d/dw
    K = "K"  #: (1-y) s(x) - p y s(-x): d/dx over w
    B = "B"  #: p sp(-x) - sp(x): d/dy over w
    Y = "Y"  #: y sp(-x): d/dp over w


class Term(NamedTuple):
    """A bracket, multiplied by ``w`` when ``weighted`` (and ``w`` is given)."""

    bracket: Bracket
    weighted: bool

    def __str__(self) -> str:
        """The shorthand of the comments: ``wG`` for the loss, ``G`` for d/dw."""
        return ("w" if self.weighted else "") + self.bracket.value


LOSS = Term(Bracket.G, True)
GRAD_INPUT = Term(Bracket.K, True)
GRAD_TARGET = Term(Bracket.B, True)
GRAD_WEIGHT = Term(Bracket.G, False)
GRAD_POS_WEIGHT = Term(Bracket.Y, True)


class ChunkResult(NamedTuple):
    """A kernel's results for one chunk of elements.

    ``terms``: each wanted term, a scaled dd value and its error bound.
    ``numerators``: with condition numbers wanted, each term's numerator
    ``sum_z |z dq/dz|`` as a scaled float ``(mantissa, exponent)``, w-free
    (``condition.py``); empty otherwise.
    """

    terms: dict[Term, Bounded]
    numerators: dict[Term, tuple[np.ndarray, np.ndarray | int]]
