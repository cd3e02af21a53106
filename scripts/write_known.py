"""Regenerate cases/known.yaml from a full report: the harness's findings, explained.

    python -m harness report --out /tmp/full && python scripts/write_known.py /tmp/full/report.json

Grouping and evidence come from `harness.triage` (what the run found); the reasons
below are the maintainers' reading of each kind of discrepancy per backend, checked
against the evidence (the worst element of each entry) before they were written.
A new kind, or a known kind on a new backend, stops the script: explain it first.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import yaml

from harness.triage import propose

GENERIC = {
    "sigmoid-then-bce": "sigmoid first, then BCE on the probability (the seed documents' unstable "
                        "twin): σ(x) rounds to 0 or 1 and log/clamp/clip take over",
    "half-precision": "computed op by op in float16/bfloat16 (each intermediate rounded to 8 or "
                      "11 bits), so exp/log/softplus terms lose the accuracy of the result",
    "special-value-in-reduction": "an infinite or huge logit gives NaN in one element (inf − inf "
                                  "inside the formula), and the NaN reaches the mean/sum",
    "infinite-argument": "an infinite argument gives NaN (inf − inf or 0·inf inside the formula) "
                         "where the limit for fixed other arguments is finite or a signed inf",
    "nan-propagation": "the gradient with respect to the other arguments of an element whose "
                       "weight, pos_weight or target is NaN comes out finite; the contract "
                       "propagates NaN to every quantity of that element",
    "overflow": "an intermediate (a product or a partial sum) overflows to inf although the "
                "exact result is representable",
    "subnormal-flushed": "a result in the subnormal range is flushed to zero",
    "target-gradient-cancellation": "∂/∂target computed as a difference of two log-sigmoid / "
                                    "softplus values, which cancels for small |x| (it is −x "
                                    "exactly for pos_weight 1)",
    "cancellation-negative-logit": "the textbook form (1−y)·x + max(−x,0) + log(...) cancels "
                                   "for negative logits: the loss loses relative accuracy and "
                                   "becomes 0 where it is tiny",
    "accuracy": "rounding error beyond the allowance of a backward-stable formula",
    "result-dtype": "the result's dtype is not the promoted dtype of the arguments",
    "raises-on-valid-input": "raises on arguments the reference accepts (integer or bool "
                             "weights, integer targets, mixed dtypes)",
    "silent-accept": "silently broadcasts arguments whose shapes the contract (and PyTorch) "
                     "refuse, returning a value of another shape",
    "wrong-error": "refuses invalid shapes, but with another exception type than ValueError",
    "computed-in-float32": "float64 arguments are computed in float32 (the result is then "
                           "only float32-accurate)",
    "cancellation-soft-target": "the form max(x,0) − x·z + log1p(exp(−|x|)) (or (1−y)·x + ...) "
                                "cancels for soft targets z near 0 or 1: x − x·z loses the "
                                "digits 1 − z would keep",
    "result-not-float": "the loss comes back as bool: loss * bool weight takes the weight's "
                        "dtype in TensorFlow's operator",
    "gradient-at-zero": "weighted_cross_entropy_with_logits' input gradient is wrong at x = 0 "
                        "exactly: the subgradients of abs and relu there give w·(1−y) instead "
                        "of w·((1−y) − l/2)",
    "result-shape": "an empty input reduced with mean/sum returns an empty array instead of "
                    "a 0-d NaN / 0",
}

SPECIFIC = {
    ("torch", "infinite-argument"): ("binary_cross_entropy_with_logits gives NaN at ±inf "
                                     "logits (log-sum-exp with inf − inf)",
                                     "https://github.com/pytorch/pytorch/issues/49844"),
    ("torch", "special-value-in-reduction"): (GENERIC["special-value-in-reduction"],
                                              "https://github.com/pytorch/pytorch/issues/102894"),
    ("torch", "cancellation-negative-logit"): (
        "(1−y)·x + max(−x,0) + log(exp(−max) + exp(−x−max)) cancels for x < 0: the loss of "
        "x = −50, y = 0 (1.93e-22) comes out as 0", None),
    ("torch", "half-precision"): ("float16/bfloat16 on CPU are computed op by op in the "
                                  "format: at x = −7, y = 0 the loss 9.1e-4 comes out as 0", None),
    ("torch", "sigmoid-then-bce"): ("torch.sigmoid then F.binary_cross_entropy: σ rounds to 0/1 "
                                    "and the log is clamped at −100 (loss 100, gradient 0), NaN "
                                    "logits raise", "https://github.com/pytorch/pytorch/issues/103316"),
    ("torch", "raises-on-valid-input"): ("refuses integer targets / mixes the result dtype "
                                         "with the target's: 'result type Float can't be cast "
                                         "to the desired output type Long'", None),
    ("torch", "result-dtype"): ("the result dtype follows the target, not the promotion of "
                                "the arguments (float32 input, float16 target → float16 loss)",
                                None),
    ("tensorflow", "infinite-argument"): (GENERIC["infinite-argument"],
                                          "https://github.com/tensorflow/tensorflow/issues/75256"),
    ("tensorflow", "special-value-in-reduction"): (
        GENERIC["special-value-in-reduction"],
        "https://github.com/tensorflow/tensorflow/issues/75256"),
    ("tensorflow", "computed-in-float32"): ("Keras 3 losses cast their arguments to "
                                            "keras.config.floatx() (float32); float64 in gives "
                                            "float32 accuracy",
                                            "https://github.com/keras-team/keras-core/issues/922"),
    ("tensorflow", "result-dtype"): ("Keras 3 losses return floatx() (float32) whatever the "
                                     "input dtype",
                                     "https://github.com/keras-team/keras-core/issues/922"),
    ("tensorflow", "sigmoid-then-bce"): ("keras-probs: probabilities clipped to [1e-7, 1−1e-7] "
                                         "(loss capped near 16.1, gradient 0 beyond the clip); "
                                         "tf.nn forms are exact there",
                                         "https://github.com/keras-team/keras/issues/15249"),
    ("tensorflow", "raises-on-valid-input"): ("tf.nn ops refuse integer/bool weights and "
                                              "mixed dtypes (InvalidArgumentError) where the "
                                              "reference accepts them", None),
    ("tensorflow", "accuracy"): ("keras: float64 computed in float32, and NaN/0 at huge "
                                 "logits; weighted: the log-weight form (1−y)x + l·(log1p(e^−|x|) "
                                 "+ max(−x,0)) cancels for x < 0 and its input gradient is wrong "
                                 "at x = 0 (abs/relu subgradients)", None),
    ("tensorflow", "silent-accept"): ("tf.nn/keras silently broadcast a weight or pos_weight "
                                      "that enlarges the result (PyTorch refuses)", None),
    ("tensorflow", "result-shape"): ("keras: mean/sum over an empty batch returns an empty "
                                     "array (or 0) instead of NaN / 0", None),
    ("jax", "infinite-argument"): (GENERIC["infinite-argument"],
                                   "https://github.com/google-deepmind/optax/pull/431"),
    ("jax", "special-value-in-reduction"): (GENERIC["special-value-in-reduction"],
                                            "https://github.com/google-deepmind/optax/pull/431"),
    ("jax", "subnormal-flushed"): ("XLA on CPU flushes subnormal results to zero", None),
    ("jax", "silent-accept"): ("jnp broadcasting silently accepts mismatched input/target "
                               "shapes and enlarging weights (no shape check in the loss)", None),
    ("jax", "wrong-error"): ("mismatched shapes raise TypeError from jnp broadcasting, not "
                             "ValueError", None),
    ("jax", "result-dtype"): ("optax returns the input's dtype for a float64 target instead "
                              "of promoting", None),
    ("jax", "accuracy"): ("autodiff of log_sigmoid: input gradient a few ulps beyond a "
                          "backward-stable σ(x) − y, and subnormal intermediates flushed", None),
    ("numpy", "overflow"): ("the float64 sum of losses near 1.7e308 overflows although their "
                            "mean is representable (a plain np.sum; the control is not "
                            "scaled)", None),
    ("numpy", "sigmoid-then-bce"): ("naive: σ(x) rounds to 1 from x ≈ 17 (float32), 37 "
                                    "(float64), log(1 − 1) = −inf and 0·inf = NaN in the chain "
                                    "rule", None),
}


# kinds the evidence of one record cannot show, established by reading the case
CASE_KINDS = {
    ("torch", "shapes/pos-weight-uint8"): "integer-wraparound",
}
SPECIFIC.update({
    ("torch", "integer-wraparound"): ("a uint8 pos_weight is used in uint8 arithmetic: "
                                      "pos_weight − 1 wraps from 0 to 255 (mean 1208 instead "
                                      "of 147)", None),
    ("torch", "accuracy"): ("with pos_weight the input gradient is formed as "
                            "(p·y + 1 − y)·σ(x) − p·y, which cancels on confident correct "
                            "predictions; mixed float32/float64 arguments are computed in "
                            "float32", None),
    ("jax", "accuracy"): ("autodiff of log_sigmoid gives the input gradient up to ~25 ulp "
                          "from σ(x) − y near σ = 1 (a direct σ is within ~1 ulp); mixed "
                          "dtypes computed in the lower precision", None),
    ("tensorflow", "accuracy"): ("weighted: the input gradient through its log-weight form "
                                 "loses digits where its terms cancel; sigmoid: a subnormal "
                                 "gradient rounded through an underflowing product", None),
})


def reason(backend: str, kind: str) -> tuple[str, str | None]:
    if (backend, kind) in SPECIFIC:
        return SPECIFIC[(backend, kind)]
    if kind in GENERIC:
        return GENERIC[kind], None
    raise SystemExit(f"no explanation yet for {backend} / {kind}: read the evidence, then add one")


def main(report_path: str, out: str = "cases/known.yaml") -> None:
    report = json.loads(Path(report_path).read_text())
    entries = []
    for e in propose(report):
        e["kind"] = CASE_KINDS.get((e["backend"], e["case"]), e["kind"])
        text, issue = reason(e["backend"], e["kind"])
        entry = {k: e[k] for k in ("backend", "implementation", "device", "dtype", "case",
                                   "reduction", "check", "kind")}
        entry["reason"] = text
        if issue:
            entry["issue"] = issue
        entries.append(entry)
    header = ("# Known discrepancies: what the real frameworks do differently from the reference,\n"
              "# found by the harness (python -m harness report; grouped by harness.triage) and\n"
              "# explained. A fail an entry covers is `known`; an entry whose calls pass is\n"
              "# `fixed`. Regenerate with scripts/write_known.py after a full run, and review\n"
              "# the diff.\n")
    Path(out).write_text(header + yaml.safe_dump({"known": entries}, sort_keys=False, width=100,
                                                 allow_unicode=True))
    print(f"{len(entries)} entries → {out}")


if __name__ == "__main__":
    main(*sys.argv[1:])
