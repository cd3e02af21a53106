"""Writing a case back as a case file: the inverse of harness/cases/loading.py.

A failure found by a generated case is only useful once anyone can re-run it
without the seed, the Hypothesis version or the harness's state, so the harness
saves it as an ordinary case file (harness/generate/shrink.py). `case_yaml` writes
one that loads into the same case: every float exact (harness/literals.py), the one
dtype and reduction it ran in, its gradients or its expected error, and its tags.
"""

from __future__ import annotations

import json
from collections.abc import Sequence

from harness.cases.model import ARG_NAMES, Case
from harness.literals import yaml_value

__all__ = ["case_yaml"]


def case_yaml(case: Case, name: str, description: str | None = None,
              comment: Sequence[str] = ()) -> str:
    """A case file holding `case` alone as case `name`, every float exact.

    The file loads with `harness.cases.load_cases` into a case with the same
    arrays, dtypes, reductions, gradients, expected error, argument dtypes and
    tags; `comment` lines go on top (how it was found, how to run it).
    """
    lines = [f"# {c}" for c in comment]
    lines.append("cases:")
    lines.append(f"  - name: {name}")
    lines.append(f"    description: {json.dumps(description or case.description)}")
    for key in ARG_NAMES:
        value = getattr(case, key)
        if value is not None:
            lines.append(f"    {key}: {yaml_value(value)}")
    lines.append(f"    dtypes: [{', '.join(case.dtypes)}]")
    lines.append(f"    reductions: [{', '.join(case.reductions)}]")
    if case.raises:
        lines.append(f"    raises: [{', '.join(case.raises)}]")
    else:
        lines.append(f"    grads: [{', '.join(case.grads)}]")
    if case.arg_dtypes:
        pairs = ", ".join(f"{k}: {v}" for k, v in case.arg_dtypes.items())
        lines.append(f"    arg_dtypes: {{{pairs}}}")
    if case.label_smoothing:
        lines.append(f"    label_smoothing: {case.label_smoothing!r}")
    if case.tags:
        lines.append(f"    tags: [{', '.join(json.dumps(t) for t in dict.fromkeys(case.tags))}]")
    return "\n".join(lines) + "\n"
