"""Copy-pasteable reproductions: the most useful line of any failure report.

Small arguments are written out literally, so the snippet runs anywhere the
backend does; large ones are loaded from the case file by name. A backend may
offer `snippet(call) -> str` that calls its framework directly; that is preferred,
because it is what a framework maintainer can paste into their own bug tracker.
"""

from __future__ import annotations

import numpy as np

from harness.literals import array_source
from harness.protocol import Call

LITERAL_LIMIT = 64


def snippet(backend: object, spec: str, call: Call, case_name: str, source: str) -> str:
    """Python that re-runs `call` on the backend and prints the reference beside it."""
    hook = getattr(backend, "snippet", None)
    if callable(hook):
        try:
            text = str(hook(call))
        except Exception:  # fall back to the generic snippet
            pass
        else:  # a backend's snippet does not know the case file; we do
            path = source.rsplit(":", 1)[0]
            return text.replace("--cases <file>", f"--cases {path} --backend "
                                f"{getattr(backend, 'name', '')} --dtype {call.dtype}")
    size = max(np.size(call.input), np.size(call.target))
    lines = ["import numpy as np", "from harness import reference",
             "from harness.protocol import Call", "from harness.run.registry import load_spec",
             f"backend = load_spec({spec!r})"]
    if size <= LITERAL_LIMIT:
        args = {n: array_source(getattr(call, n))
                for n in ("input", "target", "weight", "pos_weight")}
    else:
        path = source.rsplit(":", 1)[0]
        lines += ["from harness.cases import load_cases",
                  f"case = next(c for c in load_cases([{path!r}]) if c.name == {case_name!r})",
                  f"a = case.materialize({call.dtype!r})"]
        args = {n: f"a[{n!r}]" for n in ("input", "target", "weight", "pos_weight")}
    lines += [
        f"call = Call(implementation={call.implementation!r}, device={call.device!r}, "
        f"dtype={call.dtype!r},",
        f"            input={args['input']},",
        f"            target={args['target']},",
        f"            weight={args['weight']}, pos_weight={args['pos_weight']},",
        f"            reduction={call.reduction!r}, grads={call.grads!r}"
        + (f", arg_dtypes={call.arg_dtypes!r})" if call.arg_dtypes else ")"),
        "result = backend.run(call)",
        "print('got     ', result.value, result.grads)",
        "print('expected', reference.loss(call.input, call.target, call.weight, "
        "call.pos_weight, call.reduction))",
    ]
    return "\n".join(lines)
