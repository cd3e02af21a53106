"""PyTorch: BCEWithLogitsLoss four ways, each exactly as a PyTorch user calls it.

- `functional`: `torch.nn.functional.binary_cross_entropy_with_logits`.
- `module`: `torch.nn.BCEWithLogitsLoss(weight=, pos_weight=, reduction=)`.
- `sigmoid+bce`: `torch.sigmoid` then `F.binary_cross_entropy`, the two-step road
  the README's "Findings" compare against; BCE clamps each log at -100 and has no
  `pos_weight`.
- `legacy`: the functional call with the deprecated `size_average`/`reduce`
  arguments standing for the reduction. Every combination that stands for the
  same reduction is run and must agree bit for bit; disagreement is an error.

Compiled (run only with `--compiled`; `eager_twins()` pairs each with its eager one):

- `functional+compile` / `module+compile`: the `functional` / `module` call inside
  a function passed to `torch.compile(dynamic=True)` (Dynamo, then Inductor, which
  generates C++ on the CPU and so needs a C++ compiler). One compiled function per
  (implementation, device, reduction, argument dtypes given), kept in `_COMPILED`;
  `dynamic=True` keeps new sizes from recompiling. Gradients are autograd's through
  the compiled function (AOTAutograd's compiled backward).

Forward mode (`forward_mode()`): for `functional`, `module` and `sigmoid+bce`, a call
with `Call.forward` also gets `torch.func.jvp` along a tangent of ones on each named
argument, in `Result.forward`.

torch is imported only when a method needs it (about 2.6 s), so listing backends
or importing this module stays cheap.
"""

from __future__ import annotations

import re
import types
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from typing import Any

import numpy as np

from harness.backends._common import (
    ARG_NAMES,
    SNIPPET_NAMES,
    arguments,
    import_problem,
    literals,
    prepare,
    too_large,
    uses_numpy,
)
from harness.protocol import DTYPES, Call, Result, Unsupported

IMPLEMENTATIONS: tuple[str, ...] = ("functional", "module", "sigmoid+bce", "legacy")
#: compiled implementation -> its eager twin (the `eager_twins()` hook)
COMPILED: dict[str, str] = {"functional+compile": "functional", "module+compile": "module"}
_ALL: tuple[str, ...] = IMPLEMENTATIONS + tuple(COMPILED)
#: implementations whose forward-mode derivatives are measured (the `forward_mode()` hook)
FORWARD_MODE: tuple[str, ...] = ("functional", "module", "sigmoid+bce")

# size_average/reduce pairs that torch's _Reduction.legacy_get_enum maps to each
# reduction (None means "not passed"); the first is the canonical spelling.
LEGACY: dict[str, tuple[tuple[bool | None, bool | None], ...]] = {
    "none": ((None, False), (True, False), (False, False)),
    "mean": ((True, True), (True, None), (None, True)),
    "sum": ((False, True), (False, None)),
}
_LEGACY_WARNING = "size_average and reduce args will be deprecated"

# torch refuses requires_grad on an argument its autograd formula does not cover,
# at the forward call: "The function 'binary_cross_entropy_with_logits' is not
# differentiable with respect to argument 'weight'. This input cannot have
# requires_grad True."
_NOT_DIFFERENTIABLE = re.compile(r"not differentiable with respect to argument '(\w+)'")
# Missing kernels: RuntimeError '"..." not implemented for 'Half'' and
# NotImplementedError "Could not run 'aten::...' with arguments from the 'CUDA' backend".
_NO_KERNEL = re.compile(r"not implemented for '|Could not run '")

_DESCRIPTIONS = {
    "functional": "torch.nn.functional.binary_cross_entropy_with_logits(input, target, "
                  "weight=, pos_weight=, reduction=) called as is; the adapter adds nothing.",
    "module": "torch.nn.BCEWithLogitsLoss(weight=, pos_weight=, reduction=) built for the call "
              "and applied to (input, target); the adapter adds nothing.",
    "sigmoid+bce": "torch.sigmoid(input), then torch.nn.functional.binary_cross_entropy(probs, "
                   "target, weight=, reduction=); BCE clamps each log at -100, and it has no "
                   "pos_weight (Unsupported).",
    "legacy": "binary_cross_entropy_with_logits with the deprecated size_average/reduce "
              "standing for the reduction (none: reduce=False; mean: size_average=True, "
              "reduce=True; sum: size_average=False, reduce=True); every combination meaning "
              "the same reduction is run and must agree bitwise; the deprecation warning is "
              "silenced.",
    "functional+compile": "the 'functional' call inside a function compiled with "
                          "torch.compile(dynamic=True) (Dynamo + Inductor; C++ on the CPU), one "
                          "compilation per reduction, device and argument dtypes; gradients by "
                          "autograd through the compiled function.",
    "module+compile": "the 'module' call (BCEWithLogitsLoss built inside the function) compiled "
                      "with torch.compile(dynamic=True) (Dynamo + Inductor; C++ on the CPU), one "
                      "compilation per reduction, device and argument dtypes; gradients by "
                      "autograd through the compiled function.",
}


_NO_POS_WEIGHT = ("torch.nn.functional.binary_cross_entropy(input, target, weight, "
                  "size_average, reduce, reduction) has no pos_weight argument")


class LegacyArgumentsDisagree(RuntimeError):
    """Two size_average/reduce combinations that mean the same reduction gave different bits."""


class TorchBackend:
    """PyTorch's BCEWithLogitsLoss and its sigmoid+BCE twin; CPU and every CUDA GPU."""

    name = "torch"

    def availability(self) -> str | None:
        return import_problem("torch", "torch")

    def versions(self) -> dict[str, str]:
        import torch

        out = {"torch": str(torch.__version__)}
        if torch.version.cuda:
            out["cuda"] = str(torch.version.cuda)
        for device in self.devices()[1:]:
            out[device] = torch.cuda.get_device_name(int(device.split(":")[1]))
        return out

    def devices(self) -> list[str]:
        import torch

        # torch.cuda also stands for ROCm GPUs in ROCm builds; those are not "cuda:N" here.
        if torch.version.hip is not None or not torch.cuda.is_available():
            return ["cpu"]
        return ["cpu"] + [f"cuda:{i}" for i in range(torch.cuda.device_count())]

    def dtypes(self) -> list[str]:
        return list(DTYPES)

    def implementations(self) -> list[str]:
        return list(_ALL)

    def eager_twins(self) -> dict[str, str]:
        return dict(COMPILED)

    def describe(self, implementation: str) -> str:
        return _DESCRIPTIONS.get(implementation, "")

    def run(self, call: Call) -> Result:
        import torch

        index = prepare(call, _ALL, self.name, self.devices())
        device = torch.device("cpu" if index is None else f"cuda:{index}")
        if call.implementation == "sigmoid+bce" and call.pos_weight is not None:
            raise Unsupported(_NO_POS_WEIGHT)
        if call.implementation == "legacy" and call.reduction in LEGACY:
            return _run_legacy(call, device)
        if call.implementation in COMPILED:
            return _evaluate(call, device, _compiled_loss(call, device))
        loss_fn = _loss_function(call)
        result = _evaluate(call, device, loss_fn)
        if call.forward and call.implementation in FORWARD_MODE:
            result.forward = _forward_mode(call, device, loss_fn)
        return result

    def forward_mode(self) -> list[str]:
        """Implementations whose forward-mode derivatives `run` computes (torch.func.jvp)."""
        return list(FORWARD_MODE)

    def snippet(self, call: Call) -> str:
        """A torch-only program making the call `run` makes, printing value and gradients."""
        index = prepare(call, _ALL, self.name, self.devices())
        if call.implementation == "sigmoid+bce" and call.pos_weight is not None:
            raise Unsupported(_NO_POS_WEIGHT)
        if call.implementation in COMPILED and index is None:
            _compiler_problem_is_unsupported()
        return _snippet(call, "cpu" if index is None else f"cuda:{index}")


def _loss_function(call: Call, **legacy: bool | None) -> Callable[[dict[str, Any]], Any]:
    """The user's call for `call.implementation`, over a dict of tensors."""
    import torch
    import torch.nn.functional as F

    impl, reduction = COMPILED.get(call.implementation, call.implementation), call.reduction

    def loss(t: dict[str, Any]) -> Any:
        if impl == "module":
            module = torch.nn.BCEWithLogitsLoss(weight=t.get("weight"),
                                                pos_weight=t.get("pos_weight"),
                                                reduction=reduction)
            return module(t["input"], t["target"])
        if impl == "sigmoid+bce":
            return F.binary_cross_entropy(torch.sigmoid(t["input"]), t["target"],
                                          weight=t.get("weight"), reduction=reduction)
        if legacy:
            with warnings.catch_warnings():
                warnings.filterwarnings("ignore", message=_LEGACY_WARNING, category=UserWarning)
                return F.binary_cross_entropy_with_logits(
                    t["input"], t["target"], weight=t.get("weight"),
                    pos_weight=t.get("pos_weight"), **legacy)
        # functional, and legacy with a reduction no legacy pair stands for: the
        # name goes to torch as is, so torch says what it makes of it.
        return F.binary_cross_entropy_with_logits(
            t["input"], t["target"], weight=t.get("weight"), pos_weight=t.get("pos_weight"),
            reduction=reduction)

    return loss


def _evaluate(call: Call, device: Any, loss_fn: Callable[[dict[str, Any]], Any]) -> Result:
    """Forward, then autograd seeded with ones, on leaf tensors on `device`."""
    import torch

    tensors = {name: _to_tensor(array, device) for name, array in arguments(call).items()}
    grads: dict[str, np.ndarray | Unsupported] = {}
    for name in call.grads:
        try:
            tensors[name].requires_grad_(True)
        except RuntimeError as exc:  # integer/bool tensors cannot require gradients
            grads[name] = Unsupported(str(exc))
    with _missing_kernel_is_unsupported():
        loss = _forward(loss_fn, tensors, grads)
    value = _to_numpy(loss)
    wanted = [name for name in call.grads if name not in grads]
    if wanted:
        try:
            with _missing_kernel_is_unsupported():
                computed = torch.autograd.grad(loss, [tensors[n] for n in wanted],
                                               grad_outputs=torch.ones_like(loss))
        except Unsupported as exc:  # no backward kernel: the value still stands
            computed = [exc] * len(wanted)
        for name, g in zip(wanted, computed, strict=True):
            grads[name] = g if isinstance(g, Unsupported) else _to_numpy(g)
    return Result(value=value, grads={name: grads[name] for name in call.grads})


def _forward_mode(call: Call, device: Any,
                  loss_fn: Callable[[dict[str, Any]], Any]) -> dict[str, Any]:
    """torch.func.jvp of the loss along a tangent of ones on each argument in turn.

    Forward-mode AD (dual numbers through each op's forward derivative formula), not
    autograd's backward: the formulas are separate code in torch
    (tools/autograd/derivatives.yaml `result:` entries), with their own bugs
    (pytorch/pytorch#79609). An argument torch has no forward formula for is
    `Unsupported` in torch's words."""
    import torch

    plain = {n: _to_tensor(a, device) for n, a in arguments(call).items()}
    out: dict[str, Any] = {}
    for name in call.forward:
        primal = plain[name]
        if not primal.is_floating_point():
            out[name] = Unsupported(f"{name} is {primal.dtype}: forward-mode AD needs a "
                                    "floating-point tangent")
            continue

        def along(a: Any, name: str = name) -> Any:
            return loss_fn({**plain, name: a})

        try:
            # torch.func.jvp scripts its own decompositions with torch.jit.script
            with _missing_kernel_is_unsupported(), _jit_script_deprecation_is_torchs():
                _, tangent = torch.func.jvp(along, (primal,), (torch.ones_like(primal),))
            out[name] = _to_numpy(tangent)
        except Unsupported as exc:
            out[name] = exc
        except RuntimeError as exc:
            if "forward" not in str(exc).lower():
                raise
            out[name] = Unsupported(str(exc).strip().splitlines()[0])
    return out


def _forward(loss_fn: Callable[[dict[str, Any]], Any], tensors: dict[str, Any],
             grads: dict[str, np.ndarray | Unsupported]) -> Any:
    """Run the forward, learning from torch which arguments it will not differentiate.

    torch raises at the forward when weight or pos_weight requires grad. Rather
    than hard-coding that (it may change), each refusal is recorded as that
    gradient's `Unsupported` with torch's own message, and the forward is retried
    without it, so the value and the remaining gradients are still compared.
    """
    while True:
        try:
            return loss_fn(tensors)
        except RuntimeError as exc:
            match = _NOT_DIFFERENTIABLE.search(str(exc))
            name = match.group(1) if match else None
            if name is None or name not in tensors or not tensors[name].requires_grad:
                raise
            grads[name] = Unsupported(_refusal(exc, match))
            tensors[name].requires_grad_(False)


# --- torch.compile (functional+compile, module+compile) ---------------------------

#: (implementation, device type, reduction, ((argument, dtype), ...)) -> compiled function
_COMPILED: dict[tuple[Any, ...], Callable[..., Any]] = {}
_COMPILER: list[str | None] = []  # why Inductor has no C++ compiler (None: it has one), once
# Dynamo keeps at most `recompile_limit` (8) graphs per Python function and beyond that
# runs the function eagerly, warning once: numbers measured there would be eager's,
# reported as compiled. So each key gets a function of its own (its own code object,
# on which Dynamo keeps its cache), the limit is raised for the shapes one key meets
# (ranks, and sizes 0 and 1, which dynamic=True still specializes), and hitting it is
# an error rather than a silent fall-back.
_RECOMPILE_LIMIT = 64


def _dynamo_config(torch: Any) -> dict[str, Any]:
    """The Dynamo settings above, under the names this torch knows (`recompile_limit`
    was `cache_size_limit` before torch 2.6; older torch cannot fail on the limit)."""
    config = torch._dynamo.config
    limit = "recompile_limit" if hasattr(config, "recompile_limit") else "cache_size_limit"
    out: dict[str, Any] = {limit: _RECOMPILE_LIMIT}
    if hasattr(config, "fail_on_recompile_limit_hit"):
        out["fail_on_recompile_limit_hit"] = True
    return out


def _compiler_problem() -> str | None:
    """Why Inductor cannot build CPU kernels here (no C++ compiler), or None."""
    if not _COMPILER:
        import torch._inductor.config as inductor_config
        from torch._inductor import cpp_builder

        try:
            cpp_builder.get_cpp_compiler()
            problem = None
        except Exception as exc:  # InvalidCxxCompiler, or a broken compiler
            tried = [c for c in inductor_config.cpp.cxx if c] if isinstance(
                inductor_config.cpp.cxx, (list, tuple)) else [inductor_config.cpp.cxx]
            problem = (f"torch.compile's Inductor backend generates C++ for the CPU and finds no "
                       f"working C++ compiler (tried {', '.join(map(str, tried))}: "
                       f"{type(exc).__name__}); install one (e.g. `apt-get install g++`) or "
                       "point CXX at one")
        _COMPILER.append(problem)
    return _COMPILER[0]


def _compiler_problem_is_unsupported() -> None:
    problem = _compiler_problem()
    if problem is not None:
        raise Unsupported(problem)


def _compiled_loss(call: Call, device: Any) -> Callable[[dict[str, Any]], Any]:
    """The eager twin's call under torch.compile(dynamic=True), compiled once per key."""
    import torch

    if device.type == "cpu":  # CUDA kernels are Triton's, not C++
        _compiler_problem_is_unsupported()
    given = tuple((n, call.dtype_of(n)) for n in ARG_NAMES if getattr(call, n) is not None)
    names = [n for n, _ in given]
    key = (call.implementation, device.type, call.reduction, given)
    compiled = _COMPILED.get(key)
    if compiled is None:
        eager = _loss_function(call)

        def body(*tensors: Any) -> Any:
            return eager(dict(zip(names, tensors, strict=True)))

        name = f"bce_compiled_{len(_COMPILED)}"
        code = body.__code__.replace(co_name=name)
        fresh = types.FunctionType(code, body.__globals__, name, None, body.__closure__)
        # the first torch.compile imports Inductor, whose torch.utils.mkldnn still uses
        # torch.jit.script_method
        with _jit_script_deprecation_is_torchs():
            compiled = _COMPILED[key] = torch.compile(fresh, dynamic=True)

    settings = _dynamo_config(torch)

    def loss(t: dict[str, Any]) -> Any:
        with torch._dynamo.config.patch(**settings):
            return compiled(*(t[n] for n in names))

    return loss


def _refusal(exc: RuntimeError, match: re.Match[str]) -> str:
    """torch's refusal in its own words: the whole message in eager mode; under
    torch.compile, Dynamo wraps it (TorchRuntimeError, "Dynamo failed to run FX node
    with fake tensors: ... got RuntimeError(...)"), so its sentence is taken out."""
    text = str(exc)
    if text.startswith("The function"):
        return text
    sentence = re.search(r"The function '\w+' is not differentiable with respect to argument "
                         r"'\w+'\.[^\"]*", text)
    return (f"{sentence.group(0).strip() if sentence else match.group(0)} (raised while "
            "torch.compile traced the call)")


def _run_legacy(call: Call, device: Any) -> Result:
    """Every size_average/reduce pair meaning `call.reduction`, checked to agree bitwise."""
    pairs = LEGACY[call.reduction]
    results = []
    for size_average, reduce in pairs:
        fn = _loss_function(call, size_average=size_average, reduce=reduce)
        results.append(_evaluate(call, device, fn))
    first = results[0]
    for (size_average, reduce), other in zip(pairs[1:], results[1:], strict=True):
        where = _disagreement(first, other)
        if where:
            raise LegacyArgumentsDisagree(
                f"legacy arguments disagree for reduction={call.reduction!r}: "
                f"size_average={pairs[0][0]}, reduce={pairs[0][1]} and "
                f"size_average={size_average}, reduce={reduce} give different {where}")
    return first


def _disagreement(a: Result, b: Result) -> str:
    """'' when both results carry the same bits, else what differs."""
    if not _same_bits(a.value, b.value):
        return f"values ({a.value!r} vs {b.value!r})"
    for name, ga in a.grads.items():
        gb = b.grads[name]
        if isinstance(ga, Unsupported) or isinstance(gb, Unsupported):
            if not (isinstance(ga, Unsupported) and isinstance(gb, Unsupported)
                    and ga.reason == gb.reason):
                return f"gradients of {name} ({ga!r} vs {gb!r})"
        elif not _same_bits(ga, gb):
            return f"gradients of {name} ({ga!r} vs {gb!r})"
    return ""


def _same_bits(a: np.ndarray, b: np.ndarray) -> bool:
    return a.dtype == b.dtype and a.shape == b.shape and a.tobytes() == b.tobytes()


@contextmanager
def _jit_script_deprecation_is_torchs() -> Iterator[None]:
    """Silence the DeprecationWarning of torch.jit.script that torch's own code raises
    (torch.func.jvp's decompositions, Inductor's import): torch's business, not the user's."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*torch.jit.script.*",
                                category=DeprecationWarning)
        yield


@contextmanager
def _missing_kernel_is_unsupported() -> Iterator[None]:
    """A dtype with no kernel on a device is Unsupported, in torch's words (first line)."""
    try:
        yield
    except RuntimeError as exc:  # NotImplementedError is a RuntimeError too
        if isinstance(exc, NotImplementedError) or _NO_KERNEL.search(str(exc)):
            raise Unsupported(str(exc).strip().splitlines()[0]) from exc
        raise


def _to_tensor(array: np.ndarray, device: Any) -> Any:
    """numpy → torch tensor on `device`; bfloat16 via float32 (exact) since numpy has none."""
    import ml_dtypes
    import torch

    if array.dtype == np.dtype(ml_dtypes.bfloat16):
        return torch.from_numpy(array.astype(np.float32)).to(device=device, dtype=torch.bfloat16)
    # a C-ordered copy keeps 0-d arrays 0-d (np.ascontiguousarray would make them 1-d)
    return torch.from_numpy(np.array(array, order="C")).to(device=device)


def _to_numpy(tensor: Any) -> np.ndarray:
    """torch → numpy with the dtype kept; bfloat16 through float32, which is exact."""
    import ml_dtypes
    import torch

    tensor = tensor.detach().cpu()
    if tensor.dtype == torch.bfloat16:
        return tensor.float().numpy().astype(ml_dtypes.bfloat16)
    return tensor.numpy()


def _snippet(call: Call, device: str) -> str:
    values = literals(call)
    lines = ["import torch", "import torch.nn.functional as F"]
    if values is None:
        return "\n".join([*lines, "", *too_large()])
    if uses_numpy([source for source, _ in values.values()]):
        lines.insert(0, "import numpy as np")
    legacy = LEGACY.get(call.reduction) if call.implementation == "legacy" else None
    if legacy:
        lines.insert(0, "import warnings")
    lines += ["", f"device = torch.device({device!r})"]
    for name, (source, dtype) in values.items():
        lines.append(f"{SNIPPET_NAMES[name]} = torch.tensor({source}, dtype=torch.{dtype}, "
                     "device=device)")
    refused = _refusals(call)
    wanted = []
    for name in call.grads:
        var = SNIPPET_NAMES[name]
        if call.dtype_of(name) not in DTYPES:
            lines.append(f"# {var} is {call.dtype_of(name)}: torch cannot make it require "
                         "gradients, so its gradient is not asked for")
        elif name in refused:
            lines += [f"# {var}.requires_grad_(True) left out: torch refuses it at the forward:",
                      f"# {refused[name]}"]
        else:
            lines.append(f"{var}.requires_grad_(True)")
            wanted.append(name)
    keywords = [f"{k}={SNIPPET_NAMES[k]}" for k in ("weight", "pos_weight") if k in values]
    args = "".join(", " + k for k in keywords)
    if call.implementation in COMPILED:
        module_args = ", ".join([*keywords, f"reduction={call.reduction!r}"])
        expression = (f"torch.nn.BCEWithLogitsLoss({module_args})(x, y)"
                      if COMPILED[call.implementation] == "module" else
                      f"F.binary_cross_entropy_with_logits(x, y{args}, "
                      f"reduction={call.reduction!r})")
        params = ", ".join(SNIPPET_NAMES[n] for n in values)
        lines += ["", "",
                  "# Inductor: C++ on the CPU (needs a C++ compiler), Triton on a GPU",
                  "@torch.compile(dynamic=True)",
                  f"def loss_fn({params}):",
                  f"    return {expression}",
                  "", "",
                  f"loss = loss_fn({params})"]
    elif call.implementation == "module":
        module_args = ", ".join([*keywords, f"reduction={call.reduction!r}"])
        lines += [f"loss_fn = torch.nn.BCEWithLogitsLoss({module_args})",
                  "loss = loss_fn(x, y)"]
    elif call.implementation == "sigmoid+bce":
        lines.append(f"loss = F.binary_cross_entropy(torch.sigmoid(x), y{args}, "
                     f"reduction={call.reduction!r})")
    elif legacy:
        (size_average, reduce), others = legacy[0], list(legacy[1:])
        lines += [f"warnings.filterwarnings('ignore', message={_LEGACY_WARNING!r}, "
                  "category=UserWarning)",
                  f"# the deprecated size_average/reduce pair standing for "
                  f"reduction={call.reduction!r}",
                  f"loss = F.binary_cross_entropy_with_logits(x, y{args}, "
                  f"size_average={size_average}, reduce={reduce})"]
    else:
        lines.append(f"loss = F.binary_cross_entropy_with_logits(x, y{args}, "
                     f"reduction={call.reduction!r})")
    lines += ["print('value', loss.detach().cpu().double().tolist())",
              "print('dtype', str(loss.dtype).split('.')[-1])"]
    if wanted:
        variables = ", ".join(SNIPPET_NAMES[n] for n in wanted)
        lines += [f"grads = torch.autograd.grad(loss, [{variables}], "
                  "grad_outputs=torch.ones_like(loss))",
                  f"for name, g in zip({wanted!r}, grads):",
                  "    print('grad ' + name, g.detach().cpu().double().tolist())"]
    if legacy and others:
        lines += ["",
                  "# every other pair meaning the same reduction must give the same bits",
                  "def bits(t):",
                  "    return t.detach().cpu().reshape(-1).view(torch.uint8).tolist()",
                  "",
                  f"for size_average, reduce in {others!r}:",
                  f"    other = F.binary_cross_entropy_with_logits(x, y{args}, "
                  "size_average=size_average, reduce=reduce)",
                  "    same = bits(other) == bits(loss)"]
        if wanted:
            lines += [f"    again = torch.autograd.grad(other, [{variables}], "
                      "grad_outputs=torch.ones_like(other))",
                      "    same = same and all(bits(a) == bits(b) for a, b in zip(again, grads))"]
        lines.append("    print('legacy', size_average, reduce, 'same bits:', same)")
    return "\n".join(lines) + "\n"


def _refusals(call: Call) -> dict[str, str]:
    """Arguments torch refuses to differentiate at the forward, in torch's words (first line).

    `run` learns this from torch on every call rather than hard-coding it; the
    snippet asks torch the same way, once, on the CPU, so it leaves those out of
    requires_grad just as `run` ends up doing. Any other error is the snippet's to show.
    """
    import torch

    legacy = LEGACY.get(call.reduction) if call.implementation == "legacy" else None
    loss_fn = (_loss_function(call, size_average=legacy[0][0], reduce=legacy[0][1])
               if legacy else _loss_function(call))
    grads: dict[str, np.ndarray | Unsupported] = {}
    try:
        tensors = {n: _to_tensor(a, torch.device("cpu")) for n, a in arguments(call).items()}
        for name in call.grads:
            with suppress(RuntimeError):  # integer/bool tensors cannot require gradients
                tensors[name].requires_grad_(True)
        _forward(loss_fn, tensors, grads)
    except Exception:  # the snippet reproduces whatever torch says; refusals so far stand
        pass
    return {name: str(g.reason).strip().splitlines()[0] for name, g in grads.items()
            if isinstance(g, Unsupported)}
